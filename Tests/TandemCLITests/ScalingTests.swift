// `tandem bench --scaling`: the collectives recorded from a real step at a pretend two ranks, and the
// prediction built on them (the cost model itself: TandemTests/ScalingModelTests.swift).

import Foundation
import XCTest

final class ScalingTests: XCTestCase {
    func testScalingPredictsFromOneRanksStepAndTheStepsCollectives() throws {
        let run = try Harness.tandem(
            ["bench", "--json", "--scaling", "--batch-size", "8", "--intervals", "2", "--link", "slow=100:1"]
                + Harness.tiny)
        XCTAssertEqual(run.status, 0, run.stderr)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        let compute = try XCTUnwrap(json["compute_ms"] as? Double)
        XCTAssertGreaterThan(compute, 0)
        // The tiny model's step exchanges its gradient (the table's rows and the dense rest) and sums its
        // metrics: several collectives, some of them the gradient's.
        XCTAssertGreaterThanOrEqual(json["collectives"] as? Int ?? 0, 2)
        XCTAssertGreaterThan(json["gradient_bytes"] as? Int ?? 0, 0)
        let rows = try XCTUnwrap(json["predictions"] as? [[String: Any]])
        XCTAssertEqual(rows.map { $0["ranks"] as? Int }, [1, 2, 3, 4, 8, 16, 32, 64])
        XCTAssertEqual(rows[0]["samples_per_second"] as? Double ?? 0, 8000 / compute, accuracy: 1e-6 * 8000 / compute)
        XCTAssertEqual(rows[0]["efficiency"] as? Double ?? 0, 1, accuracy: 1e-12)
        // On a 1 Gbit/s link of 100 µs every rank count above one pays for its collectives. (Efficiency need
        // not fall monotonically: Open MPI switches algorithms with the group's size.)
        for row in rows.dropFirst() { XCTAssertLessThan(row["efficiency"] as? Double ?? 1, 1) }
        for row in rows.dropFirst() {
            let latency = try XCTUnwrap(row["gradient_latencies"] as? Double) + (row["other_latencies"] as? Double ?? 0)
            let bytes = try XCTUnwrap(row["gradient_link_bytes"] as? Double) + (row["other_link_bytes"] as? Double ?? 0)
            XCTAssertEqual(
                row["exchange_ms"] as? Double ?? 0, 1000 * (latency * 100e-6 + bytes / 125e6), accuracy: 1e-9,
                "the exchange is latencies × α + bytes × β")
        }
        // Under mpirun it refuses: the prediction is made from one rank's step.
        let refused = try Harness.mpi(2, ["bench", "--scaling"] + Harness.tiny)
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("--scaling measures one rank's step"), refused.stderr)
        let badLink = try Harness.tandem(["bench", "--scaling", "--link", "fast"] + Harness.tiny)
        XCTAssertNotEqual(badLink.status, 0)
        XCTAssertTrue(badLink.stderr.contains("--link fast: expected NAME=LATENCY_US:GBIT"), badLink.stderr)
    }
}
