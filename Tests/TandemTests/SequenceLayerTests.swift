// The layers of sequence models (issue 13): gradient checks on small odd
// shapes — Dense on a sequence, LayerNormalization, every pooling and padding,
// Concatenate on the time axis, Flatten, Reshape, RepeatVector, and Dropout /
// SpatialDropout1D with their masks held fixed — and dropout's own contract:
// masks a pure function of (seed, layer, epoch, position, element), the kept
// fraction within binomial bounds, inverted scaling, nothing at inference.

import Foundation
@testable import Tandem
import XCTest

private func write(_ values: [Float], _ shape: [Int], _ path: String) throws {
    try values.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: shape, to: path) }
}

/// Random inputs and MSE targets for every output, then the total-loss gradient check.
func checkGradients(inputs: [InputLayer], outputs: [Layer], batch: Int = 3, seed: UInt64 = 5,
                    file: StaticString = #filePath, line: UInt = #line) throws {
    let model = Model(inputs: inputs, outputs: outputs, maxBatch: batch)
    model.parameters.initialize(seed: seed)
    let dir = temporaryDirectory()
    var rng = SeededGenerator(seed: seed + 1)
    for x in inputs {
        try write((0..<(batch * x.width)).map { _ in Float(rng.normal()) }, [batch] + x.output.shape, dir + "/\(x.name).npy")
    }
    for o in outputs {
        try write((0..<(batch * o.output.width)).map { _ in Float(rng.normal()) }, [batch, o.output.width], dir + "/\(o.name).npy")
    }
    let heads = outputs.enumerated().map { Head(output: $0.element.name, loss: .meanSquaredError, weight: 1 + Double($0.offset) / 3) }
    let step = try TrainingStep(model: model, heads: heads, optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
                                communicator: LocalCommunicator(), regularizers: [])
    try checkTotalLossGradient(step, data: try Dataset(directory: dir, model: model, heads: heads),
                               batch: (0..<Int32(batch)).reversed(), file: file, line: line)
}

final class SequenceLayerGradientTests: XCTestCase {
    func testDenseOnASequenceNormalisationPoolingAndReshaping() throws {
        let x = InputLayer(name: "x", kind: .features, shape: [7, 3])
        let perStep = Dense(name: "per_step", units: 4, activation: .tanh, input: x)
        XCTAssertEqual(perStep.output.shape, [7, 4])
        let norm = LayerNormalization(name: "norm", input: perStep, epsilon: 0.01)
        let maxPool = Pooling1D(name: "max", kind: .max, input: norm, pool: 2, stride: 2, same: false)        // [3, 4]
        let avgSame = Pooling1D(name: "avg", kind: .average, input: norm, pool: 3, stride: 2, same: true)     // [4, 4]
        let maxSame = Pooling1D(name: "max_same", kind: .max, input: perStep, pool: 2, stride: 1, same: true) // [7, 4]
        XCTAssertEqual([maxPool.outSteps, avgSame.outSteps, maxSame.outSteps], [3, 4, 7])
        let time = Concatenate(name: "time", inputs: [maxPool, avgSame], axis: 0)                             // [7, 4]
        XCTAssertEqual(time.output.shape, [7, 4])
        let side = InputLayer(name: "side", kind: .features, width: 2)
        let repeated = RepeatVector(name: "repeat", input: Dense(name: "side_proj", units: 4, input: side), count: 7)
        let features = Concatenate(name: "features", inputs: [time, repeated, maxSame])                       // [7, 12]
        XCTAssertEqual(features.output.shape, [7, 12])
        let dropped = Dropout(name: "spatial", input: features, rate: 0.3, spatial: true)
        let pooled = [GlobalPooling1D(name: "gap", kind: .average, input: dropped), GlobalPooling1D(name: "gmp", kind: .max, input: dropped)]
        let flat = Reshape(name: "flat", input: Dense(name: "narrow", units: 2, input: dropped), shape: [14])
        let joined = Concatenate(name: "joined", inputs: pooled + [Dropout(name: "drop", input: flat, rate: 0.25)])
        let regrid = Reshape(name: "grid", input: Dense(name: "widen", units: 6, input: joined), shape: [3, 2])
        let out1 = Dense(name: "out1", units: 2, activation: .sigmoid, input: LayerNormalization(name: "norm2", input: joined, center: false))
        let out2 = Dense(name: "out2", units: 1, input: GlobalPooling1D(name: "grid_pool", kind: .average, input: regrid))
        try checkGradients(inputs: [x, side], outputs: [out1, out2])
    }
}

final class DropoutTests: XCTestCase {
    /// x → Dropout; forward in training with the given keys, the output as an array.
    private func masks(rate: Float, spatial: Bool = false, rows: Int, first: Int, epoch: Int = 0, seed: UInt64 = 1,
                       shape: [Int] = [40], training: Bool = true) -> [Float] {
        let x = InputLayer(name: "x", kind: .features, shape: shape)
        let d = Dropout(name: "drop", input: x, rate: rate, spatial: spatial)
        let model = Model(inputs: [x], outputs: [d], maxBatch: rows)
        x.output.values.update(repeating: 2, count: rows * x.width)
        model.dropoutKeys.seed = seed; model.dropoutKeys.epoch = epoch; model.dropoutKeys.firstPosition = first
        model.forward(batch: rows, training: training)
        return Array(UnsafeBufferPointer(start: d.output.values, count: rows * x.width))
    }

    func testMasksDependOnTheSamplesPositionNotOnWhichRankOrBatchHoldsIt() {
        // Positions 0..<12 at once, and as three "ranks" of 4: the same masks.
        let whole = masks(rate: 0.4, rows: 12, first: 0)
        let parts = (0..<3).flatMap { masks(rate: 0.4, rows: 4, first: 4 * $0) }
        XCTAssertEqual(whole, parts)
        XCTAssertNotEqual(masks(rate: 0.4, rows: 4, first: 0), masks(rate: 0.4, rows: 4, first: 0, epoch: 1), "a new epoch, new masks")
        XCTAssertNotEqual(masks(rate: 0.4, rows: 4, first: 0), masks(rate: 0.4, rows: 4, first: 0, seed: 2), "another seed, new masks")
        XCTAssertNotEqual(Array(whole[0..<40]), Array(whole[40..<80]), "samples differ")
    }

    func testKeptFractionAndInvertedScaling() {
        let rate: Float = 0.3, n = 500 * 40
        let y = masks(rate: rate, rows: 500, first: 17)
        // Kept elements are x / (1 − rate); dropped ones 0.
        XCTAssertTrue(y.allSatisfy { $0 == 0 || abs($0 - 2 / (1 - rate)) < 1e-6 })
        let kept = Double(y.filter { $0 != 0 }.count), p = Double(1 - rate)
        // Within 5 standard deviations of the binomial mean.
        XCTAssertEqual(kept, Double(n) * p, accuracy: 5 * (Double(n) * p * (1 - p)).squareRoot())
        XCTAssertEqual(masks(rate: rate, rows: 6, first: 0, training: false), [Float](repeating: 2, count: 240), "inference: no dropout")
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
