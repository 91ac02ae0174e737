// The command line runs OpenBLAS's fast kernels: an OpenBLAS that does not
// know this CPU falls back to generic SSE kernels (about 5× slower), and
// tandem then starts itself again with OPENBLAS_CORETYPE set. An explicit
// OPENBLAS_CORETYPE is always respected.

import Foundation
import Tandem
import XCTest

final class BLASKernelTests: XCTestCase {
    /// `tandem bench --json` on the tiny model, returning the "blas" field.
    private func reportedKernels(environment: [String: String] = [:], unsetting: [String] = []) throws -> String {
        let run = try Harness.run(
            Harness.binary,
            [
                "bench", "--json", "--batch-size", "4", "--warmup", "0", "--intervals", "1",
                "--steps", "1", "--samples", "16",
            ] + Harness.tiny,
            environment: environment.merging(["OPENBLAS_NUM_THREADS": "1"]) { $1 }, unsetting: unsetting)
        XCTAssertEqual(run.status, 0, run.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any]
        return try XCTUnwrap(json?["blas"] as? String, run.stdout)
    }

    func testGenericFallbackIsReplacedByTheKernelsThisCPURuns() throws {
        let blas = try reportedKernels(unsetting: ["OPENBLAS_CORETYPE", BLASKernels.fallbackVariable])
        guard let best = BLASKernels.coreTypeForCPU else {
            throw XCTSkip("this CPU has neither AVX2+FMA nor AVX-512: generic kernels are all it can run (\(blas))")
        }
        for generic in BLASKernels.genericCores {
            XCTAssertFalse(blas.contains(" \(generic) kernels"), "generic kernels on a CPU that runs \(best): \(blas)")
        }
    }

    func testAnExplicitCoreTypeIsRespected() throws {
        let blas = try reportedKernels(
            environment: ["OPENBLAS_CORETYPE": "Prescott"], unsetting: [BLASKernels.fallbackVariable])
        XCTAssertTrue(blas.contains("Prescott kernels"), blas)
        XCTAssertFalse(blas.contains("set by Tandem"), blas)
    }
}
