// Loss weights over time: schedules by hand, the uncertainty weighting's first
// steps by hand (SGD and Adam), and a constant schedule = the constant weight.

import Foundation
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class LossWeightingTests: XCTestCase {
    func testSchedulesByHand() throws {
        let ramp = try LossWeightSchedule.parse("linear:1:0.1:10:20")
        XCTAssertEqual(
            [0, 10, 15, 20, 30].map { ramp.weight(afterSteps: $0, stepsPerEpoch: 7) },
            [1, 1, 0.55, 0.1, 0.1].map { $0 }, "ramp")
        let epochs = try LossWeightSchedule.parse("linear:0:2:1e:3e")  // steps 5 → 15 at 5 steps per epoch
        XCTAssertEqual(epochs.weight(afterSteps: 5, stepsPerEpoch: 5), 0)
        XCTAssertEqual(epochs.weight(afterSteps: 10, stepsPerEpoch: 5), 1, accuracy: 1e-15)
        XCTAssertEqual(epochs.weight(afterSteps: 16, stepsPerEpoch: 5), 2)
        let change = try LossWeightSchedule.parse("step:0.5:0:2e")
        XCTAssertEqual([0, 7, 8, 9].map { change.weight(afterSteps: $0, stepsPerEpoch: 4) }, [0.5, 0.5, 0, 0])
        XCTAssertEqual(try LossWeightSchedule.parse("constant:0.3").weight(afterSteps: 99, stepsPerEpoch: 1), 0.3)
        for bad in ["linear:1:0:5", "ramp:1", "constant:-1", "step:1:0:x", "linear:1:0:3:2e2", "constant:nan"] {
            XCTAssertThrowsError(try LossWeightSchedule.parse(bad), bad) {
                XCTAssertTrue("\($0)".contains("--loss-weight-schedule"), "\($0)")
            }
        }
        XCTAssertThrowsError(try LossWeightSchedule.parse("linear:1:0:10:5").check(stepsPerEpoch: 3, output: "aux")) {
            XCTAssertTrue("\($0)".contains("end must come after its start"))
        }
    }

    /// s ← s − η·(1 − w·e^(−s)·L): two SGD steps by hand, then Adam's first step.
    func testUncertaintyStepsByHand() {
        let w = LossWeighting(
            base: [1, 0.2], schedules: [nil, nil], learned: .uncertainty,
            optimizer: OptimizerConfig(kind: .sgd, learningRate: 0.1))
        XCTAssertEqual(w.weights(afterSteps: 0, stepsPerEpoch: 4), [1, 0.2], "s starts at 0")
        w.update(losses: [0.7, 0.4], scheduled: [1, 0.2])
        let s1 = [Float(0 - 0.1 * (1 - 0.7)), Float(0 - 0.1 * (1 - 0.2 * 0.4))]
        for h in 0..<2 { XCTAssertEqual(w.values[h], s1[h], accuracy: 1e-8) }
        w.update(losses: [0.5, 0.3], scheduled: [1, 0.2])
        let g = [Float(1 - exp(-Double(s1[0])) * 0.5), Float(1 - 0.2 * exp(-Double(s1[1])) * 0.3)]
        XCTAssertEqual(w.values[0], s1[0] - Float(0.1) * g[0], accuracy: 1e-7)
        XCTAssertEqual(w.values[1], s1[1] - Float(0.1) * g[1], accuracy: 1e-7)
        let weights = w.weights(afterSteps: 2, stepsPerEpoch: 4)
        XCTAssertEqual(weights[1], 0.2 * exp(-Double(w.values[1])), accuracy: 1e-15)

        var adam = OptimizerConfig(kind: .adam)
        adam.learningRate = 0.01
        let a = LossWeighting(base: [1, 1], schedules: [nil, nil], learned: .uncertainty, optimizer: adam)
        a.update(losses: [3, 0.5], scheduled: [1, 1])  // g = −2 and 0.5
        // Adam's first step: lr·√(1−β₂)/(1−β₁) · m/(√v + ε) with m = (1−β₁)g, v = (1−β₂)g² → ≈ lr·sign(g).
        XCTAssertEqual(a.values[0], 0.01, accuracy: 1e-6)
        XCTAssertEqual(a.values[1], -0.01, accuracy: 1e-6)
    }

    func testAConstantScheduleIsTheConstantWeight() throws {
        let heads = [
            Head(output: "main_output", loss: .binaryCrossentropy, weight: 1.0),
            Head(output: "aux_output", loss: .binaryCrossentropy, weight: 0.2),
        ]
        var results: [[Float]] = []
        for schedule in [nil, LossWeightSchedule.constant(0.2)] as [LossWeightSchedule?] {
            let (step, data, _) = try tinyHeadline(heads: heads, l2: [:], batch: 4, samples: 11)
            var options = TrainingOptions()
            options.epochs = 2
            options.batchSize = 4
            options.progress = false
            let trainer = Trainer(step: step, data: data, trainRows: 0..<11, validation: nil, options: options)
            if let schedule {
                trainer.lossWeighting = LossWeighting(
                    base: heads.map(\.weight), schedules: [nil, schedule], learned: nil, optimizer: OptimizerConfig())
            }
            let history = try trainer.fit()
            XCTAssertEqual(history.last?.headWeights, schedule == nil ? nil : [1.0, 0.2])
            results.append(step.model.parameters.snapshot())
        }
        XCTAssertEqual(results[0], results[1])
    }

    /// GradNorm's step by hand: targets Ḡ·r^α, the gradient sign(G − target)·G/w, SGD, renormalised.
    func testGradNormStepsByHand() {
        let w = LossWeighting(
            base: [1, 1], schedules: [nil, nil], learned: .gradnorm,
            optimizer: OptimizerConfig(kind: .sgd, learningRate: 0.1), alpha: 1.5)
        XCTAssertEqual(w.weights(afterSteps: 0, stepsPerEpoch: 3), [1, 1], "starts at the configured weights")
        // First step: its losses are the initial ones (r = 1): targets Ḡ = 1.5, G = [2, 1] → gradients [+2, −1].
        w.update(losses: [0.8, 0.4], scheduled: [1, 1])
        w.updateGradNorm(norms: [2, 1], losses: [0.8, 0.4])
        var v = [1 - 0.1 * 2, 1 + 0.1 * 1]
        v = v.map { $0 * 2 / (v[0] + v[1]) }
        XCTAssertEqual(Double(w.values[0]), v[0], accuracy: 1e-6)
        XCTAssertEqual(Double(w.values[1]), v[1], accuracy: 1e-6)
        // Second: head 0's loss fell to half, head 1's stayed: r = [0.5, 1] / 0.75; Ḡ = 1.
        w.updateGradNorm(norms: [1.2, 0.8], losses: [0.4, 0.4])
        let r = [0.5 / 0.75, 1 / 0.75]
        let targets = r.map { 1.0 * pow($0, 1.5) }
        var next = [Double(Float(v[0])), Double(Float(v[1]))]
        for h in 0..<2 { next[h] -= 0.1 * ((([1.2, 0.8][h] - targets[h]) > 0 ? 1 : -1) * [1.2, 0.8][h] / next[h]) }
        next = next.map { $0 * 2 / (next[0] + next[1]) }
        XCTAssertEqual(Double(w.values[0]), next[0], accuracy: 1e-5)
        XCTAssertEqual(Double(w.values[1]), next[1], accuracy: 1e-5)
        XCTAssertEqual(w.state?.initialLosses, [0.8, 0.4], "kept for a resume")
    }
}
