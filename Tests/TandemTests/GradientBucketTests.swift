// The overlapped exchange (GradientBuckets.swift) against the plain one allreduce:
// the same gradient and the same trained weights, bit for bit, on thread ranks
// (which sum in rank order, so buckets change no value unless a bucket were sent
// before its layers' gradients were final — the mistake these tests would catch:
// the later contributions would then stay local to each rank).

import Foundation
import TandemTestSupport
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class GradientBucketTests: XCTestCase {
    /// x → Dense → BatchNormalization → a Dense called twice (shared weights) → two heads.
    private static func sharedTrunk(dir: String, communicator: Communicator, maxBatch: Int) throws -> (
        TrainingStep, Dataset
    ) {
        let x = InputLayer(name: "x", kind: .features, width: 6)
        let d1 = Dense(name: "d1", units: 8, activation: .relu, input: x)
        let bn = BatchNormalization(name: "bn", input: d1)
        let s1 = Dense(name: "s", units: 8, activation: .tanh, input: bn)
        let s2 = Dense(name: "s@1", units: 8, activation: .tanh, input: s1, weights: "s")
        let out1 = Dense(name: "out1", units: 1, activation: .sigmoid, input: s2)
        let out2 = Dense(name: "out2", units: 3, activation: .linear, input: s1)
        let model = Model(inputs: [x], outputs: [out1, out2], maxBatch: maxBatch)
        model.parameters.initialize(seed: 4)
        let heads = [
            Head(output: "out1", loss: .binaryCrossentropy, weight: 1),
            Head(output: "out2", loss: .meanSquaredError, weight: 0.3),
        ]
        let step = try TrainingStep(
            model: model, heads: heads,
            optimizer: Optimizer(OptimizerConfig(kind: .adam), parameterCount: model.parameters.count),
            communicator: communicator, l2: ["s": 0.01])
        return (step, try Dataset(directory: dir, model: model, heads: heads))
    }

    private static func writeSharedTrunkData(_ dir: String, samples n: Int) throws {
        var rng = SeededGenerator(seed: 12)
        let xs = (0..<(6 * n)).map { _ in Float(rng.normal()) }
        let t1 = (0..<n).map { _ in Float(rng.next() % 2) }
        let t2 = (0..<(3 * n)).map { _ in Float(rng.normal()) }
        try xs.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [n, 6], to: dir + "/x.npy") }
        try t1.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [n, 1], to: dir + "/out1.npy") }
        try t2.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [n, 3], to: dir + "/out2.npy") }
    }

    /// Per rank: the first step's gradient, then the parameters after three steps.
    private func train(size: Int, overlap: Bool, bucketFloats: Int, headline: Bool) -> (
        gradients: [[Float]], parameters: [[Float]], buckets: Int
    ) {
        let dir = temporaryDirectory("buckets-\(size)-\(overlap)-\(bucketFloats)-\(headline)")
        if !headline { try! Self.writeSharedTrunkData(dir, samples: 14) }
        let gradients = LockedArray(size)
        let parameters = LockedArray(size)
        let buckets = LockedArray(size)
        ThreadGroup.run(size: size) { rank, comm in
            let (step, data): (TrainingStep, Dataset)
            if headline {
                let heads = [
                    Head(output: "main_output", loss: .binaryCrossentropy, weight: 1),
                    Head(output: "aux_output", loss: .binaryCrossentropy, weight: 0.2),
                ]
                (step, data, _) = try! tinyHeadline(
                    heads: heads, l2: ["dense": 0.01], batch: 7, samples: 14, communicator: comm,
                    optimizer: OptimizerConfig(kind: .adam))
                step.compactTableGradient = false  // the dense path, whose exchange overlaps
            } else {
                (step, data) = try! GradientBucketTests.sharedTrunk(dir: dir, communicator: comm, maxBatch: 7)
            }
            step.overlapExchange = overlap
            step.exchangeBucketFloats = bucketFloats
            let batches: [[Int32]] = [[3, 0, 9, 12, 5, 1, 7], [2, 4, 6, 8, 10, 11, 13], [13, 1, 2, 3, 4, 0, 6]]
            _ = try! batches[0].withUnsafeBufferPointer { try step.computeGradient(globalBatch: $0, data: data) }
            gradients.set(
                rank,
                Array(UnsafeBufferPointer(start: step.model.parameters.gradients, count: step.model.parameters.count)))
            for b in batches { _ = try! b.withUnsafeBufferPointer { try step.run(globalBatch: $0, data: data) } }
            step.synchronize()
            parameters.set(rank, step.model.parameters.snapshot())
            buckets.set(rank, [Float(step.gradientBuckets?.bucketCount ?? 0)])
        }
        return (gradients.values, parameters.values, Int(buckets.values[0][0]))
    }

    func testOverlappedExchangeEqualsTheOneAllreduceBitForBit() {
        for headline in [false, true] {
            for size in [2, 3] {
                let plain = train(size: size, overlap: false, bucketFloats: 0, headline: headline)
                XCTAssertEqual(plain.buckets, 0, "off: one allreduce")
                // One float per bucket: every layer's tensors are sent on their own, as early as possible.
                for bucketFloats in [1, GradientBuckets.defaultBucketFloats] {
                    let overlapped = train(size: size, overlap: true, bucketFloats: bucketFloats, headline: headline)
                    let what = "\(headline ? "headline" : "shared trunk") at \(size) ranks, buckets of \(bucketFloats)"
                    if bucketFloats == 1 { XCTAssertGreaterThanOrEqual(overlapped.buckets, headline ? 4 : 5, what) }
                    XCTAssertEqual(overlapped.gradients, plain.gradients, "gradient: " + what)
                    XCTAssertEqual(overlapped.parameters, plain.parameters, "parameters after 3 steps: " + what)
                    for r in 1..<size {
                        XCTAssertEqual(overlapped.parameters[r], overlapped.parameters[0], "rank \(r): " + what)
                    }
                }
            }
        }
    }

    func testAPlanStartsEachTensorOnceAfterItsLastWriter() {
        let dir = temporaryDirectory()
        try! Self.writeSharedTrunkData(dir, samples: 4)
        let (step, _) = try! Self.sharedTrunk(dir: dir, communicator: LocalCommunicator(), maxBatch: 4)
        let model = step.model
        // Every tensor once (the shared Dense's too), whatever the bucket size; and an excluded range is never sent.
        for bucketFloats in [1, 50, 1 << 20] {
            let plan = GradientBuckets(model: model, excluding: nil, bucketFloats: bucketFloats)
            XCTAssertEqual(
                plan.starts.flatMap { $0 }.reduce(0) { $0 + $1.count }, model.parameters.count, "\(bucketFloats)")
            XCTAssertEqual(
                plan.starts.flatMap { $0 }.map(\.lowerBound).count,
                Set(plan.starts.flatMap { $0 }.map(\.lowerBound)).count)
        }
        let s = model.parameters.view("s/kernel")!
        let d1 = model.parameters.view("d1/kernel")!
        let plan = GradientBuckets(model: model, excluding: d1.offset..<(d1.offset + d1.count), bucketFloats: 1)
        let ranges = plan.starts
        // The shared Dense's weights are final after its FIRST call (schedule index of "s"), not its second.
        let first = model.schedule.firstIndex { $0.name == "s" }!
        XCTAssertTrue(
            ranges[first].contains { $0.contains(s.offset) }, "s/kernel starts after the first call's backward")
        XCTAssertFalse(ranges.flatMap { $0 }.contains { $0.contains(d1.offset) }, "the excluded range is not sent")
    }
}
