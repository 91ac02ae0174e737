// Part of what SequenceLayerGradientTests.swift's header describes.

import Foundation
import TandemTestSupport
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

/// The arguments of the classification losses and Huber's δ (issue 14): values by hand from
/// Keras's formulas, and numerical gradient checks on every path (folded logits, from_logits,
/// probabilities), ignore_class included.
final class LossArgumentTests: XCTestCase {
    private func value(_ kind: LossKind, _ options: LossOptions, y: [Float], t: [Float], fromLogits: Bool = false)
        -> Double
    {
        y.withUnsafeBufferPointer { yp in
            t.withUnsafeBufferPointer { tp in
                kind.function(options).sample(
                    y: yp.baseAddress!, z: fromLogits ? yp.baseAddress! : nil, t: tp.baseAddress!,
                    columns: y.count, d: nil, scale: 1)
            }
        }
    }

    func testValuesByHand() {
        var smooth = LossOptions()
        smooth.labelSmoothing = 0.2
        // BCE: t' = t·0.8 + 0.1 → 0.9 and 0.1.
        XCTAssertEqual(
            value(.binaryCrossentropy, smooth, y: [0.8, 0.3], t: [1, 0]),
            (-(0.9 * log(0.8) + 0.1 * log(0.2)) - (0.1 * log(0.3) + 0.9 * log(0.7))) / 2, accuracy: 1e-6)
        // From logits: the same on σ(z).
        let z: Float = 1.3
        let p = 1 / (1 + exp(-1.3))
        XCTAssertEqual(
            value(.binaryCrossentropy, smooth, y: [z], t: [1], fromLogits: true), -(0.9 * log(p) + 0.1 * log(1 - p)),
            accuracy: 1e-6)
        // CCE, 3 classes: t' = t·0.8 + 0.2/3.
        let t3 = [0.2 / 3, 0.8 + 0.2 / 3, 0.2 / 3]
        XCTAssertEqual(
            value(.categoricalCrossentropy, smooth, y: [0.2, 0.7, 0.1], t: [0, 1, 0]),
            -(t3[0] * log(0.2) + t3[1] * log(0.7) + t3[2] * log(0.1)), accuracy: 1e-6)
        // Focal, γ = 2: (1 − p_t)²·bce; balanced with α = 0.3: ×0.3 for t = 1, ×0.7 for t = 0.
        var focal = LossOptions()
        focal.gamma = 2
        let plain = (0.04 * -log(0.8) + 0.09 * -log(0.7)) / 2
        XCTAssertEqual(value(.binaryFocalCrossentropy, focal, y: [0.8, 0.3], t: [1, 0]), plain, accuracy: 1e-7)
        focal.applyClassBalancing = true
        focal.alpha = 0.3
        XCTAssertEqual(
            value(.binaryFocalCrossentropy, focal, y: [0.8, 0.3], t: [1, 0]),
            (0.3 * 0.04 * -log(0.8) + 0.7 * 0.09 * -log(0.7)) / 2, accuracy: 1e-7)
        // Huber δ = 0.5 on e = −0.7, 2, 0: δ|e| − δ²/2, δ|e| − δ²/2, 0.
        var huber = LossOptions()
        huber.delta = 0.5
        XCTAssertEqual(
            value(.huber, huber, y: [0.3, 2.5, 0.2], t: [1, 0.5, 0.2]), (0.35 - 0.125 + 1 - 0.125) / 3, accuracy: 1e-7)
    }

    func testGradients() throws {
        let x = InputLayer(name: "x", kind: .features, width: 3)
        let trunk = Dense(name: "trunk", units: 4, activation: .tanh, input: x)
        let outputs: [Layer] = [
            Dense(name: "bce", units: 2, activation: .sigmoid, input: trunk),  // folded into the logits
            Dense(name: "bce_logits", units: 1, input: trunk),  // from_logits
            Dense(name: "cce", units: 3, activation: .softmax, input: trunk),  // folded
            Dense(name: "focal", units: 2, activation: .sigmoid, input: trunk),  // on probabilities
            Dense(name: "focal_logits", units: 1, input: trunk),
            Dense(name: "sparse", units: 3, activation: .softmax, input: trunk),  // ignore_class
            Dense(name: "huber", units: 2, input: trunk),
        ]
        let model = Model(inputs: [x], outputs: outputs, maxBatch: 5)
        model.parameters.initialize(seed: 43)
        let dir = temporaryDirectory()
        var rng = SeededGenerator(seed: 44)
        try write((0..<15).map { _ in Float(rng.normal()) }, [5, 3], dir + "/x.npy")
        func bits(_ n: Int) -> [Float] { (0..<n).map { _ in Float(rng.below(2)) } }
        try write(bits(10), [5, 2], dir + "/bce.npy")
        try write(bits(5), [5, 1], dir + "/bce_logits.npy")
        try write([0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0], [5, 3], dir + "/cce.npy")
        try write(bits(10), [5, 2], dir + "/focal.npy")
        try write(bits(5), [5, 1], dir + "/focal_logits.npy")
        try write([2, 1, 1, 0, 1], [5, 1], dir + "/sparse.npy")  // class 1 is "no label": 2 of 5 labelled
        try write((0..<10).map { _ in Float(rng.uniform(-2, 2)) }, [5, 2], dir + "/huber.npy")
        func head(_ name: String, _ kind: LossKind, logits: Bool = false, _ edit: (inout LossOptions) -> Void) -> Head {
            var h = Head(output: name, loss: kind, weight: 0.9, fromLogits: logits)
            edit(&h.options)
            return h
        }
        let heads = [
            head("bce", .binaryCrossentropy) { $0.labelSmoothing = 0.1 },
            head("bce_logits", .binaryCrossentropy, logits: true) { $0.labelSmoothing = 0.3 },
            head("cce", .categoricalCrossentropy) { $0.labelSmoothing = 0.2 },
            head("focal", .binaryFocalCrossentropy) {
                $0.gamma = 2
                $0.applyClassBalancing = true
                $0.alpha = 0.3
            },
            head("focal_logits", .binaryFocalCrossentropy, logits: true) {
                $0.gamma = 1.5
                $0.labelSmoothing = 0.1
            },
            head("sparse", .sparseCategoricalCrossentropy) { $0.ignoreClass = 1 },
            head("huber", .huber) { $0.delta = 0.4 },
        ]
        let step = try TrainingStep(
            model: model, heads: heads, optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
            communicator: LocalCommunicator(), regularizers: [])
        let data = try Dataset(directory: dir, model: model, heads: heads)
        try checkTotalLossGradient(step, data: data, batch: [3, 1, 0, 2, 4])
        // ignore_class: the loss is the mean over the two labelled samples, whatever the batch size.
        let figures = try [Int32(0), 1, 2, 3, 4].withUnsafeBufferPointer {
            try step.computeGradient(globalBatch: $0, data: data)
        }
        let labelledOnly = try [Int32(0), 3].withUnsafeBufferPointer {
            try step.computeGradient(globalBatch: $0, data: data)
        }
        XCTAssertEqual(
            figures.headLossSums[5] / 5, labelledOnly.headLossSums[5] / 2, accuracy: 1e-12,
            "ignored samples change neither the sum nor the divisor")
    }
}
