// Part of what SequenceLayerGradientTests.swift's header describes.

import Foundation
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

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
