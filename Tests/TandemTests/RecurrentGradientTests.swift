// Part of what SequenceLayerGradientTests.swift's header describes.

import Foundation
import TandemTestSupport
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class RecurrentGradientTests: XCTestCase {
    /// tokens (with zeros) → Embedding → every cell under a mask, go_backwards, recurrent
    /// dropout (its mask held fixed), zero_output_for_mask, without bias; and a float
    /// sequence through each cell plain, stacked, and a Bidirectional of each merge.
    func testEveryCellAndOption() throws {
        let tokens = InputLayer(name: "tokens", kind: .tokens, shape: [5])
        let mask = SequenceMask(name: "mask", tokens: tokens)
        let e = Embedding(name: "embedding", vocabulary: 4, dimension: 3, input: tokens)
        let cells: [Recurrent.Cell] = [
            .lstm, .gru(resetAfter: true), .gru(resetAfter: false), .simple(.tanh), .simple(.softsign),
        ]
        var outputs: [Layer] = []
        for (k, cell) in cells.enumerated() {
            let masked = Recurrent(
                name: "masked\(k)", cell: cell, units: 3, input: e, mask: mask, returnSequences: k % 2 == 0,
                goBackwards: k % 3 == 1, useBias: k != 2, zeroOutputForMask: k % 2 == 0, recurrentDropout: 0.3)
            outputs.append(
                masked.returnSequences
                    ? GlobalPooling(name: "pool\(k)", kind: .average, input: masked, mask: mask) : masked)
        }
        let x = InputLayer(name: "x", kind: .features, shape: [4, 2])
        for (k, cell) in cells.enumerated() {
            let first = Recurrent(
                name: "seq\(k)", cell: cell, units: 3, input: x, returnSequences: true, goBackwards: k % 2 == 1)
            let forward = Recurrent(name: "fwd\(k)", cell: cell, units: 2, input: first, returnSequences: k < 2)
            let backward = Recurrent(
                name: "bwd\(k)", cell: cell, units: 2, input: first, returnSequences: k < 2, goBackwards: true)
            let halves: [Layer] =
                k < 2 ? [forward, TimeReverse(name: "rev\(k)", input: backward)] : [forward, backward]
            let merged: Layer =
                k == 0
                ? Concatenate(name: "bi\(k)", inputs: halves)
                : Merge(name: "bi\(k)", kind: [MergeKind.add, .multiply, .average, .add][k - 1], inputs: halves)
            outputs.append(
                merged.output.shape.count == 2
                    ? Reshape(name: "flat\(k)", input: merged, shape: [merged.output.width]) : merged)
        }
        let model = Model(inputs: [tokens, x], outputs: outputs, maxBatch: 3)
        model.parameters.initialize(seed: 21)
        let dir = temporaryDirectory()
        var rng = SeededGenerator(seed: 22)
        let ids: [Int32] = [1, 0, 2, 3, 1, 0, 0, 3, 2, 1, 2, 3, 0, 1, 3]
        try ids.withUnsafeBufferPointer { try NPYArray.write(ints: $0, shape: [3, 5], to: dir + "/tokens.npy") }
        try write((0..<24).map { _ in Float(rng.normal()) }, [3, 4, 2], dir + "/x.npy")
        for o in outputs {
            try write(
                (0..<(3 * o.output.width)).map { _ in Float(rng.normal()) }, [3, o.output.width], dir + "/\(o.name).npy"
            )
        }
        let heads = outputs.map { Head(output: $0.name, loss: .meanSquaredError, weight: 1) }
        let step = try TrainingStep(
            model: model, heads: heads, optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
            communicator: LocalCommunicator(), regularizers: [])
        try checkTotalLossGradient(
            step, data: try Dataset(directory: dir, model: model, heads: heads), batch: [2, 0, 1])
    }

    /// Recurrent(.lstm) without options computes what the LSTM class computes.
    func testGeneralLSTMEqualsThePlainLSTM() throws {
        let x = InputLayer(name: "x", kind: .features, shape: [6, 3])
        let plain = LSTM(name: "l", units: 4, input: x, steps: 6, returnSequences: true)
        let general = Recurrent(name: "l@1", cell: .lstm, units: 4, input: x, returnSequences: true, weights: "l")
        let model = Model(inputs: [x], outputs: [plain, general], maxBatch: 5)
        model.parameters.initialize(seed: 3)
        var rng = SeededGenerator(seed: 4)
        for i in 0..<(5 * 18) { x.output.values[i] = Float(rng.normal()) }
        model.forward(batch: 5)
        for i in 0..<(5 * 24) { XCTAssertEqual(plain.output.values[i], general.output.values[i], accuracy: 1e-6) }
        // Both calls share the weights: dy on one call only, then on the other, gives the same gradient.
        let dy = (0..<(5 * 24)).map { _ in Float(rng.normal()) }
        let store = model.parameters
        func gradient(through layer: Layer) -> [Float] {
            store.zeroGradients()
            model.forward(batch: 5)
            for i in 0..<(5 * 24) { layer.output.gradients[i] = dy[i] }
            model.backward(batch: 5)
            return (0..<store.count).map { store.gradients[$0] }
        }
        let g = gradient(through: plain)
        let h = gradient(through: general)
        for i in 0..<store.count { XCTAssertEqual(h[i], g[i], accuracy: 1e-5 * max(1, abs(g[i]))) }
    }
}
