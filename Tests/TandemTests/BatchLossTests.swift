// The losses that couple a batch's samples (Losses+Batch.swift): Dice and Tversky over the whole
// batch (Keras's axis None) and Circle, against Keras 3.15's own values (printed by keras.losses on
// the same arrays, float32), with sample weights and each reduction; and the total loss's gradient
// through each, checked numerically (tolerances as in GradientCheckTests, Support.swift).

import Foundation
import TandemTestSupport
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class BatchLossTests: XCTestCase {
    private func head(_ loss: LossKind, _ edit: (inout Head) -> Void = { _ in }) -> Head {
        var h = Head(output: "out", loss: loss, weight: 1)
        if loss != .circle { h.options.batchAxis = true }
        edit(&h)
        return h
    }

    private func value(_ h: Head, _ y: [Float], _ t: [Float], _ w: [Float], columns: Int) -> Double {
        y.withUnsafeBufferPointer { o in
            t.withUnsafeBufferPointer { tt in
                w.withUnsafeBufferPointer { ww in
                    h.batchLoss(
                        GatheredBatch(
                            outputs: o.baseAddress!, targets: tt.baseAddress!, weights: ww.baseAddress!, rows: w.count,
                            columns: columns, targetColumns: t.count / w.count),
                        own: 0..<w.count, gradient: nil
                    ).loss
                }
            }
        }
    }

    func testDiceAndTverskyOverTheBatchAreKerasValues() {
        let t: [Float] = [1, 0, 1, 0, 1, 0, 1, 1, 0, 0, 0, 1]
        let y: [Float] = [0.8, 0.1, 0.6, 0.2, 0.7, 0.1, 0.5, 0.9, 0.3, 0.1, 0.2, 0.7]
        let ones: [Float] = [1, 1, 1, 1]
        let weights: [Float] = [1, 2, 0.5, 1]
        // keras.losses.Dice()(t, y) = 0.25 (1 − 2·3.5/9); with the weights, × their mean 1.125.
        XCTAssertEqual(value(head(.dice), y, t, ones, columns: 3), 0.25, accuracy: 1e-6)
        XCTAssertEqual(value(head(.dice), y, t, weights, columns: 3), 0.28125, accuracy: 1e-6)
        XCTAssertEqual(value(head(.dice) { $0.reduction = .sum }, y, t, ones, columns: 3), 1.0, accuracy: 1e-6)
        XCTAssertEqual(value(head(.dice) { $0.reduction = .labeled }, y, t, weights, columns: 3), 0.25, accuracy: 1e-6)
        // keras.losses.Tversky(alpha=0.3, beta=0.7)(t, y) = 0.22794116
        let tversky = head(.tversky) {
            $0.options.alpha = 0.3
            $0.options.beta = 0.7
        }
        XCTAssertEqual(value(tversky, y, t, ones, columns: 3), 0.22794116, accuracy: 1e-6)
    }

    /// Six unit embeddings (numpy's default_rng(0) normals, normalised) of classes 0, 1, 0, 2, 1, 0:
    /// class 2 is alone, so its row has no positive pair and Keras leaves it out of the mean.
    private let embeddings: [Float] = [
        0.1865169, -0.1959735, 0.9500471, 0.1556161, -0.3084949, 0.2082446, 0.7509807, 0.5454291, -0.4462686,
        -0.802458, -0.395245, 0.0262066, -0.8466057, -0.0796679, -0.4536694, -0.2666381, -0.4233797, -0.2460502,
        0.3202078, 0.8109723, -0.0821214, 0.8730394, -0.4249958, 0.2245813,
    ]
    private let classes: [Float] = [0, 1, 0, 2, 1, 0]

    func testCircleIsKerasValue() {
        let ones = [Float](repeating: 1, count: 6)
        let weights: [Float] = [1, 2, 0.5, 1, 1.5, 0.25]
        func circle(_ edit: (inout Head) -> Void = { _ in }) -> Head { head(.circle, edit) }
        // keras.losses.Circle(): 115.508728 (mean over the five rows with a loss), 577.543579 with
        // reduction sum, 75.394997 with the weights.
        XCTAssertEqual(value(circle(), embeddings, classes, ones, columns: 4), 115.508728, accuracy: 2e-3)
        XCTAssertEqual(
            value(circle { $0.reduction = .sum }, embeddings, classes, ones, columns: 4), 577.543579, accuracy: 1e-2)
        XCTAssertEqual(value(circle(), embeddings, classes, weights, columns: 4), 75.394997, accuracy: 2e-3)
        // Circle(margin=0.25, gamma=10, remove_diagonal=False): 14.423978 (every row has itself as a positive).
        let other = circle {
            $0.options.margin = 0.25
            $0.options.circleGamma = 10
            $0.options.keepDiagonal = true
        }
        XCTAssertEqual(value(other, embeddings, classes, ones, columns: 4), 14.423978, accuracy: 2e-4)
    }

    /// x → Dense → sigmoid output under Dice, Tversky (over the batch), and → Dense → UnitNormalization
    /// under Circle; the total loss's gradient through each.
    func testGradientsThroughTheCoupledLosses() throws {
        let x = InputLayer(name: "x", kind: .features, width: 3)
        let overlap = Dense(name: "overlap", units: 2, activation: .sigmoid, input: x)
        let tversky = Dense(name: "tversky", units: 2, activation: .sigmoid, input: x)
        let embedding = RowNormalization(
            name: "embedding", kind: .unit, input: Dense(name: "project", units: 4, activation: .linear, input: x),
            epsilon: 1e-12)
        let model = Model(inputs: [x], outputs: [overlap, tversky, embedding], maxBatch: 6)
        model.parameters.initialize(seed: 41)
        let dir = temporaryDirectory()
        var rng = SeededGenerator(seed: 42)
        try write((0..<18).map { _ in Float(rng.normal()) }, [6, 3], dir + "/x.npy")
        try write([1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 0, 1], [6, 2], dir + "/overlap.npy")
        try write([0, 1, 1, 1, 0, 0, 1, 0, 0, 1, 1, 0], [6, 2], dir + "/tversky.npy")
        try write(classes, [6, 1], dir + "/embedding.npy")
        var heads = [
            Head(output: "overlap", loss: .dice, weight: 1),
            Head(output: "tversky", loss: .tversky, weight: 0.5),
            Head(output: "embedding", loss: .circle, weight: 0.2),
        ]
        heads[0].options.batchAxis = true
        heads[1].options.batchAxis = true
        heads[1].options.alpha = 0.3
        heads[1].options.beta = 0.7
        heads[2].options.circleGamma = 8
        let step = try TrainingStep(
            model: model, heads: heads, optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
            communicator: LocalCommunicator(), regularizers: [])
        try checkTotalLossGradient(
            step, data: try Dataset(directory: dir, model: model, heads: heads), batch: [4, 1, 0, 5, 2, 3])
    }
}
