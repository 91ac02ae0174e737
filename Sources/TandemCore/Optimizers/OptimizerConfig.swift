// Which optimizer, with Keras 3's hyper-parameters and defaults (docs/SPEC.md §9):
// the update rule, decoupled weight decay, gradient clipping and the
// learning rate (a constant or a schedule of the step). One value, kept in
// checkpoints and written into model.keras's compile config.

import Foundation

public struct OptimizerConfig: Sendable, Equatable, Codable {
    /// Keras's class names, lower-cased.
    public enum Kind: String, Sendable, Codable, CaseIterable {
        case sgd, adam, adamw, rmsprop, adagrad, adamax, nadam, adadelta, lion, ftrl, adafactor, lamb, muon
        case scheduleFreeAdamW = "schedulefreeadamw"
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
    /// Adafactor's arguments (Keras's beta_2_decay, epsilon_1, epsilon_2, clip_threshold, relative_step).
    public var beta2Decay = -0.8, epsilon1 = 1e-30, epsilon2 = 1e-3, clipThreshold = 1.0, relativeStep = true
    /// Muon's arguments: its Newton–Schulz coefficients and steps, the AdamW half's learning-rate
    /// ratio and weight decay, the update's RMS scale (nil: none), and which 2-D weights take AdamW
    /// instead (`exclude_embeddings`, `exclude_layers` regular expressions). Its momentum and
    /// nesterov are `momentum`, `nesterov`; its adam_beta_1/2 are `beta1`, `beta2`.
    public var muonA = 3.4445, muonB = -4.7750, muonC = 2.0315
    public var newtonSchulzSteps = 5, adamLearningRateRatio = 1.0, adamWeightDecay: Double? = 0.004
    public var rmsRate: Double? = 0.2
    public var excludeEmbeddings = true, excludeLayers: [String] = []
    /// ScheduleFreeAdamW's warm-up steps.
    public var warmupSteps = 0
    /// Keras's LossScaleOptimizer around this optimizer: its initial scale and growth interval.
    /// In float32 the scaled gradient divided by the scale is the gradient (a power of two), so
    /// only its two counters move (Optimizer.lossScale).
    public var lossScale: LossScale?
    public struct LossScale: Sendable, Equatable, Codable {
        public var initialScale = 32768.0, growthSteps = 2000
        public init() {}
    }

    /// Steps per update: N with gradient accumulation, else 1.
    package var stepsPerUpdate: Int { gradientAccumulationSteps ?? 1 }

    public init(kind: Kind = .sgd, learningRate: Double? = nil) {
        self.kind = kind
        self.learningRate = learningRate ?? (kind == .sgd ? 0.01 : 0.001)
        if kind == .adamw { weightDecay = 0.004 }
        if kind == .adadelta { rho = 0.95 }
        if kind == .lion { beta2 = 0.99 }
        if kind == .muon {
            weightDecay = 0.004
            momentum = 0.95
            nesterov = true
        }
        if kind == .scheduleFreeAdamW {
            self.learningRate = learningRate ?? 0.0025
            epsilon = 1e-8
        }
    }

    /// Whether Muon updates the weight `name` of `shape` by its AdamW rule (Keras's
    /// _should_use_adamw: anything not 2-D, an embedding, a name an exclude_layers pattern finds).
    package func muonUsesAdam(shape: [Int], name: String) -> Bool {
        if shape.count != 2 { return true }
        if excludeEmbeddings && name.lowercased().contains("embedding") { return true }
        return excludeLayers.contains { name.range(of: $0, options: .regularExpression) != nil }
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
        if let l = lossScale { parts.append("in a LossScaleOptimizer (scale \(l.initialScale), a no-op in float32)") }
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
        if kind == .adafactor {
            if !(epsilon1 >= 0 && epsilon2 >= 0) { throw bad("epsilon_1/epsilon_2", min(epsilon1, epsilon2), "≥ 0") }
            if !(clipThreshold > 0 && clipThreshold.isFinite) { throw bad("clip_threshold", clipThreshold, "> 0") }
            if !beta2Decay.isFinite { throw bad("beta_2_decay", beta2Decay, "a number") }
        }
        if kind == .muon {
            if !(newtonSchulzSteps >= 0 && newtonSchulzSteps <= 100) {
                throw bad("ns_steps", Double(newtonSchulzSteps), "an integer in 0…100")
            }
            for (name, v) in [
                ("muon_a", muonA), ("muon_b", muonB), ("muon_c", muonC), ("adam_lr_ratio", adamLearningRateRatio),
            ]
            where !v.isFinite {
                throw bad(name, v, "a number")
            }
            for pattern in excludeLayers {
                guard (try? NSRegularExpression(pattern: pattern)) != nil else {
                    throw TandemError.usage(
                        "optimizer muon: exclude_layers pattern '\(pattern)' is not a regular expression")
                }
            }
        }
        if kind == .scheduleFreeAdamW && warmupSteps < 0 { throw bad("warmup_steps", Double(warmupSteps), "≥ 0") }
        if let l = lossScale {
            if !(l.initialScale > 0 && l.initialScale.isFinite) { throw bad("initial_scale", l.initialScale, "> 0") }
            if l.growthSteps < 1 { throw bad("dynamic_growth_steps", Double(l.growthSteps), "an integer ≥ 1") }
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
            ftrlBeta, beta2Decay, epsilon1, epsilon2, clipThreshold, relativeStep, muonA, muonB, muonC,
            newtonSchulzSteps,
            adamLearningRateRatio, adamWeightDecay, rmsRate, excludeEmbeddings, excludeLayers, warmupSteps, lossScale
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
        beta2Decay = try c.decodeIfPresent(Double.self, forKey: .beta2Decay) ?? beta2Decay
        epsilon1 = try c.decodeIfPresent(Double.self, forKey: .epsilon1) ?? epsilon1
        epsilon2 = try c.decodeIfPresent(Double.self, forKey: .epsilon2) ?? epsilon2
        clipThreshold = try c.decodeIfPresent(Double.self, forKey: .clipThreshold) ?? clipThreshold
        relativeStep = try c.decodeIfPresent(Bool.self, forKey: .relativeStep) ?? relativeStep
        muonA = try c.decodeIfPresent(Double.self, forKey: .muonA) ?? muonA
        muonB = try c.decodeIfPresent(Double.self, forKey: .muonB) ?? muonB
        muonC = try c.decodeIfPresent(Double.self, forKey: .muonC) ?? muonC
        newtonSchulzSteps = try c.decodeIfPresent(Int.self, forKey: .newtonSchulzSteps) ?? newtonSchulzSteps
        adamLearningRateRatio =
            try c.decodeIfPresent(Double.self, forKey: .adamLearningRateRatio) ?? adamLearningRateRatio
        if c.contains(.adamWeightDecay) {
            adamWeightDecay = try c.decodeIfPresent(Double.self, forKey: .adamWeightDecay)
        }
        if c.contains(.rmsRate) { rmsRate = try c.decodeIfPresent(Double.self, forKey: .rmsRate) }
        excludeEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .excludeEmbeddings) ?? excludeEmbeddings
        excludeLayers = try c.decodeIfPresent([String].self, forKey: .excludeLayers) ?? []
        warmupSteps = try c.decodeIfPresent(Int.self, forKey: .warmupSteps) ?? 0
        lossScale = try c.decodeIfPresent(LossScale.self, forKey: .lossScale)
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
        switch kind {
        case .adafactor:
            try c.encode(beta2Decay, forKey: .beta2Decay)
            try c.encode(epsilon1, forKey: .epsilon1)
            try c.encode(epsilon2, forKey: .epsilon2)
            try c.encode(clipThreshold, forKey: .clipThreshold)
            try c.encode(relativeStep, forKey: .relativeStep)
        case .muon:
            try c.encode(muonA, forKey: .muonA)
            try c.encode(muonB, forKey: .muonB)
            try c.encode(muonC, forKey: .muonC)
            try c.encode(newtonSchulzSteps, forKey: .newtonSchulzSteps)
            try c.encode(adamLearningRateRatio, forKey: .adamLearningRateRatio)
            try c.encode(adamWeightDecay, forKey: .adamWeightDecay)
            try c.encode(rmsRate, forKey: .rmsRate)
            try c.encode(excludeEmbeddings, forKey: .excludeEmbeddings)
            try c.encode(excludeLayers, forKey: .excludeLayers)
        case .scheduleFreeAdamW: try c.encode(warmupSteps, forKey: .warmupSteps)
        default: break
        }
        try c.encodeIfPresent(lossScale, forKey: .lossScale)
        if useEMA {
            try c.encode(useEMA, forKey: .useEMA)
            try c.encode(emaMomentum, forKey: .emaMomentum)
            try c.encodeIfPresent(emaOverwriteFrequency, forKey: .emaOverwriteFrequency)
        }
    }
}
