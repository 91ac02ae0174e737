// keras.applications backbones (#31, deliverable 3): VGG16, ResNet50, MobileNetV2 and EfficientNetB0, built with
// weights=None at 32×32, used as a nested Functional layer under two heads and fine-tuned as Keras's transfer-learning
// guide does it (keras_models.py BACKBONES: every layer frozen but the last block, BatchNormalization frozen).
// Each trains at 1 and 3 ranks to Keras's fit weights; its frozen tensors stay exactly as loaded; Keras loads the
// model.keras Tandem writes, with the same weights, predictions and evaluation.

import Foundation
import XCTest

@testable import TandemCore
@testable import TandemTraining

final class KerasBackboneTests: KerasFixtureTestCase {
    override class var usesSharedArchives: Bool { false }

    static let backbones = ["backbone_vgg16", "backbone_resnet50", "backbone_mobilenetv2", "backbone_efficientnetb0"]

    /// Tensors that train visibly (more than 20× the tolerance), so the comparison means something. With
    /// weights=None, MobileNetV2's and EfficientNetB0's pooled features are ~1e-6 at 32×32 (their moving
    /// statistics are the initial ones), so their last blocks move by ~1e-11: their heads' biases train.
    static let visible = [
        "backbone_vgg16": ["vgg16/block5_conv3/kernel", "vgg16/block5_conv1/bias", "age/kernel", "kind/bias"],
        "backbone_resnet50": [
            "resnet50/conv5_block3_3_conv/kernel", "resnet50/conv5_block3_1_conv/kernel", "kind/bias",
        ],
        "backbone_mobilenetv2": ["kind/bias"], "backbone_efficientnetb0": ["kind/bias"],
    ]

    func testKerasApplicationsBackbonesFineTuneToKerasWeightsAtOneAndThreeRanks() throws {
        let models = dir + "/backbones"
        let built = try keras(["build-backbones", "--out", models])
        XCTAssertEqual(built.status, 0, built.stderr)
        for m in KerasBackboneTests.backbones {
            let archive = "\(models)/\(m).keras"
            let data = "\(dir)/data-\(m)"
            let gen = try Harness.tandem([
                "gen-data", "--model", archive, "--out", data, "--samples", "37", "--seed", "3",
            ])
            XCTAssertEqual(gen.status, 0, gen.stderr)
            // The summary shows the backbone as one line, as Keras does, with Keras's parameter counts.
            let counts = try keras(["count", "--model", archive])
            XCTAssertEqual(counts.status, 0, counts.stderr)
            let kerasCounts =
                try JSONSerialization.jsonObject(with: Data(counts.stdout.split(separator: "\n").last!.utf8))
                as! [String: Int]
            let summary = try Harness.tandem(["summary", "--model", archive])
            XCTAssertEqual(summary.status, 0, summary.stderr)
            XCTAssertTrue(summary.stdout.contains("(Functional) [partly frozen]"), summary.stdout)
            XCTAssertTrue(summary.stdout.contains(" Total params: \(kerasCounts["total"]!) "), summary.stdout)
            XCTAssertTrue(summary.stdout.contains(" Trainable params: \(kerasCounts["trainable"]!)\n"), summary.stdout)
            let expanded = try Harness.tandem(["summary", "--model", archive, "--expand"])
            XCTAssertGreaterThan(
                expanded.stdout.split(separator: "\n").count, summary.stdout.split(separator: "\n").count + 15)
            let start = try Harness.weights("\(models)/\(m).safetensors")
            let reference = try kerasFit(archive, m, epochs: 2, dataDir: data)
            // Frozen: what Keras's fit left exactly as it was.
            let frozen = Set(start.keys.filter { reference.weights[$0] == start[$0] })
            XCTAssertGreaterThanOrEqual(frozen.count, 20, "\(m): the backbone is frozen but its last block")
            for name in KerasBackboneTests.visible[m]! {
                let moved = zip(start[name]!, reference.weights[name]!).map { abs($0 - $1) }.max()!
                XCTAssertGreaterThan(moved, 20 * tolerance, "\(m): \(name) moved, so the comparison means something")
            }
            for np in [nil, 3] as [Int?] {
                let run = try tandemTrain(archive, m, epochs: 2, np: np, dataDir: data)
                let mine = try Harness.weights(run + "/weights.safetensors")
                assertClose(mine, reference.weights, tolerance, "\(m) at np \(np ?? 1)")
                for name in frozen { XCTAssertEqual(mine[name], start[name], "\(m) at np \(np ?? 1): \(name) frozen") }
                let metrics = try Harness.metrics(run)
                for (epoch, line) in metrics.enumerated() {
                    let loss = reference.history["loss"]![epoch]
                    XCTAssertEqual(
                        line["loss"] as! Double, loss, accuracy: 2e-6 * max(1, abs(loss)), "\(m) epoch \(epoch + 1)")
                }
                guard np == nil else { continue }
                if m == "backbone_vgg16" { try secondPhase(from: run + "/model.keras", m, data: data) }
                // Keras loads Tandem's archive: the same weights, bit for bit, and the same predictions.
                let seen = dir + "/inspect-\(m)"
                let inspect = try keras(["inspect", "--model", run + "/model.keras", "--data", data, "--out", seen])
                XCTAssertEqual(inspect.status, 0, "\(m): \(inspect.stderr)")
                assertClose(
                    try Harness.weights(seen + "/weights.safetensors"), mine, Float.leastNonzeroMagnitude, "\(m) loaded"
                )
                let predictions = dir + "/predict-\(m)"
                let p = try Harness.tandem([
                    "predict", "--model", run + "/model.keras", "--data", data, "--out", predictions,
                ])
                XCTAssertEqual(p.status, 0, p.stderr)
                for o in ["age", "kind"] {
                    let k = try NPYArray(path: "\(seen)/\(o).npy")
                    let t = try NPYArray(path: "\(predictions)/\(o).npy")
                    var a = [Float](repeating: 0, count: k.rowWidth)
                    var b = a
                    var worst: Float = 0
                    for r in 0..<k.rows {
                        k.readFloats(row: r, into: &a)
                        t.readFloats(row: r, into: &b)
                        worst = max(worst, zip(a, b).map { abs($0 - $1) }.max()!)
                    }
                    XCTAssertLessThan(worst, 1e-5, "\(m) \(o): Keras's predict against tandem predict")
                }
            }
        }
        try publishedEfficientNet(models)
    }

    /// The published EfficientNetB0, stochastic depth on (drop_connect_rate 0.2: per-sample Dropout masks in
    /// every block, frozen ones included, as Keras's). Its masks are Tandem's, a function of the sample's
    /// position: np 3 trains as np 1, and another seed draws other masks (and they act).
    private func publishedEfficientNet(_ models: String) throws {
        let m = "backbone_efficientnetb0_published"
        let archive = "\(models)/\(m).keras"
        let data = "\(dir)/data-\(m)"
        let gen = try Harness.tandem(["gen-data", "--model", archive, "--out", data, "--samples", "37", "--seed", "3"])
        XCTAssertEqual(gen.status, 0, gen.stderr)
        let one = try Harness.weights(try tandemTrain(archive, m, epochs: 2, dataDir: data) + "/weights.safetensors")
        let three = try Harness.weights(
            try tandemTrain(archive, m, epochs: 2, np: 3, dataDir: data) + "/weights.safetensors")
        assertClose(three, one, tolerance, "\(m): np 3 against np 1")
        let reseeded = try Harness.weights(
            try tandemTrain(archive, m, epochs: 2, extra: ["--seed", "2"], dataDir: data) + "/weights.safetensors")
        // Nothing else in this run depends on the seed (no shuffling, weights from the archive), and a run is
        // deterministic: other bits mean other masks acted. (Only slightly: with weights=None the pooled
        // features are ~1e-6 at 32×32, so the heads move by ~1e-10 between the two.)
        XCTAssertNotEqual(reseeded, one, "another seed draws other stochastic-depth masks, and they act")
    }

    /// The guide's second phase from the first phase's RUN/model.keras, by flag: one more convolution unfrozen, one
    /// frozen again. Keras, given the same rules (keras_models.py apply_trainable, then compiled again), fits to the
    /// same weights as Tandem at 3 ranks, and reads Tandem's archive with the same trainable layers.
    private func secondPhase(from archive: String, _ m: String, data: String) throws {
        let rules = ["--trainable", "block4_conv3=true", "--trainable", "vgg16/block5_conv1=false"]
        let out = dir + "/keras-\(m)-phase2.keras"
        let fit = try keras(
            ["fit", "--model", archive, "--data", data, "--out", out, "--batch-size", "8", "--epochs", "2"] + rules)
        XCTAssertEqual(fit.status, 0, fit.stderr)
        let reference = try Harness.weights(out + ".safetensors")
        let start = try Harness.weights(archive.replacingOccurrences(of: "model.keras", with: "weights.safetensors"))
        let run = try tandemTrain(archive, m + "-phase2", epochs: 2, np: 3, extra: rules, dataDir: data)
        let mine = try Harness.weights(run + "/weights.safetensors")
        assertClose(mine, reference, tolerance, "\(m) second phase at np 3")
        for name in ["vgg16/block4_conv3/kernel", "vgg16/block5_conv2/kernel"] {
            XCTAssertGreaterThan(zip(start[name]!, mine[name]!).map { abs($0 - $1) }.max()!, 20 * tolerance, name)
        }
        XCTAssertEqual(mine["vgg16/block5_conv1/kernel"], start["vgg16/block5_conv1/kernel"], "frozen again")
        let counts = try keras(["count", "--model", run + "/model.keras"])
        XCTAssertEqual(counts.status, 0, counts.stderr)
        let theirs =
            try JSONSerialization.jsonObject(with: Data(counts.stdout.split(separator: "\n").last!.utf8))
            as! [String: Int]
        let summary = try Harness.tandem(["summary", "--model", run + "/model.keras"])
        XCTAssertTrue(summary.stdout.contains(" Trainable params: \(theirs["trainable"]!)\n"), summary.stdout)
        // A rule that finds nothing is refused by name, before anything is written.
        let bad = try Harness.tandem(
            ["train", "--model", archive, "--data", data, "--out", dir + "/bad", "--trainable", "no_such_layer=true"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("'no_such_layer=true' finds no layer"), bad.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/bad"))
    }
}
