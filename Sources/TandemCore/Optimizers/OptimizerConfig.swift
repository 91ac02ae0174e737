// Which optimizer, with Keras 3's hyper-parameters and defaults (docs/SPEC.md §9):
// the update rule, decoupled weight decay, gradient clipping and the
// learning rate (a constant or a schedule of the step). One value, kept in
// checkpoints and written into model.keras's compile config.

import Foundation

public struct OptimizerConfig: Sendable, Equatable, Codable {
    /// Keras's class names, lower-cased.
    public enum Kind: String, Sendable, Codable, CaseIterable {
        case sgd, adam, adamw, rmsprop, adagrad, adamax, nadam, adadelta, lion, ftrl
    }
    public var kind: Kind = .sgd
    /// The constant learning rate; with a schedule, its initial value (for display only).
    public var learningRate: Double = 0.01
    /// A learning rate that changes with the step (Keras evaluates it at `iterations` before the step).
    public var schedule: LearningRateSchedule?
    public var momentum: Double = 0
    public var nesterov = false
    public var beta1 = 0.9, beta2 = 0.999, epsilon = 1e-7, rho = 0.9
    public var amsgrad = false, centered = false
    package var initialAccumulatorValue = 0.1
    /// Decoupled weight decay, w ← w − w·wd·lr before the rule (Keras 3's base optimizer); nil: none.
    public var weightDecay: Double?
    /// At most one of these (Keras refuses two): per-tensor norm, global norm, element value.
    public var clipnorm: Double?, globalClipnorm: Double?, clipvalue: Double?
    /// Keras 3's `gradient_accumulation_steps` (nil: every step updates): the weights move every
    /// N-th step, by the mean of the N steps' gradients (Optimizer.swift says how it counts).
    public var gradientAccumulationSteps: Int?
    /// Keras's `use_ema`: an exponential moving average of the trainable weights (the slot
    /// `average`), written over the weights every `emaOverwriteFrequency` updates and at the end.
    /// Ftrl's arguments (Keras's names: learning_rate_power, l1_regularization_strength,
    /// l2_regularization_strength, l2_shrinkage_regularization_strength, beta).
    public var learningRatePower = -0.5, l1Strength = 0.0, l2Strength = 0.0, l2ShrinkageStrength = 0.0, ftrlBeta = 0.0
    public var useEMA = false
    public var emaMomentum = 0.99
    public var emaOverwriteFrequency: Int?

    /// Steps per update: N with gradient accumulation, else 1.
    package var stepsPerUpdate: Int { gradientAccumulationSteps ?? 1 }

    public init(kind: Kind = .sgd, learningRate: Double? = nil) {
        self.kind = kind
        self.learningRate = learningRate ?? (kind == .sgd ? 0.01 : 0.001)
        if kind == .adamw { weightDecay = 0.004 }
        if kind == .adadelta { rho = 0.95 }
        if kind == .lion { beta2 = 0.99 }
    }

    /// The learning rate of the step taken when `iterations` steps are done, as Float32 (Keras's dtype).
    public func learningRate(iterations: Int) -> Float {
        schedule?.value(at: iterations) ?? Float(learningRate)
    }

    /// One line for the start-up report and `tandem summary`: the rule and what modifies it.
    public var summary: String {
        var parts = [kind.rawValue + (amsgrad ? " (amsgrad)" : "") + (centered ? " (centered)" : "")]
        // As Float32, the dtype Keras keeps it in (an archive's 0.0010000000474974513 prints as 0.001).
        if let schedule {
            parts.append("lr \(schedule.className) from \(Float(schedule.initial))")
        } else {
            parts.append("lr \(Float(learningRate))")
        }
        if (kind == .sgd || kind == .rmsprop) && momentum != 0 {
            parts.append("momentum \(momentum)" + (nesterov ? " (nesterov)" : ""))
        }
        if let weightDecay { parts.append("weight decay \(weightDecay)") }
        if let clipnorm { parts.append("clipnorm \(clipnorm)") }
        if let globalClipnorm { parts.append("global clipnorm \(globalClipnorm)") }
        if let clipvalue { parts.append("clipvalue \(clipvalue)") }
        if let n = gradientAccumulationSteps { parts.append("gradients accumulated over \(n) steps") }
        if useEMA {
            parts.append(
                "weights averaged (EMA \(emaMomentum)\(emaOverwriteFrequency.map { ", written over every \($0) steps" } ?? ""))"
            )
        }
        return parts.joined(separator: ", ")
    }

    /// Weight decay that changes anything.
    package var decays: Bool { (weightDecay ?? 0) != 0 }

    /// Checks the values the way Keras's constructors do, naming the argument.
    public func validate() throws {
        func bad(_ what: String, _ v: Double, _ rule: String) -> TandemError {
            .usage("optimizer \(kind.rawValue): \(what) = \(v) is not allowed (\(rule))")
        }
        if schedule == nil, !(learningRate > 0 && learningRate.isFinite) {
            throw bad("learning_rate", learningRate, "a positive number")
        }
        try schedule?.validate()
        if !(momentum >= 0 && momentum < 1) && kind == .sgd { throw bad("momentum", momentum, "0 ≤ momentum < 1") }
        if !(momentum >= 0 && momentum.isFinite) && kind == .rmsprop { throw bad("momentum", momentum, "≥ 0") }
        if kind == .lion {
            // Keras's Lion: beta_1 in (0, 1] (at 0 it degenerates to SignSGD).
            if !(beta1 > 0 && beta1 <= 1) { throw bad("beta_1", beta1, "0 < beta_1 ≤ 1") }
            if !(beta2 >= 0 && beta2 <= 1) { throw bad("beta_2", beta2, "0 ≤ beta_2 ≤ 1") }
        } else {
            for (name, v) in [("beta_1", beta1), ("beta_2", beta2), ("rho", rho)] where !(v >= 0 && v < 1) {
                throw bad(name, v, "0 ≤ \(name) < 1")
            }
        }
        if !(epsilon >= 0 && epsilon.isFinite) { throw bad("epsilon", epsilon, "≥ 0") }
        if !(initialAccumulatorValue >= 0 && initialAccumulatorValue.isFinite) {
            throw bad("initial_accumulator_value", initialAccumulatorValue, "≥ 0")
        }
        if let wd = weightDecay, !(wd >= 0 && wd.isFinite) { throw bad("weight_decay", wd, "≥ 0") }
        let clips = [("clipnorm", clipnorm), ("global_clipnorm", globalClipnorm), ("clipvalue", clipvalue)].filter {
            $0.1 != nil
        }
        if clips.count > 1 {
            throw TandemError.usage(
                "optimizer \(kind.rawValue): only one of clipnorm, global_clipnorm and clipvalue may be set (got \(clips.map(\.0).joined(separator: " and ")))"
            )
        }
        for (name, v) in clips where !(v! > 0 && v!.isFinite) { throw bad(name, v!, "a positive number") }
        if kind == .ftrl {
            if !(learningRatePower <= 0) { throw bad("learning_rate_power", learningRatePower, "≤ 0") }
            for (name, v) in [
                ("l1_regularization_strength", l1Strength), ("l2_regularization_strength", l2Strength),
                ("l2_shrinkage_regularization_strength", l2ShrinkageStrength), ("beta", ftrlBeta),
            ] where !(v >= 0 && v.isFinite) {
                throw bad(name, v, "≥ 0")
            }
        }
        if useEMA {
            if !(emaMomentum >= 0 && emaMomentum <= 1) {
                throw bad("ema_momentum", emaMomentum, "0 ≤ ema_momentum ≤ 1")
            }
            if let f = emaOverwriteFrequency, f < 1 {
                throw bad("ema_overwrite_frequency", Double(f), "an integer ≥ 1")
            }
            if gradientAccumulationSteps != nil {
                throw TandemError.usage(
                    "optimizer \(kind.rawValue): use_ema with gradient_accumulation_steps is not supported (Keras moves the average on every accumulation step too)"
                )
            }
        }
        if let n = gradientAccumulationSteps, n < 2 {
            throw TandemError.usage(
                "optimizer \(kind.rawValue): gradient_accumulation_steps = \(n) is not allowed (an integer ≥ 2, as Keras requires; null for none)"
            )
        }
    }

    // Checkpoints written before these fields existed decode with Keras's defaults.
    private enum CodingKeys: String, CodingKey {
        case kind, learningRate, schedule, momentum, nesterov, beta1, beta2, epsilon, rho, amsgrad, centered,
            initialAccumulatorValue, weightDecay, clipnorm, globalClipnorm, clipvalue, gradientAccumulationSteps,
            useEMA, emaMomentum, emaOverwriteFrequency, learningRatePower, l1Strength, l2Strength, l2ShrinkageStrength,
            ftrlBeta
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            kind: try c.decode(Kind.self, forKey: .kind), learningRate: try c.decode(Double.self, forKey: .learningRate)
        )
        schedule = try c.decodeIfPresent(LearningRateSchedule.self, forKey: .schedule)
        momentum = try c.decodeIfPresent(Double.self, forKey: .momentum) ?? momentum
        nesterov = try c.decodeIfPresent(Bool.self, forKey: .nesterov) ?? nesterov
        beta1 = try c.decodeIfPresent(Double.self, forKey: .beta1) ?? beta1
        beta2 = try c.decodeIfPresent(Double.self, forKey: .beta2) ?? beta2
        epsilon = try c.decodeIfPresent(Double.self, forKey: .epsilon) ?? epsilon
        rho = try c.decodeIfPresent(Double.self, forKey: .rho) ?? rho
        amsgrad = try c.decodeIfPresent(Bool.self, forKey: .amsgrad) ?? amsgrad
        centered = try c.decodeIfPresent(Bool.self, forKey: .centered) ?? centered
        initialAccumulatorValue =
            try c.decodeIfPresent(Double.self, forKey: .initialAccumulatorValue) ?? initialAccumulatorValue
        weightDecay = c.contains(.weightDecay) ? try c.decodeIfPresent(Double.self, forKey: .weightDecay) : weightDecay
        clipnorm = try c.decodeIfPresent(Double.self, forKey: .clipnorm)
        globalClipnorm = try c.decodeIfPresent(Double.self, forKey: .globalClipnorm)
        clipvalue = try c.decodeIfPresent(Double.self, forKey: .clipvalue)
        gradientAccumulationSteps = try c.decodeIfPresent(Int.self, forKey: .gradientAccumulationSteps)
        useEMA = try c.decodeIfPresent(Bool.self, forKey: .useEMA) ?? false
        emaMomentum = try c.decodeIfPresent(Double.self, forKey: .emaMomentum) ?? emaMomentum
        emaOverwriteFrequency = try c.decodeIfPresent(Int.self, forKey: .emaOverwriteFrequency)
        learningRatePower = try c.decodeIfPresent(Double.self, forKey: .learningRatePower) ?? learningRatePower
        l1Strength = try c.decodeIfPresent(Double.self, forKey: .l1Strength) ?? 0
        l2Strength = try c.decodeIfPresent(Double.self, forKey: .l2Strength) ?? 0
        l2ShrinkageStrength = try c.decodeIfPresent(Double.self, forKey: .l2ShrinkageStrength) ?? 0
        ftrlBeta = try c.decodeIfPresent(Double.self, forKey: .ftrlBeta) ?? 0
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(kind, forKey: .kind)
        try c.encode(learningRate, forKey: .learningRate)
        try c.encodeIfPresent(schedule, forKey: .schedule)
        try c.encode(momentum, forKey: .momentum)
        try c.encode(nesterov, forKey: .nesterov)
        try c.encode(beta1, forKey: .beta1)
        try c.encode(beta2, forKey: .beta2)
        try c.encode(epsilon, forKey: .epsilon)
        try c.encode(rho, forKey: .rho)
        try c.encode(amsgrad, forKey: .amsgrad)
        try c.encode(centered, forKey: .centered)
        try c.encode(initialAccumulatorValue, forKey: .initialAccumulatorValue)
        try c.encode(weightDecay, forKey: .weightDecay)  // null is meaningful (AdamW without decay)
        try c.encodeIfPresent(clipnorm, forKey: .clipnorm)
        try c.encodeIfPresent(globalClipnorm, forKey: .globalClipnorm)
        try c.encodeIfPresent(clipvalue, forKey: .clipvalue)
        try c.encodeIfPresent(gradientAccumulationSteps, forKey: .gradientAccumulationSteps)
        if kind == .ftrl {
            try c.encode(learningRatePower, forKey: .learningRatePower)
            try c.encode(l1Strength, forKey: .l1Strength)
            try c.encode(l2Strength, forKey: .l2Strength)
            try c.encode(l2ShrinkageStrength, forKey: .l2ShrinkageStrength)
            try c.encode(ftrlBeta, forKey: .ftrlBeta)
        }
        if useEMA {
            try c.encode(useEMA, forKey: .useEMA)
            try c.encode(emaMomentum, forKey: .emaMomentum)
            try c.encodeIfPresent(emaOverwriteFrequency, forKey: .emaOverwriteFrequency)
        }
    }
}
