// Part of what SequenceLayerGradientTests.swift's header describes.

import Foundation
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

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

    /// noise_shape (None, 1, 1, 1) (EfficientNet's stochastic depth): one draw per sample for all of it; and the
    /// spatial form on images, one per sample and channel — each drawn as the plain form's first elements.
    func testNoiseShapesShareDrawsAcrossTheirBroadcastAxes() {
        let rows = 40
        let x = InputLayer(name: "x", kind: .features, shape: [3, 2, 4])
        let whole = Dropout(name: "drop", input: x, rate: 0.5, noise: [1, 1, 1])
        let channels = Dropout(name: "spatial", input: x, rate: 0.5, spatial: true)
        let model = Model(inputs: [x], outputs: [whole, channels], maxBatch: rows)
        x.output.values.update(repeating: 2, count: rows * 24)
        model.dropoutKeys.seed = 3
        model.forward(batch: rows, training: true)
        var droppedSamples = 0
        for b in 0..<rows {
            let sample = (0..<24).map { whole.output.values[b * 24 + $0] }
            XCTAssertTrue(sample.allSatisfy { $0 == sample[0] }, "one draw per sample")
            if sample[0] == 0 { droppedSamples += 1 }
            for c in 0..<4 {
                let cells = (0..<6).map { channels.output.values[b * 24 + $0 * 4 + c] }
                XCTAssertTrue(cells.allSatisfy { $0 == cells[0] }, "one draw per sample and channel")
            }
        }
        XCTAssertEqual(Double(droppedSamples), 20, accuracy: 5 * (40 * 0.25).squareRoot())
        XCTAssertGreaterThan(droppedSamples, 0)
    }
}
