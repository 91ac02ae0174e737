// The built binary end to end: gen-data → train → evaluate → predict, and resume.

import Foundation
import Tandem
import TandemTestSupport
import XCTest

final class EndToEndTests: XCTestCase {
    func testGenTrainEvaluatePredict() throws {
        let dir = temporaryDirectory()
        let gen = try Harness.tandem(
            ["gen-data", "--out", dir + "/data", "--samples", "400", "--seed", "3"] + Harness.tiny)
        XCTAssertEqual(gen.status, 0, gen.stderr)
        let train = try Harness.tandem(
            [
                "train", "--data", dir + "/data", "--out", dir + "/run", "--optimizer", "adam", "--lr", "0.01",
                "--epochs", "4", "--batch-size", "16", "--validation-split", "0.25",
            ] + Harness.tiny)
        XCTAssertEqual(train.status, 0, train.stderr)
        XCTAssertTrue(train.stderr.contains("epoch 4/4"), train.stderr)
        XCTAssertTrue(train.stdout.contains("done: 4 epochs"), train.stdout)
        for file in ["weights.safetensors", "checkpoint.safetensors", "metrics.jsonl"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/run/" + file), file)
        }
        let lines = try Harness.metrics(dir + "/run")
        XCTAssertEqual(lines.count, 4)
        for head in ["main_output", "aux_output"] {
            let first = lines.first!["\(head)_loss"] as! Double
            let last = lines.last!["\(head)_loss"] as! Double
            XCTAssertLessThan(last, first * 0.8, "\(head) loss fell: \(first) → \(last)")
            XCTAssertNotNil(lines.last!["val_\(head)_accuracy"])
        }

        // evaluate: sizes come from the weights and the data; JSON on stdout.
        let eval = try Harness.tandem([
            "evaluate", "--weights", dir + "/run/weights.safetensors", "--data", dir + "/data",
        ])
        XCTAssertEqual(eval.status, 0, eval.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(eval.stdout.utf8)) as! [String: Any]
        let mainLoss = json["main_output_loss"] as! Double
        let auxLoss = json["aux_output_loss"] as! Double
        XCTAssertEqual(json["loss"] as! Double, mainLoss + 0.2 * auxLoss, accuracy: 1e-9, "total = 1.0·main + 0.2·aux")
        XCTAssertEqual(json["samples"] as? Int, 400)

        let pred = try Harness.tandem([
            "predict", "--weights", dir + "/run/weights.safetensors", "--data", dir + "/data", "--out", dir + "/pred",
        ])
        XCTAssertEqual(pred.status, 0, pred.stderr)
        for head in ["main_output", "aux_output"] {
            let a = try NPYArray(path: dir + "/pred/\(head).npy")
            XCTAssertEqual(a.shape, [400, 1])
            var p: Float = 0
            a.readFloats(row: 399, into: &p)
            XCTAssertTrue(p > 0 && p < 1)
        }
    }

    func testResumeEqualsUninterruptedRun() throws {
        let dir = temporaryDirectory()
        XCTAssertEqual(
            try Harness.tandem(["gen-data", "--out", dir + "/data", "--samples", "90"] + Harness.tiny).status, 0)
        let common =
            ["--data", dir + "/data", "--optimizer", "adam", "--batch-size", "8", "--seed", "5"] + Harness.tiny
        XCTAssertEqual(
            try Harness.tandem(["train", "--out", dir + "/full", "--epochs", "3", "--quiet"] + common).status, 0)
        XCTAssertEqual(
            try Harness.tandem(["train", "--out", dir + "/part", "--epochs", "1", "--quiet"] + common).status, 0)
        let resumed = try Harness.tandem(
            ["train", "--out", dir + "/part", "--resume", dir + "/part", "--epochs", "3", "--quiet"] + common)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(
            try Harness.weights(dir + "/part/weights.safetensors"),
            try Harness.weights(dir + "/full/weights.safetensors"),
            "same world size: bit-identical")
        XCTAssertEqual(try Harness.metrics(dir + "/part").count, 3)

        // A command line that contradicts the checkpoint is refused, naming the flag.
        for (flag, value) in [("--batch-size", "16"), ("--optimizer", "sgd"), ("--seed", "6"), ("--embed-dim", "9")] {
            var args =
                ["train", "--out", dir + "/part", "--resume", dir + "/part", "--epochs", "4", "--quiet"] + common
            if let i = args.firstIndex(of: flag) { args[i + 1] = value } else { args += [flag, value] }
            let refused = try Harness.tandem(args)
            XCTAssertEqual(refused.status, 1, flag)
            XCTAssertTrue(refused.stderr.contains("contradicts the checkpoint"), "\(flag): \(refused.stderr)")
        }
        let otherData = dir + "/other"
        XCTAssertEqual(
            try Harness.tandem(["gen-data", "--out", otherData, "--samples", "91"] + Harness.tiny).status, 0)
        let wrongData = try Harness.tandem(
            ["train", "--data", otherData, "--out", dir + "/part", "--resume", dir + "/part", "--epochs", "4"]
                + Harness.tiny)
        XCTAssertTrue(wrongData.stderr.contains("91"), wrongData.stderr)
    }

    func testHelpExplainsTheCommands() throws {
        let help = try Harness.tandem(["--help"])
        XCTAssertEqual(help.status, 0)
        for word in ["gen-data", "train", "evaluate", "predict", "weighted total loss", "mpirun"] {
            XCTAssertTrue(help.stdout.contains(word), "help mentions \(word)")
        }
        let trainHelp = try Harness.tandem(["train", "--help"])
        for flag in [
            "--batch-size", "--loss-weight", "--class-weight", "--l2", "--optimizer", "--resume", "--validation-split",
        ] {
            XCTAssertTrue(trainHelp.stdout.contains(flag), flag)
        }
    }
}
