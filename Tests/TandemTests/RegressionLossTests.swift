// Part of what SequenceLayerGradientTests.swift's header describes.

import Foundation
import TandemTestSupport
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class RegressionLossTests: XCTestCase {
    /// Each loss against Keras's formula by hand on one row, and its gradient checked numerically.
    func testValuesByHandAndGradients() throws {
        let y: [Float] = [0.3, 2.5, 0.2]
        let t: [Float] = [1.0, 0.5, 0.2]
        let e: [Double] = [-0.7, 2, 0]  // y − t
        let expected: [(LossKind, Double)] = [
            (.meanAbsoluteError, (0.7 + 2 + 0) / 3),
            (.huber, (0.5 * 0.49 + (2 - 0.5) + 0) / 3),
            (.logCosh, e.map { Foundation.log(Foundation.cosh($0)) }.reduce(0, +) / 3),
            (
                .poisson,
                ((0.3 - Foundation.log(0.3 + 1e-7)) + (2.5 - 0.5 * Foundation.log(2.5 + 1e-7))
                    + (0.2 - 0.2 * Foundation.log(0.2 + 1e-7))) / 3
            ),
            (
                .klDivergence,
                1.0 * Foundation.log(1.0 / 0.3) + 0.5 * Foundation.log(0.5 / 1.0) + 0.2 * Foundation.log(0.2 / 0.2)
            ),
        ]
        for (kind, value) in expected {
            let got = y.withUnsafeBufferPointer { yp in
                t.withUnsafeBufferPointer { tp in
                    kind.function(LossOptions()).sample(
                        y: yp.baseAddress!, z: nil, t: tp.baseAddress!, columns: 3, d: nil, scale: 1)
                }
            }
            XCTAssertEqual(got, value, accuracy: 1e-6, kind.rawValue)
        }
        // Gradients through a small model, one head per loss (targets positive; KL's a distribution).
        let x = InputLayer(name: "x", kind: .features, width: 3)
        let trunk = Dense(name: "trunk", units: 4, activation: .tanh, input: x)
        let outputs: [Layer] = [
            Dense(name: "mae", units: 2, input: trunk), Dense(name: "huber", units: 2, input: trunk),
            Dense(name: "logcosh", units: 2, input: trunk),
            Dense(name: "poisson", units: 2, activation: .softplus, input: trunk),
            Dense(name: "kl", units: 3, activation: .softmax, input: trunk),
        ]
        let model = Model(inputs: [x], outputs: outputs, maxBatch: 4)
        model.parameters.initialize(seed: 41)
        let dir = temporaryDirectory()
        var rng = SeededGenerator(seed: 42)
        try write((0..<12).map { _ in Float(rng.normal()) }, [4, 3], dir + "/x.npy")
        for o in outputs where o.name != "kl" {
            var values: [Float] = []
            for _ in 0..<8 {
                let magnitude = Float(rng.uniform(0.5, 3))
                let sign: Float = o.name == "poisson" || rng.below(2) == 0 ? 1 : -1
                values.append(magnitude * sign)
            }
            try write(values, [4, 2], dir + "/\(o.name).npy")
        }
        try write([0.2, 0.3, 0.5, 0.6, 0.3, 0.1, 0.1, 0.1, 0.8, 0.3, 0.3, 0.4], [4, 3], dir + "/kl.npy")
        let kinds: [LossKind] = [.meanAbsoluteError, .huber, .logCosh, .poisson, .klDivergence]
        let heads = zip(outputs, kinds).map { Head(output: $0.name, loss: $1, weight: 0.7) }
        let step = try TrainingStep(
            model: model, heads: heads, optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
            communicator: LocalCommunicator(), regularizers: [])
        try checkTotalLossGradient(
            step, data: try Dataset(directory: dir, model: model, heads: heads), batch: [3, 1, 0, 2])
    }
}
