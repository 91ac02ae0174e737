// Masking (Masking.swift): its output and the [B, T] mask Keras saves as not_equal then any, read
// by a recurrent layer and average pooling; Softmax over other axes than the last (AxisSoftmax.swift);
// ActivityRegularization (ActivityRegularization.swift):
// its value ÷ the global batch in the step's total and in evaluate, and the total loss's gradient
// through both, checked numerically (tolerances as in GradientCheckTests, Support.swift).

import Foundation
import TandemTestSupport
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class MaskingAndActivityTests: XCTestCase {
    /// [3, 4, 2] steps; step 1 of sample 0 and steps 2, 3 of sample 2 are the mask value −1 on
    /// both features; sample 1's step 0 is −1 on one feature only (not masked).
    private let steps: [Float] = [
        0.5, -0.2, -1, -1, 1.2, 0.3, -0.7, 0.9,
        -1, 0.4, 0.8, -0.6, 0.1, 1.5, -0.3, -0.8,
        0.6, 0.2, -0.4, 1.1, -1, -1, -1, -1,
    ]

    func testMaskingZeroesMaskedStepsAndItsMaskIsKeras() {
        let x = InputLayer(name: "x", kind: .features, shape: [4, 2])
        let masking = MaskingLayer(name: "masking", maskValue: -1, input: x)
        let any = AnyMask(name: "any", input: ValueMask(name: "not_equal", value: -1, input: x))
        let model = Model(inputs: [x], outputs: [masking, any], maxBatch: 3)
        x.output.values.update(from: steps, count: steps.count)
        model.forward(batch: 3, training: false)
        let mask: [Float] = [1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
        XCTAssertEqual(Array(UnsafeBufferPointer(start: any.output.values, count: 12)), mask)
        for s in 0..<12 {
            for f in 0..<2 {
                XCTAssertEqual(masking.output.values[s * 2 + f], steps[s * 2 + f] * mask[s], "step \(s) feature \(f)")
            }
        }
    }

    func testGradientThroughMaskingIntoMaskedReaders() throws {
        let x = InputLayer(name: "x", kind: .features, shape: [4, 2])
        let trunk = Dense(name: "trunk", units: 2, activation: .linear, input: x)  // per step
        let masking = MaskingLayer(name: "masking", maskValue: 0.25, input: trunk)
        let mask = AnyMask(name: "any", input: ValueMask(name: "not_equal", value: 0.25, input: trunk))
        let lstm = Recurrent(name: "lstm", cell: .lstm, units: 3, input: masking, mask: mask)
        let pool = GlobalPooling(name: "pool", kind: .average, input: masking, mask: mask)
        let out = Dense(name: "out", units: 1, input: Concatenate(name: "joined", inputs: [lstm, pool]))
        let model = Model(inputs: [x], outputs: [out], maxBatch: 3)
        model.parameters.initialize(seed: 31)
        let dir = temporaryDirectory()
        try write(steps, [3, 4, 2], dir + "/x.npy")
        try write([0.3, -0.5, 1.1], [3, 1], dir + "/out.npy")
        try checkMSEGradient(model, data: dir, batch: [2, 0, 1])
    }

    /// hidden = relu(Dense(x)) → ActivityRegularization(λ1 0.05, λ2 0.1) → out; a second, L2-only
    /// penalty on a tanh layer's output.
    private func penalised() -> (Model, ActivityPenalty, ActivityPenalty) {
        let x = InputLayer(name: "x", kind: .features, width: 3)
        let hidden = Dense(name: "hidden", units: 4, activation: .relu, input: x)
        let sparse = ActivityPenalty(name: "sparse", l1: 0.05, l2: 0.1, input: hidden)
        let coded = Dense(name: "coded", units: 2, activation: .tanh, input: sparse)
        let smooth = ActivityPenalty(name: "coded/activity_regularizer", l1: 0, l2: 0.3, input: coded)
        let out = Dense(name: "out", units: 1, input: smooth)
        let model = Model(inputs: [x], outputs: [out], maxBatch: 4)
        model.parameters.initialize(seed: 32)
        return (model, sparse, smooth)
    }

    func testActivityPenaltyIsInTheTotalAndItsGradient() throws {
        let dir = temporaryDirectory()
        var rng = SeededGenerator(seed: 36)  // no ReLU input within the difference step of its kink
        let features = (0..<12).map { _ in Float(rng.normal()) }
        try write(features, [4, 3], dir + "/x.npy")
        try write([0.2, -0.4, 0.9, 0.1], [4, 1], dir + "/out.npy")
        let (model, sparse, smooth) = penalised()
        try checkMSEGradient(model, data: dir, batch: [3, 0, 2, 1])
        // The total is the MSE plus each penalty's Σ over the batch ÷ 4, by hand from the outputs.
        let heads = [Head(output: "out", loss: .meanSquaredError, weight: 1)]
        let data = try Dataset(directory: dir, model: model, heads: heads)
        let step = try TrainingStep(
            model: model, heads: heads, optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
            communicator: LocalCommunicator(), regularizers: [])
        let batch: [Int32] = [0, 1, 2, 3]
        let figures = try batch.withUnsafeBufferPointer { try step.computeGradient(globalBatch: $0, data: data) }
        var penalty = 0.0
        for i in 0..<16 { penalty += 0.05 * Double(abs(sparse.output.values[i])) }
        for i in 0..<16 { penalty += 0.1 * Double(sparse.output.values[i] * sparse.output.values[i]) }
        for i in 0..<8 { penalty += 0.3 * Double(smooth.output.values[i] * smooth.output.values[i]) }
        XCTAssertGreaterThan(penalty, 0.01)
        XCTAssertEqual(figures.total, figures.headLossSums[0] / 4 + penalty / 4, accuracy: 1e-7)
        // evaluate: the same figure over the same rows (one block).
        let evaluation = try step.evaluate(data, rows: 0..<4)
        XCTAssertEqual(evaluation.total, evaluation.headLoss[0] + penalty / 4, accuracy: 1e-7)
    }

    func testActivityRegularizerOnAnOutputOrAWrappedLayerIsRefused() throws {
        func layer(_ name: String, _ className: String, _ inbound: String, _ config: String) -> String {
            """
            {"class_name": "\(className)", "name": "\(name)", "config": {"name": "\(name)", \(config)},
             "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {"keras_history": ["\(inbound)", 0, 0]}}], "kwargs": {}}]}
            """
        }
        let input = """
            {"class_name": "InputLayer", "name": "x", "config": {"name": "x", "batch_shape": [null, 3], "dtype": "float32"}, "inbound_nodes": []}
            """
        let regularizer = #""activity_regularizer": {"class_name": "L2", "config": {"l2": 0.1}}"#
        for (body, expected) in [
            (layer("out", "Dense", "x", #""units": 1, "# + regularizer), "on a model output is not supported"),
            (
                layer(
                    "out", "TimeDistributed", "x",
                    #""layer": {"class_name": "Dense", "config": {"name": "d", "units": 1, "# + regularizer + "}}"),
                "on the layer it wraps is not supported"
            ),
        ] {
            let text = """
                {"class_name": "Functional", "config": {"name": "m", "layers": [\(input), \(body)],
                 "input_layers": [["x", 0, 0]], "output_layers": [["out", 0, 0]]}}
                """
            XCTAssertThrowsError(
                try KerasConfig.description(fromJSON: Array(text.utf8), source: "m.keras").build(maxBatch: 2)
            ) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error)")
            }
        }
    }

    /// Softmax over the steps (axis 1) and over a whole sample (axes 1, 2): values sum to 1 per group,
    /// and the gradient through each.
    func testSoftmaxOverOtherAxes() throws {
        let x = InputLayer(name: "x", kind: .features, shape: [4, 2])
        let trunk = Dense(name: "trunk", units: 3, activation: .linear, input: x)
        let overSteps = AxisSoftmax(name: "over_steps", axes: 0...0, input: trunk)
        let whole = AxisSoftmax(name: "whole", axes: 0...1, input: trunk)
        let joined = Concatenate(
            name: "joined",
            inputs: [Reshape(name: "a", input: overSteps, shape: [12]), Reshape(name: "b", input: whole, shape: [12])])
        let out = Dense(name: "out", units: 1, input: joined)
        let model = Model(inputs: [x], outputs: [out], maxBatch: 3)
        model.parameters.initialize(seed: 37)
        let dir = temporaryDirectory()
        try write(steps, [3, 4, 2], dir + "/x.npy")
        try write([0.3, -0.5, 1.1], [3, 1], dir + "/out.npy")
        try checkMSEGradient(model, data: dir, batch: [2, 0, 1])
        model.forward(batch: 1, training: false)
        for f in 0..<3 {
            XCTAssertEqual((0..<4).reduce(Float(0)) { $0 + overSteps.output.values[$1 * 3 + f] }, 1, accuracy: 1e-6)
        }
        XCTAssertEqual((0..<12).reduce(Float(0)) { $0 + whole.output.values[$1] }, 1, accuracy: 1e-6)
    }
}
