// The same numbers as Keras from the same start: Keras 3 (JAX backend, run by
// scripts/keras_reference.py) makes the initial weights; Tandem and Keras
// train from them on the same batches (no shuffle, last batch partial, sample
// weights, loss weights 1.0 / 0.2); final weights and per-epoch losses agree.
// The model's table is 4U wide or more, so Tandem runs its compact, factored
// step — the one the headline model uses (its dense step gives the same bits
// on one rank: CompactTableTests).
// Needs TANDEM_KERAS_PYTHON (a Python with keras and jax); scripts/test.sh sets it.

import Foundation
import Tandem
import TandemTestSupport
import XCTest

final class KerasEquivalenceTests: XCTestCase {
    private var python = "", dir = ""

    override func setUpWithError() throws {
        guard let p = ProcessInfo.processInfo.environment["TANDEM_KERAS_PYTHON"],
            FileManager.default.isExecutableFile(atPath: p)
        else {
            throw XCTSkip("TANDEM_KERAS_PYTHON is not set (scripts/test.sh installs Keras and sets it)")
        }
        python = p
        dir = temporaryDirectory()
        // 37 samples at batch 8: the last batch has 5.
        XCTAssertEqual(
            try Harness.tandem(
                ["gen-data", "--out", dir + "/data", "--samples", "37", "--seed", "12"] + Harness.tinyWide
            ).status, 0)
        var rng = SeededGenerator(seed: 4)
        let w = (0..<37).map { _ in Float(rng.uniform(0.3, 2.5)) }
        try w.withUnsafeBufferPointer {
            try NPYArray.write(floats: $0, shape: [37], to: dir + "/data/main_output.sample_weight.npy")
        }
        let initial = try keras(["init", "--out", dir + "/init.safetensors", "--seed", "5"] + Harness.tinyWide)
        XCTAssertEqual(initial.status, 0, initial.stderr)
    }

    private func keras(_ args: [String]) throws -> RunResult {
        try Harness.run(
            python, [Harness.packageRoot + "/scripts/keras_reference.py"] + args, timeout: 300,
            environment: ["KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"])
    }

    private func compare(_ optimizer: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let common = ["--batch-size", "8", "--epochs", "3"] + optimizer + Harness.tinyWide
        let reference = try keras(
            [
                "train", "--data", dir + "/data", "--init", dir + "/init.safetensors",
                "--out", dir + "/keras.safetensors",
            ] + common)
        XCTAssertEqual(reference.status, 0, reference.stderr, file: file, line: line)
        let run = dir + "/tandem-\(optimizer[1])"
        let tandem = try Harness.tandem(
            [
                "train", "--data", dir + "/data", "--init", dir + "/init.safetensors", "--out", run,
                "--no-shuffle", "--quiet",
            ] + common)
        XCTAssertEqual(tandem.status, 0, tandem.stderr, file: file, line: line)

        let k = try Harness.weights(dir + "/keras.safetensors")
        let t = try Harness.weights(run + "/weights.safetensors")
        let start = try Harness.weights(dir + "/init.safetensors")
        XCTAssertEqual(Set(k.keys), Set(t.keys), file: file, line: line)
        for (name, values) in k {
            // 15 steps of Float32 arithmetic in two libraries (XLA and OpenBLAS sum in other
            // orders; Keras clips probabilities at 1e-7): a few 1e-7 apart, while training
            // moved every tensor by ~1e-2.
            let worst = zip(t[name]!, values).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(worst, 5e-6, "\(optimizer[1]) \(name)", file: file, line: line)
            let moved = zip(start[name]!, values).map { abs($0 - $1) }.max()!
            XCTAssertGreaterThan(
                moved, 100 * 5e-6, "\(name) moved, so the comparison means something", file: file, line: line)
        }
        // Per-epoch losses as Keras's fit reports them.
        let history =
            try JSONSerialization.jsonObject(with: Data(reference.stdout.split(separator: "\n").last!.utf8))
            as! [String: [Double]]
        let metrics = try Harness.metrics(run)
        for (epoch, line_) in metrics.enumerated() {
            for key in ["loss", "main_output_loss", "aux_output_loss"] {
                XCTAssertEqual(
                    line_[key] as! Double, history[key]![epoch], accuracy: 2e-6, "epoch \(epoch + 1) \(key)",
                    file: file, line: line)
            }
        }
    }

    func testAdamMatchesKeras() throws { try compare(["--optimizer", "adam", "--lr", "0.01"]) }

    func testSGDNesterovMomentumMatchesKeras() throws {
        try compare(["--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9", "--nesterov"])
    }

    func testRMSpropMatchesKeras() throws { try compare(["--optimizer", "rmsprop", "--lr", "0.005"]) }
}
