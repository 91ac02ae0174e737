// TensorBoard event files read back by the `tensorboard` package's own reader
// (scripts/test.sh installs it with Keras): Keras's layout and tag names, the
// values of metrics.jsonl, per-step scalars every --log-every steps, the
// diagnostics; a resumed run adds each step once. `tandem plot`: a PNG of the
// layout's size whose panels hold both curves.

import Foundation
import Tandem
import TandemPlot
import TandemTestSupport
import XCTest

final class ObservabilityTests: XCTestCase {
    private func python() throws -> String {
        guard let p = ProcessInfo.processInfo.environment["TANDEM_KERAS_PYTHON"],
            FileManager.default.isExecutableFile(atPath: p)
        else {
            throw XCTSkip("TANDEM_KERAS_PYTHON is not set (scripts/test.sh installs Keras, TensorBoard and sets it)")
        }
        return p
    }

    /// Every scalar of RUN/tensorboard/{train,validation}: dir → tag → [(step, value)].
    private func readBack(_ run: String) throws -> [String: [String: [[Double]]]] {
        let code = """
            import json, sys
            from tensorboard.backend.event_processing import event_accumulator as ea
            out = {}
            for d in ("train", "validation"):
                a = ea.EventAccumulator(sys.argv[1] + "/tensorboard/" + d, size_guidance={ea.SCALARS: 0}); a.Reload()
                out[d] = {t: [[e.step, e.value] for e in a.Scalars(t)] for t in a.Tags()["scalars"]}
            print(json.dumps(out))
            """
        let r = try Harness.run(try python(), ["-c", code, run], timeout: 120)
        XCTAssertEqual(r.status, 0, r.stderr)
        return try JSONSerialization.jsonObject(with: Data(r.stdout.split(separator: "\n").last!.utf8))
            as! [String: [String: [[Double]]]]
    }

    func testTensorBoardEventsHoldTheRunsFigures() throws {
        _ = try python()
        let dir = temporaryDirectory()
        XCTAssertEqual(
            try Harness.tandem(["gen-data", "--out", dir + "/data", "--samples", "100"] + Harness.tiny).status, 0)
        func run(_ out: String, epochs: Int, _ extra: [String] = []) throws -> RunResult {
            try Harness.tandem(
                [
                    "train", "--data", dir + "/data", "--out", dir + "/" + out, "--epochs", "\(epochs)", "--batch-size",
                    "8",
                    "--validation-split", "0.2", "--log-every", "2", "--head-diagnostics-every", "3", "--quiet",
                ] + Harness.tiny + extra)
        }
        XCTAssertEqual(try run("full", epochs: 3).status, 0)
        let events = try readBack(dir + "/full")
        let lines = try Harness.metrics(dir + "/full")
        let train = events["train"]!
        let validation = events["validation"]!
        // Keras's names: epoch_<figure> in train/, the val_ figures without the prefix in validation/.
        for (key, value) in lines[0] where !["epoch", "step", "seconds"].contains(key) {
            guard value is Double else { continue }
            let (dirEvents, tag) =
                key.hasPrefix("val_") ? (validation, "epoch_" + key.dropFirst(4)) : (train, "epoch_" + key)
            let series = try XCTUnwrap(dirEvents[tag], "\(tag) is written")
            XCTAssertEqual(
                series.map { Int($0[0]) }, [0, 1, 2], "\(tag): one value per epoch at Keras's 0-based epoch")
            for (e, line) in lines.enumerated() {
                let expected = line[key] as! Double
                XCTAssertEqual(
                    series[e][1], Double(Float(expected)), accuracy: 1e-9 * max(1, abs(expected)), "\(tag) epoch \(e)")
            }
        }
        for tag in [
            "epoch_loss", "epoch_main_output_loss", "epoch_aux_output_accuracy", "epoch_learning_rate",
            "epoch_samples_per_second",
        ] {
            XCTAssertNotNil(train[tag], tag)
        }
        XCTAssertNotNil(validation["epoch_main_output_loss"])
        // 8 steps per epoch (80 training rows): batch_ scalars at every second global step.
        XCTAssertEqual(train["batch_loss"]!.map { Int($0[0]) }, Array(stride(from: 2, through: 30, by: 2)))
        XCTAssertNotNil(train["batch_main_output_loss"])
        XCTAssertNotNil(train["batch_learning_rate"])
        XCTAssertEqual(
            train["diagnostics/lstm/main_output_norm"]!.map { Int($0[0]) }, Array(stride(from: 3, through: 30, by: 3)))
        XCTAssertNotNil(train["diagnostics/embedding/cosine_main_output~aux_output"])

        // A resumed run: every step once, the same values as the uninterrupted run.
        XCTAssertEqual(try run("part", epochs: 2).status, 0)
        XCTAssertEqual(try run("part", epochs: 3, ["--resume", dir + "/part"]).status, 0)
        let resumed = try readBack(dir + "/part")
        for (d, tags) in events {
            for (tag, series) in tags where !tag.hasSuffix("samples_per_second") {
                let other = try XCTUnwrap(resumed[d]?[tag], "\(d)/\(tag) after the resume")
                XCTAssertEqual(other.map { $0[0] }, series.map { $0[0] }, "\(d)/\(tag): each step once")
                for (a, b) in zip(series, other) {
                    XCTAssertEqual(a[1], b[1], accuracy: 1e-6 * max(1, abs(a[1])), "\(d)/\(tag) step \(a[0])")
                }
            }
        }
    }

    func testPruningDropsWhatComesAfterTheCheckpoint() throws {
        let dir = temporaryDirectory()
        let writer = try EventFileWriter(directory: dir)
        for s in 1...10 { try writer.scalars([("batch_loss", Double(s))], step: s) }
        for e in 0..<3 { try writer.scalars([("epoch_loss", Double(e))], step: e) }
        try writer.flush()
        var position = TrainingPosition()
        position.step = 6
        position.epoch = 1
        try pruneEventFiles(in: dir) {
            $0.tag.hasPrefix("epoch_") ? $0.step < position.epoch : $0.step <= position.step
        }
        let kept = try readScalarEvents(writer.path)
        XCTAssertEqual(kept.filter { $0.tag == "batch_loss" }.map(\.step), Array(1...6))
        XCTAssertEqual(kept.filter { $0.tag == "epoch_loss" }.map(\.step), [0])
    }

    func testPlotDrawsAPanelPerHeadAndMetric() throws {
        let dir = temporaryDirectory()
        XCTAssertEqual(
            try Harness.tandem(["gen-data", "--out", dir + "/data", "--samples", "60"] + Harness.tiny).status, 0)
        XCTAssertEqual(
            try Harness.tandem(
                [
                    "train", "--data", dir + "/data", "--out", dir + "/run", "--epochs", "3", "--batch-size", "8",
                    "--validation-split", "0.25", "--quiet",
                ] + Harness.tiny
            ).status, 0)
        let r = try Harness.tandem(["plot", dir + "/run", "--out", dir + "/curves.png"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("2 heads (main_output: loss, accuracy; aux_output: loss, accuracy)"), r.stdout)
        let image = try readPNG(dir + "/curves.png")
        let layout = try plotLayout(run: dir + "/run")
        XCTAssertEqual(layout.heads.sorted(), ["aux_output", "main_output"])
        XCTAssertEqual(image.width, 2 * PlotLayout.panelWidth)
        XCTAssertEqual(image.height, PlotLayout.titleHeight + 2 * PlotLayout.panelHeight)
        let white = image.pixels.filter { $0 == 0xFF_FFFF }.count
        XCTAssertLessThan(Double(white) / Double(image.pixels.count), 0.97, "not blank")
        func colour(_ c: (r: Double, g: Double, b: Double)) -> UInt32 {
            let r = UInt32((c.r * 255).rounded())
            let g = UInt32((c.g * 255).rounded())
            let b = UInt32((c.b * 255).rounded())
            return (r << 16) | (g << 8) | b
        }
        func channel(_ p: UInt32, _ shift: UInt32) -> Int { Int((p >> shift) & 0xFF) }
        func near(_ p: UInt32, _ q: UInt32) -> Bool {
            let d: [Int] = [16, 8, 0].map { (s: UInt32) -> Int in abs(channel(p, s) - channel(q, s)) }
            return d.max()! <= 12
        }
        for h in 0..<2 {
            for k in 0..<2 {
                let rect = layout.panel(h, k)
                var train = 0
                var validation = 0
                for y in rect.y..<(rect.y + rect.height) {
                    for x in rect.x..<(rect.x + rect.width) {
                        let p = image.pixels[y * image.width + x]
                        if near(p, colour(plotTrainColour)) {
                            train += 1
                        } else if near(p, colour(plotValidationColour)) {
                            validation += 1
                        }
                    }
                }
                XCTAssertGreaterThan(train, 150, "panel \(h),\(k) has the train curve")
                XCTAssertGreaterThan(validation, 100, "panel \(h),\(k) has the validation curve")
            }
        }
        let missing = try Harness.tandem(["plot", dir + "/nothing"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("metrics.jsonl"), missing.stderr)
    }
}
