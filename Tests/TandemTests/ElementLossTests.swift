// Losses on outputs with spatial or time axes (#31): an output [B, d1…dk, C] is B·cells elements (a pixel,
// a token), each with its own loss over the last axis, and Keras divides the sum over every element by
// B·cells (keras/src/losses/loss.py: reduce_values), or with ignore_class by the elements not ignored. Checked
// by hand from the model's own predictions, by central differences, across ways of splitting the batch,
// and the IoU metrics against values keras.metrics gave for the same ids.

import Foundation
import TandemTestSupport
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class ElementLossTests: XCTestCase {
    private func write(_ v: [Float], _ shape: [Int], _ path: String) throws {
        try v.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: shape, to: path) }
    }

    /// An image [3, 2, 2] under per-pixel classes (ignore_class 2) and depth (a weight per sample), and a
    /// sequence [4, 2] under per-token one-hot tags (a weight per token).
    private func fixture(rows: Int = 5) throws -> (Model, [Head], String) {
        let image = InputLayer(name: "image", kind: .features, shape: [3, 2, 2])
        let series = InputLayer(name: "series", kind: .features, shape: [4, 2])
        let trunk = Dense(name: "trunk", units: 3, activation: .tanh, input: image)
        let outputs: [Layer] = [
            Dense(name: "segment", units: 3, activation: .softmax, input: trunk),  // folded into the logits
            Dense(name: "depth", units: 1, input: trunk),
            Dense(name: "tags", units: 3, activation: .softmax, input: series),
        ]
        let model = Model(inputs: [image, series], outputs: outputs, maxBatch: rows)
        model.parameters.initialize(seed: 51)
        let dir = temporaryDirectory()
        var rng = SeededGenerator(seed: 52)
        try write((0..<(rows * 12)).map { _ in Float(rng.normal()) }, [rows, 3, 2, 2], dir + "/image.npy")
        try write((0..<(rows * 8)).map { _ in Float(rng.normal()) }, [rows, 4, 2], dir + "/series.npy")
        // Every class appears; a few pixels are 2, the ignored class.
        try write((0..<(rows * 6)).map { Float(($0 * 7) % 5 == 0 ? 2 : $0 % 2) }, [rows, 3, 2], dir + "/segment.npy")
        try write((0..<(rows * 6)).map { _ in Float(rng.normal()) }, [rows, 3, 2, 1], dir + "/depth.npy")
        try write(
            [Float](repeating: 0, count: rows * 12).enumerated().map {
                Float($0.offset % 3 == $0.offset / 3 % 3 ? 1 : 0)
            }, [rows, 4, 3], dir + "/tags.npy")
        try write((0..<rows).map { _ in Float(rng.uniform(0.2, 2)) }, [rows], dir + "/depth.sample_weight.npy")
        try write((0..<(rows * 4)).map { _ in Float(rng.uniform(0.2, 2)) }, [rows, 4], dir + "/tags.sample_weight.npy")
        var segment = Head(output: "segment", loss: .sparseCategoricalCrossentropy, weight: 1)
        segment.options.ignoreClass = 2
        segment.accuracy = .init(name: "accuracy", kind: .sparseCategorical)
        let heads = [
            segment,
            Head(output: "depth", loss: .meanSquaredError, weight: 0.5),
            Head(output: "tags", loss: .categoricalCrossentropy, weight: 0.7),
        ]
        return (model, heads, dir)
    }

    private func step(_ model: Model, _ heads: [Head]) throws -> TrainingStep {
        try TrainingStep(
            model: model, heads: heads, optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
            communicator: LocalCommunicator(), regularizers: [])
    }

    func testLossesAreMeansOverEveryElementAsKerasReducesThem() throws {
        let (model, heads, dir) = try fixture()
        let s = try step(model, heads)
        let data = try Dataset(directory: dir, model: model, heads: heads)
        let order: [Int32] = [0, 1, 2, 3, 4]
        let f = try order.withUnsafeBufferPointer { try s.computeGradient(globalBatch: $0, data: data) }
        func read(_ name: String) throws -> [Float] {
            let a = try NPYArray(path: dir + "/\(name).npy")
            var v = [Float](repeating: 0, count: a.rows * a.rowWidth)
            v.withUnsafeMutableBufferPointer {
                for r in 0..<a.rows { a.readFloats(row: r, into: $0.baseAddress! + r * a.rowWidth) }
            }
            return v
        }
        let (segment, depth, tags) = (
            model.outputs[0].output.values!, model.outputs[1].output.values!, model.outputs[2].output.values!
        )
        // Segment: −log p[t] over the pixels that are not class 2, divided by their count.
        let ids = try read("segment")
        var sum = 0.0
        var valid = 0
        var hits = 0
        for (e, id) in ids.enumerated() {
            let p = (0..<3).map { Double(segment[e * 3 + $0]) }
            if p.indices.max(by: { p[$0] < p[$1] }) == Int(id) { hits += 1 }
            guard id != 2 else { continue }
            sum -= log(p[Int(id)])
            valid += 1
        }
        XCTAssertLessThan(valid, ids.count)
        XCTAssertEqual(f.headLossSums[0] / 5, sum / Double(valid), accuracy: 1e-6)
        // Per-pixel accuracy counts every pixel (Keras's metric knows nothing of the loss's ignore_class).
        XCTAssertEqual(f.headCorrect[0] / f.headLabelled[0], Double(hits) / Double(ids.count), accuracy: 1e-12)
        // Depth: a sample's weight on each of its 6 pixels; Σ w·(y − t)² / (B·6).
        let t = try read("depth")
        let w = try read("depth.sample_weight")
        let mse = (0..<30).reduce(0.0) { $0 + Double(w[$1 / 6]) * pow(Double(depth[$1]) - Double(t[$1]), 2) } / 30
        XCTAssertEqual(f.headLossSums[1] / 5, mse, accuracy: 1e-6)
        // Tags: one weight per token; Σ w·(−Σ t log p) / (B·4).
        let onehot = try read("tags")
        let tw = try read("tags.sample_weight")
        var cce = 0.0
        for e in 0..<20 {
            for c in 0..<3 where onehot[e * 3 + c] == 1 { cce -= Double(tw[e]) * log(Double(tags[e * 3 + c])) }
        }
        XCTAssertEqual(f.headLossSums[2] / 5, cce / 20, accuracy: 1e-6)
        XCTAssertEqual(f.total, sum / Double(valid) + 0.5 * mse + 0.7 * cce / 20, accuracy: 2e-6)
    }

    func testGradientOfPerElementLossesByCentralDifferences() throws {
        let (model, heads, dir) = try fixture()
        let s = try step(model, heads)
        let data = try Dataset(directory: dir, model: model, heads: heads)
        try checkTotalLossGradient(s, data: data, batch: [3, 1, 0, 2, 4])
    }

    /// Rows split as ranks split them (micro-batches here): the ignored count is the global batch's, so the
    /// figures and gradient are the whole batch's.
    func testSplitBatchesGiveTheWholeBatchsFigures() throws {
        let (model, heads, dir) = try fixture()
        let data = try Dataset(directory: dir, model: model, heads: heads)
        let whole = try step(model, heads)
        let order: [Int32] = [4, 0, 3, 1, 2]
        let a = try order.withUnsafeBufferPointer { try whole.computeGradient(globalBatch: $0, data: data) }
        let g = Array(UnsafeBufferPointer(start: model.parameters.gradients, count: model.parameters.count))
        let split = try step(model, heads)
        split.microBatch = 2
        let b = try order.withUnsafeBufferPointer { try split.computeGradient(globalBatch: $0, data: data) }
        XCTAssertEqual(a.total, b.total, accuracy: 1e-6)
        for (x, y) in zip(g, UnsafeBufferPointer(start: model.parameters.gradients, count: model.parameters.count)) {
            XCTAssertEqual(x, y, accuracy: 1e-6)
        }
    }

    /// Keras's mask on a per-token output (Embedding(mask_zero=True) passed on by the layers after it):
    /// padded tokens add nothing, and the loss divides by the unmasked tokens of the GLOBAL batch (here
    /// with ignore_class too: by the tokens both keep).
    func testMaskedTokensCountForNothingAndTheLossDividesByTheRest() throws {
        let ids = InputLayer(name: "ids", kind: .tokens, shape: [4])
        let embedded = Embedding(name: "embedding", vocabulary: 6, dimension: 3, input: ids)
        let tags = Dense(name: "tags", units: 3, activation: .softmax, input: embedded)
        let model = Model(inputs: [ids], outputs: [tags], maxBatch: 5)
        model.parameters.initialize(seed: 61)
        let dir = temporaryDirectory()
        let tokens: [Int32] = [3, 1, 0, 0, 2, 0, 0, 0, 5, 4, 3, 2, 1, 1, 0, 0, 4, 0, 0, 0]
        try tokens.withUnsafeBufferPointer { try NPYArray.write(ints: $0, shape: [5, 4], to: dir + "/ids.npy") }
        let labels: [Float] = [0, 2, 1, 1, 1, 0, 2, 2, 2, 2, 0, 1, 0, 1, 2, 0, 1, 1, 1, 1]
        try write(labels, [5, 4], dir + "/tags.npy")
        var head = Head(output: "tags", loss: .sparseCategoricalCrossentropy, weight: 1)
        head.elementMask = .tokens(input: "ids")
        head.options.ignoreClass = 1
        head.accuracy = .init(name: "accuracy", kind: .sparseCategorical)
        let s = try step(model, [head])
        let data = try Dataset(directory: dir, model: model, heads: [head])
        let order: [Int32] = [0, 1, 2, 3, 4]
        let f = try order.withUnsafeBufferPointer { try s.computeGradient(globalBatch: $0, data: data) }
        let p = tags.output.values!
        var sum = 0.0
        var kept = 0
        var hits = 0
        var unmasked = 0
        for e in 0..<20 where tokens[e] != 0 {
            unmasked += 1
            let q = (0..<3).map { Double(p[e * 3 + $0]) }
            if q.indices.max(by: { q[$0] < q[$1] }) == Int(labels[e]) { hits += 1 }
            guard labels[e] != 1 else { continue }
            sum -= log(q[Int(labels[e])])
            kept += 1
        }
        XCTAssertEqual(f.headLossSums[0] / 5, sum / Double(kept), accuracy: 1e-6)
        // Training's accuracy counts every token, as Keras's fit reports it (on JAX the mask does not reach
        // fit's metrics); evaluation's the unmasked ones, as Keras's evaluate.
        let allHits = (0..<20).filter { e in
            let q = (0..<3).map { p[e * 3 + $0] }
            return q.indices.max(by: { q[$0] < q[$1] }) == Int(labels[e])
        }.count
        XCTAssertEqual(f.headCorrect[0] / f.headLabelled[0], Double(allHits) / 20, accuracy: 1e-12)
        let evaluated = try s.evaluate(data, rows: 0..<5)
        XCTAssertEqual(evaluated.headAccuracy[0], Double(hits) / Double(unmasked), accuracy: 1e-12)
        XCTAssertEqual(evaluated.headLoss[0], sum / Double(kept), accuracy: 1e-6)
        try checkTotalLossGradient(s, data: data, batch: [3, 1, 0, 2, 4])
        // Split into micro-batches: the same divisors, the same total.
        let split = try step(model, [head])
        split.microBatch = 2
        let g = try order.withUnsafeBufferPointer { try split.computeGradient(globalBatch: $0, data: data) }
        XCTAssertEqual(g.total, f.total, accuracy: 1e-6)
    }

    func testRefusedWhereKerasDoesNotAverageElements() throws {
        let image = InputLayer(name: "image", kind: .features, shape: [3, 2, 2])
        let out = Dense(name: "out", units: 2, activation: .softmax, input: image)
        var dice = Head(output: "out", loss: .dice, weight: 1)
        XCTAssertThrowsError(try dice.check(out)) { XCTAssertTrue("\($0)".contains("dice")) }
        dice.loss = .categoricalCrossentropy
        XCTAssertNoThrow(try dice.check(out))
        dice.classWeights = [0: 2]
        XCTAssertThrowsError(try dice.check(out)) { XCTAssertTrue("\($0)".contains("class weights")) }
    }

    func testSampleWeightsOfAnotherShapeAreRefusedNamingTheFile() throws {
        let (model, heads, dir) = try fixture()
        try write([Float](repeating: 1, count: 5 * 3), [5, 3], dir + "/tags.sample_weight.npy")
        XCTAssertThrowsError(try Dataset(directory: dir, model: model, heads: heads)) {
            XCTAssertTrue("\($0)".contains("tags.sample_weight.npy"), "\($0)")
            XCTAssertTrue("\($0)".contains("[N] or [N, 4]"), "\($0)")
        }
        try write([Float](repeating: 1, count: 5 * 4), [5, 4, 1], dir + "/tags.sample_weight.npy")
        XCTAssertNoThrow(try Dataset(directory: dir, model: model, heads: heads))
        // A class id outside the output's classes, at its element.
        var ids = [Float](repeating: 0, count: 30)
        ids[13] = 3
        try write(ids, [5, 3, 2], dir + "/segment.npy")
        let data = try Dataset(directory: dir, model: model, heads: heads)
        let problem = try XCTUnwrap(data.validate(rows: 0..<5))
        XCTAssertTrue("\(problem)".contains("row 2, element 1: class id 3.0"), "\(problem)")
    }

    // MARK: - IoU metrics (keras.metrics 3.15 gave the values on the same ids)

    private func iouValue(
        _ kind: MetricKind, _ rows: [([Float], [Float], Double)], weighted: Bool = false, parts: Int = 1
    )
        -> Double
    {
        let m = Metric(name: "iou", kind: kind, weighted: weighted, keras: "")
        var total = [Double](repeating: 0, count: m.slotCount)
        for piece in 0..<parts {
            var sums = [Double](repeating: 0, count: m.slotCount)
            for (i, (p, t, w)) in rows.enumerated() where i % parts == piece {
                m.accumulate(p: p, t: t, columns: p.count, targetColumns: t.count, weight: w, into: &sums)
            }
            for k in total.indices { total[k] += sums[k] }
        }
        return m.result(total)
    }

    func testIoUMetricsAsKerasComputesThem() {
        let truth: [Float] = [0, 0, 1, 1, 2, 2, 1, 3]
        let predicted: [Float] = [0, 1, 0, 1, 2, 1, 1, 0]
        let weights = [1, 2, 0, 3, 1, 1, 2.7, 1]
        let sparse = zip(zip(predicted, truth), weights).map { ([$0.0.0], [$0.0.1], $0.1) }
        func mean(_ n: Int, _ ids: [Int]? = nil, ignore: Int? = nil, integer: Bool = true) -> MetricKind {
            .iou(
                classes: n, targetClasses: ids ?? Array(0..<n), sparseTrue: true, sparsePred: true, threshold: nil,
                ignoreClass: ignore, integerWeights: integer)
        }
        // Class 3 is out of range and counts for nothing: IoUs ⅓, ⅖, ½.
        XCTAssertEqual(iouValue(mean(3), sparse), 0.41111111640930176, accuracy: 1e-7)
        XCTAssertEqual(iouValue(mean(3), sparse, parts: 3), iouValue(mean(3), sparse), accuracy: 1e-15)
        // Weighted: int32 weights (2.7 → 2), as Keras's default dtype; float32 keeps them.
        XCTAssertEqual(iouValue(mean(3), sparse, weighted: true), 0.4861111342906952, accuracy: 1e-7)
        XCTAssertEqual(iouValue(mean(3, integer: false), sparse, weighted: true), 0.4961685836315155, accuracy: 1e-7)
        XCTAssertEqual(iouValue(mean(3, [0, 1], ignore: 2), sparse), 0.4166666865348816, accuracy: 1e-7)
        // One-hot targets, probabilities: argmax of each.
        let oneHot: [([Float], [Float], Double)] = zip(predicted, truth).map { p, t in
            var probabilities: [Float] = [0.1, 0.1, 0.1]
            if p < 3 { probabilities[Int(p)] = 0.7 }
            var target: [Float] = [0, 0, 0]
            target[min(Int(t), 2)] = 1
            return (probabilities, target, 1)
        }
        let kind = MetricKind.iou(
            classes: 3, targetClasses: [0, 1, 2], sparseTrue: false, sparsePred: false, threshold: nil,
            ignoreClass: nil, integerWeights: true)
        XCTAssertEqual(iouValue(kind, oneHot), 0.32777777314186096, accuracy: 1e-7)
        // BinaryIoU: 1 at or above the threshold.
        let binary = MetricKind.iou(
            classes: 2, targetClasses: [0, 1], sparseTrue: true, sparsePred: true, threshold: 0.3, ignoreClass: nil,
            integerWeights: true)
        let scores: [([Float], [Float], Double)] = [([0.1], [0], 1), ([0.2], [1], 1), ([0.4], [0], 1), ([0.7], [1], 1)]
        XCTAssertEqual(iouValue(binary, scores), 0.3333333432674408, accuracy: 1e-7)
    }
}
