// The multi-output models of the two texts Keras users learn from, exactly as published
// (scripts/keras_models.py names the source of each): the functional-API guide's ticket ranker
// is one of KerasFixture.models (1, 2 and 3 ranks against Keras's fit, loaded back by Keras);
// Deep Learning with Python's posts → age, income, gender model is here, on its own data — its
// first Conv1D reads 50 000 channels, so its test trains one step of 8 posts of 269 tokens, the
// shortest its convolutions and poolings can take.

import Foundation
import Tandem
import TandemTestSupport
import XCTest

final class PublishedModelTests: KerasFixtureTestCase {
    func testDeepLearningWithPythonMultiOutputModelTrainsAsKerasAtOneAndThreeRanks() throws {
        let m = "dlwp_multi_output"
        let posts = dir + "/data-\(m)"
        let gen = try Harness.tandem([
            "gen-data", "--model", model(m), "--out", posts, "--samples", "8", "--seed", "3", "--seq-len", "269",
        ])
        XCTAssertEqual(gen.status, 0, gen.stderr)
        XCTAssertEqual(try NPYArray(path: posts + "/posts.npy").shape, [8, 269])

        // One step (8 posts, 3-3-2 across 3 ranks) of RMSprop on 0.25·mse + 1·categorical + 10·binary cross-entropy.
        let reference = try kerasFit(model(m), m, epochs: 1, dataDir: posts)
        let start = try Harness.weights("\(f.dir)/models/\(m).safetensors")
        // (The fixture builds every model in one Keras session, so the unnamed layers are numbered.)
        let kernels = reference.weights.keys.filter { $0.hasSuffix("/kernel") || $0.hasSuffix("/embeddings") }
        XCTAssertEqual(kernels.count, 10, "\(reference.weights.keys.sorted())")
        for name in kernels {
            let moved = zip(start[name]!, reference.weights[name]!).map { abs($0 - $1) }.max()!
            XCTAssertGreaterThan(moved, 100 * tolerance, "\(name) moved, so the comparison means something")
        }
        var first = ""
        for np in [nil, 3] as [Int?] {
            let run = try tandemTrain(model(m), m, epochs: 1, np: np, dataDir: posts)
            assertClose(
                try Harness.weights(run + "/weights.safetensors"), reference.weights, tolerance, "\(m) at np \(np ?? 1)"
            )
            let line = try XCTUnwrap(try Harness.metrics(run).last)
            for (key, values) in reference.history where key.hasSuffix("loss") {
                XCTAssertEqual(line[key] as? Double ?? .nan, values[0], accuracy: 2e-5, "\(m) np \(np ?? 1) \(key)")
            }
            if first.isEmpty { first = run }
        }

        // Tandem's model.keras loads in Keras, which predicts what tandem predict does.
        let seen = dir + "/inspect-\(m)"
        let inspect = try keras(["inspect", "--model", first + "/model.keras", "--data", posts, "--out", seen])
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        let predictions = dir + "/predict-\(m)"
        let p = try Harness.tandem([
            "predict", "--model", first + "/model.keras", "--data", posts, "--out", predictions,
        ])
        XCTAssertEqual(p.status, 0, p.stderr)
        for o in ["age", "income", "gender"] {
            let k = try NPYArray(path: seen + "/\(o).npy")
            let t = try NPYArray(path: predictions + "/\(o).npy")
            XCTAssertEqual(k.shape, t.shape, o)
            var a = [Float](repeating: 0, count: k.rowWidth)
            var b = a
            for r in 0..<k.rows {
                k.readFloats(row: r, into: &a)
                t.readFloats(row: r, into: &b)
                for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 1e-5, "\(o) row \(r)") }
            }
        }
    }
}
