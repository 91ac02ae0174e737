// Every optimizer, modifier (weight decay, the three clippings) and learning-rate
// schedule of docs/SPEC.md §9, each compiled by Keras into the same two-head model
// (keras_models.py OPTIMIZERS: an Embedding→LSTM trunk, so the table paths run,
// and a BatchNormalization whose moving statistics get neither slots nor decay):
// Tandem at 1 and 3 ranks trains to Keras's fit; Keras's fit continues from
// Tandem's model.keras (slots, iterations, Nadam's product, the schedule's step)
// as Keras continuing itself does; and Tandem continues a Keras-trained archive.

import Foundation
import Tandem
import XCTest

final class KerasOptimizerTests: KerasFixtureTestCase {
    func testEveryOptimizerAndScheduleTrainsAsKerasAndContinuesInBothDirections() throws {
        for m in KerasFixture.optimizerModels {
            let reference = try kerasFit(model(m), m, epochs: 2, saveEpochs: true)
            let start = try Harness.weights("\(f.dir)/models/\(m).safetensors")
            for (name, values) in reference.weights where !name.contains("moving_") {
                let moved = zip(start[name]!, values).map { abs($0 - $1) }.max()!
                XCTAssertGreaterThan(moved, 100 * tolerance, "\(m): \(name) moved, so the comparison means something")
            }
            var straight: String?
            for np in [nil, 3] as [Int?] {
                let run = try tandemTrain(model(m), m, epochs: 2, np: np)
                if np == nil { straight = run }
                assertClose(
                    try Harness.weights(run + "/weights.safetensors"), reference.weights, tolerance,
                    "\(m) at np \(np ?? 1)")
                let metrics = try Harness.metrics(run)
                for (epoch, line) in metrics.enumerated() {
                    XCTAssertEqual(
                        line["loss"] as! Double, reference.history["loss"]![epoch], accuracy: 2e-6,
                        "\(m) epoch \(epoch + 1) loss")
                    XCTAssertEqual(
                        line["main_accuracy"] as? Double ?? -1, reference.history["main_accuracy"]![epoch],
                        accuracy: 1e-6, "\(m) accuracy")
                    XCTAssertNotNil(line["learning_rate"] as? Double, "\(m): the learning rate is in metrics.jsonl")
                }
            }
            // Tandem's first epoch, continued by Keras, lands where Keras's two epochs do. With use_ema a
            // fit ends by writing the average over the weights, so there it lands where Keras's one-epoch
            // fit continued by Keras does.
            let first = try tandemTrain(model(m), m, epochs: 1)
            let kerasContinues = try kerasFit(first + "/model.keras", m, epochs: 1)
            let twoFits =
                m.hasSuffix("_ema")
                ? try kerasFit(try kerasFit(model(m), m, epochs: 1).archive, m, epochs: 1).weights : reference.weights
            assertClose(kerasContinues.weights, twoFits, tolerance, "\(m): Keras continuing Tandem's optimizer state")
            // Resumed by Tandem, the same bits as the uninterrupted run: the slots, the iterations (so the
            // schedule's step) and Nadam's product are all in the checkpoint.
            let resumed = try Harness.tandem([
                "train", "--resume", first, "--data", data(m), "--out", first, "--epochs", "2", "--quiet",
            ])
            XCTAssertEqual(resumed.status, 0, resumed.stderr)
            XCTAssertEqual(
                try Data(contentsOf: URL(fileURLWithPath: first + "/weights.safetensors")),
                try Data(contentsOf: URL(fileURLWithPath: straight! + "/weights.safetensors")), "\(m): resume is exact")
            // Keras's first epoch, continued by Tandem at 3 ranks, likewise.
            let tandemContinues = try tandemTrain(reference.archive + ".epoch1.keras", m, epochs: 1, np: 3)
            assertClose(
                try Harness.weights(tandemContinues + "/weights.safetensors"), reference.weights, tolerance,
                "\(m): Tandem continuing Keras's optimizer state")
        }
    }
}
