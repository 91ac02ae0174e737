// Per-head diagnostics against a separate backward per head: the same step
// with every other head's weight set to 0 gives that head's own gradient; its
// norms, cosines and shares by hand must equal `diagnose`, in one process and
// on 3 ranks; and a diagnostic pass changes nothing the step then computes.

import Foundation
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class HeadDiagnosticsTests: XCTestCase, @unchecked Sendable {
    let heads = [
        Head(output: "main_output", loss: .binaryCrossentropy, weight: 1.0, classWeights: [1: 2.0]),
        Head(output: "aux_output", loss: .binaryCrossentropy, weight: 0.3),
    ]
    let batch: [Int32] = [4, 0, 7, 2, 8, 1, 5]

    /// Each head's gradient alone (the others weighted 0), as Double.
    private func ownGradients() throws -> [[Double]] {
        try heads.indices.map { h in
            let only = heads.enumerated().map { k, head in
                var x = head
                if k != h { x.weight = 0 }
                return x
            }
            let (step, data, _) = try tinyHeadline(heads: only, l2: [:], batch: 8)
            _ = try batch.withUnsafeBufferPointer { try step.computeGradient(globalBatch: $0, data: data) }
            return (0..<step.model.parameters.count).map { Double(step.model.parameters.gradients[$0]) }
        }
    }

    func testNormsCosinesAndSharesEqualASeparateBackwardPerHead() throws {
        let own = try ownGradients()
        let (reference, _, _) = try tinyHeadline(heads: heads, l2: [:], batch: 8)
        let d0 = HeadDiagnostics(model: reference.model, heads: heads)
        XCTAssertEqual(
            d0.shared.map(\.view.name), ["embedding/embeddings", "lstm/kernel", "lstm/recurrent_kernel", "lstm/bias"],
            "the trunk is shared; the dense stack after the concatenation is main_output's alone")
        func expected(_ s: HeadDiagnostics.Shared) -> (norm: [Double], cos: Double, share: [Double]) {
            let r = s.view.offset..<(s.view.offset + s.view.count)
            func dot(_ a: Int, _ b: Int) -> Double { r.reduce(0) { $0 + own[a][$1] * own[b][$1] } }
            let n = [dot(0, 0).squareRoot(), dot(1, 1).squareRoot()]
            let total = dot(0, 0) + dot(1, 1) + 2 * dot(0, 1)
            return (n, dot(0, 1) / (n[0] * n[1]), [(dot(0, 0) + dot(0, 1)) / total, (dot(1, 1) + dot(0, 1)) / total])
        }
        for size in [1, 3] {
            let results = ResultBox()
            ThreadGroup.run(size: size) { [heads, batch] rank, comm in
                let (step, data, _) = try! tinyHeadline(
                    heads: heads, l2: [:], batch: (8 + size - 1) / size, communicator: comm)
                let d = HeadDiagnostics(model: step.model, heads: heads)
                let figures = try! batch.withUnsafeBufferPointer { try step.diagnose(d, globalBatch: $0, data: data) }
                if rank == 0 { results.set(figures, d.shared) }
            }
            let (figures, shared) = results.get()
            for (s, f) in zip(shared, figures) {
                let e = expected(s)
                for h in 0..<2 {
                    assertClose(f.norm[h]!, e.norm[h], atol: 1e-9, rtol: 1e-5, "np \(size) \(s.view.name) norm \(h)")
                    assertClose(f.share[h]!, e.share[h], atol: 1e-6, rtol: 1e-5, "np \(size) \(s.view.name) share \(h)")
                }
                XCTAssertEqual(f.cosine.count, 1)
                assertClose(f.cosine[0].value!, e.cos, atol: 1e-6, rtol: 1e-5, "np \(size) \(s.view.name) cosine")
                XCTAssertGreaterThan(e.norm[1], 0, "\(s.view.name): the aux head reaches it")
            }
        }
    }

    func testADiagnosticPassChangesNothingTheStepComputes() throws {
        let (plain, data, _) = try tinyHeadline(
            heads: heads, l2: ["dense": 0.01], batch: 8, optimizer: OptimizerConfig(kind: .adam))
        let (watched, data2, _) = try tinyHeadline(
            heads: heads, l2: ["dense": 0.01], batch: 8, optimizer: OptimizerConfig(kind: .adam))
        let d = HeadDiagnostics(model: watched.model, heads: heads)
        for k in 0..<3 {
            let rows = Array(batch.rotated(by: k))
            let a = try rows.withUnsafeBufferPointer { try plain.run(globalBatch: $0, data: data) }
            _ = try rows.withUnsafeBufferPointer { try watched.diagnose(d, globalBatch: $0, data: data2) }
            let b = try rows.withUnsafeBufferPointer { try watched.run(globalBatch: $0, data: data2) }
            XCTAssertEqual(a.headLossSums, b.headLossSums)
        }
        plain.synchronize()
        watched.synchronize()
        XCTAssertEqual(
            plain.model.parameters.snapshot(), watched.model.parameters.snapshot(), "the same weights, bit for bit")
    }
}

extension Array {
    fileprivate func rotated(by k: Int) -> [Element] { Array(self[(k % count)...] + self[..<(k % count)]) }
}

private final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: ([HeadDiagnostics.TensorFigures], [HeadDiagnostics.Shared]) = ([], [])
    func set(_ f: [HeadDiagnostics.TensorFigures], _ s: [HeadDiagnostics.Shared]) {
        lock.lock()
        value = (f, s)
        lock.unlock()
    }
    func get() -> ([HeadDiagnostics.TensorFigures], [HeadDiagnostics.Shared]) {
        lock.lock()
        defer { lock.unlock() }
        return value
    }
}
