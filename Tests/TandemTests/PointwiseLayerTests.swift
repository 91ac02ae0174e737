// ReLU, LeakyReLU and ELU with any arguments, and Rescaling (Pointwise.swift); UnitNormalization
// and RMSNormalization (RowNormalization.swift): values by Keras's formulas on chosen inputs, and
// the total loss's gradient through each (RMS's scale included), checked numerically (tolerances
// as in GradientCheckTests, Support.swift).

import Foundation
import TandemTestSupport
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class PointwiseLayerTests: XCTestCase {
    private let functions: [PointwiseLayer.Function] = [
        .relu(slope: 0.1, maxValue: 1.5, threshold: 0.25), .relu(slope: 0, maxValue: 2, threshold: 0),
        .relu(slope: 0.3, maxValue: nil, threshold: 0), .relu(slope: 0, maxValue: nil, threshold: -0.5),
        .leakyRelu(slope: 0.05), .elu(alpha: 0.7),
        .rescaling(scale: [0.5, -2, 1.5, 0.25], offset: [0.1]),
    ]

    func testValuesByKerasFormulas() {
        let x = InputLayer(name: "x", kind: .features, width: 4)
        let inputs: [Float] = [-1, 0.2, 0.9, 3]
        let expected: [[Float]] = [
            // y = clip(x > 0.25 ? x : 0, 0, 1.5) − 0.1·relu(0.25 − x)
            [0 - 0.1 * 1.25, 0 - 0.1 * 0.05, 0.9, 1.5], [0, 0.2, 0.9, 2], [-0.3, 0.2, 0.9, 3],
            [0, 0.2, 0.9, 3],  // x > −0.5 ? x : 0
            [-0.05, 0.2, 0.9, 3], [0.7 * (exp(-1) - 1), 0.2, 0.9, 3], [-0.4, -0.3, 1.45, 0.85],
        ]
        for (function, want) in zip(functions, expected) {
            let layer = PointwiseLayer(name: "p", function: function, input: x)
            let model = Model(inputs: [x], outputs: [layer], maxBatch: 1)
            x.output.values.update(from: inputs, count: 4)
            model.forward(batch: 1, training: false)
            for j in 0..<4 {
                XCTAssertEqual(layer.output.values[j], want[j], accuracy: 1e-6, "\(function) column \(j)")
            }
        }
    }

    func testGradients() throws {
        for function in functions {
            let x = InputLayer(name: "x", kind: .features, width: 3)
            let trunk = Dense(name: "trunk", units: 4, activation: .linear, input: x)
            let layer = PointwiseLayer(name: "p", function: function, input: trunk)
            let out = Dense(name: "out", units: 1, input: layer)
            let model = Model(inputs: [x], outputs: [out], maxBatch: 4)
            model.parameters.initialize(seed: 12)
            let dir = temporaryDirectory()
            var rng = SeededGenerator(seed: 13)
            try write((0..<12).map { _ in Float(rng.normal()) * 2 }, [4, 3], dir + "/x.npy")
            try write((0..<4).map { _ in Float(rng.normal()) }, [4, 1], dir + "/out.npy")
            try checkMSEGradient(model, data: dir, batch: [3, 0, 2, 1])
        }
    }

    func testRowNormalizations() throws {
        let x = InputLayer(name: "x", kind: .features, width: 3)
        let unit = RowNormalization(name: "u", kind: .unit, input: x, epsilon: 1e-12)
        let rms = RowNormalization(name: "r", kind: .rms, input: x, epsilon: 1e-6)
        let model = Model(inputs: [x], outputs: [unit, rms], maxBatch: 1)
        model.parameters.initialize(seed: 1)
        XCTAssertEqual(model.parameters.tensors.map(\.name), ["r/scale"])
        x.output.values.update(from: [3, 4, 0], count: 3)
        model.forward(batch: 1, training: false)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: unit.output.values, count: 3)), [0.6, 0.8, 0])
        let r = 1 / (25.0 / 3 + 1e-6).squareRoot()
        for (j, v) in [3.0, 4, 0].enumerated() { XCTAssertEqual(Double(rms.output.values[j]), v * r, accuracy: 1e-6) }

        for kind in [RowNormalization.Kind.unit, .rms] {
            let x = InputLayer(name: "x", kind: .features, width: 3)
            let trunk = Dense(name: "trunk", units: 4, activation: .linear, input: x)
            let layer = RowNormalization(name: "n", kind: kind, input: trunk, epsilon: kind == .unit ? 1e-12 : 1e-6)
            let out = Dense(name: "out", units: 2, input: layer)
            let model = Model(inputs: [x], outputs: [out], maxBatch: 4)
            model.parameters.initialize(seed: 21)
            if kind == .rms {  // a scale away from its ones, so its gradient and its use are both seen
                let s = model.parameters.value(model.parameters.view("n/scale")!)
                for j in 0..<4 { s[j] = 0.5 + Float(j) * 0.4 }
            }
            let dir = temporaryDirectory()
            var rng = SeededGenerator(seed: 22)
            try write((0..<12).map { _ in Float(rng.normal()) }, [4, 3], dir + "/x.npy")
            try write((0..<8).map { _ in Float(rng.normal()) }, [4, 2], dir + "/out.npy")
            try checkMSEGradient(model, data: dir, batch: [3, 0, 2, 1])
        }
    }
}

final class NoiseLayerTests: XCTestCase {
    /// 4000 rows of 5 standard-normal inputs through one noise layer in training; the outputs and factors.
    private func run(_ kind: NoiseLayer.Kind, first: Int = 0, rows: Int = 4000) -> (x: [Float], y: [Float]) {
        let x = InputLayer(name: "x", kind: .features, width: 5)
        let noise = NoiseLayer(name: "noise", kind: kind, input: x)
        let model = Model(inputs: [x], outputs: [noise], maxBatch: rows)
        model.dropoutKeys.seed = 7
        model.dropoutKeys.epoch = 2
        model.dropoutKeys.firstPosition = first
        // Inputs by the sample's position, so a sample is the same whatever rows come with it.
        let inputs = (0..<(rows * 5)).map { i -> Float in
            var g = SeededGenerator(seed: UInt64(first * 5 + i))
            return Float(g.normal())
        }
        x.output.values.update(from: inputs, count: inputs.count)
        model.forward(batch: rows, training: true)
        return (inputs, Array(UnsafeBufferPointer(start: noise.output.values, count: rows * 5)))
    }

    private func meanAndDeviation(_ v: [Float]) -> (Double, Double) {
        let mean = v.reduce(0.0) { $0 + Double($1) } / Double(v.count)
        let variance = v.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(v.count)
        return (mean, variance.squareRoot())
    }

    func testDrawsHaveKerasDistributions() {
        let (x, y) = run(.gaussianNoise(stddev: 0.5))
        let (m, s) = meanAndDeviation(zip(y, x).map { $0 - $1 })
        XCTAssertEqual(m, 0, accuracy: 0.02)
        XCTAssertEqual(s, 0.5, accuracy: 0.02)
        let (x2, y2) = run(.gaussianDropout(rate: 0.2))
        let factors = zip(y2, x2).filter { abs($0.1) > 0.5 }.map { $0.0 / $0.1 }
        let (m2, s2) = meanAndDeviation(factors)
        XCTAssertEqual(m2, 1, accuracy: 0.03)
        XCTAssertEqual(s2, (0.2 / 0.8).squareRoot(), accuracy: 0.03)
        // AlphaDropout keeps a standard normal input's mean and variance (SELU's fixed point).
        let (_, y3) = run(.alphaDropout(rate: 0.3))
        let (m3, s3) = meanAndDeviation(y3)
        XCTAssertEqual(m3, 0, accuracy: 0.04)
        XCTAssertEqual(s3, 1, accuracy: 0.04)
    }

    /// A sample's draws depend on its position in the epoch, not on the rows it is forwarded with.
    func testDrawsFollowTheSamplePosition() {
        for kind in [NoiseLayer.Kind.gaussianNoise(stddev: 1), .gaussianDropout(rate: 0.4), .alphaDropout(rate: 0.4)] {
            let whole = run(kind, first: 10, rows: 6).y
            let tail = run(kind, first: 13, rows: 3).y
            XCTAssertEqual(Array(whole[15...]), tail, "\(kind)")
            XCTAssertNotEqual(Array(whole[..<15]), Array(whole[15...]), "\(kind): other positions, other draws")
        }
    }

    func testGradientsInTraining() throws {
        for kind in [NoiseLayer.Kind.gaussianNoise(stddev: 0.4), .gaussianDropout(rate: 0.3), .alphaDropout(rate: 0.3)]
        {
            let x = InputLayer(name: "x", kind: .features, width: 3)
            let trunk = Dense(name: "trunk", units: 4, activation: .tanh, input: x)
            let noise = NoiseLayer(name: "noise", kind: kind, input: trunk)
            let out = Dense(name: "out", units: 2, input: noise)
            let model = Model(inputs: [x], outputs: [out], maxBatch: 4)
            model.parameters.initialize(seed: 51)
            let dir = temporaryDirectory()
            var rng = SeededGenerator(seed: 52)
            try write((0..<12).map { _ in Float(rng.normal()) }, [4, 3], dir + "/x.npy")
            try write((0..<8).map { _ in Float(rng.normal()) }, [4, 2], dir + "/out.npy")
            try checkMSEGradient(model, data: dir, batch: [3, 0, 2, 1])
        }
    }
}

final class FeatureNormalizationTests: XCTestCase {
    /// (x − mean)/max(√variance, ε), its inverse, and the gradient through both; the adapted
    /// statistics are untrained variables.
    func testValuesAndGradients() throws {
        let x = InputLayer(name: "x", kind: .features, width: 2)
        let given = FeatureNormalization(name: "g", input: x, invert: false, given: ([1, -2], [4, 0]))
        let inverse = FeatureNormalization(name: "i", input: x, invert: true, given: ([1], [9]))
        let adapted = FeatureNormalization(name: "a", input: x, invert: false, given: nil)
        let model = Model(inputs: [x], outputs: [given, inverse, adapted], maxBatch: 1)
        XCTAssertEqual(model.parameters.tensors.map(\.name), ["a/mean", "a/variance", "a/count"])
        XCTAssertTrue(model.parameters.tensors.allSatisfy { !$0.spec.trainable })
        model.parameters.initialize(seed: 1)
        let store = model.parameters
        store.value(store.view("a/mean")!).update(from: [0.5, 0.5], count: 2)
        store.value(store.view("a/variance")!).update(from: [0.25, 1], count: 2)
        x.output.values.update(from: [3, 2], count: 2)
        model.forward(batch: 1, training: false)
        XCTAssertEqual(given.output.values[0], 1)  // (3 − 1)/2
        XCTAssertEqual(given.output.values[1], (2 + 2) / 1e-7, accuracy: 1)  // variance 0: ÷ ε
        XCTAssertEqual(inverse.output.values[0], 1 + 3 * 3)
        XCTAssertEqual(adapted.output.values[0], (3 - 0.5) / 0.5)

        for invert in [false, true] {
            let x = InputLayer(name: "x", kind: .features, width: 3)
            let trunk = Dense(name: "trunk", units: 2, activation: .tanh, input: x)
            let norm = FeatureNormalization(name: "n", input: trunk, invert: invert, given: ([0.3, -0.2], [2, 0.5]))
            let out = Dense(name: "out", units: 1, input: norm)
            let model = Model(inputs: [x], outputs: [out], maxBatch: 3)
            model.parameters.initialize(seed: 61)
            let dir = temporaryDirectory()
            var rng = SeededGenerator(seed: 62)
            try write((0..<9).map { _ in Float(rng.normal()) }, [3, 3], dir + "/x.npy")
            try write((0..<3).map { _ in Float(rng.normal()) }, [3, 1], dir + "/out.npy")
            try checkMSEGradient(model, data: dir, batch: [2, 0, 1])
        }
    }
}

final class GroupNormalizationTests: XCTestCase {
    func testValuesAndGradients() throws {
        // One sample [T = 1, F = 4] in 2 groups: each group's two channels become −1 and 1 (ε tiny).
        let x = InputLayer(name: "x", kind: .features, width: 4)
        let layer = GroupNormalization(name: "g", input: x, groups: 2, epsilon: 1e-6, center: false, scale: false)
        let model = Model(inputs: [x], outputs: [layer], maxBatch: 1)
        x.output.values.update(from: [1, 3, -5, 5], count: 4)
        model.forward(batch: 1, training: false)
        for (j, want) in [-1, 1, -1, 1].enumerated() {
            XCTAssertEqual(layer.output.values[j], Float(want), accuracy: 1e-5)
        }

        for (shape, groups) in [([6], 3), ([4, 6], 2)] as [([Int], Int)] {
            let x = InputLayer(name: "x", kind: .features, shape: shape)
            let trunk = Dense(name: "trunk", units: 6, activation: .tanh, input: x)
            let norm = GroupNormalization(
                name: "n", input: trunk, groups: groups, gammaInitializer: .constant(1.3),
                betaInitializer: .constant(0.2))
            let out = Dense(
                name: "out", units: 2, input: Reshape(name: "flat", input: norm, shape: [norm.output.width]))
            let model = Model(inputs: [x], outputs: [out], maxBatch: 3)
            model.parameters.initialize(seed: 71)
            let dir = temporaryDirectory()
            var rng = SeededGenerator(seed: 72)
            let width = shape.reduce(1, *)
            try write((0..<(3 * width)).map { _ in Float(rng.normal()) }, [3] + shape, dir + "/x.npy")
            try write((0..<6).map { _ in Float(rng.normal()) }, [3, 2], dir + "/out.npy")
            try checkMSEGradient(model, data: dir, batch: [2, 0, 1])
        }
    }
}
