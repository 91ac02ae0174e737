// Part of what NewLayerGradientTests.swift's header describes.

import Foundation
import TandemTestSupport
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class FusionTests: XCTestCase {
    /// The fused Embedding → LSTM (over the batch's distinct tokens) against the plain pair:
    /// the same losses and gradients, up to float summation order.
    func testFusedEmbeddingRecurrentEqualsThePlainPair() throws {
        let config = tinyConfig()
        let dir = temporaryDirectory()
        try writeTinyData(dir, samples: 9, config: config, seed: 5, sampleWeights: true)
        let heads = Head.headlineDefaults
        var results: [(loss: Double, gradients: [String: [Float]])] = []
        for fuse in [true, false] {
            let model = try ModelDescription.headline(config).build(maxBatch: 9, fuse: fuse)
            XCTAssertEqual(model.layers.compactMap { $0 as? Embedding }.first!.fused, fuse)
            // The fusion pass puts ONE explicit layer in the schedule in place of the pair; the graph keeps both.
            XCTAssertEqual(model.schedule.filter { $0 is FusedEmbeddingRecurrent }.count, fuse ? 1 : 0)
            XCTAssertEqual(model.schedule.contains { $0 is Embedding || $0 is LSTM }, !fuse)
            XCTAssertEqual(model.layers.count, model.schedule.count + (fuse ? 1 : 0))
            model.parameters.initialize(seed: 21)
            let step = try TrainingStep(
                model: model, heads: heads,
                optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
                communicator: LocalCommunicator(), regularizers: [])
            let data = try Dataset(directory: dir, model: model, heads: heads)
            let figures = try [Int32]([0, 3, 5, 7, 2, 8, 1]).withUnsafeBufferPointer {
                try step.computeGradient(globalBatch: $0, data: data)
            }
            let store = model.parameters
            results.append(
                (
                    figures.total,
                    Dictionary(
                        uniqueKeysWithValues: store.tensors.map { v in
                            (v.name, (0..<v.count).map { store.gradient(v)[$0] })
                        })
                ))
        }
        assertClose(results[0].loss, results[1].loss, atol: 1e-7, rtol: 1e-6, "total loss")
        XCTAssertEqual(Set(results[0].gradients.keys), Set(results[1].gradients.keys))
        for (name, fused) in results[0].gradients {
            // Float32 sums over the same terms in another order.
            assertClose(fused, results[1].gradients[name]!.map(Double.init), atol: 1e-6, rtol: 1e-4, name)
            XCTAssertTrue(fused.contains { $0 != 0 }, "\(name) gets gradient")
        }
    }

    /// The same for GRU (both resets), SimpleRNN and the general LSTM, with a mask and go_backwards.
    func testFusedEmbeddingGRUAndSimpleRNNEqualThePlainPair() throws {
        let dir = temporaryDirectory()
        var rng = SeededGenerator(seed: 31)
        let ids = (0..<(8 * 6)).map { _ in Int32(rng.below(7)) }
        try ids.withUnsafeBufferPointer { try NPYArray.write(ints: $0, shape: [8, 6], to: dir + "/tokens.npy") }
        let targets = (0..<8).map { _ in Float(rng.below(2)) }
        try targets.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [8, 1], to: dir + "/out.npy") }
        let heads = [Head(output: "out", loss: .binaryCrossentropy, weight: 1)]
        let cells: [Recurrent.Cell] = [.gru(resetAfter: true), .gru(resetAfter: false), .simple(.tanh), .lstm]
        for (k, cell) in cells.enumerated() {
            var results: [(loss: Double, gradients: [String: [Float]])] = []
            for fuse in [true, false] {
                let tokens = InputLayer(name: "tokens", kind: .tokens, shape: [6])
                let e = Embedding(name: "embedding", vocabulary: 7, dimension: 5, input: tokens)
                let r = Recurrent(
                    name: "rnn", cell: cell, units: 3, input: e,
                    mask: k % 2 == 0 ? SequenceMask(name: "mask", tokens: tokens) : nil,
                    goBackwards: k >= 2)
                let model = Model(
                    inputs: [tokens], outputs: [Dense(name: "out", units: 1, activation: .sigmoid, input: r)],
                    maxBatch: 8, fuse: fuse)
                XCTAssertEqual(model.schedule.filter { $0 is FusedEmbeddingRecurrent }.count, fuse ? 1 : 0, "\(cell)")
                model.parameters.initialize(seed: 32)
                let step = try TrainingStep(
                    model: model, heads: heads,
                    optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
                    communicator: LocalCommunicator(), regularizers: [])
                let data = try Dataset(directory: dir, model: model, heads: heads)
                let figures = try [Int32]([4, 0, 7, 2, 5, 1]).withUnsafeBufferPointer {
                    try step.computeGradient(globalBatch: $0, data: data)
                }
                let store = model.parameters
                results.append(
                    (
                        figures.total,
                        Dictionary(
                            uniqueKeysWithValues: store.tensors.map { v in
                                (v.name, (0..<v.count).map { store.gradient(v)[$0] })
                            })
                    ))
            }
            assertClose(results[0].loss, results[1].loss, atol: 1e-7, rtol: 1e-6, "\(cell): total loss")
            for (name, fused) in results[0].gradients {
                assertClose(
                    fused, results[1].gradients[name]!.map(Double.init), atol: 1e-6, rtol: 1e-4, "\(cell): \(name)")
                XCTAssertTrue(fused.contains { $0 != 0 }, "\(cell): \(name) gets gradient")
            }
        }
    }

    /// BatchNormalization → ReLU / ReLU6 paired (the normalisation writes the ReLU's output and takes its
    /// backward) against the plain pair: the same bits — outputs, every parameter gradient, the input's
    /// gradient, the moving statistics — over training steps, an inference forward, and with the
    /// normalisation frozen (inference statistics in training); a normalisation read twice is not paired.
    func testBatchNormalizationWithItsReLUEqualsThePlainPair() {
        func build(_ top: Activation, fuse: Bool, frozen: Bool) -> (Model, InputLayer, [BatchNormalization]) {
            let x = InputLayer(name: "x", kind: .features, shape: [4, 3, 5])
            x.wantsGradient = true
            let g = WindowGeometry.forward(image: (4, 3), kernel: (3, 3), stride: (1, 1), same: true)
            let conv = Conv2D(
                name: "conv", input: x, geometry: g, filters: 6, groups: 1, activation: .linear,
                kernelShape: [3, 3, 5, 6], outputShape: [4, 3, 6])
            let bn = BatchNormalization(name: "bn", input: conv, momentum: 0.9, epsilon: 0.01)
            let relu = ActivationLayer(name: "relu", activation: top, input: bn)
            let twice = BatchNormalization(name: "twice", input: relu)  // read by the ReLU and the Add
            let relu2 = ActivationLayer(name: "relu2", activation: top, input: twice)
            let add = Merge(name: "add", kind: .add, inputs: [relu2, twice])
            let flat = Reshape(name: "flat", input: add, shape: [add.output.width])
            bn.frozen = frozen
            let model = Model(inputs: [x], outputs: [flat], maxBatch: 5, fuse: fuse)
            model.parameters.initialize(seed: 4)
            // Spread γ and β so some outputs pass 6 and some stay under 0.
            let p = model.parameters
            for name in ["bn/gamma", "bn/beta", "twice/gamma"] {
                let v = p.view(name)!
                for i in 0..<v.count { p.value(v)[i] = name.hasSuffix("beta") ? Float(i) - 2 : 4 + Float(i % 3) }
            }
            return (model, x, [bn, twice])
        }
        for top in [Activation.relu, .relu6] {
            for frozen in [false, true] {
                var runs: [[Float]] = []
                for fuse in [true, false] {
                    let (model, x, norms) = build(top, fuse: fuse, frozen: frozen)
                    XCTAssertEqual(norms[0].fused != nil, fuse)
                    XCTAssertNil(norms[1].fused, "a normalisation read twice is not paired")
                    var rng = SeededGenerator(seed: 8)
                    var seen: [Float] = []
                    let out = model.outputs[0]
                    for (batch, training) in [(5, true), (3, true), (4, false)] {
                        for i in 0..<(batch * x.width) { x.output.values[i] = Float(rng.normal()) }
                        model.forward(batch: batch, training: training)
                        seen += Array(UnsafeBufferPointer(start: out.output.values, count: batch * out.output.width))
                        guard training else { continue }
                        for i in 0..<(batch * out.output.width) { out.output.gradients[i] = Float(rng.normal()) }
                        model.parameters.zeroGradients()
                        model.backward(batch: batch)
                        let p = model.parameters
                        seen += Array(UnsafeBufferPointer(start: p.gradients, count: p.count))
                        seen += Array(UnsafeBufferPointer(start: x.output.gradients, count: batch * x.width))
                    }
                    let p = model.parameters
                    seen += Array(UnsafeBufferPointer(start: p.values, count: p.count))  // the moving statistics
                    runs.append(seen)
                }
                XCTAssertEqual(runs[0].map(\.bitPattern), runs[1].map(\.bitPattern), "\(top), frozen \(frozen)")
                XCTAssertTrue(runs[0].contains { $0 == 0 } && runs[0].contains { $0 == 6 } || top == .relu)
            }
        }
    }
}
