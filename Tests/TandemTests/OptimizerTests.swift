// Two steps of every optimizer against numbers computed by hand (float64,
// outside Tandem) from Keras 3's update rules, docs/SPEC.md §3:
//   w0 = [0.5, −1.25, 2.0], g1 = [0.1, −0.4, 3.0], g2 = [−0.2, 0.05, 1.5].
// Tolerance: Float32 arithmetic on values of order 1, 2e-6 relative.

import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

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

    private func check(
        _ config: OptimizerConfig, _ expected: [[Double]], file: StaticString = #filePath, line: UInt = #line
    ) {
        let got = twoSteps(config)
        for s in 0..<2 {
            assertClose(got[s], expected[s], atol: 1e-7, rtol: 2e-6, "step \(s + 1)", file: file, line: line)
        }
    }

    func testPlainSGD() {
        check(OptimizerConfig(kind: .sgd), [[0.499, -1.246, 1.97], [0.501, -1.2465, 1.955]])
    }

    func testSGDMomentum() {
        var c = OptimizerConfig(kind: .sgd, learningRate: 0.1)
        c.momentum = 0.9
        check(c, [[0.49, -1.21, 1.7], [0.501, -1.179, 1.28]])
    }

    func testSGDNesterov() {
        var c = OptimizerConfig(kind: .sgd, learningRate: 0.1)
        c.momentum = 0.9
        c.nesterov = true
        check(c, [[0.481, -1.174, 1.43], [0.5109, -1.1511, 0.902]])
    }

    func testAdamDefaults() {
        check(
            OptimizerConfig(kind: .adam), [[0.499000032, -1.24900001, 1.999], [0.49936613, -1.24842748, 1.99806782]])
    }

    func testAdamLearningRate() {
        check(
            OptimizerConfig(kind: .adam, learningRate: 0.01),
            [[0.490000316, -1.24000008, 1.99000001], [0.4936613, -1.23427478, 1.98067822]])
    }

    func testRMSpropEpsilonInsideTheRoot() {
        check(
            OptimizerConfig(kind: .rmsprop),
            [[0.49683788, -1.24683773, 1.99683772], [0.499694994, -1.24725083, 1.9953633]])
    }

    func testKerasDefaults() {
        XCTAssertEqual(OptimizerConfig(kind: .sgd).learningRate, 0.01)
        XCTAssertEqual(OptimizerConfig(kind: .adam).learningRate, 0.001)
        XCTAssertEqual(OptimizerConfig(kind: .rmsprop).learningRate, 0.001)
    }

    func testZeroGradientStillDecaysAdamMoments() {
        // Every parameter gets the dense rule: a zero gradient still moves w via m.
        let w = UnsafeMutablePointer<Float>.allocate(capacity: 1)
        defer { w.deallocate() }
        w.pointee = 1
        let o = Optimizer(OptimizerConfig(kind: .adam), parameterCount: 1)
        var one: [Float] = [1]
        o.step(parameters: w, gradients: &one)
        let afterFirst = w.pointee
        let m1 = o.slot("m")!.pointee
        var zero: [Float] = [0]
        o.step(parameters: w, gradients: &zero)
        XCTAssertEqual(o.slot("m")!.pointee, m1 * 0.9, accuracy: 1e-7)  // m + (0 − m)·0.1 rounds differently from 0.9·m
        XCTAssertLessThan(w.pointee, afterFirst)
    }

    func testAdamVectorPathMatchesTheRuleOnEveryLane() {
        // 37 parameters: two 16-lane blocks and a scalar tail of 5.
        let n = 37
        var rng = SeededGenerator(seed: 5)
        let w0 = (0..<n).map { _ in Float(rng.uniform(-1, 1)) }
        let grads = (0..<3).map { _ in (0..<n).map { _ in Float(rng.uniform(-2, 2)) } }
        let w = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { w.deallocate() }
        w.initialize(from: w0, count: n)
        let optimizer = Optimizer(OptimizerConfig(kind: .adam, learningRate: 0.01), parameterCount: n)
        for g in grads {
            var gm = g
            optimizer.step(parameters: w, gradients: &gm)
        }
        for i in 0..<n {
            var wi = Double(w0[i])
            var m = 0.0
            var v = 0.0
            for (t, g) in grads.enumerated() {
                let alpha = 0.01 * (1 - pow(0.999, Double(t + 1))).squareRoot() / (1 - pow(0.9, Double(t + 1)))
                let gi = Double(g[i])
                m += (gi - m) * 0.1
                v += (gi * gi - v) * 0.001
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
        let wd = UnsafeMutablePointer<Float>.allocate(capacity: n)
        let wl = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer {
            wd.deallocate()
            wl.deallocate()
        }
        wd.initialize(from: w0, count: n)
        wl.initialize(from: w0, count: n)
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
                XCTAssertEqual(
                    Array(UnsafeBufferPointer(start: wl + 19, count: 6)),
                    Array(UnsafeBufferPointer(start: wd + 19, count: 6)))
            }
        }
        XCTAssertNotEqual(
            Array(UnsafeBufferPointer(start: wl, count: n)), Array(UnsafeBufferPointer(start: wd, count: n)),
            "some rows were deferred (else this test proves nothing)")
        lazy.catchUpAll(parameters: wl)
        XCTAssertEqual(
            Array(UnsafeBufferPointer(start: wl, count: n)), Array(UnsafeBufferPointer(start: wd, count: n)),
            "weights: same bits")
        for slot in ["m", "v"] {
            XCTAssertEqual(
                Array(UnsafeBufferPointer(start: lazy.slot(slot)!, count: n)),
                Array(UnsafeBufferPointer(start: dense.slot(slot)!, count: n)), "\(slot): same bits")
        }
    }

    // MARK: The optimizers of docs/SPEC.md §9 (numbers from the float64 rules; Keras's apply agrees to float32)

    /// Steps of `config` from w0 with g1, g2 and then g3 = 0 (so AMSGrad's maximum differs from v).
    private func steps(
        _ config: OptimizerConfig, _ n: Int, tensors: [(offset: Int, count: Int, trainable: Bool)]? = nil
    ) -> [[Float]] {
        let w = UnsafeMutablePointer<Float>.allocate(capacity: 3)
        defer { w.deallocate() }
        w.initialize(from: [0.5, -1.25, 2.0], count: 3)
        let optimizer = Optimizer(config, parameterCount: 3, tensors: tensors)
        var out: [[Float]] = []
        for g: [Float] in [[0.1, -0.4, 3.0], [-0.2, 0.05, 1.5], [0, 0, 0]].prefix(n) {
            var gm = g
            optimizer.step(parameters: w, gradients: &gm)
            out.append(Array(UnsafeBufferPointer(start: w, count: 3)))
        }
        return out
    }

    private func check(
        _ config: OptimizerConfig, steps expected: [[Double]],
        tensors: [(offset: Int, count: Int, trainable: Bool)]? = nil,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        let got = steps(config, expected.count, tensors: tensors)
        for s in expected.indices {
            assertClose(got[s], expected[s], atol: 2e-7, rtol: 2e-6, "step \(s + 1)", file: file, line: line)
        }
    }

    private func config(_ kind: OptimizerConfig.Kind, _ lr: Double, _ edit: (inout OptimizerConfig) -> Void = { _ in })
        -> OptimizerConfig
    {
        var c = OptimizerConfig(kind: kind, learningRate: lr)
        edit(&c)
        return c
    }

    func testAMSGradDividesByTheRunningMaximum() {
        let adam: [[Double]] = [
            [0.490000316, -1.24000008, 1.99000001], [0.4936613, -1.23427478, 1.98067822],
            [0.496491251, -1.2298491, 1.97347245],
        ]
        check(config(.adam, 0.01), steps: adam)
        check(
            config(.adam, 0.01) { $0.amsgrad = true },
            steps: [adam[0], adam[1], [0.496489835, -1.22985132, 1.97347606]])
    }

    func testAdamWDecaysBeforeTheRule() {
        XCTAssertEqual(OptimizerConfig(kind: .adamw).weightDecay, 0.004, "Keras's default")
        check(
            OptimizerConfig(kind: .adamw, learningRate: 0.01),
            steps: [[0.489980316, -1.23995008, 1.98992001], [0.4936217, -1.23417518, 1.98051863]])
    }

    func testRMSpropMomentumAndCentered() {
        check(
            config(.rmsprop, 0.01) { $0.momentum = 0.9 },
            steps: [[0.468378804, -1.21837732, 1.96837723], [0.468490865, -1.19404786, 1.92517253]])
        check(
            config(.rmsprop, 0.01) {
                $0.momentum = 0.5
                $0.centered = true
            },
            steps: [[0.466668518, -1.21666678, 1.96666667], [0.478933344, -1.20427366, 1.93381191]])
    }

    func testAdagradStartsFromItsInitialAccumulator() {
        check(
            config(.adagrad, 0.1),
            steps: [[0.469848879, -1.17155356, 1.90055097], [0.52148864, -1.18131256, 1.85602706]])
    }

    func testAdadelta() {
        // Keras's defaults: ρ 0.95, ε 1e-7; lr 1 (its 0.001 would barely move the weights).
        var c = config(.adadelta, 1.0)
        XCTAssertEqual(c.rho, 0.95)
        check(c, steps: [[0.498585928, -1.2485858, 1.99858579], [0.500383668, -1.2488402, 1.99767292]])
        c.rho = 0.5
        XCTAssertNotEqual(twoSteps(c)[1], twoSteps(config(.adadelta, 1.0))[1], "ρ is read")
    }

    func testLionTakesTheSignOfItsInterpolation() {
        // β1 0.9, β2 0.99 (Keras's defaults): step 2's first two elements turn back (the sign of
        // 0.9·m + 0.1·g flips), the third keeps going.
        let c = config(.lion, 0.01)
        XCTAssertEqual(c.beta2, 0.99)
        check(c, steps: [[0.49, -1.24, 1.99], [0.5, -1.25, 1.98]])
    }

    func testMovingAverageOfTheWeights() {
        // SGD lr 1, EMA momentum 0.5: w1 = [0.4, −0.85, −1], the average starts as w1 (momentum 0 at
        // the first update); w2 = [0.6, −0.9, −2.5], average ½·w1 + ½·w2. The end of fit writes it over w.
        for overwrite in [nil, 2] as [Int?] {
            var c = config(.sgd, 1)
            c.useEMA = true
            c.emaMomentum = 0.5
            c.emaOverwriteFrequency = overwrite
            let w = UnsafeMutablePointer<Float>.allocate(capacity: 3)
            defer { w.deallocate() }
            w.initialize(from: [0.5, -1.25, 2.0], count: 3)
            let optimizer = Optimizer(c, parameterCount: 3)
            XCTAssertEqual(optimizer.slots.map(\.name), ["average"])
            for g: [Float] in [[0.1, -0.4, 3.0], [-0.2, 0.05, 1.5]] {
                var gm = g
                optimizer.step(parameters: w, gradients: &gm)
            }
            let average = Array(UnsafeBufferPointer(start: optimizer.slot("average")!, count: 3))
            for (a, e) in zip(average, [0.5, -0.875, -1.75] as [Float]) { XCTAssertEqual(a, e, accuracy: 1e-6) }
            let expected: [Float] = overwrite == nil ? [0.6, -0.9, -2.5] : average
            for j in 0..<3 {
                XCTAssertEqual(
                    w[j], expected[j], accuracy: 1e-6,
                    "overwritten every 2nd update: \(overwrite.map(String.init) ?? "never")")
            }
            optimizer.finalizeWeights(w)
            XCTAssertEqual(Array(UnsafeBufferPointer(start: w, count: 3)), average)
        }
        var c = config(.adam, 0.01)
        c.useEMA = true
        c.gradientAccumulationSteps = 2
        XCTAssertThrowsError(try c.validate())
    }

    func testFtrl() {
        // lr 0.1, learning_rate_power −0.5, initial accumulator 0.1, l1 0.001, l2 0.01, l2 shrinkage 0.001, beta 0.1.
        let c = config(.ftrl, 0.1) {
            $0.l1Strength = 0.001
            $0.l2Strength = 0.01
            $0.l2ShrinkageStrength = 0.001
            $0.ftrlBeta = 0.1
        }
        XCTAssertEqual(Optimizer.slotNames(c), ["accumulator", "linear"])
        check(c, steps: [[-0.00526364074, -0.329697807, 1.63543], [0.0352046203, -0.33772919, 1.59212025]])
    }

    func testAdamax() {
        check(config(.adamax, 0.01), steps: [[0.49000001, -1.24, 1.99], [0.492894745, -1.23591697, 1.9826242]])
    }

    func testNadamAndItsMomentumProduct() {
        check(
            config(.nadam, 0.01),
            steps: [[0.489372133, -1.23937212, 1.98937212], [0.498188784, -1.23992442, 1.9841563]])
        let o = Optimizer(config(.nadam, 0.01), parameterCount: 1)
        let w = UnsafeMutablePointer<Float>.allocate(capacity: 1)
        defer { w.deallocate() }
        w.pointee = 1
        for _ in 0..<2 {
            var g: [Float] = [0.5]
            o.step(parameters: w, gradients: &g)
        }
        // Π_t β1(1 − ½·0.96^t) for t = 1, 2
        XCTAssertEqual(Double(o.nadamProduct), 0.9 * (1 - 0.5 * 0.96) * 0.9 * (1 - 0.5 * 0.96 * 0.96), accuracy: 1e-7)
    }

    func testClearingWithFrozenTensorsLeavesTheGradientZeroAndTheSameWeights() {
        // With a non-trainable tensor (a moving statistic) each trainable range's pass clears its own gradient;
        // the weights must be those of a step that does not clear, and every gradient element zero after.
        let tensors = [(offset: 0, count: 2, trainable: false), (2, 3, true), (5, 2, false), (7, 3, true)]
        let kinds = OptimizerConfig.Kind.allCases.filter { ![.adafactor, .lamb, .muon].contains($0) }
        for kind in kinds {
            var runs: [[Float]] = []
            for clear in [false, true] {
                let optimizer = Optimizer(
                    OptimizerConfig(kind: kind, learningRate: 0.01), parameterCount: 10, tensors: tensors)
                var w: [Float] = (0..<10).map { Float($0) / 7 - 0.6 }
                for step in 0..<3 {
                    var g: [Float] = (0..<10).map { Float(($0 * 5 + step * 3) % 11) / 4 - 1.2 }
                    optimizer.step(parameters: &w, gradients: &g, clear: clear)
                    if clear { XCTAssertEqual(g, [Float](repeating: 0, count: 10), "\(kind): step \(step)") }
                }
                runs.append(w)
            }
            XCTAssertEqual(runs[1].map(\.bitPattern), runs[0].map(\.bitPattern), "\(kind): weights")
        }
    }

    func testWeightDecaySkipsFrozenTensors() {
        // SGD lr 0.1, wd 0.5: w ← w − w·0.05 − 0.1·g on trainable tensors; the first element is frozen (a
        // frozen layer's weight, or a moving statistic): neither decayed nor moved by its gradient.
        check(config(.sgd, 0.1) { $0.weightDecay = 0.5 }, steps: [[0.465, -1.1475, 1.6], [0.46175, -1.095125, 1.37]])
        check(
            config(.sgd, 0.1) { $0.weightDecay = 0.5 }, steps: [[0.5, -1.1475, 1.6], [0.5, -1.095125, 1.37]],
            tensors: [(0, 1, false), (1, 2, true)])
    }

    func testClipnormIsPerTensorAndGlobalClipnormIsOverAll() {
        // SGD lr 1, one step, tensors [0.1] and [−0.4, 3.0]: clipnorm 1 leaves the first (norm 0.1), scales the
        // second by 1/√9.16; global_clipnorm 1 scales both by 1/√9.17.
        let tensors: [(offset: Int, count: Int, trainable: Bool)] = [(0, 1, true), (1, 2, true)]
        check(config(.sgd, 1) { $0.clipnorm = 1 }, steps: [[0.4, -1.117836280, 1.008772099]], tensors: tensors)
        check(
            config(.sgd, 1) { $0.globalClipnorm = 1 }, steps: [[0.466977091, -1.117908363, 1.009312720]],
            tensors: tensors)
        check(
            config(.adam, 0.01) { $0.globalClipnorm = 1 },
            steps: [[0.490000958, -1.24000024, 1.99000003], [0.495595863, -1.23530567, 1.98000005]])
        check(
            config(.adam, 0.01) { $0.clipvalue = 0.3 },
            steps: [[0.490000316, -1.24000011, 1.99000011], [0.4936613, -1.23461479, 1.98000018]])
    }

    func testOptimizerValuesAreChecked() {
        let bad: [(OptimizerConfig, String)] = [
            (config(.adam, -0.1), "learning_rate = -0.1"),
            (config(.sgd, 0.1) { $0.momentum = 1.5 }, "momentum = 1.5"),
            (config(.adam, 0.1) { $0.beta1 = 1 }, "beta_1 = 1.0"),
            (
                config(.adam, 0.1) {
                    $0.clipnorm = 1
                    $0.clipvalue = 2
                }, "only one of clipnorm, global_clipnorm and clipvalue"
            ),
            (config(.adam, 0.1) { $0.weightDecay = -1 }, "weight_decay = -1.0"),
        ]
        for (c, expected) in bad {
            XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains(expected), "\($0)") }
        }
    }

    func testDeferredRowsStayBitIdenticalUnderASchedule() {
        var c = config(.adam, 0.01)
        c.schedule = .exponentialDecay(initial: 0.01, decaySteps: 3, decayRate: 0.5, staircase: false)
        let n = 2 + 12
        var rng = SeededGenerator(seed: 4)
        let w0 = (0..<n).map { _ in Float(rng.uniform(-1, 1)) }
        let dense = Optimizer(c, parameterCount: n)
        let lazy = Optimizer(c, parameterCount: n)
        lazy.enableDeferredRows(offset: 2, rows: 4, width: 3)
        XCTAssertTrue(lazy.defersRows)
        let wd = UnsafeMutablePointer<Float>.allocate(capacity: n)
        let wl = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer {
            wd.deallocate()
            wl.deallocate()
        }
        wd.initialize(from: w0, count: n)
        wl.initialize(from: w0, count: n)
        for step in 0..<9 {
            var g = (0..<n).map { _ in Float(rng.uniform(-1, 1)) }
            for row in 0..<4 where (row + step) % 2 == 0 { for j in 0..<3 { g[2 + row * 3 + j] = 0 } }
            var g2 = g
            dense.step(parameters: wd, gradients: &g)
            lazy.step(parameters: wl, gradients: &g2)
        }
        lazy.catchUpAll(parameters: wl)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: wl, count: n)), Array(UnsafeBufferPointer(start: wd, count: n)))
        // Rules that touch every row are not deferred, and say why.
        for (edit, why) in [
            ({ (c: inout OptimizerConfig) in c.weightDecay = 0.1 }, "weight decay"), ({ $0.amsgrad = true }, "AMSGrad"),
        ] {
            var other = config(.adam, 0.01)
            edit(&other)
            let o = Optimizer(other, parameterCount: n)
            o.enableDeferredRows(offset: 2, rows: 4, width: 3)
            XCTAssertFalse(o.defersRows)
            XCTAssertTrue(o.deferralRefusal?.contains(why) ?? false, o.deferralRefusal ?? "nil")
        }
    }
}
