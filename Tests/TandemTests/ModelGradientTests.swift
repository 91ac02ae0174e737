// Part of what LayerGradientTests.swift's header describes.

import Foundation
import TandemTestSupport
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class ModelGradientTests: XCTestCase {
    let heads = [
        Head(output: "main_output", loss: .binaryCrossentropy, weight: 0.7, classWeights: [1: 2.5]),
        Head(output: "aux_output", loss: .binaryCrossentropy, weight: 0.3),
    ]

    func testHeadlineWeightedTotalLossGradient() throws {
        let (step, data, _) = try tinyHeadline(
            heads: heads, l2: ["dense": 0.01, "lstm": 0.02, "embedding": 0.005], batch: 8)
        try checkTotalLossGradient(step, data: data, batch: [0, 3, 5, 7, 2, 8, 1, 4], eps: eps, atol: atol, rtol: rtol)
    }

    func testMSEAndSoftmaxCrossEntropyGradients() throws {
        // A small graph with a softmax/CCE head and an MSE head on a shared Dense trunk.
        let x = InputLayer(name: "x", kind: .features, width: 3)
        let trunk = Dense(name: "trunk", units: 4, activation: .tanh, input: x)
        let soft = Dense(name: "soft", units: 3, activation: .softmax, input: trunk)
        let reg = Dense(name: "reg", units: 2, activation: .linear, input: trunk)
        let model = Model(inputs: [x], outputs: [soft, reg], maxBatch: 5)
        let heads = [
            Head(output: "soft", loss: .categoricalCrossentropy, weight: 1.3, classWeights: [2: 0.5]),
            Head(output: "reg", loss: .meanSquaredError, weight: 0.4),
        ]
        let dir = temporaryDirectory()
        var rng = SeededGenerator(seed: 3)
        let xs = (0..<15).map { _ in Float(rng.normal()) }
        let soft_t = (0..<5).flatMap { i -> [Float] in (0..<3).map { $0 == i % 3 ? 1 : 0 } }
        let reg_t = (0..<10).map { _ in Float(rng.normal()) }
        try xs.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [5, 3], to: dir + "/x.npy") }
        try soft_t.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [5, 3], to: dir + "/soft.npy") }
        try reg_t.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [5, 2], to: dir + "/reg.npy") }
        model.parameters.initialize(seed: 8)
        let step = try TrainingStep(
            model: model, heads: heads, optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
            communicator: LocalCommunicator(), l2: ["trunk": 0.1])
        let data = try Dataset(directory: dir, model: model, heads: heads)
        let batch: [Int32] = [4, 0, 2, 1, 3]
        func total() throws -> Double {
            try batch.withUnsafeBufferPointer { try step.computeGradient(globalBatch: $0, data: data).total }
        }
        _ = try total()
        let store = model.parameters
        let analytic = (0..<store.count).map { store.gradients[$0] }
        for i in 0..<store.count {
            let saved = store.values[i]
            store.values[i] = saved + eps
            let up = try total()
            store.values[i] = saved - eps
            let down = try total()
            store.values[i] = saved
            assertClose(Double(analytic[i]), (up - down) / Double(2 * eps), atol: atol, rtol: rtol, "parameter \(i)")
        }
    }

    /// For each parameter tensor: does it get any non-zero gradient with these loss weights?
    private func tensorsWithGradient(main: Double, aux: Double) throws -> [String: Bool] {
        let heads = [
            Head(output: "main_output", loss: .binaryCrossentropy, weight: main),
            Head(output: "aux_output", loss: .binaryCrossentropy, weight: aux),
        ]
        let (step, data, _) = try tinyHeadline(heads: heads, l2: [:], batch: 9)
        let batch: [Int32] = Array(0..<9)
        _ = try batch.withUnsafeBufferPointer { try step.computeGradient(globalBatch: $0, data: data) }
        let store = step.model.parameters
        return Dictionary(
            uniqueKeysWithValues: store.tensors.map { view in
                let g = store.gradient(view)
                return (view.name, (0..<view.count).contains { g[$0] != 0 })
            })
    }

    func testMainWeightZeroLeavesOnlyTheAuxPath() throws {
        for (name, nonzero) in try tensorsWithGradient(main: 0, aux: 0.2) {
            if name.hasPrefix("dense") || name.hasPrefix("main_output") {
                XCTAssertFalse(nonzero, "\(name) must get exactly zero gradient")
            } else {
                XCTAssertTrue(nonzero, "\(name) (trunk or aux head) must get gradient")
            }
        }
    }

    func testAuxWeightZeroGivesTheAuxHeadNoGradient() throws {
        for (name, nonzero) in try tensorsWithGradient(main: 1, aux: 0) {
            XCTAssertEqual(nonzero, !name.hasPrefix("aux_output"), name)
        }
    }

    func testAuxLossMovesTheTrunk() throws {
        // The aux head's loss alone changes the embedding and LSTM gradients.
        let only = { (main: Double, aux: Double) -> [Float] in
            let heads = [
                Head(output: "main_output", loss: .binaryCrossentropy, weight: main),
                Head(output: "aux_output", loss: .binaryCrossentropy, weight: aux),
            ]
            let (step, data, _) = try! tinyHeadline(heads: heads, l2: [:], batch: 9)
            let batch: [Int32] = Array(0..<9)
            _ = try! batch.withUnsafeBufferPointer { try step.computeGradient(globalBatch: $0, data: data) }
            let v = step.model.parameters.view("lstm/kernel")!
            return (0..<v.count).map { step.model.parameters.gradients[v.offset + $0] }
        }
        let both = only(1, 0.2)
        let mainOnly = only(1, 0)
        let auxOnly = only(0, 0.2)
        XCTAssertNotEqual(both, mainOnly)
        for i in both.indices {
            assertClose(
                Double(both[i]), Double(mainOnly[i]) + Double(auxOnly[i]), atol: 1e-7, rtol: 1e-5, "linearity at \(i)")
        }
    }

    func testHeadLossIsKerasSumOverBatchSize() throws {
        let (step, data, _) = try tinyHeadline(heads: heads, l2: [:], batch: 9)
        let batch: [Int32] = [8, 1, 2, 6, 4]
        let figures = try batch.withUnsafeBufferPointer { try step.computeGradient(globalBatch: $0, data: data) }
        // Recompute main_output's loss by hand from the predicted probabilities.
        let p = step.model.output(named: "main_output")!.output.values!
        let weights = try XCTUnwrap(try data.files.array("main_output.sample_weight"))
        var expected = 0.0
        for (i, sample) in batch.enumerated() {
            var t: Float = 0
            var w: Float = 0
            data.targets[0].readFloats(row: Int(sample), into: &t)
            weights.readFloats(row: Int(sample), into: &w)
            let classWeight = t >= 0.5 ? 2.5 : 1.0
            let pi = Double(p[i])
            expected += Double(w) * classWeight * -(Double(t) * log(pi) + (1 - Double(t)) * log(1 - pi))
        }
        expected /= Double(batch.count)
        // log of a Float32 probability: relative error ~1e-6.
        assertClose(figures.headLossSums[0] / Double(batch.count), expected, atol: 1e-6, rtol: 1e-5)
    }
}
