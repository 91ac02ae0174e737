// The activation gradients are not zeroed as one pass any more (Model.clearGradients): a layer output's
// gradient keeps the last step's values until its first writer in backward overwrites it, or the model
// zeroes it just before a layer that only adds. A stale value that leaks shows as a second step whose
// gradients differ from a fresh model's first step on the same rows — checked here on a graph where
// every case meets: a tensor read by an overwriting layer (Conv2D, DepthwiseConv, BatchNormalization,
// an activation, Dense) and by one that adds (in both orders), an
// output also read further on, an input whose gradient is wanted, a batch smaller than the last one.

import XCTest

@testable import TandemCore

final class GradientZeroingTests: XCTestCase {
    private struct Graph {
        let x: InputLayer
        let model: Model
        var outputs: [Layer] { model.outputs }
    }

    private func graph() -> Graph {
        let (x, outputs) = layers()
        let model = Model(inputs: [x], outputs: outputs, maxBatch: 4)
        model.parameters.initialize(seed: 7)
        return Graph(x: x, model: model)
    }

    private func layers() -> (InputLayer, [Layer]) {
        let x = InputLayer(name: "x", kind: .features, shape: [6, 5, 3])
        x.wantsGradient = true
        func conv(_ name: String, _ input: Layer, filters: Int) -> Conv2D {
            let s = input.output.shape
            let g = WindowGeometry.forward(image: (s[0], s[1]), kernel: (3, 3), stride: (1, 1), same: true)
            return Conv2D(
                name: name, input: input, geometry: g, filters: filters, groups: 1, activation: .linear,
                kernelShape: [3, 3, s[2], filters], outputShape: [s[0], s[1], filters])
        }
        let c1 = conv("c1", x, filters: 4)
        let bn1 = BatchNormalization(name: "bn1", input: c1)  // overwrites c1's gradient — after the Add adds
        let r = ActivationLayer(name: "r", activation: .elu, input: bn1)  // the general path: dz written into dx
        let dw = DepthwiseConv(
            name: "dw", input: r, geometry: .forward(image: (6, 5), kernel: (3, 3), stride: (1, 1), same: true),
            multiplier: 1)
        let bn2 = BatchNormalization(name: "bn2", input: dw)
        let add = Merge(name: "add", kind: .add, inputs: [bn2, c1])
        let c2 = conv("c2", add, filters: 2)
        let c3 = conv("c3", x, filters: 2)  // x: a second overwriting reader
        let tail = ActivationLayer(name: "tail", activation: .tanh, input: add)  // add: read twice
        let dense = Dense(name: "dense", units: 3, activation: .tanh, input: tail)  // tail: read by it and flat
        func flat(_ l: Layer) -> Layer { Reshape(name: "flat_\(l.name)", input: l, shape: [l.output.width]) }
        // r is an output and is read further on (the output's gradient is zeroed before the losses).
        return (x, [flat(c2), flat(r), flat(c3), flat(dense), flat(tail)])  // dense: tail's second writer
    }

    func testTheGraphsGradientsAgainstCentralDifferences() throws {
        // The stale-value check below compares two runs of the same code; this one checks what it computes
        // (an overwriting layer that is not its tensor's first writer would lose the other reader's share).
        let (x, outputs) = layers()
        try checkGradients(inputs: [x], outputs: outputs)
    }

    /// One forward and backward on `batch` rows from `seed`: every parameter gradient and x's gradient.
    private func step(_ g: Graph, batch: Int, seed: UInt64) -> [Float] {
        var rng = SeededGenerator(seed: seed)
        for i in 0..<(batch * g.x.width) { g.x.output.values[i] = Float(rng.normal()) }
        g.model.forward(batch: batch)
        for out in g.outputs {
            for i in 0..<(batch * out.output.width) { out.output.gradients[i] = Float(rng.normal()) }
        }
        g.model.parameters.zeroGradients()
        g.model.backward(batch: batch)
        let p = g.model.parameters
        return Array(UnsafeBufferPointer(start: p.gradients, count: p.count))
            + Array(UnsafeBufferPointer(start: g.x.output.gradients, count: batch * g.x.width))
    }

    func testAStepAfterAnotherEqualsAFreshModelsFirstStep() {
        for (first, second) in [(4, 4), (4, 3), (2, 4)] {
            let used = graph()
            _ = step(used, batch: first, seed: 1)
            let after = step(used, batch: second, seed: 2)
            let fresh = step(graph(), batch: second, seed: 2)
            XCTAssertEqual(after.map(\.bitPattern), fresh.map(\.bitPattern), "batch \(first) then \(second)")
            XCTAssertTrue(after.contains { $0 != 0 })
        }
    }

    func testPendingGradientsAreMarkedAndSettled() {
        let g = graph()
        _ = step(g, batch: 3, seed: 1)
        // After backward every gradient a layer read was settled; the input's is complete.
        XCTAssertFalse(g.x.output.gradientPending)
        g.model.forward(batch: 3)
        XCTAssertTrue(g.x.output.gradientPending, "a forward marks the gradients pending again")
        XCTAssertFalse(g.outputs[0].output.gradientPending, "an output's gradient is zeroed for the losses")
    }
}
