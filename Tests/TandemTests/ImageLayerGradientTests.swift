// Numerical gradient checks of the image layers (docs/SPEC.md §14): every weight's and every input
// value's gradient of the weighted total loss against central differences, as SequenceLayerGradientTests.swift
// describes. Each layer runs at the arguments that change its arithmetic: padding, strides, dilation, groups,
// depth multipliers, output padding, resampling up and down.

import Foundation
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class ImageLayerGradientTests: XCTestCase {
    private func flat(_ layer: Layer) -> Layer {
        Reshape(name: "flat_\(layer.name)", input: layer, shape: [layer.output.width])
    }

    private func conv(
        _ name: String, _ input: Layer, filters: Int, kernel: (Int, Int), stride: (Int, Int) = (1, 1),
        dilation: (Int, Int) = (1, 1), same: Bool, groups: Int = 1, activation: Activation = .linear,
        kernels: ConvolutionKernels = .preferred
    ) -> Conv2D {
        let s = input.output.shape
        let g = WindowGeometry.forward(
            image: (s[0], s[1]), kernel: kernel, stride: stride, dilation: dilation, same: same)
        return Conv2D(
            name: name, input: input, geometry: g, filters: filters, groups: groups, activation: activation,
            kernelShape: [kernel.0, kernel.1, s[2] / groups, filters],
            outputShape: [g.gridHeight, g.gridWidth, filters], kernels: kernels)
    }

    func testWindowGeometryMatchesXLAPadding() {
        // "same" on 7 with kernel 3, stride 2: 4 outputs, (3·2 + 3 − 7) = 2 cells of padding, 1 before.
        let g = WindowGeometry.forward(image: (7, 6), kernel: (3, 2), stride: (2, 2), same: true)
        XCTAssertEqual([g.gridHeight, g.gridWidth, g.top, g.left], [4, 3, 1, 0])
        let v = WindowGeometry.forward(image: (7, 6), kernel: (3, 3), stride: (1, 2), dilation: (2, 1), same: false)
        XCTAssertEqual([v.gridHeight, v.gridWidth, v.top, v.left], [3, 2, 0, 0])
    }

    func testConv2DPaddingStridesDilationAndGroups() throws {
        // Both kernels: oneDNN's (the default) and the plain im2col + GEMM path.
        for kernels in [ConvolutionKernels.oneDNN, .im2col] {
            let x = InputLayer(name: "x", kind: .features, shape: [5, 6, 4])
            let same = conv(
                "same", x, filters: 4, kernel: (3, 2), stride: (2, 2), same: true, activation: .tanh, kernels: kernels)
            let grouped = conv(
                "grouped", same, filters: 6, kernel: (2, 2), same: true, groups: 2, activation: .sigmoid,
                kernels: kernels)
            let dilated = conv(
                "dilated", x, filters: 2, kernel: (2, 3), dilation: (2, 2), same: false, kernels: kernels)
            XCTAssertEqual(same.output.shape, [3, 3, 4])
            XCTAssertEqual(dilated.output.shape, [3, 2, 2])
            try checkGradients(inputs: [x], outputs: [flat(grouped), flat(dilated)])
        }
    }

    func testTransposedConvolutionsEveryPadding() throws {
        let x = InputLayer(name: "x", kind: .features, shape: [3, 2, 3])
        func transposed(_ name: String, _ input: Layer, kernel: Int, stride: Int, same: Bool, padding: Int? = nil)
            -> ConvTranspose
        {
            let s = input.output.shape
            let y = LayerRegistry.transposedAxis(
                length: s[0], kernel: kernel, stride: stride, dilation: 1, same: same, outputPadding: padding)
            let w = LayerRegistry.transposedAxis(
                length: s[1], kernel: kernel, stride: stride, dilation: 1, same: same, outputPadding: padding)
            let g = WindowGeometry(
                image: (y.out, w.out), kernel: (kernel, kernel), stride: (stride, stride), padding: (y.shift, w.shift),
                grid: (s[0], s[1]))
            return ConvTranspose(
                name: name, input: input, geometry: g, filters: 2, activation: .tanh,
                kernelShape: [kernel, kernel, 2, s[2]], outputShape: [y.out, w.out, 2])
        }
        let valid = transposed("valid", x, kernel: 3, stride: 2, same: false)
        let same = transposed("same", x, kernel: 3, stride: 2, same: true)
        let wide = transposed("wide", x, kernel: 2, stride: 3, same: false, padding: 1)
        XCTAssertEqual(valid.output.shape, [7, 5, 2])  // (n − 1)·2 + 3
        XCTAssertEqual(same.output.shape, [6, 4, 2])  // n·2
        XCTAssertEqual(wide.output.shape, [9, 6, 2])  // (n − 1)·3 + 2 + 1, as Keras computes it
        try checkGradients(inputs: [x], outputs: [flat(valid), flat(same), flat(wide)])
    }

    func testDepthwiseAndSeparableConvolutions() throws {
        // Both kernels: oneDNN's (the default) and the plain direct loop.
        for kernels in [ConvolutionKernels.oneDNN, .im2col] {
            let x = InputLayer(name: "x", kind: .features, shape: [5, 4, 3])
            let g = WindowGeometry.forward(image: (5, 4), kernel: (3, 2), stride: (2, 1), same: true)
            let depthwise = DepthwiseConv(
                name: "dw", input: x, geometry: g, multiplier: 2, activation: .tanh, kernels: kernels)
            let single = DepthwiseConv(
                name: "dw1", input: x, geometry: .forward(image: (5, 4), kernel: (2, 2), stride: (1, 1), same: false),
                multiplier: 1, useBias: false, kernels: kernels)
            let separable = DepthwiseConv(
                name: "sep", input: depthwise,
                geometry: .forward(image: (3, 4), kernel: (2, 2), stride: (1, 1), same: true),
                multiplier: 2, pointwise: 3, activation: .sigmoid, kernels: kernels)
            XCTAssertEqual(depthwise.output.shape, [3, 4, 6])
            XCTAssertEqual(separable.output.shape, [3, 4, 3])
            try checkGradients(inputs: [x], outputs: [flat(separable), flat(single)])
        }
    }

    func testPooling2DMaxAndAverageEveryPadding() throws {
        let x = InputLayer(name: "x", kind: .features, shape: [5, 5, 2])
        let c = conv("c", x, filters: 2, kernel: (1, 1), same: true)
        let maxSame = Pooling2D(
            name: "max", kind: .max, input: c,
            geometry: .forward(image: (5, 5), kernel: (2, 2), stride: (2, 2), same: true))
        let averageSame = Pooling2D(
            name: "avg", kind: .average, input: c,
            geometry: .forward(image: (5, 5), kernel: (3, 2), stride: (2, 1), same: true))
        let averageValid = Pooling2D(
            name: "avg_valid", kind: .average, input: c,
            geometry: .forward(image: (5, 5), kernel: (2, 3), stride: (2, 2), same: false))
        XCTAssertEqual(maxSame.output.shape, [3, 3, 2])
        XCTAssertEqual(averageSame.output.shape, [3, 5, 2])
        XCTAssertEqual(averageValid.output.shape, [2, 2, 2])
        let globalMax = GlobalPooling(name: "gmax", kind: .max, input: c, keepDims: true)
        let globalAverage = GlobalPooling(name: "gavg", kind: .average, input: c)
        XCTAssertEqual(globalMax.output.shape, [1, 1, 2])
        try checkGradients(
            inputs: [x],
            outputs: [flat(maxSame), flat(averageSame), flat(averageValid), flat(globalMax), globalAverage])
    }

    func testAverageOfSamePaddingCountsOnlyTheImage() {
        let x = InputLayer(name: "x", kind: .features, shape: [3, 3, 1])
        let pool = Pooling2D(
            name: "p", kind: .average, input: x,
            geometry: .forward(image: (3, 3), kernel: (2, 2), stride: (2, 2), same: true))
        let model = Model(inputs: [x], outputs: [pool], maxBatch: 1)
        for i in 0..<9 { x.output.values[i] = Float(i + 1) }
        model.forward(batch: 1, training: false)
        // "same" on 3 with pool 2, stride 2: 2 outputs, 1 cell of padding after; (1,2,4,5), (3,6), (7,8), (9).
        XCTAssertEqual((0..<4).map { pool.output.values[$0] }, [3, 4.5, 7.5, 9])
    }

    func testResamplingAndMovingCells() throws {
        let x = InputLayer(name: "x", kind: .features, shape: [3, 4, 2])
        let up = Resample2D(
            name: "up", input: x, rows: .linear(input: 3, output: 6, antialias: false),
            columns: .linear(input: 4, output: 8, antialias: false))
        let down = Resample2D(
            name: "down", input: up, rows: .linear(input: 6, output: 4, antialias: true),
            columns: .linear(input: 8, output: 3, offset: 0, antialias: false))
        let shape = [3, 4, 2]
        let padded = IndexMap.cells(shape, out: (5, 5)) { i, j in i >= 1 && i < 4 && j < 4 ? (i - 1, j) : nil }
        let pad = IndexMap(name: "pad", input: x, shape: padded.shape, map: padded.map)
        XCTAssertEqual(down.output.shape, [4, 3, 2])
        try checkGradients(inputs: [x], outputs: [flat(down), flat(pad)])
    }

    func testLinearResampleWeightsAreJAXs() {
        // jax.image.resize(jnp.arange(4.), (8,), "bilinear"): half-pixel centres, edges clamped by the
        // renormalised triangle: [0, .25, .75, 1.25, 1.75, 2.25, 2.75, 3].
        let axis = ResampleAxis.linear(input: 4, output: 8, antialias: false)
        let values = axis.taps.map { $0.reduce(Float(0)) { $0 + $1.weight * Float($1.index) } }
        XCTAssertEqual(values, [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3])
        XCTAssertEqual(ResampleAxis.nearest(input: 3, output: 7), [0, 0, 1, 1, 1, 2, 2])  // JAX's, run
    }

    /// EfficientNet's squeeze-and-excite, [H, W, C] · [1, 1, C]; an Add of [1, W, 1]; a Maximum broadcasting.
    func testMergesBroadcastOverAxesOfSizeOne() throws {
        let x = InputLayer(name: "x", kind: .features, shape: [3, 2, 4])
        let pooled = GlobalPooling(name: "gap", kind: .average, input: x)
        let excite = Dense(name: "excite", units: 4, activation: .sigmoid, input: pooled)
        let squeeze = Reshape(name: "squeeze", input: excite, shape: [1, 1, 4])
        let scaled = Merge(name: "scaled", kind: .multiply, inputs: [x, squeeze])
        let column = Reshape(name: "column", input: Dense(name: "d", units: 2, input: pooled), shape: [1, 2, 1])
        let added = Merge(name: "added", kind: .add, inputs: [scaled, column])
        let maximum = Merge(name: "maximum", kind: .maximum, inputs: [squeeze, x])
        XCTAssertEqual(added.output.shape, [3, 2, 4])
        XCTAssertNil(Merge.broadcastShape([[3, 4, 2], [1, 2, 2]]))
        XCTAssertEqual(Merge.broadcastShape([[3, 4, 2], [1, 4, 1]]), [3, 4, 2])
        try checkGradients(inputs: [x], outputs: [flat(added), flat(maximum)])
    }

    func testNormalizationsDenseAndDropoutOnImages() throws {
        let x = InputLayer(name: "x", kind: .features, shape: [3, 2, 4])
        let bn = BatchNormalization(
            name: "bn", input: conv("c", x, filters: 4, kernel: (2, 2), same: true), epsilon: 0.01)
        let ln = LayerNormalization(name: "ln", input: bn)
        let gn = GroupNormalization(name: "gn", input: ln, groups: 2)
        let dense = Dense(name: "d", units: 3, activation: .tanh, input: gn)
        XCTAssertEqual(dense.output.shape, [3, 2, 3])
        try checkGradients(inputs: [x], outputs: [flat(dense)], batch: 4)
    }

    /// A frozen backbone's backward is skipped (no trainable weight in or above it), and the heads' gradients are
    /// what they are with every backward run.
    func testFrozenPrefixSkipsItsBackward() throws {
        func build(frozen: Set<String>) -> (Model, Dense) {
            let x = InputLayer(name: "x", kind: .features, shape: [4, 4, 2])
            let c = conv("c", x, filters: 3, kernel: (3, 3), same: true, activation: .relu)
            let head = Dense(name: "head", units: 2, input: GlobalPooling(name: "gap", kind: .average, input: c))
            let model = Model(inputs: [x], outputs: [head], maxBatch: 2, frozen: frozen)
            model.parameters.initialize(seed: 4)
            for i in 0..<(2 * x.width) { x.output.values[i] = Float(i % 7) / 7 - 0.4 }
            model.forward(batch: 2)
            for i in 0..<4 { head.output.gradients[i] = Float(i) - 1.5 }
            model.parameters.zeroGradients()
            model.backward(batch: 2)
            return (model, head)
        }
        let (frozen, _) = build(frozen: ["c"])
        let (plain, _) = build(frozen: [])
        XCTAssertEqual(frozen.runsBackward, [false, false, false, true])
        XCTAssertEqual(plain.runsBackward, [false, true, true, true])
        let view = frozen.parameters.view("head/kernel")!
        let a = (0..<view.count).map { frozen.parameters.gradient(view)[$0] }
        let b = (0..<view.count).map { plain.parameters.gradient(plain.parameters.view("head/kernel")!)[$0] }
        XCTAssertEqual(a, b)
        let kernel = frozen.parameters.view("c/kernel")!
        XCTAssertTrue((0..<kernel.count).allSatisfy { frozen.parameters.gradient(kernel)[$0] == 0 }, "not computed")
    }
}
