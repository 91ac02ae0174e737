// PCGrad against a hand-computed projection on a two-head model whose heads
// conflict on the shared trunk, at 1 and 3 ranks; the heads' own tensors get
// the ordinary gradient.

import Foundation
import TandemTestSupport
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class GradientSurgeryTests: XCTestCase, @unchecked Sendable {
    /// x → trunk (tanh) → "a" and "b" (linear, MSE, the same initial weights); b's targets are minus
    /// a's (`conflict`) or a's own, so the heads pull the trunk in opposite directions or in one.
    private func step(weights: (Double, Double), communicator: Communicator = LocalCommunicator(), maxBatch: Int = 6)
        throws -> TrainingStep
    {
        let x = InputLayer(name: "x", kind: .features, width: 3)
        let trunk = Dense(name: "trunk", units: 4, activation: .tanh, input: x)
        let model = Model(
            inputs: [x], outputs: [Dense(name: "a", units: 2, input: trunk), Dense(name: "b", units: 2, input: trunk)],
            maxBatch: maxBatch)
        model.parameters.initialize(seed: 8)
        let store = model.parameters
        for name in ["kernel", "bias"] {
            let a = store.tensors.first { $0.name == "a/\(name)" }!
            let b = store.tensors.first { $0.name == "b/\(name)" }!
            store.value(b).update(from: store.value(a), count: a.count)
        }
        let heads = [
            Head(output: "a", loss: .meanSquaredError, weight: weights.0),
            Head(output: "b", loss: .meanSquaredError, weight: weights.1),
        ]
        return try TrainingStep(
            model: model, heads: heads,
            optimizer: Optimizer(OptimizerConfig(kind: .sgd, learningRate: 1), parameterCount: model.parameters.count),
            communicator: communicator, regularizers: [])
    }

    private func makeData(_ dir: String, conflict: Bool = true) throws {
        var rng = SeededGenerator(seed: 3)
        try write((0..<18).map { _ in Float(rng.normal()) }, [6, 3], dir + "/x.npy")
        let t = (0..<12).map { _ in Float(3 * rng.normal()) }
        try write(t, [6, 2], dir + "/a.npy")
        try write(conflict ? t.map { -$0 } : t, [6, 2], dir + "/b.npy")
    }

    private let batch: [Int32] = [0, 1, 2, 3, 4, 5]

    private func gradient(_ s: TrainingStep, _ dir: String) throws -> [Double] {
        _ = try batch.withUnsafeBufferPointer {
            try s.computeGradient(globalBatch: $0, data: try Dataset(directory: dir, model: s.model, heads: s.heads))
        }
        return (0..<s.model.parameters.count).map { Double(s.model.parameters.gradients[$0]) }
    }

    func testTwoConflictingHeadsAreProjectedAsByHand() throws {
        let dir = temporaryDirectory()
        try makeData(dir)
        let ga = try gradient(step(weights: (1, 0)), dir)
        let gb = try gradient(step(weights: (0, 0.6)), dir)
        let g = try gradient(step(weights: (1, 0.6)), dir)
        let probe = try step(weights: (1, 0.6))
        let sharedRange = probe.model.parameters.tensors.filter { $0.name.hasPrefix("trunk/") }.map {
            $0.offset..<($0.offset + $0.count)
        }
        let shared = sharedRange.flatMap { Array($0) }
        func dot(_ u: [Double], _ v: [Double]) -> Double { shared.reduce(0) { $0 + u[$1] * v[$1] } }
        let d = dot(ga, gb)
        XCTAssertLessThan(d, 0, "the heads conflict on the trunk")
        var expected = g
        for k in shared {
            let a2 = ga[k] - d / dot(gb, gb) * gb[k]
            let b2 = gb[k] - d / dot(ga, ga) * ga[k]
            expected[k] += (a2 - ga[k]) + (b2 - gb[k])
        }
        // After the projection the two parts no longer conflict.
        for size in [1, 3] {
            let results = LockedArray(size)
            ThreadGroup.run(size: size) { [batch] rank, comm in
                let s = try! self.step(weights: (1, 0.6), communicator: comm, maxBatch: 6)
                s.surgery = PCGrad(model: s.model, heads: s.heads, seed: 1)
                let before = s.model.parameters.snapshot()
                let data = try! Dataset(directory: dir, model: s.model, heads: s.heads)
                _ = try! batch.withUnsafeBufferPointer { try s.run(globalBatch: $0, data: data) }
                XCTAssertEqual(s.surgery!.projections, 2, "each head projected once")
                // lr 1: the applied gradient.
                results.set(rank, zip(before, s.model.parameters.snapshot()).map { $0 - $1 })
            }
            for r in 0..<size {
                XCTAssertEqual(results.values[r], results.values[0], "rank \(r) applies rank 0's step")
            }
            assertClose(
                results.values[0], expected, atol: 2e-6, rtol: 1e-4,
                "np \(size): the projected gradient on the trunk, the ordinary one on the heads")
            let ordinary = (0..<g.count).filter { !shared.contains($0) }
            XCTAssertFalse(ordinary.isEmpty)
            for k in ordinary { XCTAssertEqual(expected[k], g[k]) }
        }
    }

    func testNoConflictLeavesTheStepAsItIs() throws {
        // b's targets equal to a's: the heads agree, nothing is projected, the same bits as without.
        let dir = temporaryDirectory()
        try makeData(dir, conflict: false)
        let plain = try step(weights: (1, 0.6))
        let cut = try step(weights: (1, 0.6))
        cut.surgery = PCGrad(model: cut.model, heads: cut.heads, seed: 1)
        for s in [plain, cut] {
            let data = try Dataset(directory: dir, model: s.model, heads: s.heads)
            _ = try batch.withUnsafeBufferPointer { try s.run(globalBatch: $0, data: data) }
        }
        XCTAssertEqual(cut.surgery!.projections, 0)
        XCTAssertEqual(plain.model.parameters.snapshot(), cut.model.parameters.snapshot())
    }
}
