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

    /// Both libraries `gemm` may run, called directly: sub-matrices (leading dimensions wider than the
    /// operands), alpha and beta, tiny and wide shapes, every transpose; and the same bits when called again.
    func testOpenBLASAndOneDNNProductsMatchTheReference() {
        var rng = SeededGenerator(seed: 2)
        for library in GEMMLibrary.allCases {
            for (m, n, k) in [(1, 1, 1), (7, 5, 9), (33, 130, 65), (64, 3, 200), (2, 257, 17)] {
                for ta in [Transpose.none, .transposed] {
                    for tb in [Transpose.none, .transposed] {
                        for (alpha, beta): (Float, Float) in [(1, 0), (1, 1), (0.5, 0.3)] {
                            // Stored with 3 spare columns per row: the products must read and write only theirs.
                            let (lda, ldb, ldc) = ((ta == .none ? k : m) + 3, (tb == .none ? n : k) + 3, n + 3)
                            var a = [Float](repeating: 0, count: (ta == .none ? m : k) * lda)
                            var b = [Float](repeating: 0, count: (tb == .none ? k : n) * ldb)
                            var c = [Float](repeating: 0, count: m * ldc)
                            a.withUnsafeMutableBufferPointer { fillUniform($0.baseAddress!, $0.count, &rng) }
                            b.withUnsafeMutableBufferPointer { fillUniform($0.baseAddress!, $0.count, &rng) }
                            c.withUnsafeMutableBufferPointer { fillUniform($0.baseAddress!, $0.count, &rng) }
                            var expected = c
                            gemmReference(
                                ta, tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta,
                                c: &expected, ldc: ldc)
                            var runs: [[Float]] = []
                            for _ in 0..<2 {
                                var mine = c
                                switch library {
                                case .openBLAS:
                                    gemmOpenBLAS(
                                        ta, tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                                        beta: beta, c: &mine, ldc: ldc)
                                case .oneDNN:
                                    gemmOneDNN(
                                        ta, tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                                        beta: beta, c: &mine, ldc: ldc)
                                }
                                runs.append(mine)
                            }
                            let what = "\(library) \(m)×\(n)×\(k) \(ta) \(tb) alpha \(alpha) beta \(beta)"
                            XCTAssertEqual(runs[0], runs[1], "\(what): the same bits when called again")
                            for i in 0..<m {
                                for j in n..<ldc {
                                    XCTAssertEqual(
                                        runs[0][i * ldc + j], c[i * ldc + j], "\(what): spare column written")
                                }
                            }
                            // Float32 sums of up to 200 products of values in [-1, 1], in another order than the
                            // Double reference: a few ulps of the sum's magnitude (≤ ~15).
                            assertClose(runs[0], expected.map(Double.init), atol: 2e-5, rtol: 1e-5, what)
                        }
                    }
                }
            }
        }
    }

    /// The rule `gemm` picks a library by (GEMMKernels.byShape): narrow products on OpenBLAS; with OpenBLAS's
    /// own kernels, products under 2²⁰ multiply-adds too; with narrower kernels than the CPU's, the rest on oneDNN.
    func testProductsGoToTheLibraryMeasuredFasterForTheirShape() {
        for native in [true, false] {
            XCTAssertEqual(GEMMKernels.byShape(m: 25600, n: 4, k: 128, openBLASIsNative: native), .openBLAS)
            XCTAssertEqual(GEMMKernels.byShape(m: 32, n: 128, k: 3200, openBLASIsNative: native), .oneDNN)
            XCTAssertEqual(GEMMKernels.byShape(m: 256, n: 32, k: 128, openBLASIsNative: native), .oneDNN)  // 2²⁰
        }
        XCTAssertEqual(GEMMKernels.byShape(m: 32, n: 32, k: 128, openBLASIsNative: true), .openBLAS)
        XCTAssertEqual(GEMMKernels.byShape(m: 255, n: 32, k: 128, openBLASIsNative: true), .openBLAS)
        XCTAssertEqual(GEMMKernels.byShape(m: 32, n: 32, k: 128, openBLASIsNative: false), .oneDNN)
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
