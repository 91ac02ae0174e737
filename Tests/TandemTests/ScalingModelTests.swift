// `tandem bench --scaling`'s cost model (ScalingModel.swift), against costs worked out by hand.

import XCTest

@testable import TandemCore
@testable import TandemTraining

final class ScalingModelTests: XCTestCase {
    func testCollectiveCostsFollowOpenMPIsAlgorithms() {
        func cost(_ kind: CollectiveCall.Kind, _ bytes: Int, _ n: Int) -> CollectiveCost {
            collectiveCost(CollectiveCall(kind: kind, bytes: bytes, gradient: false), ranks: n)
        }
        // One rank: nothing crosses a link.
        XCTAssertEqual(cost(.allReduce, 1 << 20, 1).latencies, 0)
        // Open MPI 4.1's choices (coll_tuned_decision_fixed.c) at a few group and message sizes.
        XCTAssertEqual(AllReduceAlgorithm.openMPI(bytes: 72, ranks: 2), .recursiveDoubling)
        XCTAssertEqual(AllReduceAlgorithm.openMPI(bytes: 8200, ranks: 3), .recursiveDoubling)
        XCTAssertEqual(AllReduceAlgorithm.openMPI(bytes: 40000, ranks: 3), .ring)
        XCTAssertEqual(AllReduceAlgorithm.openMPI(bytes: 100_000, ranks: 2), .segmentedRing)
        XCTAssertEqual(AllReduceAlgorithm.openMPI(bytes: 957_488, ranks: 3), .rabenseifner)
        XCTAssertEqual(AllReduceAlgorithm.openMPI(bytes: 8200, ranks: 4), .rabenseifner)
        XCTAssertEqual(AllReduceAlgorithm.openMPI(bytes: 100, ranks: 40), .segmentedRing)
        XCTAssertEqual(AllReduceAlgorithm.openMPI(bytes: 100_000, ranks: 64), .recursiveDoubling)
        // Recursive doubling: log₂ N rounds of (α + mβ); 3 ranks fold the odd one in and out: 1 + 2.
        XCTAssertEqual(cost(.allReduce, 8, 2).latencies, 1)
        XCTAssertEqual(cost(.allReduce, 8, 2).bytes, 8)
        XCTAssertEqual(cost(.allReduce, 8, 3).latencies, 3)
        XCTAssertEqual(cost(.allReduce, 8, 3).bytes, 24)
        XCTAssertEqual(cost(.allReduce, 100, 8).latencies, 3)
        // The ring: 2(N−1) messages, 2(N−1)/N of the buffer through each link.
        XCTAssertEqual(cost(.allReduce, 40000, 3).latencies, 4)
        XCTAssertEqual(cost(.allReduce, 40000, 3).bytes, 40000 * 4 / 3, accuracy: 1e-9)
        // Rabenseifner: 2 log₂ p messages and 2(p−1)/p of the buffer among p = 2^⌊log₂ N⌋; folding 3 into 2
        // adds three dependent steps of half, half and a whole buffer.
        XCTAssertEqual(cost(.allReduce, 1_000_000, 4).latencies, 4)
        XCTAssertEqual(cost(.allReduce, 1_000_000, 4).bytes, 1_500_000)
        XCTAssertEqual(cost(.allReduce, 1_000_000, 2).bytes, 1_000_000)
        XCTAssertEqual(cost(.allReduce, 1_000_000, 3).latencies, 5)
        XCTAssertEqual(cost(.allReduce, 1_000_000, 3).bytes, 3_000_000)
        // Allgather of m bytes from each rank: a ring of N−1 steps.
        XCTAssertEqual(cost(.allGather, 100, 3).latencies, 2)
        XCTAssertEqual(cost(.allGather, 100, 3).bytes, 200)
        XCTAssertEqual(cost(.barrier, 0, 5).latencies, 3)
    }

    func testPredictionAddsTheCollectivesToTheComputeAndHidesOnlyTheGradientBehindBackward() {
        // 1 MB of gradient (ring) and one 8-byte metric sum, 10 ms of compute of which 4 ms backward, batch 32;
        // a link of 10 µs and 1 GB/s.
        let link = LinkModel(name: "test", latency: 10e-6, bytesPerSecond: 1e9)
        let calls = [
            CollectiveCall(kind: .allReduce, bytes: 1_000_000, gradient: true),
            CollectiveCall(kind: .allReduce, bytes: 8, gradient: false),
        ]
        let p = predictScaling(
            computeSeconds: 0.010, backwardSeconds: 0.004, calls: calls, batchPerRank: 32, link: link, ranks: [1, 2, 4])
        XCTAssertEqual(p[0].samplesPerSecond, 3200, accuracy: 1e-9)
        XCTAssertEqual(p[0].efficiency, 1, accuracy: 1e-12)
        // N = 2: Rabenseifner's 2·10 µs + 1 MB·1 ns = 1.02 ms; the metric by recursive doubling, 10 µs + 8 ns.
        let gradient2 = 20e-6 + 1e-3
        let other2 = 10e-6 + 8e-9
        XCTAssertEqual(p[1].stepSeconds, 0.010 + gradient2 + other2, accuracy: 1e-12)
        XCTAssertEqual(p[1].samplesPerSecond, 64 / (0.010 + gradient2 + other2), accuracy: 1e-6)
        XCTAssertEqual(p[1].overlappedStepSeconds, 0.010 + other2, accuracy: 1e-12)  // 1.02 ms < 4 ms backward
        // N = 4: Rabenseifner's 4·10 µs + 1.5 MB·1 ns = 1.54 ms; 8 bytes among 4 go round the ring: 6 messages.
        let gradient4 = 40e-6 + 1.5e-3
        let other4 = 6 * 10e-6 + 12e-9
        XCTAssertEqual(p[2].efficiency, 0.010 / (0.010 + gradient4 + other4), accuracy: 1e-12)
        // A backward shorter than the exchange hides only part of it.
        let short = predictScaling(
            computeSeconds: 0.010, backwardSeconds: 0.0005, calls: calls, batchPerRank: 32, link: link, ranks: [2])
        XCTAssertEqual(short[0].overlappedStepSeconds, 0.010 + (gradient2 - 0.0005) + other2, accuracy: 1e-12)
    }

    func testLinksAreParsedOrRefusedByName() throws {
        let link = try LinkModel(parsing: "10GbE=25:10")
        XCTAssertEqual(link.name, "10GbE")
        XCTAssertEqual(link.latency, 25e-6, accuracy: 1e-15)
        XCTAssertEqual(link.bytesPerSecond, 1.25e9, accuracy: 1e-3)
        for bad in ["10GbE", "x=25", "x=a:b", "x=25:0", "x=-1:10"] {
            XCTAssertThrowsError(try LinkModel(parsing: bad), bad)
        }
    }
}
