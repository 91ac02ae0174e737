// GEMM against the naive reference, activations, the orthogonal initialiser.

import CKernels
import Foundation
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class KernelTests: XCTestCase {
    func testGEMMMatchesReferenceForEveryTransposeAndBeta() {
        var rng = SeededGenerator(seed: 1)
        let (m, n, k) = (7, 5, 9)
        for ta in [Transpose.none, .transposed] {
            for tb in [Transpose.none, .transposed] {
                for beta: Float in [0, 1] {
                    var a = [Float](repeating: 0, count: m * k)
                    var b = [Float](repeating: 0, count: k * n)
                    var c1 = [Float](repeating: 0, count: m * n)
                    a.withUnsafeMutableBufferPointer { fillUniform($0.baseAddress!, m * k, &rng) }
                    b.withUnsafeMutableBufferPointer { fillUniform($0.baseAddress!, k * n, &rng) }
                    c1.withUnsafeMutableBufferPointer { fillUniform($0.baseAddress!, m * n, &rng) }
                    var c2 = c1
                    let lda = ta == .none ? k : m
                    let ldb = tb == .none ? n : k
                    gemm(ta, tb, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: &c1, ldc: n)
                    gemmReference(ta, tb, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: &c2, ldc: n)
                    // Float32 sums of 9 products of values in [-1, 1]: rounding ≤ ~1e-6.
                    assertClose(c1, c2.map(Double.init), atol: 1e-5, rtol: 1e-5, "\(ta) \(tb) beta \(beta)")
                }
            }
        }
    }

    func testOrthogonalInitialiserHasOrthonormalRows() {
        let spec = ParameterSpec(layer: "lstm", weight: "recurrent_kernel", shape: [3, 12], initializer: .orthogonal)
        let store = ParameterStore(specs: [spec])
        store.initialize(seed: 4)
        let q = store.values
        for i in 0..<3 {
            for j in 0..<3 {
                var dot = 0.0
                for c in 0..<12 { dot += Double(q[i * 12 + c]) * Double(q[j * 12 + c]) }
                // Float32 storage of a Double QR: 1e-6 is ample.
                assertClose(dot, i == j ? 1 : 0, atol: 1e-6, rtol: 0, "row \(i)·row \(j)")
            }
        }
    }

    func testInitialisersFollowKeras() {
        let specs = [
            ParameterSpec(
                layer: "d", weight: "kernel", shape: [30, 20], initializer: .glorotUniform(fanIn: 30, fanOut: 20)),
            ParameterSpec(layer: "e", weight: "embeddings", shape: [50, 8], initializer: .uniform(limit: 0.05)),
            ParameterSpec(layer: "l", weight: "bias", shape: [12], initializer: .lstmBias(units: 3)),
        ]
        let store = ParameterStore(specs: specs)
        store.initialize(seed: 9)
        let limit = Float((6.0 / 50).squareRoot())
        let k = store.value(store.view("d/kernel")!)
        XCTAssertTrue((0..<600).allSatisfy { abs(k[$0]) <= limit })
        XCTAssertGreaterThan((0..<600).map { abs(k[$0]) }.max()!, limit * 0.9, "glorot range is used")
        let e = store.value(store.view("e/embeddings")!)
        XCTAssertTrue((0..<400).allSatisfy { abs(e[$0]) <= 0.05 })
        let b = store.value(store.view("l/bias")!)
        XCTAssertEqual(
            (0..<12).map { b[$0] }, [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0], "forget gate (2nd block) starts at 1")
    }

    func testSoftmaxAndSigmoidAreStable() {
        XCTAssertEqual(sigmoid(-1000), 0)
        XCTAssertEqual(sigmoid(1000), 1)
        let z: [Float] = [1000, 0, -1000]
        var y = [Float](repeating: 0, count: 3)
        Activation.softmax.apply(z, &y, rows: 1, columns: 3)
        XCTAssertEqual(y, [1, 0, 0])
    }

    func testEpochPermutationDependsOnlyOnSeedAndEpoch() {
        let a = epochPermutation(count: 100, seed: 3, epoch: 2)
        XCTAssertEqual(a, epochPermutation(count: 100, seed: 3, epoch: 2))
        XCTAssertNotEqual(a, epochPermutation(count: 100, seed: 3, epoch: 1))
        XCTAssertEqual(a.sorted(), (0..<100).map(Int32.init))
    }
}
