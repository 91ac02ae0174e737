// Part of what KernelTests.swift's header describes.

import CKernels
import Foundation
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class LSTMKernelTests: XCTestCase {
    func testVectorisedExpSigmoidTanhAgainstLibm() {
        var worstExp = 0.0
        var worstTanh = 0.0
        var worstSigmoid = 0.0
        var x: Float = -80
        while x < 80 {
            worstExp = max(worstExp, abs(Double(tandem_exp(x)) - Foundation.exp(Double(x))) / Foundation.exp(Double(x)))
            let t = Foundation.tanh(Double(x))
            worstTanh = max(worstTanh, abs(Double(tandem_tanh(x)) - t) / max(abs(t), 1e-30))
            let s = 1 / (1 + Foundation.exp(-Double(x)))
            worstSigmoid = max(worstSigmoid, abs(Double(tandem_sigmoid(x)) - s) / s)
            x += 0.0013
        }
        // Cephes's polynomial: a few Float32 ulps (1 ulp ≈ 1.2e-7 relative).
        XCTAssertLessThan(worstExp, 4e-7)
        XCTAssertLessThan(worstTanh, 1e-6)
        XCTAssertLessThan(worstSigmoid, 1e-6)
        XCTAssertEqual(tandem_tanh(0), 0)
        XCTAssertEqual(tandem_sigmoid(200), 1)
        XCTAssertEqual(tandem_sigmoid(-200), 0, accuracy: 1e-37)
    }

    func testStepKernelsMatchTheSwiftReference() {
        var rng = SeededGenerator(seed: 17)
        for units in [1, 5, 32, 37] {
            for (hasPrevious, hasInput) in [(false, false), (true, false), (false, true), (true, true)] {
                let g = 4 * units
                var z1 = (0..<g).map { _ in Float(rng.uniform(-4, 4)) }
                // With x, the kernel adds it to z first: the reference gets z + x.
                let x = (0..<g).map { _ in Float(rng.uniform(-2, 2)) }
                var z2 = hasInput ? zip(z1, x).map { $0 + $1 } : z1
                let cPrev = (0..<units).map { _ in Float(rng.uniform(-2, 2)) }
                var c1 = [Float](repeating: 0, count: units)
                var c2 = c1
                var h1 = c1
                var h2 = c1
                var tc1 = c1
                cPrev.withUnsafeBufferPointer { p in
                    x.withUnsafeBufferPointer { xs in
                        tandem_lstm_step_forward(
                            &z1, hasInput ? xs.baseAddress : nil, hasPrevious ? p.baseAddress : nil,
                            &c1, &tc1, &h1, Int32(units))
                    }
                    lstmStepForwardReference(&z2, hasPrevious ? p.baseAddress : nil, &c2, &h2, units: units)
                }
                // Activations agree to a few ulps of libm's.
                assertClose(z1, z2.map(Double.init), atol: 1e-6, rtol: 1e-6, "z, units \(units)")
                assertClose(c1, c2.map(Double.init), atol: 1e-6, rtol: 1e-6, "c")
                assertClose(h1, h2.map(Double.init), atol: 1e-6, rtol: 1e-6, "h")
                assertClose(tc1, c2.map { Double(tanhf($0)) }, atol: 1e-6, rtol: 1e-6, "tanh(c)")
                let dh = (0..<units).map { _ in Float(rng.uniform(-1, 1)) }
                var dc1 = (0..<units).map { _ in Float(rng.uniform(-1, 1)) }
                var dc2 = dc1
                var dz1 = [Float](repeating: 0, count: g)
                var dz2 = dz1
                cPrev.withUnsafeBufferPointer { p in
                    tandem_lstm_step_backward(
                        z2, c2.map(tanhf), hasPrevious ? p.baseAddress : nil, dh, &dc1, &dz1, Int32(units))
                    lstmStepBackwardReference(z2, c2, hasPrevious ? p.baseAddress : nil, dh, &dc2, &dz2, units: units)
                }
                assertClose(dz1, dz2.map(Double.init), atol: 1e-6, rtol: 1e-5, "dz")
                assertClose(dc1, dc2.map(Double.init), atol: 1e-6, rtol: 1e-5, "dc")
            }
        }
    }

    /// The gradient scan behind the finite check and the touched-row list: the largest
    /// exponent field and the OR of every bit, against a scalar loop, at every length 0…100
    /// (the kernel keeps 32 lanes: whole blocks, tails, and a special value in either).
    func testBitsAndExponentScanMatchesAScalarLoop() {
        var rng = SeededGenerator(seed: 5)
        let specials: [Float] = [
            0, -0.0, .leastNonzeroMagnitude, -.greatestFiniteMagnitude, .infinity, -.infinity, .nan, 3,
        ]
        for n in 0...100 {
            for special in specials {
                // A zero special goes into zeros (so −0 alone must count as set), the others into noise.
                var x = (0..<n).map { _ in special == 0 ? 0 : Float(rng.uniform(-1e-3, 1e-3)) }
                if n > 0 { x[Int(rng.uniform(0, Double(n) - 0.01))] = special }
                var anyBits: UInt32 = 0
                var top: UInt32 = 0
                for v in x {
                    anyBits |= v.bitPattern
                    top = max(top, v.bitPattern & 0x7F80_0000)
                }
                var any: UInt32 = 0
                let exponent = tandem_bits_and_exponent(x, n, &any)
                XCTAssertEqual(exponent, top, "n \(n), \(special)")
                XCTAssertEqual(any, anyBits, "n \(n), \(special)")
            }
        }
    }

    /// The GRU (reset_after) kernels against the rule written out with libm, in Double.
    func testGRUStepKernelsMatchTheRule() {
        var rng = SeededGenerator(seed: 23)
        func sig(_ x: Double) -> Double { 1 / (1 + Foundation.exp(-x)) }
        for units in [1, 5, 32, 37, 64] {
            let g = 3 * units
            let x = (0..<g).map { _ in Float(rng.uniform(-4, 4)) }
            let rec = (0..<g).map { _ in Float(rng.uniform(-4, 4)) }
            let before = (0..<units).map { _ in Float(rng.uniform(-1, 1)) }
            let dh = (0..<units).map { _ in Float(rng.uniform(-1, 1)) }
            var a = [Float](repeating: 0, count: g)
            var h = [Float](repeating: 0, count: units)
            tandem_gru_step_forward(x, rec, &a, before, &h, Int32(units))
            var wantA = [Double](repeating: 0, count: g)
            var wantH = [Double](repeating: 0, count: units)
            for j in 0..<units {
                let z = sig(Double(x[j]) + Double(rec[j]))
                let r = sig(Double(x[units + j]) + Double(rec[units + j]))
                let hh = Foundation.tanh(Double(x[2 * units + j]) + r * Double(rec[2 * units + j]))
                wantA[j] = z
                wantA[units + j] = r
                wantA[2 * units + j] = hh
                wantH[j] = z * Double(before[j]) + (1 - z) * hh
            }
            assertClose(a, wantA, atol: 2e-6, rtol: 2e-6, "activations, units \(units)")
            assertClose(h, wantH, atol: 2e-6, rtol: 2e-6, "h")
            var keep = [Float](repeating: 0, count: units)
            var dx = [Float](repeating: 0, count: g)
            var dr = dx
            tandem_gru_step_backward(a, rec, before, dh, &keep, &dx, &dr, Int32(units))
            var wantKeep = [Double](repeating: 0, count: units)
            var wantDx = [Double](repeating: 0, count: g)
            var wantDr = wantDx
            for j in 0..<units {  // from the kernel's own activations, so only the backward rule is tested here
                let z = Double(a[j])
                let r = Double(a[units + j])
                let hh = Double(a[2 * units + j])
                let d = Double(dh[j])
                let daz = d * (Double(before[j]) - hh) * z * (1 - z)
                let dah = d * (1 - z) * (1 - hh * hh)
                let dar = dah * Double(rec[2 * units + j]) * r * (1 - r)
                wantKeep[j] = d * z
                wantDx[j] = daz
                wantDr[j] = daz
                wantDx[units + j] = dar
                wantDr[units + j] = dar
                wantDx[2 * units + j] = dah
                wantDr[2 * units + j] = dah * r
            }
            assertClose(keep, wantKeep, atol: 1e-6, rtol: 1e-5, "keep")
            assertClose(dx, wantDx, atol: 1e-6, rtol: 1e-5, "dx")
            assertClose(dr, wantDr, atol: 1e-6, rtol: 1e-5, "dr")
        }
    }

    /// BatchNormalization's C passes give the bits of the scalar rule they replaced (each
    /// channel's Double sums in row order, no contraction) for channel counts on and off the
    /// vector widths.
    func testBatchNormalizationPassesMatchTheScalarRuleBitForBit() {
        var rng = SeededGenerator(seed: 31)
        for (rows, C) in [(1, 1), (5, 3), (7, 16), (33, 37), (64, 512)] {
            let x = (0..<rows * C).map { _ in Float(rng.uniform(-3, 3)) }
            let dy = (0..<rows * C).map { _ in Float(rng.uniform(-1, 1)) }
            let mean = (0..<C).map { _ in Float(rng.uniform(-1, 1)) }
            let inv = (0..<C).map { _ in Float(rng.uniform(0.5, 2)) }
            let gamma = (0..<C).map { _ in Float(rng.uniform(-2, 2)) }
            let beta = (0..<C).map { _ in Float(rng.uniform(-1, 1)) }
            let meanDy = (0..<C).map { _ in Float(rng.uniform(-0.1, 0.1)) }
            let meanDyx = (0..<C).map { _ in Float(rng.uniform(-0.1, 0.1)) }
            let scale = (0..<C).map { gamma[$0] * inv[$0] }
            var sum = [Double](repeating: 0, count: C)
            var sq = sum
            var wantSum = sum
            var wantSq = sum
            var y = [Float](repeating: 0, count: rows * C)
            var wantXhat = y
            var wantY = y
            var sdy = sum
            var sdyx = sum
            var wantSdy = sum
            var wantSdyx = sum
            var dx = (0..<rows * C).map { _ in Float(rng.uniform(-1, 1)) }
            var wantDx = dx
            var setDx = dx  // written outright (accumulate 0): what it held does not matter
            var wantSetDx = dx
            for r in 0..<rows {
                for c in 0..<C {
                    let i = r * C + c
                    let v = Double(x[i])
                    wantSum[c] += v
                    wantSq[c] += v * v
                    wantXhat[i] = (x[i] - mean[c]) * inv[c]
                    wantY[i] = wantXhat[i] * gamma[c] + beta[c]
                    wantSdy[c] += Double(dy[i])
                    wantSdyx[c] += Double(dy[i] * wantXhat[i])
                    wantDx[i] += gamma[c] * inv[c] * (dy[i] - meanDy[c] - wantXhat[i] * meanDyx[c])
                    wantSetDx[i] = gamma[c] * inv[c] * (dy[i] - meanDy[c] - wantXhat[i] * meanDyx[c])
                }
            }
            tandem_bn_sums(x, rows, Int32(C), &sum, &sq)
            tandem_bn_apply(x, rows, Int32(C), mean, inv, gamma, beta, &y, 0)
            tandem_bn_gradient_sums(dy, nil, 0, x, mean, inv, rows, Int32(C), &sdy, &sdyx)
            tandem_bn_backward(dy, nil, 0, x, mean, inv, rows, Int32(C), scale, meanDy, meanDyx, &dx, 1)
            tandem_bn_backward(dy, nil, 0, x, mean, inv, rows, Int32(C), scale, meanDy, meanDyx, &setDx, 0)
            let label = "\(rows) × \(C)"
            XCTAssertEqual(sum, wantSum, label)
            XCTAssertEqual(sq, wantSq, label)
            XCTAssertEqual(y.map(\.bitPattern), wantY.map(\.bitPattern), label)
            XCTAssertEqual(sdy, wantSdy, label)
            XCTAssertEqual(sdyx, wantSdyx, label)
            XCTAssertEqual(dx.map(\.bitPattern), wantDx.map(\.bitPattern), label)
            XCTAssertEqual(setDx.map(\.bitPattern), wantSetDx.map(\.bitPattern), label)
            // With a ReLU6 fused after it: the clamped output, and the ReLU's backward taken inside both passes.
            var a = y
            tandem_bn_apply(x, rows, Int32(C), mean, inv, gamma, beta, &a, 6)
            XCTAssertEqual(a.map(\.bitPattern), wantY.map { min(max($0, 0), 6).bitPattern }, label)
            let masked = (0..<rows * C).map { a[$0] > 0 && a[$0] < 6 ? dy[$0] : 0 }
            let zeros = [Double](repeating: 0, count: C)
            var (msdy, msdyx, wantMsdy, wantMsdyx) = (zeros, zeros, zeros, zeros)
            var (mdx, wantMdx) = (dx, dx)
            for i in 0..<(rows * C) {
                let c = i % C
                wantMsdy[c] += Double(masked[i])
                wantMsdyx[c] += Double(masked[i] * wantXhat[i])
                wantMdx[i] += gamma[c] * inv[c] * (masked[i] - meanDy[c] - wantXhat[i] * meanDyx[c])
            }
            tandem_bn_gradient_sums(dy, a, 6, x, mean, inv, rows, Int32(C), &msdy, &msdyx)
            tandem_bn_backward(dy, a, 6, x, mean, inv, rows, Int32(C), scale, meanDy, meanDyx, &mdx, 1)
            XCTAssertEqual(msdy, wantMsdy, label)
            XCTAssertEqual(msdyx, wantMsdyx, label)
            XCTAssertEqual(mdx.map(\.bitPattern), wantMdx.map(\.bitPattern), label)
            XCTAssertTrue(masked.contains(0) || rows * C < 10, label)
        }
    }

    /// LayerNormalization's C passes against the rule written out in Double, for widths on
    /// and off the 16-lane sums, with and without γ/β gradients.
    func testLayerNormalizationPassesMatchTheRule() {
        var rng = SeededGenerator(seed: 37)
        for (rows, F) in [(1, 1), (3, 5), (4, 16), (5, 17), (2, 37), (3, 512)] {
            let x = (0..<rows * F).map { _ in Float(rng.uniform(-3, 3)) }
            let dy = (0..<rows * F).map { _ in Float(rng.uniform(-1, 1)) }
            let gamma = (0..<F).map { _ in Float(rng.uniform(-2, 2)) }
            let beta = (0..<F).map { _ in Float(rng.uniform(-1, 1)) }
            let eps: Float = 0.01
            var xhat = [Float](repeating: 0, count: rows * F)
            var y = xhat
            var inv = [Float](repeating: 0, count: rows)
            var dg = [Float](repeating: 0.5, count: F)
            var db = dg
            var dx = [Float](repeating: 0.25, count: rows * F)
            tandem_ln_forward(x, rows, Int32(F), eps, gamma, beta, &xhat, &inv, &y)
            tandem_ln_backward(dy, xhat, inv, rows, Int32(F), gamma, &dg, &db, &dx)
            var dx2 = [Float](repeating: 0.25, count: rows * F)
            tandem_ln_backward(dy, xhat, inv, rows, Int32(F), gamma, nil, nil, &dx2)
            XCTAssertEqual(dx, dx2, "\(rows) × \(F): dx must not depend on whether γ/β gradients are wanted")
            var wantDg = [Double](repeating: 0.5, count: F)
            var wantDb = wantDg
            for r in 0..<rows {
                let row = (0..<F).map { Double(x[r * F + $0]) }
                let d = (0..<F).map { Double(dy[r * F + $0]) }
                let mean = row.reduce(0, +) / Double(F)
                let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(F)
                let s = 1 / (variance + Double(eps)).squareRoot()
                let n = row.map { ($0 - mean) * s }
                let g = (0..<F).map { d[$0] * Double(gamma[$0]) }
                let meanG = g.reduce(0, +) / Double(F)
                let meanGN = (0..<F).map { g[$0] * n[$0] }.reduce(0, +) / Double(F)
                let label = "\(rows) × \(F), row \(r)"
                XCTAssertEqual(Double(inv[r]), s, accuracy: 1e-5 * s, label)
                for j in 0..<F {
                    XCTAssertEqual(Double(xhat[r * F + j]), n[j], accuracy: 1e-5, label)
                    XCTAssertEqual(
                        Double(y[r * F + j]), n[j] * Double(gamma[j]) + Double(beta[j]), accuracy: 1e-5, label)
                    XCTAssertEqual(
                        Double(dx[r * F + j]), 0.25 + (g[j] - meanG - n[j] * meanGN) * s, accuracy: 1e-4, label)
                    wantDg[j] += d[j] * n[j]
                    wantDb[j] += d[j]
                }
            }
            for j in 0..<F {
                XCTAssertEqual(Double(dg[j]), wantDg[j], accuracy: 1e-5, "dγ \(rows) × \(F)")
                XCTAssertEqual(Double(db[j]), wantDb[j], accuracy: 1e-5, "dβ \(rows) × \(F)")
            }
        }
    }
}
