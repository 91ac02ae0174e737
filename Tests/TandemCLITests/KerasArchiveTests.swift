// Bring your own model: the multi-output Keras models built and compiled in
// Keras 3 (scripts/keras_models.py) are trained by Tandem from their .keras
// archives — locally and under mpirun with 2 and 3 ranks — and compared with
// Keras's own fit from the same archive; RUN/model.keras loads in Keras with
// the same weights, predictions and evaluation, and Keras's fit continues from
// Tandem's optimizer state (and Tandem from Keras's) as Keras continuing
// itself would. Needs TANDEM_KERAS_PYTHON (scripts/test.sh sets it).

import Foundation
import Tandem
import TandemTestSupport
import XCTest

final class KerasArchiveTests: KerasFixtureTestCase {
    /// The largest element-wise difference of two prediction arrays of the same shape.
    private func largestDifference(_ k: NPYArray, _ t: NPYArray) -> Float {
        var a = [Float](repeating: 0, count: k.rowWidth)
        var b = a
        var worst: Float = 0
        for r in 0..<min(k.rows, t.rows) {
            k.readFloats(row: r, into: &a)
            t.readFloats(row: r, into: &b)
            worst = max(worst, zip(a, b).map { abs($0 - $1) }.max()!)
        }
        return worst
    }

    func testEveryModelTrainsToKerasWeightsAtOneTwoAndThreeRanks() throws {
        for m in KerasFixture.models {
            let reference = try kerasFit(model(m), m, epochs: 2)
            let start = try Harness.weights("\(f.dir)/models/\(m).safetensors")
            for (name, values) in reference.weights where !(KerasFixture.untrained[m] ?? []).contains(name) {
                let moved = zip(start[name]!, values).map { abs($0 - $1) }.max()!
                XCTAssertGreaterThan(moved, 100 * tolerance, "\(m): \(name) moved, so the comparison means something")
            }
            for np in [nil, 2, 3] as [Int?] {
                let run = try tandemTrain(model(m), m, epochs: 2, np: np)
                assertClose(
                    try Harness.weights(run + "/weights.safetensors"), reference.weights, tolerance,
                    "\(m) at np \(np ?? 1)")
                // Per-epoch losses as Keras's fit reports them (Keras names a single output's figures without a prefix).
                let metrics = try Harness.metrics(run)
                XCTAssertEqual(metrics.count, 2)
                for (epoch, line) in metrics.enumerated() {
                    // 2e-6, relative for losses above 1 (a MAPE of 40 is float32 to ~4e-6).
                    func close(_ value: Double) -> Double { 2e-6 * max(1, abs(value)) }
                    let loss = reference.history["loss"]![epoch]
                    XCTAssertEqual(
                        line["loss"] as! Double, loss, accuracy: close(loss), "\(m) epoch \(epoch + 1) loss")
                    for (key, values) in reference.history where key.hasSuffix("_loss") {
                        XCTAssertEqual(
                            line[key] as! Double, values[epoch], accuracy: close(values[epoch]),
                            "\(m) epoch \(epoch + 1) \(key)")
                    }
                    // Every metric Keras reports (a single output's without the output prefix); 1e-6, relative
                    // above 1 (Keras's float32 running mean: a MAPE of 96 has a resolution of 7.6e-6).
                    for (key, values) in reference.history where key != "loss" && !key.hasSuffix("_loss") {
                        let mine = line[key] as? Double ?? line.first { $0.key.hasSuffix("_" + key) }?.value as? Double
                        XCTAssertEqual(
                            mine ?? -1, values[epoch], accuracy: 1e-6 * max(1, abs(values[epoch])),
                            "\(m) epoch \(epoch + 1) \(key)")
                    }
                }
            }
        }
    }

    /// Every product on oneDNN's sgemm (what a machine whose OpenBLAS runs older kernels than the CPU gets): the
    /// models whose products are dense, recurrent, convolutional over sequences and over images still train to
    /// Keras's weights, at 1 and 2 ranks.
    func testProductsOnOneDNNTrainToKerasWeights() throws {
        for m in ["headline", "recurrent", "conv_bilstm", "regression", "image_heads", "token_tags"] {
            let reference = try kerasFit(model(m), m, epochs: 2)
            for np in [nil, 2] as [Int?] {
                let run = try tandemTrain(model(m), m, epochs: 2, np: np, environment: ["TANDEM_GEMM": "onednn"])
                assertClose(
                    try Harness.weights(run + "/weights.safetensors"), reference.weights, tolerance,
                    "\(m) at np \(np ?? 1), products on oneDNN")
            }
        }
    }

    func testTandemsModelKerasLoadsInKerasWithEqualPredictionsAndEvaluation() throws {
        for m in KerasFixture.models + KerasFixture.randomModels {  // inference has no dropout: the same as Keras
            let run = try tandemTrain(model(m), m, epochs: 1)
            let seen = dir + "/inspect-\(m)"
            let inspect = try keras(["inspect", "--model", run + "/model.keras", "--data", data(m), "--out", seen])
            XCTAssertEqual(inspect.status, 0, "\(m): \(inspect.stderr)")
            // The weights Keras loaded are Tandem's, bit for bit.
            assertClose(
                try Harness.weights(seen + "/weights.safetensors"), try Harness.weights(run + "/weights.safetensors"),
                Float.leastNonzeroMagnitude, "\(m) loaded")
            let predictions = dir + "/predict-\(m)"
            let p = try Harness.tandem([
                "predict", "--model", run + "/model.keras", "--data", data(m), "--out", predictions,
            ])
            XCTAssertEqual(p.status, 0, p.stderr)
            let outputs = try FileManager.default.contentsOfDirectory(atPath: seen).filter { $0.hasSuffix(".npy") }
            XCTAssertFalse(outputs.isEmpty)
            for o in outputs {
                let k = try NPYArray(path: seen + "/" + o)
                let t = try NPYArray(path: predictions + "/" + o)
                XCTAssertEqual(k.shape, t.shape, "\(m) \(o)")
                // One forward pass of the same weights in two libraries.
                XCTAssertLessThan(
                    largestDifference(k, t), 1e-6, "\(m) \(o): Keras's predict against tandem predict")
            }
            let e = try Harness.tandem(["evaluate", "--model", run + "/model.keras", "--data", data(m)])
            XCTAssertEqual(e.status, 0, e.stderr)
            let mine = try JSONSerialization.jsonObject(with: Data(e.stdout.utf8)) as! [String: Any]
            let theirs =
                try JSONSerialization.jsonObject(with: Data(inspect.stdout.split(separator: "\n").last!.utf8))
                as! [String: Double]
            for (key, value) in theirs {
                let match = mine[key] as? Double ?? mine.first { $0.key.hasSuffix("_" + key) }?.value as? Double
                // 1e-6, relative above 1: Keras reports float32 (a MAPE of 88 has a resolution of 7.6e-6).
                XCTAssertEqual(match ?? .nan, value, accuracy: 1e-6 * max(1, abs(value)), "\(m) evaluate \(key)")
            }
        }
    }

    /// A variable-length model (`Input(shape=(None,))`) trained at one length validates, predicts and evaluates
    /// at another, as Keras does with the same model.keras: the model is built at each data's length.
    func testVariableLengthModelPredictsAtAnotherLength() throws {
        let m = "functional_guide"
        let longer = dir + "/data-\(m)-13"
        let gen = try Harness.tandem([
            "gen-data", "--model", model(m), "--out", longer, "--samples", "23", "--seed", "5", "--seq-len", "13",
        ])
        XCTAssertEqual(gen.status, 0, gen.stderr)
        XCTAssertEqual(try NPYArray(path: longer + "/title.npy").shape, [23, 13])
        // Trained at length 9, validated at length 13, at two ranks.
        let run = try tandemTrain(model(m), m, epochs: 1, np: 2, extra: ["--val-data", longer])
        let seen = dir + "/inspect-\(m)-13"
        let inspect = try keras(["inspect", "--model", run + "/model.keras", "--data", longer, "--out", seen])
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        // The last epoch's val_ figures are Keras's evaluate of the final weights on the length-13 data.
        let lines = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        let validation = try JSONSerialization.jsonObject(with: Data(lines.last!.utf8)) as! [String: Any]
        let kerasEvaluate =
            try JSONSerialization.jsonObject(with: Data(inspect.stdout.split(separator: "\n").last!.utf8))
            as! [String: Double]
        XCTAssertNotNil(kerasEvaluate["loss"], inspect.stdout)
        for (key, value) in kerasEvaluate {
            let mine = validation["val_" + key] as? Double
            XCTAssertEqual(mine ?? .nan, value, accuracy: 1e-5, "val_\(key) at length 13 against Keras's evaluate")
        }
        let predictions = dir + "/predict-\(m)-13"
        let p = try Harness.tandem(["predict", "--model", run + "/model.keras", "--data", longer, "--out", predictions])
        XCTAssertEqual(p.status, 0, p.stderr)
        for o in ["priority.npy", "department.npy"] {
            let k = try NPYArray(path: seen + "/" + o)
            let t = try NPYArray(path: predictions + "/" + o)
            XCTAssertEqual(k.shape, t.shape, o)
            XCTAssertLessThan(
                largestDifference(k, t), 1e-6, "\(o): Keras's predict against tandem predict at length 13")
        }
        // The archive Tandem wrote keeps None, so Keras loads it for any length (inspect above did).
        let summary = try Harness.tandem(["summary", "--model", run + "/model.keras"])
        XCTAssertTrue(summary.stdout.contains("(None, None, 64)"), summary.stdout)
    }

    /// Keras's fit on Tandem's model.keras continues from Tandem's optimizer state exactly as
    /// Tandem continuing from the same archive does; and Tandem continues a Keras-trained
    /// archive (slots included) as Keras does. Adam, SGD with Nesterov momentum, RMSprop; and the
    /// losses Keras 3.15 added (more_losses) and the sum / mean_with_sample_weight reductions, whose
    /// compile config goes through Tandem's model.keras.
    func testTrainingContinuesFromTheOptimizerStateInBothDirections() throws {
        for m in ["headline", "three_heads", "sequential", "more_losses", "reductions", "coupled_losses", "frozen"] {
            let first = try tandemTrain(model(m), m, epochs: 1)
            let kerasContinues = try kerasFit(first + "/model.keras", m, epochs: 1)
            let tandemContinues = try tandemTrain(first + "/model.keras", m, epochs: 1)
            assertClose(
                try Harness.weights(tandemContinues + "/weights.safetensors"), kerasContinues.weights, tolerance,
                "\(m): continuing Tandem's state")

            let kerasFirst = try kerasFit(model(m), m, epochs: 1)
            let kerasThen = try kerasFit(kerasFirst.archive, m, epochs: 1)
            let tandemThen = try tandemTrain(kerasFirst.archive, m, epochs: 1, np: 2)
            assertClose(
                try Harness.weights(tandemThen + "/weights.safetensors"), kerasThen.weights, tolerance,
                "\(m): continuing Keras's state")
            // The state was really taken up: 37 samples at batch 8 are 5 steps.
            let said = try Harness.tandem([
                "train", "--model", kerasFirst.archive, "--data", data(m), "--out", dir + "/said-\(m)",
                "--batch-size", "8", "--epochs", "0",
            ])
            XCTAssertTrue(
                said.stderr.contains("continuing the archive's optimizer state at iteration 5"), "\(m): \(said.stderr)")
        }
    }

    /// Metrics are reduced as sums and counts, never as per-rank averages: `evaluate` at 1, 2 and 3
    /// ranks gives the same bits for every figure, means included (each row is forwarded in the
    /// same block and the sums are added in row order; the headline's LSTM would show a
    /// difference in the last bits if rows were forwarded in other company); in reproducible mode
    /// (fixed-point sums) every training metric is the same bits at any rank count.
    func testMetricsAreTheGlobalValueForAnyRankCount() throws {
        var results: [[String: Double]] = []
        for m in ["metrics", "headline"] {
            for np in [1, 2, 3] {
                let r = try Harness.mpi(np, ["evaluate", "--model", model(m), "--data", data(m), "--batch-size", "5"])
                XCTAssertEqual(r.status, 0, r.stderr)
                let figures = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Double]
                XCTAssertGreaterThan(figures.count, 4, r.stdout)
                if np == 1 {
                    results.append(figures)
                } else {
                    XCTAssertEqual(figures, results.last!, "\(m): every figure at np \(np) equals np 1")
                }
            }
        }
        let m = "metrics"
        XCTAssertNotNil(results[0]["click_auc"])
        XCTAssertNotNil(results[0]["click_wauc"])
        var lines: [[[String: Any]]] = []
        for np in [nil, 3] as [Int?] {
            let run = try tandemTrain(
                model(m), m, epochs: 2, np: np,
                extra: ["--reproducible", "--micro-batch", "3", "--validation-split", "0.3"])
            lines.append(try Harness.metrics(run))
        }
        XCTAssertNotNil(lines[0].first?["val_click_auc"], "validation figures are written")
        for (a, b) in zip(lines[0], lines[1]) {
            for (key, value) in a where key != "seconds" && key != "samples_per_second" {
                XCTAssertEqual(b[key] as? Double, value as? Double, "reproducible \(key) at np 3")
            }
        }
    }

    func testReproducibleModeIsByteIdenticalAcrossRankCountsForArchives() throws {
        for m in ["headline", "shared"] {
            var bytes: [Data] = []
            for np in [nil, 2, 3] as [Int?] {
                let run = try tandemTrain(
                    model(m), m, epochs: 2, np: np, extra: ["--reproducible", "--micro-batch", "2"])
                bytes.append(try Data(contentsOf: URL(fileURLWithPath: run + "/weights.safetensors")))
            }
            XCTAssertEqual(bytes[0], bytes[1], "\(m): np 1 and 2")
            XCTAssertEqual(bytes[0], bytes[2], "\(m): np 1 and 3")
        }
    }

    /// Dropout masks and the noise layers' draws are a function of the sample's position, not of its
    /// rank: np 1 and np 3 train alike, and reproducible mode is byte-identical for 1 to 4 ranks with them on —
    /// and with BatchNormalization, whose statistics there are gathered per micro-batch and
    /// added in one order (and still equal one-process Keras), with activity penalties, whose
    /// values ride in the step's fixed-point figures, and with a frozen BatchNormalization (no statistics).
    func testDropoutAndBatchNormalizationAreTheSameForAnyRankCount() throws {
        for m in KerasFixture.randomModels {
            let one = try tandemTrain(model(m), m, epochs: 2)
            let three = try tandemTrain(model(m), m, epochs: 2, np: 3)
            assertClose(
                try Harness.weights(three + "/weights.safetensors"), try Harness.weights(one + "/weights.safetensors"),
                tolerance, "\(m) np 3 against np 1")
        }
        let keras = try kerasFit(model("normalized"), "normalized", epochs: 2)
        for m in KerasFixture.randomModels + ["normalized", "activity", "frozen"] {
            var runs: [String] = []
            for np in [nil, 2, 3, 4] as [Int?] {
                runs.append(
                    try tandemTrain(model(m), m, epochs: 2, np: np, extra: ["--reproducible", "--micro-batch", "3"]))
            }
            let bytes = try runs.map { try Data(contentsOf: URL(fileURLWithPath: $0 + "/weights.safetensors")) }
            for k in 1..<4 { XCTAssertEqual(bytes[0], bytes[k], "\(m), reproducible: np 1 and \(k + 1)") }
            if m == "normalized" {
                assertClose(
                    try Harness.weights(runs[2] + "/weights.safetensors"), keras.weights, tolerance,
                    "normalized, reproducible np 3 against Keras")
            }
        }
    }

    /// A loss over the whole batch (Dice, Tversky with axis None; Circle) refuses what forms the
    /// gradient in parts: one message, exit 1, no run directory, no hang at 2 ranks.
    func testCoupledLossesRefuseMicroBatchesAndPerHeadGradients() throws {
        let m = "coupled_losses"
        for (np, flags) in [(2, ["--reproducible"]), (1, ["--gradient-surgery", "pcgrad"])] as [(Int, [String])] {
            let out = dir + "/refused-\(np)"
            let r = try Harness.mpi(
                np,
                ["train", "--model", model(m), "--data", data(m), "--out", out, "--batch-size", "8", "--quiet"] + flags)
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.stderr.contains("circle (output 'embedding') couples the samples of a batch"), r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(flags): nothing written")
        }
    }

    /// Frozen layers (trainable = False) as Keras's summary counts them: 286 trainable and 224
    /// non-trainable parameters (keras: sum over model.trainable_weights / non_trainable_weights).
    func testFrozenLayersAreCountedAsKerasCountsThem() throws {
        let r = try Harness.tandem(["summary", "--model", model("frozen")])
        XCTAssertEqual(r.status, 0, r.stderr)
        for line in [
            "Total params: 510", "Trainable params: 286", "Non-trainable params: 224", "base (Dense) [frozen]",
        ] {
            XCTAssertTrue(r.stdout.contains(line), "\(line) in:\n\(r.stdout)")
        }
    }

    func testResumeOfAnArchiveModelNeedsNoModelFlags() throws {
        let m = "three_heads"
        let whole = try tandemTrain(model(m), m, epochs: 3)
        let part = try tandemTrain(model(m), m, epochs: 1)
        let resumed = try Harness.tandem([
            "train", "--resume", part, "--data", data(m), "--out", part, "--epochs", "3", "--quiet",
        ])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(
            try Data(contentsOf: URL(fileURLWithPath: whole + "/weights.safetensors")),
            try Data(contentsOf: URL(fileURLWithPath: part + "/weights.safetensors")), "resume is exact")
        let withModel = try Harness.tandem([
            "train", "--resume", part, "--model", model(m), "--data", data(m), "--out", part, "--epochs", "4",
        ])
        XCTAssertNotEqual(withModel.status, 0)
        XCTAssertTrue(withModel.stderr.contains("leave out --model"), withModel.stderr)
    }

    func testHeadlinePresetAndItsArchiveTakeTheSamePath() throws {
        let preset = try Harness.tandem([
            "summary", "--vocab", "50", "--seq-len", "7", "--embed-dim", "16", "--lstm-units", "4",
            "--aux-features", "3", "--dense-units", "8", "--dense-layers", "2",
        ])
        let archive = try Harness.tandem(["summary", "--model", model("headline")])
        XCTAssertEqual(preset.status, 0, preset.stderr)
        XCTAssertEqual(archive.status, 0, archive.stderr)
        func path(_ s: String) -> String {
            s.split(separator: "\n").first { $0.hasPrefix("Training path:") }.map(String.init) ?? "none"
        }
        XCTAssertTrue(path(archive.stdout).contains("compact, factored table gradient"), archive.stdout)
        XCTAssertEqual(path(preset.stdout), path(archive.stdout))
        // The preset's parameter count equals Keras's for the same sizes (the table shows Keras's columns).
        XCTAssertTrue(preset.stdout.contains("Total params: 1286"), preset.stdout)
        XCTAssertTrue(archive.stdout.contains("Total params: 1286"), archive.stdout)
    }

    /// The preset's RUN/model.keras loads in Keras too.
    func testHeadlinePresetWritesAKerasArchive() throws {
        let d = dir + "/preset"
        XCTAssertEqual(try Harness.tandem(["gen-data", "--out", d, "--samples", "20"] + Harness.tiny).status, 0)
        let run = dir + "/preset-run"
        let t = try Harness.tandem(
            ["train", "--data", d, "--out", run, "--optimizer", "adam", "--quiet"] + Harness.tiny)
        XCTAssertEqual(t.status, 0, t.stderr)
        let seen = dir + "/preset-seen"
        let r = try Harness.run(
            f.python,
            [
                Harness.packageRoot + "/scripts/keras_models.py", "inspect", "--model", run + "/model.keras",
                "--data", d, "--out", seen,
            ], timeout: 300, environment: ["KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"])
        XCTAssertEqual(r.status, 0, r.stderr)
        assertClose(
            try Harness.weights(seen + "/weights.safetensors"), try Harness.weights(run + "/weights.safetensors"),
            Float.leastNonzeroMagnitude, "preset loaded")
    }

    /// Every broken or hostile archive: one message naming the file, exit 1, nothing written, no hang under mpirun.
    func testBadArchivesAreRefusedClearly() throws {
        let bad = dir + "/bad"
        let made = try keras(["bad", "--model", model("headline"), "--out", bad])
        XCTAssertEqual(made.status, 0, made.stderr)
        let expected: [String: String] = [
            "not_a_zip": "not a .keras archive", "no_config": "no config.json", "no_weights": "no model.weights.h5",
            "corrupt_weights": "not a readable HDF5 file", "bad_json": "not valid JSON",
            "missing_weight": "'layers/lstm/cell/vars/1' is missing",
            "misshapen_weight": "has shape [3, 3], the model needs [7, 8]", "soft_link": "a soft link",
            "external_link": "an external link",
            "external_storage": "external storage", "dotdot_member": "'../../escape.txt'",
            "absolute_member": "'/tmp/escape.txt'",
            "unsupported_layer": "Keras class ConvLSTM1D is not supported (supported: InputLayer",
            "unsupported_argument": "'stateful' = true is not supported",
            "lambda_layer": "Lambda layer holds Python code", "custom_object": "custom object",
            "unsupported_loss":
                "loss 'ctc' is not supported: connectionist temporal classification needs label sequences",
            "dice_on_the_batch_axis":
                "Dice 'axis' = 0 is not supported (-1 (per sample) or None (over the whole batch))",
            "reduction_none":
                "MeanSquaredError 'reduction' = null is not supported (sum_over_batch_size, mean, sum or mean_with_sample_weight; with none",
            "unsupported_optimizer":
                "optimizer MultiOptimizer is not supported (SGD, Adam, AdamW, RMSprop, Adagrad, Adamax, Nadam, Adadelta, Lion, Ftrl, Adafactor, Lamb, Muon, ScheduleFreeAdamW, and LossScaleOptimizer around any of them; MultiOptimizer gives each variable its own optimizer",
            "negative_learning_rate": "'learning_rate' = -0.01 is not supported (a positive number or a schedule)",
            "unknown_schedule":
                "learning-rate schedule WarmupHold is not supported (ExponentialDecay, InverseTimeDecay",
            "ignore_class_on_bce":
                "BinaryCrossentropy has no argument 'ignore_class' (it belongs to sparse_categorical_crossentropy)",
            "huge_member": "refusing to unpack it",
        ]
        XCTAssertEqual(
            Set(try FileManager.default.contentsOfDirectory(atPath: bad).map { String($0.dropLast(6)) }),
            Set(expected.keys))
        for (name, words) in expected.sorted(by: { $0.key < $1.key }) {
            let path = "\(bad)/\(name).keras"
            let out = dir + "/out-\(name)"
            for np in name.hasPrefix("un") || name == "misshapen_weight" ? [nil, 2] : [nil] as [Int?] {
                let args = ["train", "--model", path, "--data", data("headline"), "--out", out, "--quiet"]
                let r = try np.map { try Harness.mpi($0, args, timeout: 60) } ?? Harness.tandem(args)
                XCTAssertEqual(r.status, 1, "\(name) np \(np ?? 1): \(r.stderr)")
                let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
                XCTAssertEqual(errors.count, 1, "\(name): one message: \(r.stderr)")
                XCTAssertTrue(errors.first?.contains(path) ?? false, "\(name): names the file: \(r.stderr)")
                XCTAssertTrue(r.stderr.contains(words), "\(name): says '\(words)': \(r.stderr)")
                XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(name): nothing written")
                XCTAssertFalse(r.stderr.contains("Fatal error") || r.stderr.contains("pwned"), r.stderr)
            }
        }
        // Data that does not fit the archive's model: a missing input file, token ids with a fraction, the wrong width.
        let d = dir + "/baddata"
        try FileManager.default.copyItem(atPath: data("headline"), toPath: d)
        try FileManager.default.removeItem(atPath: d + "/aux_input.npy")
        var r = try Harness.tandem(["train", "--model", model("headline"), "--data", d, "--out", dir + "/x", "--quiet"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(
            r.stderr.contains("aux_input.npy: file not found (the model's input 'aux_input' needs it)"), r.stderr)
        // Float token ids are cast as Keras casts them; ids with a fraction are refused, never truncated.
        try [Float](repeating: 0.5, count: 37 * 7).withUnsafeBufferPointer {
            try NPYArray.write(floats: $0, shape: [37, 7], to: d + "/main_input.npy")
        }
        try [Float](repeating: 0, count: 37 * 3).withUnsafeBufferPointer {
            try NPYArray.write(floats: $0, shape: [37, 3], to: d + "/aux_input.npy")
        }
        r = try Harness.tandem(["train", "--model", model("headline"), "--data", d, "--out", dir + "/x", "--quiet"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(
            r.stderr.contains("main_input.npy: row 0, column 0: token id 0.5 is not a whole number"), r.stderr)
        try [Float](repeating: 0, count: 37 * 4).withUnsafeBufferPointer {
            try NPYArray.write(floats: $0, shape: [37, 4], to: d + "/aux_input.npy")
        }
        try FileManager.default.removeItem(atPath: d + "/main_input.npy")
        try FileManager.default.copyItem(atPath: data("headline") + "/main_input.npy", toPath: d + "/main_input.npy")
        r = try Harness.tandem(["train", "--model", model("headline"), "--data", d, "--out", dir + "/x", "--quiet"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(
            r.stderr.contains(
                "aux_input.npy: shape [37, 4] does not fit the model's input 'aux_input', which needs [N, 3]"), r.stderr
        )
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/x"))
        // Class ids outside the output's classes.
        let s = dir + "/badids"
        try FileManager.default.copyItem(atPath: data("three_heads"), toPath: s)
        try [Float](repeating: 3, count: 37).withUnsafeBufferPointer {
            try NPYArray.write(floats: $0, shape: [37, 1], to: s + "/kind.npy")
        }
        r = try Harness.tandem(["train", "--model", model("three_heads"), "--data", s, "--out", dir + "/y", "--quiet"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("kind.npy: row 0: class id 3.0 is not a whole number in [0, 3)"), r.stderr)
    }
}
