// Conv2D's and DepthwiseConv's fast path (oneDNN, Kernels/ConvolutionDNNL.swift) against their plain paths
// (im2col + the GEMM layer; the direct depthwise loop): the same layer and weights on the same images, both ways, at shapes that stress the window
// map — strides and dilations that do not divide, padding on every side, groups, a 1×1 kernel, a batch
// smaller than the one the model was bound for. Outputs, input gradients (added to what is there, as
// every backward does) and kernel and bias gradients must agree to float rounding: norm-wise, 5e-6 of the
// largest value, for sums of up to 800 float products in another order (a wrong tap or pad is O(1)). The central-difference
// checks of ImageLayerGradientTests run the default path; one of them runs again on the plain path below.

import XCTest

@testable import TandemCore

final class ConvolutionKernelTests: XCTestCase {
    private struct Case {
        var image: (Int, Int), channels: Int, filters: Int, kernel: (Int, Int)
        var stride = (1, 1), dilation = (1, 1), same = false, groups = 1, batch = 3, bound = 3
    }

    /// Conv2D with `filters`, or with `depthwise` a DepthwiseConv (multiplier = filters; a separable one
    /// when `pointwise` is given).
    /// `pending`: dx holds stale values the layer overwrites (its first writer in a model's backward),
    /// else a reader's share it adds to.
    private func run(
        _ c: Case, _ kernels: ConvolutionKernels, depthwise: Bool = false, pointwise: Int? = nil, pending: Bool = false
    ) -> [[Float]] {
        let x = InputLayer(name: "x", kind: .features, shape: [c.image.0, c.image.1, c.channels])
        x.wantsGradient = true
        let g = WindowGeometry.forward(
            image: c.image, kernel: c.kernel, stride: c.stride, dilation: c.dilation, same: c.same)
        let conv: Layer =
            depthwise
            ? DepthwiseConv(
                name: "conv", input: x, geometry: g, multiplier: c.filters, pointwise: pointwise, activation: .relu6,
                biasInitializer: .uniformRange(low: -0.5, high: 0.5), kernels: kernels)
            : Conv2D(
                name: "conv", input: x, geometry: g, filters: c.filters, groups: c.groups, activation: .tanh,
                kernelShape: [c.kernel.0, c.kernel.1, c.channels / c.groups, c.filters],
                outputShape: [g.gridHeight, g.gridWidth, c.filters],
                biasInitializer: .uniformRange(low: -0.5, high: 0.5), kernels: kernels)
        let model = Model(inputs: [x], outputs: [conv], maxBatch: max(c.bound, c.batch))
        model.parameters.initialize(seed: 3)
        var rng = SeededGenerator(seed: 11)
        for i in 0..<(c.batch * x.width) { x.output.values[i] = Float(rng.normal()) }
        model.forward(batch: c.batch)
        let n = c.batch * conv.output.width
        for i in 0..<n { conv.output.gradients[i] = Float(rng.normal()) }
        // Something already in dx: the backward must add to it — or, pending, write over it.
        for i in 0..<(c.batch * x.width) { x.output.gradients[i] = 0.25 }
        x.output.gradientPending = pending
        model.parameters.zeroGradients()
        model.backward(batch: c.batch)
        let p = model.parameters
        return [
            Array(UnsafeBufferPointer(start: conv.output.values, count: n)),
            Array(UnsafeBufferPointer(start: x.output.gradients, count: c.batch * x.width)),
            Array(UnsafeBufferPointer(start: p.gradients, count: p.count)),
        ]
    }

    func testOneDNNEqualsThePlainPath() {
        let cases: [Case] = [
            Case(image: (7, 9), channels: 3, filters: 5, kernel: (3, 3), same: true),
            Case(image: (7, 9), channels: 3, filters: 5, kernel: (3, 3), stride: (2, 2), same: true),
            Case(image: (8, 7), channels: 4, filters: 6, kernel: (3, 2), stride: (3, 2), same: false),
            Case(image: (9, 8), channels: 2, filters: 3, kernel: (2, 3), dilation: (2, 3), same: true),
            Case(image: (9, 8), channels: 2, filters: 3, kernel: (3, 2), dilation: (3, 2), same: false),
            Case(image: (6, 6), channels: 6, filters: 4, kernel: (3, 3), same: true, groups: 2),
            Case(image: (5, 7), channels: 6, filters: 9, kernel: (2, 3), stride: (2, 3), same: true, groups: 3),
            Case(image: (5, 5), channels: 16, filters: 32, kernel: (1, 1), stride: (2, 2), same: false),
            Case(image: (11, 10), channels: 32, filters: 16, kernel: (5, 5), stride: (2, 2), same: true),
            Case(image: (1, 13), channels: 5, filters: 7, kernel: (1, 4), stride: (1, 3), same: true),
            Case(image: (6, 5), channels: 3, filters: 4, kernel: (3, 3), same: true, batch: 2, bound: 5),
            Case(image: (4, 4), channels: 8, filters: 8, kernel: (4, 4), same: false, batch: 1),
        ]
        for (k, c) in cases.enumerated() {
            let added = run(c, .oneDNN)
            compare(added, run(c, .im2col), "case \(k) \(c)")
            let written = run(c, .oneDNN, pending: true)
            compare(written, run(c, .im2col, pending: true), "case \(k) \(c), dx written")
            compare(
                written, [added[0], added[1].map { $0 - 0.25 }, added[2]], "case \(k) \(c), written = added − 0.25")
        }
    }

    func testOneDNNDepthwiseEqualsTheDirectLoop() {
        // filters = the depth multiplier here.
        let cases: [Case] = [
            Case(image: (7, 9), channels: 5, filters: 1, kernel: (3, 3), same: true),
            Case(image: (8, 8), channels: 16, filters: 1, kernel: (3, 3), stride: (2, 2), same: false),
            Case(image: (7, 6), channels: 3, filters: 2, kernel: (3, 2), stride: (2, 3), same: true),
            Case(image: (9, 8), channels: 4, filters: 3, kernel: (2, 3), dilation: (2, 2), same: true),
            Case(
                image: (1, 11), channels: 6, filters: 2, kernel: (1, 3), stride: (1, 2), same: true, batch: 2, bound: 4),
        ]
        for (k, c) in cases.enumerated() {
            compare(run(c, .oneDNN, depthwise: true), run(c, .im2col, depthwise: true), "depthwise case \(k) \(c)")
            compare(
                run(c, .oneDNN, depthwise: true, pending: true), run(c, .im2col, depthwise: true, pending: true),
                "depthwise case \(k) \(c), dx written")
            compare(
                run(c, .oneDNN, depthwise: true, pointwise: 7), run(c, .im2col, depthwise: true, pointwise: 7),
                "separable case \(k) \(c)")
        }
    }

    private func compare(_ fast: [[Float]], _ plain: [[Float]], _ what: String) {
        for (part, name) in ["output", "input gradient", "weight gradients"].enumerated() {
            XCTAssertEqual(fast[part].count, plain[part].count)
            let scale = plain[part].map(abs).max() ?? 0
            let worst = zip(fast[part], plain[part]).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(worst, 5e-6 * scale, "\(what): \(name) differs by \(worst) of \(scale)")
            XCTAssertTrue(fast[part].contains { $0 != 0 }, "\(what): \(name) is all zero")
        }
    }

    func testFastPathIsDeterministic() {
        let c = Case(image: (9, 9), channels: 8, filters: 12, kernel: (3, 3), stride: (2, 2), same: true, batch: 4)
        let (a, b) = (run(c, .oneDNN), run(c, .oneDNN))
        for part in 0..<3 {
            let differ = zip(a[part], b[part]).enumerated().filter { $0.element.0 != $0.element.1 }
            XCTAssertTrue(
                differ.isEmpty, "part \(part): \(differ.count) of \(a[part].count) differ, first \(differ.prefix(3))")
        }
    }

    func testDefaultIsOneDNN() {
        XCTAssertEqual(ConvolutionKernels.preferred, .oneDNN)
        XCTAssertTrue(ConvolutionKernels.oneDNNVersion.hasPrefix("oneDNN "), ConvolutionKernels.oneDNNVersion)
    }
}
