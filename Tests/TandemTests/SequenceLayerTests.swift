// The layers of sequence models (issue 13): gradient checks on small odd
// shapes — Dense on a sequence, LayerNormalization, every pooling and padding,
// Concatenate on the time axis, Flatten, Reshape, RepeatVector, and Dropout /
// SpatialDropout1D with their masks held fixed — and dropout's own contract:
// masks a pure function of (seed, layer, epoch, position, element), the kept
// fraction within binomial bounds, inverted scaling, nothing at inference.

import Foundation
import XCTest

@testable import Tandem

private func write(_ values: [Float], _ shape: [Int], _ path: String) throws {
    try values.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: shape, to: path) }
}

/// Random inputs and MSE targets for every output, then the total-loss gradient check.
func checkGradients(
    inputs: [InputLayer], outputs: [Layer], batch: Int = 3, seed: UInt64 = 5,
    file: StaticString = #filePath, line: UInt = #line
) throws {
    let model = Model(inputs: inputs, outputs: outputs, maxBatch: batch)
    model.parameters.initialize(seed: seed)
    let dir = temporaryDirectory()
    var rng = SeededGenerator(seed: seed + 1)
    for x in inputs {
        try write(
            (0..<(batch * x.width)).map { _ in Float(rng.normal()) }, [batch] + x.output.shape, dir + "/\(x.name).npy")
    }
    for o in outputs {
        try write(
            (0..<(batch * o.output.width)).map { _ in Float(rng.normal()) }, [batch, o.output.width],
            dir + "/\(o.name).npy")
    }
    let heads = outputs.enumerated().map {
        Head(output: $0.element.name, loss: .meanSquaredError, weight: 1 + Double($0.offset) / 3)
    }
    let step = try TrainingStep(
        model: model, heads: heads, optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
        communicator: LocalCommunicator(), regularizers: [])
    try checkTotalLossGradient(
        step, data: try Dataset(directory: dir, model: model, heads: heads),
        batch: (0..<Int32(batch)).reversed(), file: file, line: line)
}

final class SequenceLayerGradientTests: XCTestCase {
    func testDenseOnASequenceNormalisationPoolingAndReshaping() throws {
        let x = InputLayer(name: "x", kind: .features, shape: [7, 3])
        let perStep = Dense(name: "per_step", units: 4, activation: .tanh, input: x)
        XCTAssertEqual(perStep.output.shape, [7, 4])
        let norm = LayerNormalization(name: "norm", input: perStep, epsilon: 0.01)
        let maxPool = Pooling1D(name: "max", kind: .max, input: norm, pool: 2, stride: 2, same: false)  // [3, 4]
        let avgSame = Pooling1D(name: "avg", kind: .average, input: norm, pool: 3, stride: 2, same: true)  // [4, 4]
        let maxSame = Pooling1D(name: "max_same", kind: .max, input: perStep, pool: 2, stride: 1, same: true)  // [7, 4]
        XCTAssertEqual([maxPool.outSteps, avgSame.outSteps, maxSame.outSteps], [3, 4, 7])
        let time = Concatenate(name: "time", inputs: [maxPool, avgSame], axis: 0)  // [7, 4]
        XCTAssertEqual(time.output.shape, [7, 4])
        let side = InputLayer(name: "side", kind: .features, width: 2)
        let repeated = RepeatVector(name: "repeat", input: Dense(name: "side_proj", units: 4, input: side), count: 7)
        let features = Concatenate(name: "features", inputs: [time, repeated, maxSame])  // [7, 12]
        XCTAssertEqual(features.output.shape, [7, 12])
        let dropped = Dropout(name: "spatial", input: features, rate: 0.3, spatial: true)
        let pooled = [
            GlobalPooling1D(name: "gap", kind: .average, input: dropped),
            GlobalPooling1D(name: "gmp", kind: .max, input: dropped),
        ]
        let flat = Reshape(name: "flat", input: Dense(name: "narrow", units: 2, input: dropped), shape: [14])
        let joined = Concatenate(name: "joined", inputs: pooled + [Dropout(name: "drop", input: flat, rate: 0.25)])
        let regrid = Reshape(name: "grid", input: Dense(name: "widen", units: 6, input: joined), shape: [3, 2])
        let out1 = Dense(
            name: "out1", units: 2, activation: .sigmoid,
            input: LayerNormalization(name: "norm2", input: joined, center: false))
        let out2 = Dense(
            name: "out2", units: 1, input: GlobalPooling1D(name: "grid_pool", kind: .average, input: regrid))
        try checkGradients(inputs: [x, side], outputs: [out1, out2])
    }
}

final class ConvolutionAndBatchNormTests: XCTestCase {
    func testConv1DEveryPaddingStrideAndDilation() throws {
        let x = InputLayer(name: "x", kind: .features, shape: [9, 2])
        let same = Conv1D(
            name: "same", filters: 3, kernelSize: 4, input: x, stride: 2, padding: .same, activation: .tanh)
        let causal = Conv1D(
            name: "causal", filters: 2, kernelSize: 3, input: same, dilation: 2, padding: .causal, activation: .sigmoid)
        let valid = Conv1D(name: "valid", filters: 2, kernelSize: 2, input: x, stride: 3, useBias: false)
        let dilated = Conv1D(name: "dilated", filters: 2, kernelSize: 3, input: x, dilation: 3, padding: .same)
        XCTAssertEqual([same.outSteps, causal.outSteps, valid.outSteps, dilated.outSteps], [5, 5, 3, 9])
        let outputs = [causal, valid, dilated].map {
            Reshape(name: "flat_\($0.name)", input: $0, shape: [$0.output.width])
        }
        try checkGradients(inputs: [x], outputs: outputs)
    }

    func testBatchNormalizationOnFeaturesAndSequences() throws {
        // Training uses the batch's statistics, so the check differentiates through them too.
        let x = InputLayer(name: "x", kind: .features, width: 4)
        let s = InputLayer(name: "s", kind: .features, shape: [3, 2])
        let bn = BatchNormalization(name: "bn", input: Dense(name: "d", units: 3, input: x), epsilon: 0.01)
        let bnSeq = BatchNormalization(
            name: "bn_seq", input: Conv1D(name: "c", filters: 2, kernelSize: 2, input: s), center: false)
        let out1 = Dense(name: "out1", units: 2, activation: .tanh, input: bn)
        let out2 = Dense(name: "out2", units: 1, input: Reshape(name: "flat", input: bnSeq, shape: [4]))
        try checkGradients(inputs: [x, s], outputs: [out1, out2], batch: 5)
    }

    func testBatchNormalizationMovingStatisticsAndInference() {
        let x = InputLayer(name: "x", kind: .features, width: 2)
        let bn = BatchNormalization(name: "bn", input: x, momentum: 0.75, epsilon: 0.5)
        let model = Model(inputs: [x], outputs: [bn], maxBatch: 4)
        model.parameters.initialize(seed: 1)
        let values: [Float] = [1, 10, 2, 20, 3, 30, 6, 0]  // channel means 3 and 15, biased variances 3.5 and 125
        for (i, v) in values.enumerated() { x.output.values[i] = v }
        model.forward(batch: 4, training: true)
        let mean = model.parameters.value(model.parameters.view("bn/moving_mean")!)
        let variance = model.parameters.value(model.parameters.view("bn/moving_variance")!)
        XCTAssertEqual([mean[0], mean[1]], [0.75, 3.75])  // 0·0.75 + μ·0.25
        XCTAssertEqual(variance[0], 0.75 + 3.5 * 0.25, accuracy: 1e-6)
        XCTAssertEqual(variance[1], 0.75 + 125 * 0.25, accuracy: 1e-5)
        XCTAssertEqual(bn.output.values[0], (1 - 3) / (3.5 + 0.5).squareRoot(), accuracy: 1e-6)
        model.forward(batch: 4, training: false)  // the moving statistics, and no update
        XCTAssertEqual(bn.output.values[1], (10 - 3.75) / (variance[1] + 0.5).squareRoot(), accuracy: 1e-6)
        XCTAssertEqual(mean[1], 3.75)
    }
}

final class DropoutTests: XCTestCase {
    /// x → Dropout; forward in training with the given keys, the output as an array.
    private func masks(
        rate: Float, spatial: Bool = false, rows: Int, first: Int, epoch: Int = 0, seed: UInt64 = 1,
        shape: [Int] = [40], training: Bool = true
    ) -> [Float] {
        let x = InputLayer(name: "x", kind: .features, shape: shape)
        let d = Dropout(name: "drop", input: x, rate: rate, spatial: spatial)
        let model = Model(inputs: [x], outputs: [d], maxBatch: rows)
        x.output.values.update(repeating: 2, count: rows * x.width)
        model.dropoutKeys.seed = seed
        model.dropoutKeys.epoch = epoch
        model.dropoutKeys.firstPosition = first
        model.forward(batch: rows, training: training)
        return Array(UnsafeBufferPointer(start: d.output.values, count: rows * x.width))
    }

    func testMasksDependOnTheSamplesPositionNotOnWhichRankOrBatchHoldsIt() {
        // Positions 0..<12 at once, and as three "ranks" of 4: the same masks.
        let whole = masks(rate: 0.4, rows: 12, first: 0)
        let parts = (0..<3).flatMap { masks(rate: 0.4, rows: 4, first: 4 * $0) }
        XCTAssertEqual(whole, parts)
        XCTAssertNotEqual(
            masks(rate: 0.4, rows: 4, first: 0), masks(rate: 0.4, rows: 4, first: 0, epoch: 1), "a new epoch, new masks"
        )
        XCTAssertNotEqual(
            masks(rate: 0.4, rows: 4, first: 0), masks(rate: 0.4, rows: 4, first: 0, seed: 2), "another seed, new masks"
        )
        XCTAssertNotEqual(Array(whole[0..<40]), Array(whole[40..<80]), "samples differ")
    }

    func testKeptFractionAndInvertedScaling() {
        let rate: Float = 0.3
        let n = 500 * 40
        let y = masks(rate: rate, rows: 500, first: 17)
        // Kept elements are x / (1 − rate); dropped ones 0.
        XCTAssertTrue(y.allSatisfy { $0 == 0 || abs($0 - 2 / (1 - rate)) < 1e-6 })
        let kept = Double(y.filter { $0 != 0 }.count)
        let p = Double(1 - rate)
        // Within 5 standard deviations of the binomial mean.
        XCTAssertEqual(kept, Double(n) * p, accuracy: 5 * (Double(n) * p * (1 - p)).squareRoot())
        XCTAssertEqual(
            masks(rate: rate, rows: 6, first: 0, training: false), [Float](repeating: 2, count: 240),
            "inference: no dropout")
        XCTAssertEqual(masks(rate: 0, rows: 6, first: 0), [Float](repeating: 2, count: 240), "rate 0 is the identity")
    }

    func testSpatialDropoutDropsWholeChannels() {
        let y = masks(rate: 0.5, spatial: true, rows: 30, first: 0, shape: [5, 8])
        var dropped = 0
        for b in 0..<30 {
            for c in 0..<8 {
                let column = (0..<5).map { y[(b * 5 + $0) * 8 + c] }
                XCTAssertTrue(column.allSatisfy { $0 == column[0] }, "one draw per sample and channel")
                if column[0] == 0 { dropped += 1 }
            }
        }
        XCTAssertEqual(Double(dropped), 120, accuracy: 5 * (240 * 0.25).squareRoot())
    }
}

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
                    ? GlobalPooling1D(name: "pool\(k)", kind: .average, input: masked, mask: mask) : masked)
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
