// Two steps of every optimizer against numbers computed by hand (float64,
// outside Tandem) from Keras 3's update rules, SPEC §3:
//   w0 = [0.5, −1.25, 2.0], g1 = [0.1, −0.4, 3.0], g2 = [−0.2, 0.05, 1.5].
// Tolerance: Float32 arithmetic on values of order 1, 2e-6 relative.

import Tandem
import XCTest

final class OptimizerTests: XCTestCase {
    private func twoSteps(_ config: OptimizerConfig) -> [[Float]] {
        let w = UnsafeMutablePointer<Float>.allocate(capacity: 3)
        defer { w.deallocate() }
        w.initialize(from: [0.5, -1.25, 2.0], count: 3)
        let optimizer = Optimizer(config, parameterCount: 3)
        var out: [[Float]] = []
        for g: [Float] in [[0.1, -0.4, 3.0], [-0.2, 0.05, 1.5]] {
            var gm = g
            optimizer.step(parameters: w, gradients: &gm)
            out.append(Array(UnsafeBufferPointer(start: w, count: 3)))
        }
        XCTAssertEqual(optimizer.iterations, 2)
        return out
    }

    private func check(_ config: OptimizerConfig, _ expected: [[Double]], file: StaticString = #filePath, line: UInt = #line) {
        let got = twoSteps(config)
        for s in 0..<2 { assertClose(got[s], expected[s], atol: 1e-7, rtol: 2e-6, "step \(s + 1)", file: file, line: line) }
    }

    func testPlainSGD() {
        check(OptimizerConfig(kind: .sgd), [[0.499, -1.246, 1.97], [0.501, -1.2465, 1.955]])
    }

    func testSGDMomentum() {
        var c = OptimizerConfig(kind: .sgd, learningRate: 0.1); c.momentum = 0.9
        check(c, [[0.49, -1.21, 1.7], [0.501, -1.179, 1.28]])
    }

    func testSGDNesterov() {
        var c = OptimizerConfig(kind: .sgd, learningRate: 0.1); c.momentum = 0.9; c.nesterov = true
        check(c, [[0.481, -1.174, 1.43], [0.5109, -1.1511, 0.902]])
    }

    func testAdamDefaults() {
        check(OptimizerConfig(kind: .adam), [[0.499000032, -1.24900001, 1.999], [0.49936613, -1.24842748, 1.99806782]])
    }

    func testAdamLearningRate() {
        check(OptimizerConfig(kind: .adam, learningRate: 0.01),
              [[0.490000316, -1.24000008, 1.99000001], [0.4936613, -1.23427478, 1.98067822]])
    }

    func testRMSpropEpsilonInsideTheRoot() {
        check(OptimizerConfig(kind: .rmsprop), [[0.49683788, -1.24683773, 1.99683772], [0.499694994, -1.24725083, 1.9953633]])
    }

    func testKerasDefaults() {
        XCTAssertEqual(OptimizerConfig(kind: .sgd).learningRate, 0.01)
        XCTAssertEqual(OptimizerConfig(kind: .adam).learningRate, 0.001)
        XCTAssertEqual(OptimizerConfig(kind: .rmsprop).learningRate, 0.001)
    }

    func testZeroGradientStillDecaysAdamMoments() {
        // Every parameter gets the dense rule: a zero gradient still moves w via m.
        let w = UnsafeMutablePointer<Float>.allocate(capacity: 1); defer { w.deallocate() }
        w.pointee = 1
        let o = Optimizer(OptimizerConfig(kind: .adam), parameterCount: 1)
        var one: [Float] = [1]; o.step(parameters: w, gradients: &one)
        let afterFirst = w.pointee, m1 = o.slot("m")!.pointee
        var zero: [Float] = [0]; o.step(parameters: w, gradients: &zero)
        XCTAssertEqual(o.slot("m")!.pointee, m1 * 0.9, accuracy: 1e-7)  // m + (0 − m)·0.1 rounds differently from 0.9·m
        XCTAssertLessThan(w.pointee, afterFirst)
    }

    func testAdamVectorPathMatchesTheRuleOnEveryLane() {
        // 37 parameters: two 16-lane blocks and a scalar tail of 5.
        let n = 37
        var rng = SeededGenerator(seed: 5)
        let w0 = (0..<n).map { _ in Float(rng.uniform(-1, 1)) }
        let grads = (0..<3).map { _ in (0..<n).map { _ in Float(rng.uniform(-2, 2)) } }
        let w = UnsafeMutablePointer<Float>.allocate(capacity: n); defer { w.deallocate() }
        w.initialize(from: w0, count: n)
        let optimizer = Optimizer(OptimizerConfig(kind: .adam, learningRate: 0.01), parameterCount: n)
        for g in grads { var gm = g; optimizer.step(parameters: w, gradients: &gm) }
        for i in 0..<n {
            var wi = Double(w0[i]), m = 0.0, v = 0.0
            for (t, g) in grads.enumerated() {
                let alpha = 0.01 * (1 - pow(0.999, Double(t + 1))).squareRoot() / (1 - pow(0.9, Double(t + 1)))
                let gi = Double(g[i])
                m += (gi - m) * 0.1; v += (gi * gi - v) * 0.001
                wi -= alpha * m / (v.squareRoot() + 1e-7)
            }
            // Float32 against Double over three steps of size ~0.01.
            assertClose(Double(w[i]), wi, atol: 1e-6, rtol: 1e-6, "lane \(i)")
        }
    }

    func testDeferredRowsAreBitIdenticalToTheDenseRule() {
        // 7 leading parameters, a table of 5 rows × 6, 3 trailing; rows get gradient on some steps only.
        let n = 7 + 30 + 3
        var rng = SeededGenerator(seed: 8)
        let w0 = (0..<n).map { _ in Float(rng.uniform(-1, 1)) }
        let dense = Optimizer(OptimizerConfig(kind: .adam, learningRate: 0.01), parameterCount: n)
        let lazy = Optimizer(OptimizerConfig(kind: .adam, learningRate: 0.01), parameterCount: n)
        lazy.enableDeferredRows(offset: 7, rows: 5, width: 6)
        let wd = UnsafeMutablePointer<Float>.allocate(capacity: n), wl = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { wd.deallocate(); wl.deallocate() }
        wd.initialize(from: w0, count: n); wl.initialize(from: w0, count: n)
        for step in 0..<12 {
            var g = (0..<n).map { _ in Float(rng.uniform(-1, 1)) }
            for row in 0..<5 where (row + step) % 3 != 0 || row == 4 {  // row 4 never gets gradient
                for j in 0..<6 { g[7 + row * 6 + j] = 0 }
            }
            var g2 = g
            dense.step(parameters: wd, gradients: &g, clear: true)
            lazy.step(parameters: wl, gradients: &g2, clear: true)
            XCTAssertEqual(g2, [Float](repeating: 0, count: n), "clear leaves the gradient zero")
            if step == 5 {  // a row read mid-way is current after catchUp
                lazy.catchUp(row: 2, parameters: wl)
                XCTAssertEqual(Array(UnsafeBufferPointer(start: wl + 19, count: 6)), Array(UnsafeBufferPointer(start: wd + 19, count: 6)))
            }
        }
        XCTAssertNotEqual(Array(UnsafeBufferPointer(start: wl, count: n)), Array(UnsafeBufferPointer(start: wd, count: n)),
                          "some rows were deferred (else this test proves nothing)")
        lazy.catchUpAll(parameters: wl)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: wl, count: n)), Array(UnsafeBufferPointer(start: wd, count: n)), "weights: same bits")
        for slot in ["m", "v"] {
            XCTAssertEqual(Array(UnsafeBufferPointer(start: lazy.slot(slot)!, count: n)),
                           Array(UnsafeBufferPointer(start: dense.slot(slot)!, count: n)), "\(slot): same bits")
        }
    }
}
