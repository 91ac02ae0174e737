// The speed matrix's inputs keep working: every model family of
// scripts/bench_families.py, saved by Keras, is benchmarked by `tandem bench`
// at 1 rank (and one under mpirun at 2), and the Keras side of the matrix runs.
// Figures are not judged here (timed tests would be noise); only that each
// configuration runs and reports what the table needs. Needs TANDEM_KERAS_PYTHON.

import Foundation
import TandemTestSupport
import XCTest

final class BenchFamiliesTests: XCTestCase {
    static let families = [
        "headline", "gru_classifier", "conv_bilstm", "tabular", "stacked_lstm", "cnn_resnet_32", "cnn_resnet_64",
        "cnn_mobilenetv2_32", "cnn_mobilenetv2_64",
    ]

    private func python() throws -> String {
        guard let p = ProcessInfo.processInfo.environment["TANDEM_KERAS_PYTHON"],
            FileManager.default.isExecutableFile(atPath: p)
        else {
            throw XCTSkip("TANDEM_KERAS_PYTHON is not set (scripts/test.sh installs Keras and sets it)")
        }
        return p
    }

    private func json(_ text: String) throws -> [String: Any] {
        let line = try XCTUnwrap(text.split(separator: "\n").last { $0.hasPrefix("{") }, text)
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], text)
    }

    func testEveryFamilyBenchmarksAndKerasMeasuresTheSameArchive() throws {
        let py = try python()
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let script = Harness.packageRoot + "/scripts/bench_families.py"
        let built = try Harness.run(
            py, [script, "build", "--out", dir], timeout: 300, environment: ["KERAS_BACKEND": "jax"])
        XCTAssertEqual(built.status, 0, built.stderr)
        let quick = [
            "--batch-size", "8", "--warmup", "1", "--intervals", "1", "--steps", "2", "--samples", "64", "--json",
        ]
        for family in Self.families {
            let run = try Harness.run(
                Harness.binary, ["bench", "--model", "\(dir)/\(family).keras"] + quick, timeout: 300,
                environment: ["OPENBLAS_NUM_THREADS": "1"])
            XCTAssertEqual(run.status, 0, "\(family): \(run.stderr)")
            guard run.status == 0 else { continue }
            let r = try json(run.stdout)
            let rate = try XCTUnwrap(r["samples_per_second"] as? Double)
            let fixed = try XCTUnwrap(r["fixed_runtime_mb"] as? Double)
            let state = try XCTUnwrap(r["state_mb"] as? Double)
            let activations = try XCTUnwrap(r["activation_mb"] as? Double)
            let bound = try XCTUnwrap(r["memory_bound_mb"] as? Double)
            XCTAssertGreaterThan(rate, 0, family)
            XCTAssertGreaterThan(state, 0, family)
            XCTAssertGreaterThan(fixed, 1, "\(family): the runtime is resident before any model")
            XCTAssertEqual(bound, 1.3 * state + activations + fixed, accuracy: 0.01, family)
            // The mapped dataset: 64 samples of every input and target, a few KB to 60 KB a text family, up to
            // 3.2 MB of 64×64 RGB floats an image one.
            let data = try XCTUnwrap(r["data_mb"] as? Double)
            let image = family.hasPrefix("cnn_")
            XCTAssertGreaterThan(data, 0.002, family)
            XCTAssertLessThan(data, image ? 3.3 : 0.1, family)
            // The table names the convolution kernels: oneDNN's for the image families.
            let kernels = try XCTUnwrap(r["convolutions"] as? String, family)
            XCTAssertTrue(image ? kernels.hasPrefix("oneDNN ") : kernels == "none", "\(family): \(kernels)")
            XCTAssertGreaterThan(try XCTUnwrap(r["sgemm_peak_gflops"] as? Double), 0, family)
        }
        // Two ranks: the total rate over the global batch.
        let two = try Harness.mpi(2, ["bench", "--model", "\(dir)/gru_classifier.keras"] + quick, timeout: 300)
        XCTAssertEqual(two.status, 0, two.stderr)
        if two.status == 0 {
            let r = try json(two.stdout)
            XCTAssertEqual(r["ranks"] as? Int, 2)
            XCTAssertEqual(r["global_batch"] as? Int, 16)
        }
        // The Keras side: fit on the same archive, one interval.
        let keras = try Harness.run(
            py,
            [
                script, "keras", "--family", "tabular", "--model", "\(dir)/tabular.keras",
                "--batch-size", "8", "--intervals", "1", "--seconds", "0.05",
            ],
            timeout: 300, environment: ["KERAS_BACKEND": "jax"])
        XCTAssertEqual(keras.status, 0, keras.stderr)
        if keras.status == 0 {
            let r = try json(keras.stdout)
            XCTAssertGreaterThan(try XCTUnwrap(r["samples_per_second"] as? Double), 0)
            XCTAssertEqual(r["backend"] as? String, "jax")
        }
    }
}
