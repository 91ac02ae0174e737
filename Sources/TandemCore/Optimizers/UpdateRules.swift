// The update rule of each Keras 3 optimizer (keras/src/optimizers/), one struct each,
// applied to a run of elements. The driver (Optimizer.swift) keeps the step count, the
// slots, clipping and weight decay, and works out the per-step constants the rules read.

import CKernels
import Foundation

/// What a rule reads that changes with the step (Optimizer.prepare).
struct StepConstants {
    var lr: Float = 0
    /// Adam's α_t = lr_t·√(1−β2^t)/(1−β1^t); Adamax's 1 − β1^t.
    var alpha: Float = 0, correction: Float = 0
    /// ScheduleFreeAdamW's 1 − β2^t and averaging weight 1/t.
    var velocityCorrection: Float = 0, averageWeight: Float = 0
    /// Nadam's u_t, u_{t+1}, their running products and 1 − β2^t.
    var nadam = (u: Float(0), next: Float(0), product: Float(0), nextProduct: Float(0), velocityCorrection: Float(0))
}

/// A rule's slots at the first element of the run (at most three: AMSGrad, centered RMSprop with momentum).
struct SlotPointers {
    var s0: UnsafeMutablePointer<Float>?, s1: UnsafeMutablePointer<Float>?, s2: UnsafeMutablePointer<Float>?
}

protocol UpdateRule {
    /// w ← rule(w, g) on n elements; returns true when it cleared g itself (with `clear`).
    func apply(
        _ w: UnsafeMutablePointer<Float>, _ g: UnsafeMutablePointer<Float>, _ slots: SlotPointers, n: Int,
        _ k: StepConstants, clear: Bool
    ) -> Bool
}

/// The rule `config` names.
func updateRule(_ config: OptimizerConfig) -> UpdateRule {
    let b1 = Float(1 - config.beta1)
    let b2 = Float(1 - config.beta2)
    let eps = Float(config.epsilon)
    switch config.kind {
    case .sgd: return SGDRule(momentum: Float(config.momentum), nesterov: config.nesterov)
    case .adam, .adamw: return AdamRule(b1: b1, b2: b2, eps: eps, amsgrad: config.amsgrad)
    case .rmsprop:
        return RMSpropRule(
            rho: Float(config.rho), keep: Float(1 - config.rho), mu: Float(config.momentum), eps: eps,
            momentum: config.momentum > 0, centered: config.centered)
    case .adagrad: return AdagradRule(eps: eps)
    case .adamax: return AdamaxRule(b1: b1, beta2: Float(config.beta2), eps: eps)
    case .nadam: return NadamRule(b1: b1, b2: b2, eps: eps)
    case .adadelta: return AdadeltaRule(rho: Float(config.rho), keep: Float(1 - config.rho), eps: eps)
    case .lion:
        // Keras's Lion casts β to float32 first, then takes 1 − β in float32.
        let beta1 = Float(config.beta1)
        let beta2 = Float(config.beta2)
        return LionRule(beta1: beta1, keep1: 1 - beta1, beta2: beta2, keep2: 1 - beta2)
    case .ftrl:
        return FtrlRule(
            power: Float(-config.learningRatePower), l1: Float(config.l1Strength), l2: Float(config.l2Strength),
            shrinkage: Float(2 * config.l2ShrinkageStrength), beta: Float(config.ftrlBeta))
    case .scheduleFreeAdamW:
        let beta1 = Float(config.beta1)
        return ScheduleFreeAdamWRule(beta1: beta1, keep1: 1 - beta1, keep2: 1 - Float(config.beta2), eps: eps)
    case .adafactor, .lamb, .muon:
        // Tensor-wise (TensorRules.swift): the driver never runs them by element.
        return SGDRule(momentum: 0, nesterov: false)
    }
}

/// The tensor-wise rule `config` names, nil for an element-wise one.
func tensorRule(_ config: OptimizerConfig) -> TensorRule? {
    let eps = Float(config.epsilon)
    let beta1 = Float(config.beta1)
    let beta2 = Float(config.beta2)
    switch config.kind {
    case .lamb:
        return LambRule(
            beta1: beta1, beta2: beta2, keep1: Float(1 - config.beta1), keep2: Float(1 - config.beta2), eps: eps)
    case .adafactor:
        return AdafactorRule(
            decay: Float(config.beta2Decay), eps1: Float(config.epsilon1), eps2: Float(config.epsilon2),
            clipThreshold: Float(config.clipThreshold), capsLearningRate: config.schedule == nil && config.relativeStep)
    case .muon:
        return MuonRule(
            a: Float(config.muonA), b: Float(config.muonB), c: Float(config.muonC), steps: config.newtonSchulzSteps,
            momentum: Float(config.momentum), nesterov: config.nesterov, rmsRate: config.rmsRate.map(Float.init),
            adamRatio: Float(config.adamLearningRateRatio), beta1: beta1, beta2: beta2, keep1: Float(1 - config.beta1),
            keep2: Float(1 - config.beta2), eps: eps)
    default: return nil
    }
}

/// Keras's ScheduleFreeAdamW: the weights hold y, the slot `momentum` holds z (the weights'
/// copy at the first step), x is recovered from them; an Adam-style denominator scales the step.
struct ScheduleFreeAdamWRule: UpdateRule {
    let beta1: Float, keep1: Float, keep2: Float, eps: Float
    func apply(
        _ w: UnsafeMutablePointer<Float>, _ g: UnsafeMutablePointer<Float>, _ slots: SlotPointers, n: Int,
        _ k: StepConstants, clear: Bool
    ) -> Bool {
        // v += (g² − v)(1 − β2);  z ← z − lr·g/(√(v/(1−β2^t)) + ε);  x = (y − (1−β1)·z_old)/β1;
        // x' = (1 − 1/t)·x + z/t;  y ← (1 − β1)·z + β1·x'
        let z = slots.s0!
        let v = slots.s1!
        let lr = k.lr
        let weight = k.averageWeight
        let keepOld = 1 - weight
        for i in 0..<n {
            let gi = g[i]
            v[i] += (gi * gi - v[i]) * keep2
            let denominator = (v[i] / k.velocityCorrection).squareRoot() + eps
            let old = z[i]
            let zi = old - (lr * gi) / denominator
            z[i] = zi
            let x = (w[i] - keep1 * old) / beta1
            let xNew = keepOld * x + weight * zi
            w[i] = keep1 * zi + beta1 * xNew
        }
        return false
    }
}

struct SGDRule: UpdateRule {
    let momentum: Float, nesterov: Bool
    func apply(
        _ w: UnsafeMutablePointer<Float>, _ g: UnsafeMutablePointer<Float>, _ slots: SlotPointers, n: Int,
        _ k: StepConstants, clear: Bool
    ) -> Bool {
        let lr = k.lr
        guard momentum != 0, let m = slots.s0 else {
            for i in 0..<n { w[i] -= g[i] * lr }
            return false
        }
        // m ← μ·m − g·lr;  w ← w + m,  or nesterov  w ← w + (μ·m − g·lr) (new m)
        let mu = momentum
        if nesterov {
            for i in 0..<n {
                let mi = m[i] * mu - g[i] * lr
                m[i] = mi
                w[i] += mi * mu - g[i] * lr
            }
        } else {
            for i in 0..<n {
                let mi = m[i] * mu - g[i] * lr
                m[i] = mi
                w[i] += mi
            }
        }
        return false
    }
}

/// Adam and AdamW (whose decay the driver applies).
struct AdamRule: UpdateRule {
    let b1: Float, b2: Float, eps: Float, amsgrad: Bool
    func apply(
        _ w: UnsafeMutablePointer<Float>, _ g: UnsafeMutablePointer<Float>, _ slots: SlotPointers, n: Int,
        _ k: StepConstants, clear: Bool
    ) -> Bool {
        let m = slots.s0!
        let v = slots.s1!
        let alpha = k.alpha
        guard amsgrad, let vHat = slots.s2 else {
            // m += (g−m)(1−β1);  v += (g²−v)(1−β2);  w −= α·m/(√v+ε). The loop is C
            // (CKernels): Swift's SIMD square root runs lane by lane. It clears g itself.
            tandem_adam(w, g, m, v, n, alpha, b1, b2, eps, clear ? 1 : 0)
            return true
        }
        // AMSGrad: the step divides by the running maximum of v.
        for i in 0..<n {
            let gi = g[i]
            m[i] += (gi - m[i]) * b1
            v[i] += (gi * gi - v[i]) * b2
            vHat[i] = max(vHat[i], v[i])
            w[i] -= m[i] * alpha / (vHat[i].squareRoot() + eps)
        }
        return false
    }
}

struct RMSpropRule: UpdateRule {
    let rho: Float, keep: Float, mu: Float, eps: Float, momentum: Bool, centered: Bool
    func apply(
        _ w: UnsafeMutablePointer<Float>, _ g: UnsafeMutablePointer<Float>, _ slots: SlotPointers, n: Int,
        _ k: StepConstants, clear: Bool
    ) -> Bool {
        // v ← ρ·v + (1−ρ)·g²;  centered: a ← ρ·a + (1−ρ)·g, denominator v − a² + ε, else v + ε
        // (ε inside the root, as Keras);  Δ = lr·g/√denominator;  momentum: m ← μ·m + Δ, w −= m.
        let lr = k.lr
        let v = slots.s0!
        let m: UnsafeMutablePointer<Float>? = momentum ? slots.s1 : nil
        let a: UnsafeMutablePointer<Float>? = centered ? (momentum ? slots.s2 : slots.s1) : nil
        for i in 0..<n {
            let gi = g[i]
            let vi = rho * v[i] + keep * (gi * gi)
            v[i] = vi
            var denominator = vi + eps
            if let a {
                let ai = rho * a[i] + keep * gi
                a[i] = ai
                denominator = vi - ai * ai + eps
            }
            let increment = lr * gi / denominator.squareRoot()
            if let m {
                let mi = mu * m[i] + increment
                m[i] = mi
                w[i] -= mi
            } else {
                w[i] -= increment
            }
        }
        return false
    }
}

struct AdagradRule: UpdateRule {
    let eps: Float
    func apply(
        _ w: UnsafeMutablePointer<Float>, _ g: UnsafeMutablePointer<Float>, _ slots: SlotPointers, n: Int,
        _ k: StepConstants, clear: Bool
    ) -> Bool {
        // s += g²;  w −= lr·g/√(s + ε)
        let s = slots.s0!
        let lr = k.lr
        for i in 0..<n {
            let gi = g[i]
            s[i] += gi * gi
            w[i] -= lr * gi / (s[i] + eps).squareRoot()
        }
        return false
    }
}

struct AdamaxRule: UpdateRule {
    let b1: Float, beta2: Float, eps: Float
    func apply(
        _ w: UnsafeMutablePointer<Float>, _ g: UnsafeMutablePointer<Float>, _ slots: SlotPointers, n: Int,
        _ k: StepConstants, clear: Bool
    ) -> Bool {
        // m += (g−m)(1−β1);  u ← max(β2·u, |g|);  w −= lr·m / ((1−β1^t)(u + ε))
        let m = slots.s0!
        let u = slots.s1!
        let lr = k.lr
        let correction = k.correction
        for i in 0..<n {
            let gi = g[i]
            m[i] += (gi - m[i]) * b1
            u[i] = max(beta2 * u[i], abs(gi))
            w[i] -= lr * m[i] / (correction * (u[i] + eps))
        }
        return false
    }
}

struct NadamRule: UpdateRule {
    let b1: Float, b2: Float, eps: Float
    func apply(
        _ w: UnsafeMutablePointer<Float>, _ g: UnsafeMutablePointer<Float>, _ slots: SlotPointers, n: Int,
        _ k: StepConstants, clear: Bool
    ) -> Bool {
        // m, v as Adam;  m̂ = u_{t+1}·m/(1−Π_{t+1}) + (1−u_t)·g/(1−Π_t);  v̂ = v/(1−β2^t);  w −= m̂·lr/(√v̂ + ε)
        let m = slots.s0!
        let v = slots.s1!
        let c = k.nadam
        let lr = k.lr
        for i in 0..<n {
            let gi = g[i]
            m[i] += (gi - m[i]) * b1
            v[i] += (gi * gi - v[i]) * b2
            let mHat = c.next * m[i] / (1 - c.nextProduct) + (1 - c.u) * gi / (1 - c.product)
            let vHat = v[i] / c.velocityCorrection
            w[i] -= mHat * lr / (vHat.squareRoot() + eps)
        }
        return false
    }
}

struct AdadeltaRule: UpdateRule {
    let rho: Float, keep: Float, eps: Float
    func apply(
        _ w: UnsafeMutablePointer<Float>, _ g: UnsafeMutablePointer<Float>, _ slots: SlotPointers, n: Int,
        _ k: StepConstants, clear: Bool
    ) -> Bool {
        // a ← ρ·a + (1−ρ)·g²;  δ = −√(d + ε)·g / √(a + ε);  d ← ρ·d + (1−ρ)·δ²;  w += lr·δ
        let a = slots.s0!
        let delta = slots.s1!
        let lr = k.lr
        for i in 0..<n {
            let gi = g[i]
            let ai = rho * a[i] + keep * (gi * gi)
            a[i] = ai
            let step = -((delta[i] + eps).squareRoot() * gi) / (ai + eps).squareRoot()
            delta[i] = rho * delta[i] + keep * (step * step)
            w[i] += lr * step
        }
        return false
    }
}

struct LionRule: UpdateRule {
    let beta1: Float, keep1: Float, beta2: Float, keep2: Float
    func apply(
        _ w: UnsafeMutablePointer<Float>, _ g: UnsafeMutablePointer<Float>, _ slots: SlotPointers, n: Int,
        _ k: StepConstants, clear: Bool
    ) -> Bool {
        // w −= lr·sign(β1·m + (1−β1)·g);  m ← β2·m + (1−β2)·g  (sign 0 at 0)
        let m = slots.s0!
        let lr = k.lr
        for i in 0..<n {
            let gi = g[i]
            let c = m[i] * beta1 + gi * keep1
            let sign: Float = c > 0 ? 1 : (c < 0 ? -1 : 0)
            w[i] -= lr * sign
            m[i] = m[i] * beta2 + gi * keep2
        }
        return false
    }
}

struct FtrlRule: UpdateRule {
    /// −learning_rate_power; l1, l2 strengths; 2·l2_shrinkage; beta — float32, as Keras casts them.
    let power: Float, l1: Float, l2: Float, shrinkage: Float, beta: Float
    func apply(
        _ w: UnsafeMutablePointer<Float>, _ g: UnsafeMutablePointer<Float>, _ slots: SlotPointers, n: Int,
        _ k: StepConstants, clear: Bool
    ) -> Bool {
        // Keras's Ftrl: n' = n + g²;  z += (g + 2·λs·w) − (n'^p − n^p)/lr·w;
        // w = (clip(z, −λ1, λ1) − z) / (n'^p/lr + 2·(λ2 + β/(2·lr)));  n = n'   (p = −learning_rate_power)
        let accumulator = slots.s0!
        let linear = slots.s1!
        let lr = k.lr
        let quadraticExtra = 2 * (l2 + beta / (2 * lr))
        for i in 0..<n {
            let gi = g[i]
            let old = accumulator[i]
            let new = old + gi * gi
            let newPower = powf(new, power)
            linear[i] += (gi + shrinkage * w[i]) - (newPower - powf(old, power)) / lr * w[i]
            let quadratic = newPower / lr + quadraticExtra
            let clipped = min(max(linear[i], -l1), l1)
            w[i] = (clipped - linear[i]) / quadratic
            accumulator[i] = new
        }
        return false
    }
}
