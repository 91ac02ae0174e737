// Multi-task training (docs/SPEC.md §10) through the CLI, on Keras-built archives:
// missing labels against Keras with sample weight 0, across rank counts and
// in reproducible mode. Needs TANDEM_KERAS_PYTHON (scripts/test.sh sets it).

import Foundation
import Tandem
import XCTest

final class MultiTaskTests: KerasFixtureTestCase {
    /// The headline archive's data with aux_output unlabelled on rows 0–7 (the whole first batch at
    /// batch 8) and every fifth row from 3: as NaN for Tandem, and as Keras users write it — a
    /// stand-in label with sample weight 0.
    private func partialLabels() throws -> (nan: String, zero: String, missing: Set<Int>) {
        let source = data("headline")
        let nan = dir + "/data-nan"
        let zero = dir + "/data-zero"
        for d in [nan, zero] { try FileManager.default.copyItem(atPath: source, toPath: d) }
        let aux = try NPYArray(path: source + "/aux_output.npy")
        let missing = Set(0..<8).union(stride(from: 3, to: aux.rows, by: 5))
        let labels = (0..<aux.rows).map { aux.float(row: $0) }
        func write(_ v: [Float], _ path: String) throws {
            try v.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [aux.rows, 1], to: path) }
        }
        try write(labels.enumerated().map { missing.contains($0.offset) ? .nan : $0.element }, nan + "/aux_output.npy")
        try write(labels.enumerated().map { missing.contains($0.offset) ? 0 : $0.element }, zero + "/aux_output.npy")
        try (0..<aux.rows).map { Float(missing.contains($0) ? 0 : 1) }.withUnsafeBufferPointer {
            try NPYArray.write(floats: $0, shape: [aux.rows], to: zero + "/aux_output.sample_weight.npy")
        }
        return (nan, zero, missing)
    }

    /// `batch`: NaN rows train exactly as Keras with sample weight 0, at 1 and 3 ranks; `labeled`
    /// differs from it and is byte-identical for 1, 2 and 3 ranks in reproducible mode; a first
    /// batch without one aux label trains; accuracy counts the labelled rows only.
    func testMissingLabelsTrainAsKerasWithSampleWeightZeroAtAnyRankCount() throws {
        let m = "headline"
        let (nan, zero, missing) = try partialLabels()
        let keras = try kerasFit(model(m), m, epochs: 2, dataDir: zero)
        for np in [nil, 3] as [Int?] {
            let run = try tandemTrain(model(m), m, epochs: 2, np: np, dataDir: nan)
            assertClose(
                try Harness.weights(run + "/weights.safetensors"), keras.weights, tolerance,
                "batch reduction np \(np ?? 1) against Keras with sample weight 0")
            let lines = try Harness.metrics(run)
            for key in ["loss", "main_output_loss", "aux_output_loss"] {
                for e in 0..<2 {
                    XCTAssertEqual(
                        lines[e][key] as! Double, keras.history[key]![e], accuracy: 2e-6,
                        "\(key) epoch \(e + 1) np \(np ?? 1)")
                }
            }
        }
        // Accuracy over labelled rows only: Tandem's evaluate of Keras's weights, by hand from its predictions.
        let evaluated = try Harness.tandem(["evaluate", "--model", keras.archive, "--data", nan])
        XCTAssertEqual(evaluated.status, 0, evaluated.stderr)
        let figures = try JSONSerialization.jsonObject(with: Data(evaluated.stdout.utf8)) as! [String: Double]
        let predicted = try Harness.tandem(["predict", "--model", keras.archive, "--data", nan, "--out", dir + "/pred"])
        XCTAssertEqual(predicted.status, 0, predicted.stderr)
        let p = try NPYArray(path: dir + "/pred/aux_output.npy")
        let t = try NPYArray(path: data(m) + "/aux_output.npy")
        let labelled = (0..<t.rows).filter { !missing.contains($0) }
        let hits = labelled.filter { (p.float(row: $0) > 0.5 ? 1 : 0) == t.float(row: $0) }.count
        XCTAssertEqual(figures["aux_output_accuracy"]!, Double(hits) / Double(labelled.count), accuracy: 1e-12)

        var bytes: [Data] = []
        for np in [nil, 2, 3] as [Int?] {
            let run = try tandemTrain(
                model(m), m, epochs: 2, np: np,
                extra: ["--reproducible", "--micro-batch", "3", "--head-reduction", "aux_output=labeled"], dataDir: nan)
            bytes.append(try Data(contentsOf: URL(fileURLWithPath: run + "/weights.safetensors")))
            let lines = try Harness.metrics(run)
            XCTAssertTrue(
                lines.allSatisfy { ($0["aux_output_loss"] as! Double).isFinite },
                "labeled: finite losses with an unlabelled first batch")
        }
        XCTAssertEqual(bytes[0], bytes[1], "labeled, reproducible: np 1 and 2")
        XCTAssertEqual(bytes[0], bytes[2], "labeled, reproducible: np 1 and 3")
        let plain = try tandemTrain(
            model(m), m, epochs: 2, extra: ["--reproducible", "--micro-batch", "3"], dataDir: nan)
        XCTAssertNotEqual(
            try Data(contentsOf: URL(fileURLWithPath: plain + "/weights.safetensors")), bytes[0],
            "labeled divides by another number than batch")
        // The reduction is part of the checkpoint: a resume may restate it, not change it.
        let run = try tandemTrain(
            model(m), m, epochs: 1, extra: ["--head-reduction", "aux_output=labeled"], dataDir: nan)
        let changed = try Harness.tandem([
            "train", "--out", run, "--resume", run, "--data", nan, "--epochs", "2", "--head-reduction",
            "aux_output=batch",
        ])
        XCTAssertNotEqual(changed.status, 0)
        XCTAssertTrue(
            changed.stderr.contains("--head-reduction aux_output=batch contradicts the checkpoint's labeled"),
            changed.stderr)
        let resumed = try Harness.tandem([
            "train", "--out", run, "--resume", run, "--data", nan, "--epochs", "2", "--quiet",
        ])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        let straight = try tandemTrain(
            model(m), m, epochs: 2, extra: ["--head-reduction", "aux_output=labeled"], dataDir: nan)
        XCTAssertEqual(
            try Data(contentsOf: URL(fileURLWithPath: run + "/weights.safetensors")),
            try Data(contentsOf: URL(fileURLWithPath: straight + "/weights.safetensors")),
            "the resumed run keeps dividing by the labelled weight")
    }

    /// Keras's own EarlyStopping on a sequence of val_loss values: how many epochs run, and the best (1-based).
    private func kerasEarlyStopping(_ values: [Double], patience: Int) throws -> (epochs: Int, best: Int) {
        let code = """
            import json, sys, keras
            values = json.loads(sys.argv[1]); cb = keras.callbacks.EarlyStopping(monitor="val_loss", patience=int(sys.argv[2]))
            class Stub: stop_training = False; metrics = []
            m = Stub(); cb.set_model(m); cb.on_train_begin(); ran = 0
            for e, v in enumerate(values):
                cb.on_epoch_end(e, {"val_loss": v}); ran = e + 1
                if m.stop_training: break
            print(json.dumps([ran, cb.best_epoch + 1]))
            """
        let list = "[" + values.map { "\($0)" }.joined(separator: ", ") + "]"
        let r = try Harness.run(
            f.python, ["-c", code, list, "\(patience)"], timeout: 120,
            environment: ["KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let pair = try JSONSerialization.jsonObject(with: Data(r.stdout.split(separator: "\n").last!.utf8)) as! [Int]
        return (pair[0], pair[1])
    }

    private func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    /// --monitor val_loss --patience 2 --restore-best stops where Keras's EarlyStopping stops on the
    /// same values, keeps the best epoch's weights in best.safetensors / best.keras and ends with them,
    /// the same at np 1 and 2; a resume mid-way decides as the uninterrupted run.
    func testBestModelAndEarlyStoppingAtOneAndTwoRanks() throws {
        let m = "headline"
        let epochs = 10
        let common = [
            "--optimizer", "adam", "--lr", "0.05", "--validation-split", "0.3", "--reproducible", "--micro-batch", "2",
        ]
        let full = try tandemTrain(model(m), m, epochs: epochs, extra: common)
        let values = try Harness.metrics(full).map { $0["val_loss"] as! Double }
        let keras = try kerasEarlyStopping(values, patience: 2)
        XCTAssertLessThan(keras.epochs, epochs, "the run overfits, so early stopping has something to do")
        let bestByHand = values.indices.min { values[$0] < values[$1] || (values[$0] == values[$1] && $0 < $1) }!
        let expected = try bytes(tandemTrain(model(m), m, epochs: keras.best, extra: common) + "/weights.safetensors")
        let watch = common + ["--monitor", "val_loss", "--patience", "2", "--restore-best"]
        for np in [nil, 2] as [Int?] {
            let run = try tandemTrain(model(m), m, epochs: epochs, np: np, extra: watch)
            let lines = try Harness.metrics(run)
            XCTAssertEqual(lines.count, keras.epochs, "np \(np ?? 1): stops after the epoch Keras stops after")
            XCTAssertEqual(
                lines.map { $0["val_loss"] as! Double }, Array(values.prefix(keras.epochs)),
                "the same epochs as without --monitor")
            XCTAssertLessThanOrEqual(keras.best - 1, bestByHand)
            XCTAssertEqual(
                try bytes(run + "/best.safetensors"), expected,
                "np \(np ?? 1): best.safetensors holds epoch \(keras.best)'s weights")
            XCTAssertEqual(
                try bytes(run + "/weights.safetensors"), expected, "np \(np ?? 1): --restore-best ends with them")
            XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/best.keras"))
        }
        // Stop after epoch 1, resume: the monitor's state comes from the checkpoint.
        let part = try tandemTrain(model(m), m, epochs: 1, extra: watch)
        let resumed = try Harness.tandem([
            "train", "--out", part, "--resume", part, "--data", data(m), "--validation-split", "0.3", "--epochs",
            "\(epochs)", "--quiet",
            "--monitor", "val_loss", "--patience", "2", "--restore-best",
        ])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("early stop after epoch \(keras.epochs)"), resumed.stdout)
        XCTAssertEqual(try bytes(part + "/weights.safetensors"), expected, "resumed: the same best epoch")
        let other = try Harness.tandem([
            "train", "--out", part, "--resume", part, "--data", data(m), "--validation-split", "0.3", "--epochs",
            "\(epochs + 1)", "--monitor", "val_main_output_loss",
        ])
        XCTAssertTrue(
            other.status != 0 && other.stderr.contains("contradicts the checkpoint's 'val_loss'"), other.stderr)
    }

    /// --head-diagnostics-every: a line per diagnostic step with every shared tensor's per-head figures,
    /// the same at np 1 and 3 (to Float rounding), a summary by layer; and the weights are the bits of a
    /// run without diagnostics (BatchNormalization statistics and dropout masks untouched).
    func testHeadDiagnosticsAreGlobalAndChangeNothing() throws {
        var lines: [[[String: Any]]] = []
        for np in [nil, 3] as [Int?] {
            let out = dir + "/diag-\(np ?? 1)"
            let args = [
                "train", "--model", model("headline"), "--data", data("headline"), "--out", out, "--batch-size", "8",
                "--epochs", "2",
                "--no-shuffle", "--quiet", "--head-diagnostics-every", "2",
            ]
            let r = try np.map { try Harness.mpi($0, args) } ?? Harness.tandem(args)
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(
                r.stdout.contains("per-head diagnostics over 5 steps") && r.stdout.contains("lstm:  main_output norm"),
                r.stdout)
            let text = try String(contentsOfFile: out + "/diagnostics.jsonl", encoding: .utf8)
            lines.append(
                try text.split(separator: "\n").map {
                    try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
                })
        }
        XCTAssertEqual(lines[0].map { $0["step"] as! Int }, [2, 4, 6, 8, 10], "every second of 10 steps")
        for (a, b) in zip(lines[0], lines[1]) {
            let ta = a["tensors"] as! [[String: Any]]
            let tb = b["tensors"] as! [[String: Any]]
            XCTAssertEqual(
                ta.map { $0["tensor"] as! String },
                ["embedding/embeddings", "lstm/kernel", "lstm/recurrent_kernel", "lstm/bias"])
            for (x, y) in zip(ta, tb) {
                for field in ["norm", "share", "cosine"] {
                    let u = x[field] as! [String: Double]
                    let v = y[field] as! [String: Double]
                    XCTAssertEqual(Set(u.keys), Set(v.keys))
                    for (k, value) in u {
                        XCTAssertEqual(
                            v[k]!, value, accuracy: 1e-5 * max(abs(value), 1e-3), "\(x["tensor"]!) \(field) \(k)")
                    }
                }
                let share = x["share"] as! [String: Double]
                XCTAssertEqual(share.values.reduce(0, +), 1, accuracy: 1e-9, "shares add up to 1")
            }
        }
        for m in ["normalized", "dropout", "headline"] {
            let plain = try tandemTrain(model(m), m, epochs: 2)
            let watched = try tandemTrain(model(m), m, epochs: 2, extra: ["--head-diagnostics-every", "1"])
            XCTAssertEqual(
                try bytes(plain + "/weights.safetensors"), try bytes(watched + "/weights.safetensors"),
                "\(m): diagnostics change no weight")
        }
    }

    /// --gradient-surgery pcgrad through the CLI: np 3 trains to np 1's weights, the projections are
    /// reported, the result differs from plain training, and the choice is kept across a resume.
    func testPCGradTrainsAlikeAtOneAndThreeRanks() throws {
        let m = "headline"
        var runs: [String] = []
        for np in [nil, 3] as [Int?] {
            let out = dir + "/pcgrad-\(np ?? 1)"
            let args = [
                "train", "--model", model(m), "--data", data(m), "--out", out, "--batch-size", "8", "--epochs", "2",
                "--no-shuffle", "--quiet", "--gradient-surgery", "pcgrad",
            ]
            let r = try np.map { try Harness.mpi($0, args) } ?? Harness.tandem(args)
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stdout.contains("pcgrad: heads conflicted on the shared tensors in"), r.stdout)
            runs.append(out)
        }
        assertClose(
            try Harness.weights(runs[1] + "/weights.safetensors"),
            try Harness.weights(runs[0] + "/weights.safetensors"), tolerance, "pcgrad np 3 against np 1")
        let plain = try tandemTrain(model(m), m, epochs: 2)
        XCTAssertNotEqual(
            try bytes(plain + "/weights.safetensors"), try bytes(runs[0] + "/weights.safetensors"),
            "the projections change the step")
        // PCGrad and the diagnostics read one per-head pass a step: with both on, the weights are
        // PCGrad's alone, and every step's diagnostics are written.
        let both = try tandemTrain(
            model(m), m, epochs: 2, extra: ["--gradient-surgery", "pcgrad", "--head-diagnostics-every", "1"])
        XCTAssertEqual(
            try bytes(both + "/weights.safetensors"), try bytes(runs[0] + "/weights.safetensors"),
            "diagnostics beside PCGrad")
        let diagnosed = try String(contentsOfFile: both + "/diagnostics.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(diagnosed.count, 10, "a diagnostics line for each of the 10 steps")
        let resumed = try Harness.tandem([
            "train", "--out", runs[0], "--resume", runs[0], "--data", data(m), "--epochs", "3", "--quiet",
        ])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("pcgrad:"), "the resumed run keeps PCGrad: \(resumed.stdout)")
    }

    /// Loss weights over time through the CLI: a ramp's weights by hand in metrics.jsonl, a resume in
    /// the middle of the ramp (with uncertainty weighting too) byte-identical to the uninterrupted run,
    /// np 3 = np 1, the final weights in model.keras's compile config, and a resume that changes them refused.
    func testLossWeightsOverTimeResumeExactly() throws {
        let m = "headline"
        let stepsPerEpoch = 5  // 37 samples at batch 8
        let ramp = ["--loss-weight-schedule", "aux_output=linear:1:0.1:2:3e"]
        let plain = try tandemTrain(model(m), m, epochs: 4, extra: ramp)
        let lines = try Harness.metrics(plain)
        for (e, line) in lines.enumerated() {
            // The epoch's last step is taken after 5(e+1) − 1 steps.
            let t = Double(stepsPerEpoch * (e + 1) - 1)
            let expected = t <= 2 ? 1 : t >= 15 ? 0.1 : 1 + (0.1 - 1) * (t - 2) / 13
            XCTAssertEqual(line["aux_output_loss_weight"] as! Double, expected, accuracy: 1e-12, "epoch \(e + 1)")
            XCTAssertEqual(line["main_output_loss_weight"] as! Double, 1)
        }
        let both = ramp + ["--loss-weighting", "uncertainty", "--optimizer", "adam"]
        let straight = try tandemTrain(model(m), m, epochs: 4, extra: both)
        let part = try tandemTrain(model(m), m, epochs: 2, extra: both)
        let resumed = try Harness.tandem([
            "train", "--out", part, "--resume", part, "--data", data(m), "--epochs", "4", "--quiet",
        ])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(
            try bytes(part + "/weights.safetensors"), try bytes(straight + "/weights.safetensors"),
            "resumed mid-ramp with learned weights")
        XCTAssertEqual(
            try Harness.metrics(part).last!["aux_output_loss_weight"] as! Double,
            try Harness.metrics(straight).last!["aux_output_loss_weight"] as! Double)
        let three = try tandemTrain(model(m), m, epochs: 4, np: 3, extra: both)
        assertClose(
            try Harness.weights(three + "/weights.safetensors"), try Harness.weights(straight + "/weights.safetensors"),
            tolerance, "np 3 against np 1")
        let learned = try Harness.metrics(straight).last!
        XCTAssertNotEqual(learned["main_output_loss_weight"] as! Double, 1, "uncertainty moved the main weight")
        // model.keras carries the weights of the last step.
        let code =
            "import zipfile, json, sys; c = json.loads(zipfile.ZipFile(sys.argv[1]).read('config.json')); print(json.dumps(c['compile_config']['loss_weights']))"
        let read = try Harness.run(f.python, ["-c", code, straight + "/model.keras"])
        XCTAssertEqual(read.status, 0, read.stderr)
        let saved = try JSONSerialization.jsonObject(with: Data(read.stdout.utf8))
        let values =
            (saved as? [String: Double]).map { [$0["main_output"]!, $0["aux_output"]!] } ?? (saved as! [Double])
        XCTAssertEqual(values[0], learned["main_output_loss_weight"] as! Double, accuracy: 1e-12)
        XCTAssertEqual(values[1], learned["aux_output_loss_weight"] as! Double, accuracy: 1e-12)
        let changed = try Harness.tandem([
            "train", "--out", part, "--resume", part, "--data", data(m), "--epochs", "5", "--loss-weight-schedule",
            "aux_output=constant:1",
        ])
        XCTAssertTrue(
            changed.status != 0 && changed.stderr.contains("contradicts the checkpoint's schedules"), changed.stderr)
        // GradNorm: its weights, initial losses and slots in the checkpoint; np 3 = np 1.
        let gradnorm = ["--loss-weighting", "gradnorm", "--optimizer", "adam", "--lr", "0.01"]
        let gStraight = try tandemTrain(model(m), m, epochs: 3, extra: gradnorm)
        let gPart = try tandemTrain(model(m), m, epochs: 1, extra: gradnorm)
        let gResumed = try Harness.tandem([
            "train", "--out", gPart, "--resume", gPart, "--data", data(m), "--epochs", "3", "--quiet",
        ])
        XCTAssertEqual(gResumed.status, 0, gResumed.stderr)
        XCTAssertEqual(
            try bytes(gPart + "/weights.safetensors"), try bytes(gStraight + "/weights.safetensors"), "gradnorm resumed"
        )
        let gLast = try Harness.metrics(gStraight).last!
        let sum = (gLast["main_output_loss_weight"] as! Double) + (gLast["aux_output_loss_weight"] as! Double)
        XCTAssertEqual(sum, 1.2, accuracy: 1e-6, "renormalised to the configured weights' sum")
        XCTAssertNotEqual(gLast["aux_output_loss_weight"] as! Double, 0.2, "the weights moved")
        let gThree = try tandemTrain(model(m), m, epochs: 3, np: 3, extra: gradnorm)
        assertClose(
            try Harness.weights(gThree + "/weights.safetensors"),
            try Harness.weights(gStraight + "/weights.safetensors"), tolerance, "gradnorm np 3 against np 1")
    }
}
