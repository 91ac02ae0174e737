// The command line runs OpenBLAS's fast kernels: an OpenBLAS that does not
// know this CPU falls back to generic SSE kernels (about 5× slower), and
// tandem then starts itself again with OPENBLAS_CORETYPE set. An explicit
// OPENBLAS_CORETYPE is always respected.

import Foundation
import Tandem
import XCTest

final class BLASKernelTests: XCTestCase {
    /// `tandem bench --json` on the tiny model, returning the "blas" field (or another).
    private func reportedKernels(
        environment: [String: String] = [:], unsetting: [String] = [], field: String = "blas"
    ) throws -> String {
        let run = try Harness.run(
            Harness.binary,
            [
                "bench", "--json", "--batch-size", "4", "--warmup", "0", "--intervals", "1",
                "--steps", "1", "--samples", "16",
            ] + Harness.tiny,
            environment: environment.merging(["OPENBLAS_NUM_THREADS": "1"]) { $1 }, unsetting: unsetting)
        XCTAssertEqual(run.status, 0, run.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any]
        return try XCTUnwrap(json?[field] as? String, run.stdout)
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

    /// An older core named in OPENBLAS_CORETYPE (as some sites set it) narrows OpenBLAS's kernels, not Tandem's:
    /// the products then run on oneDNN, which picks its kernels from the CPU; with OpenBLAS's own choice only the
    /// large ones do; and TANDEM_GEMM puts every product on one library, a wrong value refused.
    func testMatrixProductsRunOnOneDNNWhenOpenBLASRunsAnOlderCore() throws {
        guard BLASKernels.coreTypeForCPU == "SkylakeX" else {
            throw XCTSkip("this CPU has no AVX-512: Haswell's kernels are the widest it runs")
        }
        let older = try reportedKernels(
            environment: ["OPENBLAS_CORETYPE": "Haswell"], unsetting: [BLASKernels.fallbackVariable], field: "gemm")
        XCTAssertTrue(older.hasPrefix("oneDNN "), older)
        XCTAssertTrue(older.contains("Haswell is narrower than this CPU"), older)
        let native = try reportedKernels(
            unsetting: ["OPENBLAS_CORETYPE", BLASKernels.fallbackVariable, "TANDEM_GEMM"], field: "gemm")
        XCTAssertTrue(native.contains("sgemm for products of m·n·k ≥ 2²⁰ and 8 columns or more, OpenBLAS "), native)
        let forced = try reportedKernels(environment: ["TANDEM_GEMM": "onednn"], field: "gemm")
        XCTAssertTrue(forced.contains("sgemm for every product (TANDEM_GEMM=onednn)"), forced)
        let wrong = try Harness.run(
            Harness.binary, ["bench", "--batch-size", "4", "--intervals", "1", "--steps", "1"] + Harness.tiny,
            environment: ["TANDEM_GEMM": "mkl"])
        XCTAssertEqual(wrong.status, 2, wrong.stderr)
        XCTAssertTrue(wrong.stderr.contains("TANDEM_GEMM=mkl: use auto, openblas or onednn"), wrong.stderr)
        XCTAssertEqual(wrong.stdout, "")
    }
}
