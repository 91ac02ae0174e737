// Loss weights over time (docs/SPEC.md §10). Each step trains on
// total = Σ_h weight_h(t) · loss_h, with weight_h(t) from:
//   - a schedule per output, a pure function of the optimizer step t (constant,
//     a linear ramp between two points, or a step change at one point; points
//     in steps, or in epochs as "3e" = after 3 epochs), so a resume is exact;
//   - learned weighting `uncertainty` (Kendall, Gal & Cipolla 2018): one
//     trainable log-variance s_h per head, and the objective
//         Σ_h ( w_h · exp(−s_h) · loss_h + s_h )
//     where w_h is the output's configured (or scheduled) weight. The model
//     trains with weight_h = w_h · exp(−s_h); ∂/∂s_h = 1 − w_h · exp(−s_h) · loss_h,
//     with loss_h the reduced global-batch loss, so every rank takes the same
//     step. s starts at 0 and is updated by an optimizer of the run's kind and
//     settings (their rules are per element, as if the s_h sat in the one
//     optimizer; a global clipnorm is taken over the model's gradient only);
//   - learned weighting `gradnorm` (Chen et al. 2018): the weights w_h themselves
//     are learned so that each head's gradient norm at the last shared layer W,
//     G_h = ‖∇_W w_h·loss_h‖ (over the global batch: HeadDiagnostics' pass),
//     approaches Ḡ · r_h^α, where Ḡ is the mean of the G_h and r_h the head's
//     relative inverse training rate (loss_h(t)/loss_h(0)) / mean of those. The
//     weights step on ∂/∂w_h Σ_k |G_k − target_k| = sign(G_h − target_h)·G_h/w_h
//     (targets held constant, as the paper does), with the same kind of
//     optimizer, then are renormalised to the configured weights' sum.
// The state (s or w, the optimizer slots, gradnorm's initial losses) is in the checkpoint.

import Foundation
import TandemCore
import TandemKeras

/// A point in training: after this many optimizer steps, or after this many epochs.
public enum TrainingPoint: Sendable, Codable, Equatable {
    case step(Int)
    case epoch(Double)

    func steps(perEpoch: Int) -> Double {
        switch self {
        case .step(let s): return Double(s)
        case .epoch(let e): return e * Double(perEpoch)
        }
    }

    static func parse(_ text: String) -> TrainingPoint? {
        if text.hasSuffix("e"), let e = Double(text.dropLast()), e >= 0, e.isFinite { return .epoch(e) }
        if let s = Int(text), s >= 0 { return .step(s) }
        return nil
    }
}

/// One output's weight as a function of the optimizer step.
public enum LossWeightSchedule: Sendable, Codable, Equatable {
    case constant(Double)
    /// `from` until `start`, then linearly to `to` at `end`, then `to`.
    case linear(from: Double, to: Double, start: TrainingPoint, end: TrainingPoint)
    /// `before` until `at`, `after` from there on.
    case stepChange(before: Double, after: Double, at: TrainingPoint)

    /// The weight for the step taken after `t` steps.
    public func weight(afterSteps t: Int, stepsPerEpoch: Int) -> Double {
        let x = Double(t)
        switch self {
        case .constant(let w): return w
        case .linear(let a, let b, let start, let end):
            let s = start.steps(perEpoch: stepsPerEpoch)
            let e = end.steps(perEpoch: stepsPerEpoch)
            if x <= s { return a }
            if x >= e { return b }
            return a + (b - a) * (x - s) / (e - s)
        case .stepChange(let a, let b, let at): return x < at.steps(perEpoch: stepsPerEpoch) ? a : b
        }
    }

    /// `constant:W`, `linear:W0:W1:START:END` or `step:W0:W1:AT` (points: N steps or Ne epochs).
    public static func parse(_ text: String) throws -> LossWeightSchedule {
        func bad(_ why: String) -> TandemError {
            .usage(
                "--loss-weight-schedule '\(text)': \(why) (expected constant:W, linear:W0:W1:START:END or step:W0:W1:AT; points are steps, or epochs written 3e)"
            )
        }
        let parts = text.split(separator: ":").map(String.init)
        func number(_ s: String) throws -> Double {
            guard let v = Double(s), v.isFinite, v >= 0 else { throw bad("'\(s)' is not a non-negative weight") }
            return v
        }
        func point(_ s: String) throws -> TrainingPoint {
            guard let p = TrainingPoint.parse(s) else {
                throw bad("'\(s)' is not a step count or an epoch count like 2e")
            }
            return p
        }
        switch parts.first {
        case "constant" where parts.count == 2: return .constant(try number(parts[1]))
        case "linear" where parts.count == 5:
            let start = try point(parts[3])
            let end = try point(parts[4])
            return .linear(from: try number(parts[1]), to: try number(parts[2]), start: start, end: end)
        case "step" where parts.count == 4:
            return .stepChange(before: try number(parts[1]), after: try number(parts[2]), at: try point(parts[3]))
        default: throw bad("unknown form")
        }
    }

    /// The ramp must end after it starts (checked once the epoch length is known).
    package func check(stepsPerEpoch: Int, output: String) throws {
        if case .linear(_, _, let start, let end) = self,
            end.steps(perEpoch: stepsPerEpoch) <= start.steps(perEpoch: stepsPerEpoch)
        {
            throw TandemError.usage("--loss-weight-schedule \(output): the ramp's end must come after its start")
        }
    }
}

/// Learned loss weighting.
public enum LearnedWeighting: String, Sendable, Codable, CaseIterable {
    case uncertainty, gradnorm
}

/// The learned weights' state, as checkpoints keep it.
public struct LearnedWeightingState: Sendable, Codable, Equatable {
    public var kind: LearnedWeighting
    /// Per head: s_h = log σ_h² (uncertainty).
    package var values: [Float]
    /// The small optimizer's slots and steps.
    package var slots: [[Float]]
    package var iterations: Int
    package var nadamProduct: Float?
    /// GradNorm: each head's loss at the first step, and α.
    package var initialLosses: [Double]?
    public var alpha: Double?
}

/// The loss weights of a run: schedules and learned weighting over the configured weights.
public final class LossWeighting {
    package let base: [Double]
    package let schedules: [LossWeightSchedule?]
    package let learned: LearnedWeighting?
    let optimizer: Optimizer?
    /// s_h (uncertainty) or w_h (gradnorm), one per head.
    package private(set) var values: [Float]
    private var gradients: [Float]
    /// GradNorm's asymmetry α and each head's loss at the first step.
    public let alpha: Double
    package private(set) var initialLosses: [Double]?

    package init(
        base: [Double], schedules: [LossWeightSchedule?], learned: LearnedWeighting?, optimizer config: OptimizerConfig,
        alpha: Double = 1.5
    ) {
        self.base = base
        self.schedules = schedules
        self.learned = learned
        self.alpha = alpha
        values = learned == .gradnorm ? base.map(Float.init) : Array(repeating: 0, count: base.count)
        gradients = values
        var small = config
        small.globalClipnorm = nil  // taken over the model's gradient alone
        small.gradientAccumulationSteps = nil  // (refused with learned weighting; see Train)
        optimizer = learned == nil ? nil : Optimizer(small, parameterCount: base.count)
    }

    package var isActive: Bool { learned != nil || schedules.contains { $0 != nil } }

    /// w_h(t): the schedule's value, else the configured weight.
    package func scheduled(afterSteps t: Int, stepsPerEpoch: Int) -> [Double] {
        base.indices.map { schedules[$0]?.weight(afterSteps: t, stepsPerEpoch: stepsPerEpoch) ?? base[$0] }
    }

    /// The weights the model trains with at the step after `t` steps.
    package func weights(afterSteps t: Int, stepsPerEpoch: Int) -> [Double] {
        let w = scheduled(afterSteps: t, stepsPerEpoch: stepsPerEpoch)
        switch learned {
        case nil: return w
        case .uncertainty: return w.indices.map { w[$0] * Foundation.exp(-Double(values[$0])) }
        case .gradnorm: return values.map(Double.init)
        }
    }

    /// After a step: the learned weights' own step, from the reduced per-head losses (`losses[h]` =
    /// the global batch's loss_h) and the scheduled weights that step used.
    package func update(losses: [Double], scheduled w: [Double]) {
        guard learned == .uncertainty, let optimizer else { return }
        for h in values.indices { gradients[h] = Float(1 - w[h] * Foundation.exp(-Double(values[h])) * losses[h]) }
        values.withUnsafeMutableBufferPointer { v in
            gradients.withUnsafeMutableBufferPointer { g in
                optimizer.step(parameters: v.baseAddress!, gradients: g.baseAddress!, clear: true)
            }
        }
    }

    /// GradNorm's step after a training step: `norms[h]` = G_h at the last shared layer with the
    /// weights that step used, `losses[h]` the step's reduced loss_h.
    package func updateGradNorm(norms: [Double], losses: [Double]) {
        guard learned == .gradnorm, let optimizer else { return }
        if initialLosses == nil { initialLosses = losses }
        let H = values.count
        let rates = (0..<H).map { initialLosses![$0] > 0 ? losses[$0] / initialLosses![$0] : 1 }
        let meanRate = rates.reduce(0, +) / Double(H)
        let meanNorm = norms.reduce(0, +) / Double(H)
        for h in 0..<H {
            let target = meanNorm * Foundation.pow(meanRate > 0 ? rates[h] / meanRate : 1, alpha)
            let difference = norms[h] - target
            gradients[h] =
                values[h] > 0 && difference != 0 ? Float((difference > 0 ? 1 : -1) * norms[h] / Double(values[h])) : 0
        }
        values.withUnsafeMutableBufferPointer { v in
            gradients.withUnsafeMutableBufferPointer { g in
                optimizer.step(parameters: v.baseAddress!, gradients: g.baseAddress!, clear: true)
            }
        }
        // Renormalise to the configured weights' sum (the paper's Σ w = number of tasks at weights 1).
        let floor = Float(1e-6)
        for h in 0..<H { values[h] = max(values[h], floor) }
        let scale = base.reduce(0, +) / values.reduce(0.0) { $0 + Double($1) }
        for h in 0..<H { values[h] = Float(Double(values[h]) * scale) }
    }

    package var state: LearnedWeightingState? {
        guard let learned, let optimizer else { return nil }
        return LearnedWeightingState(
            kind: learned, values: values,
            slots: optimizer.slots.map { Array(UnsafeBufferPointer(start: $0.values, count: values.count)) },
            iterations: optimizer.iterations,
            nadamProduct: optimizer.config.kind == .nadam ? optimizer.nadamProduct : nil,
            initialLosses: initialLosses, alpha: learned == .gradnorm ? alpha : nil)
    }

    public func restore(_ s: LearnedWeightingState) throws {
        guard let optimizer, s.kind == learned, s.values.count == values.count, s.slots.count == optimizer.slots.count
        else {
            throw TandemError.usage(
                "--resume: the checkpoint's learned loss weighting (\(s.kind.rawValue), \(s.values.count) heads) does not fit this run"
            )
        }
        values = s.values
        for (slot, saved) in zip(optimizer.slots, s.slots) {
            saved.withUnsafeBufferPointer { slot.values.update(from: $0.baseAddress!, count: values.count) }
        }
        optimizer.restore(iterations: s.iterations)
        if let p = s.nadamProduct { optimizer.nadamProduct = p }
        initialLosses = s.initialLosses
    }
}

extension Trainer {
    /// Loss weights over time for this run: per-output schedules, or a learned weighting (restored
    /// from a checkpoint's `state` when resuming); refuses what cannot combine.
    public func useLossWeighting(
        schedules: [String: LossWeightSchedule], learned: LearnedWeighting?, alpha: Double,
        restoring state: LearnedWeightingState?
    ) throws {
        let heads = step.heads
        if learned == .gradnorm && !schedules.isEmpty {
            throw TandemError.usage(
                "--loss-weighting gradnorm learns the weights itself; it does not combine with --loss-weight-schedule")
        }
        let weighting = LossWeighting(
            base: heads.map(\.weight), schedules: heads.map { schedules[$0.output] }, learned: learned,
            optimizer: step.optimizer.config, alpha: alpha)
        guard weighting.isActive else { return }
        for (output, s) in schedules { try s.check(stepsPerEpoch: stepsPerEpoch, output: output) }
        if let state { try weighting.restore(state) }
        lossWeighting = weighting
        if learned == .gradnorm, gradNormLayer.shared.isEmpty {
            throw TandemError.usage(
                "--loss-weighting gradnorm needs a layer that several heads share (this model's heads share none)")
        }
    }

    /// Gradient accumulation keeps the window's gradient sum in the arena; these would read or
    /// rewrite it mid-window, so they are refused with it (for now).
    public func checkGradientAccumulation() throws {
        guard let n = step.optimizer.config.gradientAccumulationSteps else { return }
        let learned = lossWeighting?.learned
        let clashes = [
            (step.microBatch != nil, "--reproducible"), (step.surgery != nil, "--gradient-surgery"),
            (learned != nil, "--loss-weighting \(learned?.rawValue ?? "")"),
            (options.diagnosticsEvery > 0, "--head-diagnostics-every"),
        ].filter(\.0).map(\.1)
        if let clash = clashes.first {
            throw TandemError.usage(
                "gradient accumulation (\(n) steps) does not combine with \(clash) yet (the arena holds the window's gradient sum)"
            )
        }
    }
}
