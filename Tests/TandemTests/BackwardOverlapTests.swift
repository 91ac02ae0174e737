// Backward with the normalisations' global sums in flight (Model.overlapsCollectives): the convolutions
// leave their weight gradients until the next BatchNormalization has started its sums, and make them
// while the sums travel. The same arithmetic in another order, so the same bits as the plain backward —
// checked in one process, and on thread ranks, whose started Double sum is made only when it is
// finished (a normalisation that read its global sums early would read its own rank's only), against
// the plain backward and against one process.

import Foundation
import TandemTestSupport
import XCTest

@testable import TandemCore
@testable import TandemTraining

final class BackwardOverlapTests: XCTestCase {
    /// x → Conv2D → BN + ReLU → DepthwiseConv (×2) → BN + ReLU6 → Conv2D → BN → add (with the first
    /// ReLU) → a Conv2D called twice (shared weights) → average pool → out1; the second BN → max pool → out2.
    /// The first convolution's weights wait until the end of backward, the others until the next BN.
    private static func model(maxBatch: Int) -> Model {
        let x = InputLayer(name: "x", kind: .features, shape: [6, 5, 3])
        func conv(_ name: String, _ input: Layer, filters: Int, weights: String? = nil) -> Conv2D {
            let s = input.output.shape
            let g = WindowGeometry.forward(image: (s[0], s[1]), kernel: (3, 3), stride: (1, 1), same: true)
            return Conv2D(
                name: name, input: input, geometry: g, filters: filters, useBias: false, weights: weights,
                kernelShape: [3, 3, s[2], filters], outputShape: [s[0], s[1], filters])
        }
        let c1 = conv("c1", x, filters: 4)
        let bn1 = BatchNormalization(name: "bn1", input: c1)
        let r1 = ActivationLayer(name: "r1", activation: .relu, input: bn1)
        let dw = DepthwiseConv(
            name: "dw", input: r1, geometry: .forward(image: (6, 5), kernel: (3, 3), stride: (1, 1), same: true),
            multiplier: 2)
        let bn2 = BatchNormalization(name: "bn2", input: dw)
        let r2 = ActivationLayer(name: "r2", activation: .relu6, input: bn2)
        let c2 = conv("c2", r2, filters: 4)
        let bn3 = BatchNormalization(name: "bn3", input: c2)
        let add = Merge(name: "add", kind: .add, inputs: [bn3, r1])
        let c3 = conv("c3", add, filters: 4)
        let c3Again = conv("c3_again", c3, filters: 4, weights: "c3")
        let out1 = Dense(
            name: "out1", units: 2, input: GlobalPooling(name: "avg", kind: .average, input: c3Again))
        let out2 = Dense(
            name: "out2", units: 1, activation: .sigmoid, input: GlobalPooling(name: "max", kind: .max, input: r2))
        let model = Model(inputs: [x], outputs: [out1, out2], maxBatch: maxBatch)
        model.parameters.initialize(seed: 3)
        return model
    }

    /// One forward and backward of `model` on random rows: the parameter gradients.
    private static func gradient(overlapping: Bool) -> [Float] {
        let model = model(maxBatch: 5)
        XCTAssertNotNil((model.layer(named: "bn1") as? BatchNormalization)?.fused, "bn1 and its ReLU are one pass")
        model.overlapsCollectives = overlapping
        var rng = SeededGenerator(seed: 11)
        let x = model.inputs[0].output.values!
        for i in 0..<(5 * model.inputs[0].width) { x[i] = Float(rng.normal()) }
        model.forward(batch: 5)
        for out in model.outputs {
            for i in 0..<(5 * out.output.width) { out.output.gradients[i] = Float(rng.normal()) }
        }
        model.parameters.zeroGradients()
        model.backward(batch: 5)
        return Array(UnsafeBufferPointer(start: model.parameters.gradients, count: model.parameters.count))
    }

    func testLeftWeightGradientsAreTheSameBitsInOneProcess() {
        let plain = Self.gradient(overlapping: false)
        let overlapped = Self.gradient(overlapping: true)
        XCTAssertEqual(overlapped.map(\.bitPattern), plain.map(\.bitPattern))
        let model = Self.model(maxBatch: 1)
        for name in ["c1/kernel", "dw/kernel", "c2/kernel", "c3/kernel"] {
            let view = model.parameters.view(name)!
            XCTAssertTrue((0..<view.count).contains { overlapped[view.offset + $0] != 0 }, "\(name) has a gradient")
        }
    }

    private static func writeData(_ dir: String, samples n: Int) throws {
        var rng = SeededGenerator(seed: 19)
        let xs = (0..<(90 * n)).map { _ in Float(rng.normal()) }
        let t1 = (0..<(2 * n)).map { _ in Float(rng.normal()) }
        let t2 = (0..<n).map { _ in Float(rng.next() % 2) }
        try xs.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [n, 6, 5, 3], to: dir + "/x.npy") }
        try t1.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [n, 2], to: dir + "/out1.npy") }
        try t2.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [n, 1], to: dir + "/out2.npy") }
    }

    /// The first step's combined gradient and the parameters after three Adam steps, per rank.
    /// `buckets`: the exchange overlapped with backward too, one float per bucket (each tensor's sum started
    /// as early as its plan allows — after the weight gradients it waited for).
    private func train(size: Int, overlapping: Bool, buckets: Bool = false) -> (
        gradients: [[Float]], parameters: [[Float]]
    ) {
        let dir = temporaryDirectory("overlap-\(size)-\(overlapping)-\(buckets)")
        try! Self.writeData(dir, samples: 12)
        let gradients = LockedArray(size)
        let parameters = LockedArray(size)
        ThreadGroup.run(size: size) { rank, comm in
            let model = Self.model(maxBatch: 6)
            let heads = [
                Head(output: "out1", loss: .meanSquaredError, weight: 1),
                Head(output: "out2", loss: .binaryCrossentropy, weight: 0.4),
            ]
            let step = try! TrainingStep(
                model: model, heads: heads,
                optimizer: Optimizer(OptimizerConfig(kind: .adam), parameterCount: model.parameters.count),
                communicator: comm, regularizers: [])
            XCTAssertEqual(model.overlapsCollectives, size > 1, "the step overlaps when its sums cross ranks")
            model.overlapsCollectives = overlapping
            step.overlapExchange = buckets
            step.exchangeBucketFloats = 1
            let data = try! Dataset(directory: dir, model: model, heads: heads)
            let batches: [[Int32]] = [[3, 0, 9, 11, 5, 1], [2, 4, 6, 8, 10, 7], [11, 1, 2, 3, 4, 0]]
            _ = try! batches[0].withUnsafeBufferPointer { try step.computeGradient(globalBatch: $0, data: data) }
            gradients.set(
                rank, Array(UnsafeBufferPointer(start: model.parameters.gradients, count: model.parameters.count)))
            for b in batches { _ = try! b.withUnsafeBufferPointer { try step.run(globalBatch: $0, data: data) } }
            step.synchronize()
            parameters.set(rank, model.parameters.snapshot())
        }
        return (gradients.values, parameters.values)
    }

    func testThreadRanksWithTheSumsInFlightEqualThePlainBackwardAndOneProcess() {
        let one = train(size: 1, overlapping: false)
        for size in [2, 3] {
            let plain = train(size: size, overlapping: false)
            let overlapped = train(size: size, overlapping: true)
            XCTAssertEqual(overlapped.gradients, plain.gradients, "gradient at \(size) ranks")
            XCTAssertEqual(overlapped.parameters, plain.parameters, "parameters after 3 steps at \(size) ranks")
            let bucketed = train(size: size, overlapping: true, buckets: true)
            XCTAssertEqual(bucketed.gradients, plain.gradients, "gradient at \(size) ranks, buckets")
            XCTAssertEqual(bucketed.parameters, plain.parameters, "parameters at \(size) ranks, buckets")
            // N ranks = one process, but for the order of the sums.
            let g = overlapped.gradients[0]
            let scale = g.map { abs($0) }.max()!
            XCTAssertGreaterThan(scale, 0)
            for (i, (a, b)) in zip(g, one.gradients[0]).enumerated() where abs(a - b) > 1e-5 * scale {
                XCTFail("\(size) ranks: gradient \(i) is \(a), one process \(b)")
                break
            }
        }
    }
}
