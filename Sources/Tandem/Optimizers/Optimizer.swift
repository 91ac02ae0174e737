// Optimizers with Keras 3's update rules and defaults (docs/SPEC.md §3). A step clips
// by norm when asked (a pass over the gradient), then applies the rule in one pass over
// the flat parameter / gradient arenas (deferred table rows and the factored table's
// blocks apart); its slots live in arenas of the same layout. Every parameter gets the
// dense rule each step, so embedding rows without gradient still see their moments decay
// (Adam's deferred rows replay those steps bit for bit).

import CKernels
import Foundation

/// A stateful optimizer over a `ParameterStore`.
public final class Optimizer {
    public let config: OptimizerConfig
    /// Updates applied so far (Keras's `iterations`: Adam's t is `iterations + 1`).
    public private(set) var iterations: Int = 0
    /// Training steps taken so far (Keras's `_iterations`, the `iteration` variable it saves). With
    /// gradient accumulation over N steps the weights move on the steps where `(microSteps + 1) % N
    /// == 0`, so update t happens at step tN − 1, and `iterations = microSteps / N`; learning-rate
    /// schedules read `microSteps` (Keras's base_optimizer.py). Without accumulation both counts agree.
    public private(set) var microSteps: Int = 0
    /// N: steps per update (1 without gradient accumulation).
    public let stepsPerUpdate: Int
    /// True when the step about to be taken moves the weights.
    public var isUpdateStep: Bool { (microSteps + 1) % stepsPerUpdate == 0 }
    /// Steps since the last update: how many gradients the accumulator holds.
    public var accumulatedSteps: Int { microSteps % stepsPerUpdate }
    /// Slot arenas by name (see `slotNames`), parameter layout.
    public private(set) var slots: [(name: String, values: UnsafeMutablePointer<Float>)] = []
    /// Nadam's running product of its momentum schedule (Keras's `_u_product`, a variable saved after the slots).
    public var nadamProduct: Float = 1
    private let count: Int
    /// The tensors' element ranges: clipnorm is per tensor; weight decay reaches trainable tensors only.
    private let tensors: [(offset: Int, count: Int, trainable: Bool)]
    private var trainableRanges: [Range<Int>] = []
    /// Deferred rows (Adam on an embedding table), see `enableDeferredRows`.
    private var deferred: DeferredRows?

    /// The slots `config` keeps, by Tandem's names (checkpoints use them).
    public static func slotNames(_ config: OptimizerConfig) -> [String] {
        switch config.kind {
        case .sgd: return config.momentum != 0 ? ["momentum"] : []
        case .adam, .adamw: return ["m", "v"] + (config.amsgrad ? ["velocity_hat"] : [])
        case .rmsprop: return ["velocity"] + (config.momentum > 0 ? ["momentum"] : []) + (config.centered ? ["average_gradient"] : [])
        case .adagrad: return ["accumulator"]
        case .adamax: return ["m", "u"]
        case .nadam: return ["m", "v"]
        }
    }

    /// An optimizer for every tensor of `store` (frozen tensors get no weight decay).
    public convenience init(_ config: OptimizerConfig, parameters store: ParameterStore) {
        self.init(config, parameterCount: store.count,
                  tensors: store.tensors.map { ($0.offset, $0.count, $0.spec.trainable) })
    }

    /// An optimizer for `parameterCount` values; without `tensors`, one trainable tensor.
    public init(_ config: OptimizerConfig, parameterCount: Int, tensors: [(offset: Int, count: Int, trainable: Bool)]? = nil) {
        self.config = config
        stepsPerUpdate = config.stepsPerUpdate
        count = parameterCount
        self.tensors = tensors ?? [(0, parameterCount, true)]
        // Adjacent trainable tensors merged into ranges: weight decay's per-call intersection stays short.
        for t in self.tensors where t.trainable && t.count > 0 {
            if let last = trainableRanges.last, last.upperBound == t.offset {
                trainableRanges[trainableRanges.count - 1] = last.lowerBound..<(t.offset + t.count)
            } else {
                trainableRanges.append(t.offset..<(t.offset + t.count))
            }
        }
        for name in Self.slotNames(config) {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
            p.initialize(repeating: name == "accumulator" ? Float(config.initialAccumulatorValue) : 0, count: max(count, 1))
            slots.append((name, p))
        }
    }

    deinit { slots.forEach { $0.values.deallocate() } }

    public func slot(_ name: String) -> UnsafeMutablePointer<Float>? { slots.first { $0.name == name }?.values }

    /// The learning rate of the next step (the schedule's value at `iterations`).
    public var currentLearningRate: Float { config.learningRate(iterations: microSteps) }

    /// False when the rule needs the whole gradient before any row is updated
    /// (clipnorm and global_clipnorm scale by norms over whole tensors), so the
    /// table's gradient cannot be streamed to it row block by row block.
    public var takesRowStreamedGradient: Bool { config.clipnorm == nil && config.globalClipnorm == nil }

    /// Why zero-gradient table rows are not deferred under this rule (nil: they are, or may be).
    public var deferralRefusal: String? {
        if config.decays { return "weight decay touches every row every step; no rows are deferred" }
        if untouchedRowsStay { return "plain SGD leaves untouched rows as they are (nothing to defer)" }
        if config.amsgrad { return "AMSGrad's running maximum is not replayed; no rows are deferred" }
        if config.kind != .adam { return "\(config.kind.rawValue)'s slots move on untouched rows every step; they take the dense rule (no rows deferred)" }
        return nil
    }
    public var defersRows: Bool { deferred != nil }

    /// w ← update(w, g) for every parameter; then iterations += 1. With
    /// `clear`, g is left all zero (folded into the pass: no separate memset).
    public func step(parameters w: UnsafeMutablePointer<Float>, gradients g: UnsafeMutablePointer<Float>, clear: Bool = false) {
        let t = iterations + 1
        prepare(step: t)
        clipByNorm(g)
        if let d = deferred {
            let tail = d.offset + d.rows * d.width
            apply(w, g, 0, d.offset, clear: clear)
            apply(w, g + tail, tail, count, clear: clear)
            if scannedStep != t { _ = gradientsAreFinite(g) }
            for k in 0..<scannedRowCount {
                // Rows not listed had an all-zero gradient: deferred, replayed later bit for bit.
                let r = Int(scannedRows[k]), o = d.offset + r * d.width
                catchUp(row: r, parameters: w)
                apply(w, g + o, o, o + d.width, clear: clear)
                d.applied[r] = Int32(t)
            }
        } else {
            apply(w, g, 0, count, clear: clear)
        }
        iterations = t
        microSteps += 1
    }

    /// A step that only accumulates its gradient (not an update step): the count moves, nothing else.
    public func skipUpdate() {
        precondition(!isUpdateStep, "an update step must apply the gradient")
        microSteps += 1
    }

    /// Keras's clipnorm (each tensor scaled by c / max(‖g‖, c)) or global_clipnorm (all
    /// tensors by c·min(1/‖g‖, 1/c)), applied as Keras writes them, on the combined gradient.
    /// Norms are summed in Double (Keras sums Float32 in XLA's order; the scale agrees to ~1e-7).
    private func clipByNorm(_ g: UnsafeMutablePointer<Float>) {
        func squaredSum(_ x: UnsafeMutablePointer<Float>, _ n: Int) -> Double {
            var sum = 0.0
            for i in 0..<n { sum += Double(x[i]) * Double(x[i]) }
            return sum
        }
        if let c = config.clipnorm.map(Float.init) {
            for t in tensors {
                let x = g + t.offset, sum = squaredSum(x, t.count)
                guard sum > 0 else { continue }  // a zero tensor stays zero (Keras's two-tap where)
                let divisor = max(Float(sum.squareRoot()), c)
                for i in 0..<t.count { x[i] = x[i] * c / divisor }
            }
        } else if let c = config.globalClipnorm.map(Float.init) {
            let norm = Float(tensors.reduce(0.0) { $0 + squaredSum(g + $1.offset, $1.count) }.squareRoot())
            let scale = c * min(1 / norm, 1 / c)
            for t in tensors { let x = g + t.offset; for i in 0..<t.count { x[i] *= scale } }
        }
    }

    /// One step whose embedding table's gradient arrives by rows, block by block:
    /// `beginTableStep`, then `applyTableRows` for consecutive runs of the
    /// touched rows (ascending) with their gradients, then `finishTableStep`.
    /// Every row not listed has a zero gradient and the arena's table window is
    /// never read. The table is updated FIRST, so whoever forms a block's
    /// gradient may read the other parameters' current values; the caller forms
    /// (and exchanges) the blocks — the optimizer runs no collective. Bit-identical
    /// to `step` on the dense arena.
    public struct TableStep {
        let table: (offset: Int, rows: Int, width: Int)
        let t: Int
        /// The next table row the default rule has not yet passed (rows below it are done).
        var nextRow = 0
    }

    public func beginTableStep(table: (offset: Int, rows: Int, width: Int)) -> TableStep {
        let t = iterations + 1
        prepare(step: t)
        if zeroRow.count < table.width { zeroRow = [Float](repeating: 0, count: table.width) }
        return TableStep(table: table, t: t)
    }

    /// Rows `rows` of the table (ascending, after any earlier call's) take the step with
    /// their gradients `gradients` ([rows.count, width], consecutive).
    public func applyTableRows(_ s: inout TableStep, rows: UnsafeBufferPointer<Int32>, gradients: UnsafeMutablePointer<Float>,
                               parameters w: UnsafeMutablePointer<Float>) {
        let W = s.table.width
        if deferred != nil {
            // Untouched rows are deferred and replayed later, as in `step`.
            for (k, r) in rows.enumerated() {
                let o = s.table.offset + Int(r) * W
                catchUp(row: Int(r), parameters: w)
                apply(w, gradients + k * W, o, o + W, clear: false)
                deferred!.applied[Int(r)] = Int32(s.t)
            }
        } else if untouchedRowsStay {
            // w − lr·0 = w: untouched rows do not change.
            for (k, r) in rows.enumerated() {
                let o = s.table.offset + Int(r) * W
                apply(w, gradients + k * W, o, o + W, clear: false)
            }
        } else {
            // Slots (and weights, under weight decay) decay on every row: untouched rows up to each listed row take the step with g = 0.
            for (k, r) in rows.enumerated() {
                passZeroRows(&s, upTo: Int(r), parameters: w)
                let o = s.table.offset + Int(r) * W
                apply(w, gradients + k * W, o, o + W, clear: false)
                s.nextRow = Int(r) + 1
            }
        }
    }

    /// Plain SGD without weight decay leaves a row with zero gradient as it is.
    private var untouchedRowsStay: Bool { config.kind == .sgd && config.momentum == 0 && !config.decays }

    /// The rest of the step: untouched table rows after the last listed one, then every
    /// other parameter from its own offset in `g` (cleared with `clear`); iterations += 1.
    public func finishTableStep(_ s: inout TableStep, parameters w: UnsafeMutablePointer<Float>,
                                gradients g: UnsafeMutablePointer<Float>, clear: Bool) {
        if deferred == nil && !untouchedRowsStay {
            passZeroRows(&s, upTo: s.table.rows, parameters: w)
        }
        let tail = s.table.offset + s.table.rows * s.table.width
        apply(w, g, 0, s.table.offset, clear: clear)
        apply(w, g + tail, tail, count, clear: clear)
        iterations = s.t
        microSteps += 1
    }

    private func passZeroRows(_ s: inout TableStep, upTo end: Int, parameters w: UnsafeMutablePointer<Float>) {
        let W = s.table.width
        zeroRow.withUnsafeMutableBufferPointer { zero in
            for r in s.nextRow..<max(end, s.nextRow) {
                let o = s.table.offset + r * W
                apply(w, zero.baseAddress!, o, o + W, clear: false)
            }
        }
        s.nextRow = max(end, s.nextRow)
    }
    private var zeroRow: [Float] = []

    /// Per-step constants: the learning rate, Adam's α_t, Adamax's and Nadam's bias corrections.
    private func prepare(step t: Int) {
        lr = config.learningRate(iterations: scheduleStep(update: t))
        let b1 = Float(config.beta1), b2 = Float(config.beta2), ft = Float(t)
        switch config.kind {
        case .adam, .adamw: alpha = adamAlpha(step: t)
        case .adamax: correction = 1 - pow(b1, ft)
        case .nadam:
            // Keras's _backend_update_step, then update_step's u_t, u_{t+1} and products (Float32, its order).
            nadamProduct = nadamProduct * b1 * (1 - 0.5 * pow(Float(0.96), ft))
            nadam = (u: b1 * (1 - 0.5 * pow(Float(0.96), ft)), next: b1 * (1 - 0.5 * pow(Float(0.96), ft + 1)),
                     product: nadamProduct, nextProduct: nadamProduct * (b1 * (1 - 0.5 * pow(Float(0.96), ft + 1))),
                     velocityCorrection: 1 - pow(b2, ft))
        default: break
        }
    }
    private var lr: Float = 0, alpha: Float = 0, correction: Float = 0
    private var nadam = (u: Float(0), next: Float(0), product: Float(0), nextProduct: Float(0), velocityCorrection: Float(0))

    /// The update rule on elements [from, to); `g` points at the gradient of element `from`.
    /// Keras's order: clip (clipvalue here; norms in `step`), weight decay, the rule.
    private func apply(_ w: UnsafeMutablePointer<Float>, _ g: UnsafeMutablePointer<Float>, _ from: Int, _ to: Int, clear: Bool) {
        guard to > from else { return }
        let n = to - from, lr = self.lr
        if let c = config.clipvalue.map(Float.init) {
            for i in 0..<n { g[i] = min(max(g[i], -c), c) }
        }
        if config.decays { decay(w, from, to) }
        let w = w + from
        func slot(_ k: Int) -> UnsafeMutablePointer<Float> { slots[k].values + from }
        let b1 = Float(1 - config.beta1), b2 = Float(1 - config.beta2), eps = Float(config.epsilon)
        switch config.kind {
        case .sgd where config.momentum == 0:
            for i in 0..<n { w[i] -= g[i] * lr }
        case .sgd:
            // m ← μ·m − g·lr;  w ← w + m,  or nesterov  w ← w + (μ·m − g·lr) (new m)
            let mu = Float(config.momentum), m = slot(0)
            if config.nesterov {
                for i in 0..<n { let mi = m[i] * mu - g[i] * lr; m[i] = mi; w[i] += mi * mu - g[i] * lr }
            } else {
                for i in 0..<n { let mi = m[i] * mu - g[i] * lr; m[i] = mi; w[i] += mi }
            }
        case .adam where !config.amsgrad, .adamw where !config.amsgrad:
            // m += (g−m)(1−β1);  v += (g²−v)(1−β2);  w −= α·m/(√v+ε). The loop is C
            // (CKernels): Swift's SIMD square root runs lane by lane. It clears g itself.
            tandem_adam(w, g, slot(0), slot(1), n, alpha, b1, b2, eps, clear ? 1 : 0)
            return
        case .adam, .adamw:
            // AMSGrad: the step divides by the running maximum of v.
            let m = slot(0), v = slot(1), vHat = slot(2), alpha = self.alpha
            for i in 0..<n {
                let gi = g[i]
                m[i] += (gi - m[i]) * b1
                v[i] += (gi * gi - v[i]) * b2
                vHat[i] = max(vHat[i], v[i])
                w[i] -= m[i] * alpha / (vHat[i].squareRoot() + eps)
            }
        case .rmsprop:
            // v ← ρ·v + (1−ρ)·g²;  centered: a ← ρ·a + (1−ρ)·g, denominator v − a² + ε, else v + ε
            // (ε inside the root, as Keras);  Δ = lr·g/√denominator;  momentum: m ← μ·m + Δ, w −= m.
            let rho = Float(config.rho), keep = Float(1 - config.rho), mu = Float(config.momentum)
            let v = slot(0)
            let m: UnsafeMutablePointer<Float>? = config.momentum > 0 ? slot(1) : nil
            let a: UnsafeMutablePointer<Float>? = config.centered ? slot(config.momentum > 0 ? 2 : 1) : nil
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
        case .adagrad:
            // s += g²;  w −= lr·g/√(s + ε)
            let s = slot(0)
            for i in 0..<n {
                let gi = g[i]
                s[i] += gi * gi
                w[i] -= lr * gi / (s[i] + eps).squareRoot()
            }
        case .adamax:
            // m += (g−m)(1−β1);  u ← max(β2·u, |g|);  w −= lr·m / ((1−β1^t)(u + ε))
            let m = slot(0), u = slot(1), beta2 = Float(config.beta2), correction = self.correction
            for i in 0..<n {
                let gi = g[i]
                m[i] += (gi - m[i]) * b1
                u[i] = max(beta2 * u[i], abs(gi))
                w[i] -= lr * m[i] / (correction * (u[i] + eps))
            }
        case .nadam:
            // m, v as Adam;  m̂ = u_{t+1}·m/(1−Π_{t+1}) + (1−u_t)·g/(1−Π_t);  v̂ = v/(1−β2^t);  w −= m̂·lr/(√v̂ + ε)
            let m = slot(0), v = slot(1), k = nadam
            for i in 0..<n {
                let gi = g[i]
                m[i] += (gi - m[i]) * b1
                v[i] += (gi * gi - v[i]) * b2
                let mHat = k.next * m[i] / (1 - k.nextProduct) + (1 - k.u) * gi / (1 - k.product)
                let vHat = v[i] / k.velocityCorrection
                w[i] -= mHat * lr / (vHat.squareRoot() + eps)
            }
        }
        if clear { g.update(repeating: 0, count: n) }
    }

    /// w ← w − w·wd·lr on the trainable elements of [from, to) (Keras's _apply_weight_decay).
    private func decay(_ w: UnsafeMutablePointer<Float>, _ from: Int, _ to: Int) {
        let wd = Float(config.weightDecay ?? 0), lr = self.lr
        for r in trainableRanges where r.lowerBound < to && r.upperBound > from {
            for i in max(from, r.lowerBound)..<min(to, r.upperBound) { w[i] = w[i] - w[i] * wd * lr }
        }
    }

    /// Adam's step size at step t: α = lr_t·√(1−β2^t)/(1−β1^t), rounded to Float once
    /// and kept (`alphas[t − 1]`) so a replay uses the very same value.
    private func adamAlpha(step t: Int) -> Float {
        while alphas.count < t {
            let s = Double(alphas.count + 1), rate = Double(config.learningRate(iterations: scheduleStep(update: alphas.count + 1)))
            alphas.append(Float(rate * (1 - pow(config.beta2, s)).squareRoot() / (1 - pow(config.beta1, s))))
        }
        return alphas[t - 1]
    }
    private var alphas: [Float] = []

    /// The step count a schedule reads for update t: Keras's `_iterations` before it, tN − 1.
    private func scheduleStep(update t: Int) -> Int { t * stepsPerUpdate - 1 }

    // MARK: Deferred rows
    //
    // An embedding table's rows get gradient only from the tokens of a batch;
    // the rest see g = 0, for which Adam still decays m and v and moves w.
    // Streaming all of m, v and w every step is most of Adam's cost. Instead a
    // row whose combined gradient is exactly zero is skipped and its zero-
    // gradient steps are REPLAYED later with the same code and the same α_t,
    // so the result is bit-identical to the dense rule (docs/SPEC.md §3). A row is
    // replayed before anything reads it: the batch's tokens before forward,
    // every row before hashing, evaluation or saving (`catchUpAll`).

    private final class DeferredRows {
        let offset: Int, rows: Int, width: Int
        /// Steps applied to each row so far.
        let applied: UnsafeMutablePointer<Int32>
        init(offset: Int, rows: Int, width: Int) {
            self.offset = offset; self.rows = rows; self.width = width
            applied = .allocate(capacity: rows); applied.initialize(repeating: 0, count: rows)
        }
        deinit { applied.deallocate() }
    }

    /// Lets Adam defer zero-gradient rows of the [rows, width] table at `offset`.
    /// Other optimizers keep the plain dense pass.
    public func enableDeferredRows(offset: Int, rows: Int, width: Int) {
        guard deferralRefusal == nil, rows > 0, width > 0 else { return }
        let d = DeferredRows(offset: offset, rows: rows, width: width)
        d.applied.update(repeating: Int32(iterations), count: rows)
        deferred = d
    }

    /// Replays row `r`'s deferred zero-gradient steps up to `iterations`.
    @inline(__always)
    public func catchUp(row r: Int, parameters w: UnsafeMutablePointer<Float>) {
        guard let d = deferred, Int(d.applied[r]) < iterations else { return }
        let o = d.offset + r * d.width
        let b1 = Float(1 - config.beta1), b2 = Float(1 - config.beta2), eps = Float(config.epsilon)
        for t in (Int(d.applied[r]) + 1)...iterations {
            tandem_adam_zero_gradient(w + o, slots[0].values + o, slots[1].values + o, d.width, alphas[t - 1], b1, b2, eps)
        }
        d.applied[r] = Int32(iterations)
    }

    /// Replays every deferred row: afterwards values and slots equal the dense rule's.
    public func catchUpAll(parameters w: UnsafeMutablePointer<Float>) {
        guard let d = deferred else { return }
        for r in 0..<d.rows { catchUp(row: r, parameters: w) }
    }

    /// Sets the count from a checkpoint or an archive (Keras's saved `iteration`: steps taken,
    /// `microSteps`), whose values are all current.
    public func restore(iterations steps: Int) {
        microSteps = steps
        iterations = steps / stepsPerUpdate
        deferred?.applied.update(repeating: Int32(iterations), count: deferred!.rows)
    }

    /// One read of the gradient arena before the step: false when any value is
    /// NaN or ±Inf (then nothing may be updated). With deferred rows it also
    /// lists the table rows whose gradient is not all zero, for `step`.
    /// `tableRows`, when given, lists (ascending) every table row that may be non-zero:
    /// only those are read (a dense table gradient is mostly rows no token touched).
    public func gradientsAreFinite(_ g: UnsafePointer<Float>, tableRows: UnsafeBufferPointer<Int32>? = nil) -> Bool {
        var exponent: UInt32 = 0
        guard let d = deferred else { return maxExponent(g, count) != 0x7F80_0000 }
        let tail = d.offset + d.rows * d.width
        exponent = max(maxExponent(g, d.offset), maxExponent(g + tail, count - tail))
        if scannedRows.count < d.rows { scannedRows = [Int32](repeating: 0, count: d.rows) }
        var listed = 0
        scannedRows.withUnsafeMutableBufferPointer { rows in
            func scan(_ r: Int) {
                let (any, e) = bitsAndExponent(g + d.offset + r * d.width, d.width)
                exponent = max(exponent, e)
                if any != 0 { rows[listed] = Int32(r); listed += 1 }
            }
            if let tableRows { for r in tableRows { scan(Int(r)) } } else { for r in 0..<d.rows { scan(r) } }
        }
        scannedRowCount = listed
        scannedStep = iterations + 1
        return exponent != 0x7F80_0000
    }
    private var scannedRows: [Int32] = [], scannedRowCount = 0, scannedStep = -1

    /// An upper bound on |x| over the n values at `p` (a power of two), or nil
    /// when one of them is NaN or ±Inf.
    public func magnitudeBound(_ p: UnsafePointer<Float>, count n: Int) -> Double? {
        let e = maxExponent(p, n)
        guard e != 0x7F80_0000 else { return nil }
        return pow(2.0, Double(Int(e >> 23) - 126))
    }

    /// False when any of the n values at `g` is NaN or ±Inf.
    public func allFinite(_ g: UnsafePointer<Float>, count n: Int) -> Bool {
        maxExponent(g, n) != 0x7F80_0000
    }

    /// The largest exponent field (bits 23–30) among n floats; 0x7F80_0000 means NaN or Inf.
    private func maxExponent(_ p: UnsafePointer<Float>, _ n: Int) -> UInt32 {
        guard n > 0 else { return 0 }
        return bitsAndExponent(p, n).exponent
    }

    /// Non-zero when any bit of any value is set (so −0 counts as a gradient, which
    /// is harmless: its update equals the +0 replay), and the largest exponent field.
    @inline(__always) private func bitsAndExponent(_ p: UnsafePointer<Float>, _ n: Int) -> (any: UInt32, exponent: UInt32) {
        var any: UInt32 = 0
        let exponent = tandem_bits_and_exponent(p, n, &any)  // CKernels/elementwise.c (vectorised)
        return (any, exponent)
    }
}

