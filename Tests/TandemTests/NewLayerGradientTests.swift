// The model core beyond the headline preset: gradient checks of the new layer
// options and loss inputs (LSTM sequences, a shared layer's two calls, Dense
// without bias, sparse CCE, from_logits, losses on probabilities, L1), the
// Keras config reader (legacy inbound nodes, bare triples, Keras's layer
// order), the JSON value type, and a few hundred mutated archives read
// without a trap. Gradient tolerances as in GradientCheckTests (Support.swift).

import Foundation
import TandemTestSupport
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class NewLayerGradientTests: XCTestCase {
    func testLSTMReturnSequencesFeedsAStackedLSTM() throws {
        // x [B, 4, 3] → LSTM(5, return_sequences) → LSTM(2): every step's output gets gradient from the next layer.
        let x = InputLayer(name: "x", kind: .features, shape: [4, 3])
        let first = LSTM(name: "first", units: 5, input: x, steps: 4, returnSequences: true)
        let second = LSTM(name: "second", units: 2, input: first, steps: 4)
        XCTAssertEqual(first.output.shape, [4, 5])
        let head = Dense(name: "out", units: 1, activation: .sigmoid, input: second)
        let model = Model(inputs: [x], outputs: [head], maxBatch: 3)
        model.parameters.initialize(seed: 4)
        let dir = temporaryDirectory()
        var rng = SeededGenerator(seed: 6)
        try write((0..<36).map { _ in Float(rng.normal()) }, [3, 4, 3], dir + "/x.npy")
        try write([1, 0, 1], [3, 1], dir + "/out.npy")
        let heads = [Head(output: "out", loss: .binaryCrossentropy, weight: 1)]
        let step = try TrainingStep(
            model: model, heads: heads, optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
            communicator: LocalCommunicator(), regularizers: [])
        try checkTotalLossGradient(
            step, data: try Dataset(directory: dir, model: model, heads: heads), batch: [2, 0, 1])
    }

    func testEveryLossInputAndASharedLayer() throws {
        // x → shared Dense "trunk" called on x and on x2 (one set of weights, two calls' gradients added);
        // heads: sparse CCE on a softmax Dense (from its logits), BCE from_logits on a linear Dense
        // without bias, CCE on probabilities of a softmax Dense that also feeds another layer (so the loss
        // reads the output, clipped as Keras does), MSE on that layer; L1 + L2 on the trunk.
        let x = InputLayer(name: "x", kind: .features, width: 3)
        let x2 = InputLayer(name: "x2", kind: .features, width: 3)
        let trunk = Dense(name: "trunk", units: 4, activation: .tanh, input: x)
        let trunk2 = Dense(name: "trunk@1", units: 4, activation: .tanh, input: x2, weights: "trunk")
        let joined = Concatenate(name: "joined", inputs: [trunk, trunk2])
        let ids = Dense(name: "ids", units: 3, activation: .softmax, input: joined)
        let logit = Dense(name: "logit", units: 2, activation: .linear, input: joined, useBias: false)
        let probs = Dense(name: "probs", units: 3, activation: .softmax, input: trunk2)
        let after = Dense(name: "after", units: 2, activation: .linear, input: probs)
        let model = Model(inputs: [x, x2], outputs: [ids, logit, probs, after], maxBatch: 5)
        XCTAssertEqual(
            model.parameters.tensors.filter { $0.name.hasPrefix("trunk") }.map(\.name), ["trunk/kernel", "trunk/bias"])
        model.parameters.initialize(seed: 9)
        let dir = temporaryDirectory()
        var rng = SeededGenerator(seed: 10)
        try write((0..<15).map { _ in Float(rng.normal()) }, [5, 3], dir + "/x.npy")
        try write((0..<15).map { _ in Float(rng.normal()) }, [5, 3], dir + "/x2.npy")
        try write([2, 0, 1, 1, 2], [5], dir + "/ids.npy")
        try write((0..<10).map { _ in Float(rng.below(2)) }, [5, 2], dir + "/logit.npy")
        try write(
            (0..<5).flatMap { i in (0..<3).map { $0 == (i + 1) % 3 ? Float(0.8) : 0.1 } }, [5, 3], dir + "/probs.npy")
        try write((0..<10).map { _ in Float(rng.normal()) }, [5, 2], dir + "/after.npy")
        let heads = [
            Head(output: "ids", loss: .sparseCategoricalCrossentropy, weight: 1.1, classWeights: [2: 1.5]),
            Head(output: "logit", loss: .binaryCrossentropy, weight: 0.6, fromLogits: true),
            Head(output: "probs", loss: .categoricalCrossentropy, weight: 0.9),
            Head(output: "after", loss: .meanSquaredError, weight: 0.3),
        ]
        let step = try TrainingStep(
            model: model, heads: heads, optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
            communicator: LocalCommunicator(), regularizers: [Regularizer(tensor: "trunk/kernel", l1: 0.02, l2: 0.05)])
        XCTAssertTrue(ids.lossWritesLogitGradient, "sparse CCE folds into the softmax")
        XCTAssertFalse(probs.lossWritesLogitGradient, "a Dense read further on keeps its activation's derivative")
        try checkTotalLossGradient(
            step, data: try Dataset(directory: dir, model: model, heads: heads), batch: [3, 1, 4, 0, 2])
    }

    func testReLUActivationLayersAddTheirGradientInOnePass() {
        // ReLU and ReLU6 layers take a one-pass kernel: dx += dy where 0 < x (< 6), by hand at values on
        // every side of both kinks (the kinks themselves pass nothing, as the scalar rule) — and, as the
        // first writer of a pending dx (Model.forward marks it: it holds the last step's values), dx = dy
        // there instead, whatever dx held.
        let values: [Float] = [-2, -0.0, 0, 0.5, 5.9, 6, 6.5, 100, 3]
        for (activation, top) in [(Activation.relu, Float.infinity), (.relu6, 6)] {
            for pending in [false, true] {
                let x = InputLayer(name: "x", kind: .features, width: values.count)
                x.wantsGradient = true
                let layer = ActivationLayer(name: "a", activation: activation, input: x)
                let model = Model(inputs: [x], outputs: [layer], maxBatch: 1)
                for (i, v) in values.enumerated() { x.output.values[i] = v }
                model.forward(batch: 1)
                XCTAssertTrue(x.output.gradientPending, "an input's gradient waits for its first writer")
                for i in values.indices {
                    XCTAssertEqual(layer.output.values[i], min(max(values[i], 0), top), "\(activation) at \(values[i])")
                    layer.output.gradients[i] = Float(i + 1)
                    x.output.gradients[i] = 0.5  // another reader's share, or (pending) the last step's stale values
                }
                x.output.gradientPending = pending
                model.backward(batch: 1)
                XCTAssertFalse(x.output.gradientPending)
                for (i, v) in values.enumerated() {
                    let expected: Float = (pending ? 0 : 0.5) + (v > 0 && v < top ? Float(i + 1) : 0)
                    XCTAssertEqual(x.output.gradients[i], expected, "\(activation) at \(v), pending \(pending)")
                }
            }
        }
    }

    func testMergeLayersAndTheActivationLayer() throws {
        // Three tanh branches merged by every Keras merge, each through an Activation layer
        // (softmax and log_softmax over the last axis among them), MSE on each.
        let xs = (0..<3).map { InputLayer(name: "x\($0)", kind: .features, width: 3) }
        let branches = xs.enumerated().map {
            Dense(name: "b\($0.offset)", units: 4, activation: .tanh, input: $0.element)
        }
        let activations: [Activation] = [.gelu, .softplus, .logSoftmax, .mish, .softmax, .silu]
        var outputs: [Layer] = []
        for (k, kind) in MergeKind.allCases.enumerated() {
            let merged = Merge(
                name: "m\(k)", kind: kind, inputs: kind == .subtract ? Array(branches.prefix(2)) : branches)
            outputs.append(ActivationLayer(name: "a\(k)", activation: activations[k], input: merged))
        }
        let model = Model(inputs: xs, outputs: outputs, maxBatch: 4)
        model.parameters.initialize(seed: 12)
        let dir = temporaryDirectory()
        var rng = SeededGenerator(seed: 13)
        for x in xs { try write((0..<12).map { _ in Float(rng.normal()) }, [4, 3], dir + "/\(x.name).npy") }
        for o in outputs { try write((0..<16).map { _ in Float(rng.normal()) }, [4, 4], dir + "/\(o.name).npy") }
        let heads = outputs.enumerated().map {
            Head(output: $0.element.name, loss: .meanSquaredError, weight: 0.5 + Double($0.offset) / 4)
        }
        let step = try TrainingStep(
            model: model, heads: heads, optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
            communicator: LocalCommunicator(), regularizers: [])
        try checkTotalLossGradient(
            step, data: try Dataset(directory: dir, model: model, heads: heads), batch: [1, 3, 0, 2])
    }

    func testBinaryCrossentropyOnProbabilitiesMatchesKerasFormula() throws {
        // A sigmoid Dense read by another layer: BCE from clipped probabilities, −[t·log p + (1−t)·log(1−p)].
        let x = InputLayer(name: "x", kind: .features, width: 2)
        let p = Dense(name: "p", units: 1, activation: .sigmoid, input: x)
        let q = Dense(name: "q", units: 1, activation: .linear, input: p)
        let model = Model(inputs: [x], outputs: [p, q], maxBatch: 4)
        model.parameters.initialize(seed: 2)
        let dir = temporaryDirectory()
        try write([0.5, -1, 2, 0.25, -0.3, 0.1, 1, 1], [4, 2], dir + "/x.npy")
        try write([1, 0, 1, 0], [4, 1], dir + "/p.npy")
        try write([0.3, 0.1, -0.2, 0.5], [4, 1], dir + "/q.npy")
        let heads = [
            Head(output: "p", loss: .binaryCrossentropy, weight: 1),
            Head(output: "q", loss: .meanSquaredError, weight: 0.5),
        ]
        let step = try TrainingStep(
            model: model, heads: heads, optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
            communicator: LocalCommunicator(), regularizers: [])
        let data = try Dataset(directory: dir, model: model, heads: heads)
        let figures = try [Int32]([0, 1, 2, 3]).withUnsafeBufferPointer {
            try step.computeGradient(globalBatch: $0, data: data)
        }
        var expected = 0.0
        for i in 0..<4 {
            let pi = min(max(Double(p.output.values[i]), 1e-7), 1 - 1e-7)
            let t = [1.0, 0, 1, 0][i]
            expected -= t * log(pi) + (1 - t) * log(1 - pi)
        }
        assertClose(figures.headLossSums[0], expected, atol: 1e-7, rtol: 1e-6)
        try checkTotalLossGradient(step, data: data, batch: [0, 1, 2, 3])
    }
}
