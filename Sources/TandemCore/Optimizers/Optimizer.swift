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
    package private(set) var iterations: Int = 0
    /// Training steps taken so far (Keras's `_iterations`, the `iteration` variable it saves). With
    /// gradient accumulation over N steps the weights move on the steps where `(microSteps + 1) % N
    /// == 0`, so update t happens at step tN − 1, and `iterations = microSteps / N`; learning-rate
    /// schedules read `microSteps` (Keras's base_optimizer.py). Without accumulation both counts agree.
    package private(set) var microSteps: Int = 0
    /// N: steps per update (1 without gradient accumulation).
    package let stepsPerUpdate: Int
    /// True when the step about to be taken moves the weights.
    package var isUpdateStep: Bool { (microSteps + 1) % stepsPerUpdate == 0 }
    /// Steps since the last update: how many gradients the accumulator holds.
    package var accumulatedSteps: Int { microSteps % stepsPerUpdate }
    /// Slot arenas by name (see `slotNames`), parameter layout.
    package private(set) var slots: [(name: String, values: UnsafeMutablePointer<Float>)] = []
    /// Nadam's running product of its momentum schedule (Keras's `_u_product`, a variable saved after the slots).
    package var nadamProduct: Float = 1
    let count: Int
    /// The tensors' element ranges: clipnorm is per tensor; weight decay reaches trainable tensors only.
    private let tensors: [(offset: Int, count: Int, trainable: Bool)]
    private var trainableRanges: [Range<Int>] = [], frozenRanges: [Range<Int>] = []
    /// Deferred rows (Adam on an embedding table), see `enableDeferredRows`.
    var deferred: DeferredRows?
    /// The last finiteness scan's table rows with gradient, for `step` (DeferredRows.swift).
    var scannedRows: [Int32] = [], scannedRowCount = 0, scannedStep = -1

    /// The slots `config` keeps, by Tandem's names (checkpoints use them).
    package static func slotNames(_ config: OptimizerConfig) -> [String] {
        switch config.kind {
        case .sgd: return config.momentum != 0 ? ["momentum"] : []
        case .adam, .adamw: return ["m", "v"] + (config.amsgrad ? ["velocity_hat"] : [])
        case .rmsprop:
            return ["velocity"] + (config.momentum > 0 ? ["momentum"] : [])
                + (config.centered ? ["average_gradient"] : [])
        case .adagrad: return ["accumulator"]
        case .adamax: return ["m", "u"]
        case .nadam: return ["m", "v"]
        case .adadelta: return ["accumulated_grad", "accumulated_delta_var"]
        case .lion: return ["m"]
        case .ftrl: return ["accumulator", "linear"]
        case .lamb: return ["m", "v"]
        // Adafactor's row and column averages sit at their tensor's offset (fewer elements than it).
        case .adafactor: return ["r", "c", "v"]
        case .muon, .scheduleFreeAdamW: return ["momentum", "velocity"]
        }
    }

    /// The slots `config` keeps: the rule's (slotNames, which the rule reads by position), then
    /// the weights' moving average when `use_ema`.
    package static func allSlotNames(_ config: OptimizerConfig) -> [String] {
        slotNames(config) + (config.useEMA ? ["average"] : [])
    }

    /// An optimizer for every tensor of `store` (frozen tensors get no weight decay). `kerasPaths`:
    /// Keras's variable paths where they differ from the tensors' names (Muon's rules read them).
    public convenience init(
        _ config: OptimizerConfig, parameters store: ParameterStore, kerasPaths: [String: String] = [:]
    ) {
        self.init(
            config, parameterCount: store.count,
            tensors: store.tensors.map { ($0.offset, $0.count, $0.spec.trainable) },
            shapes: store.tensors.map { $0.spec.shape }, names: store.tensors.map { kerasPaths[$0.name] ?? $0.name })
    }

    /// An optimizer for `parameterCount` values; without `tensors`, one trainable tensor. The
    /// tensor-wise rules read `shapes` (default: each tensor flat) and Muon `names`.
    package init(
        _ config: OptimizerConfig, parameterCount: Int, tensors: [(offset: Int, count: Int, trainable: Bool)]? = nil,
        shapes: [[Int]]? = nil, names: [String]? = nil
    ) {
        self.config = config
        rule = updateRule(config)
        tensorRule = TandemCore.tensorRule(config)
        lossScale = config.lossScale.map { Float($0.initialScale) } ?? 1
        momentumFromWeights = config.kind == .scheduleFreeAdamW
        stepsPerUpdate = config.stepsPerUpdate
        count = parameterCount
        self.tensors = tensors ?? [(0, parameterCount, true)]
        tensorShapes = shapes ?? self.tensors.map { [$0.count] }
        tensorUsesAdam = zip(tensorShapes, names ?? tensorShapes.map { _ in "" }).map {
            config.kind == .muon && config.muonUsesAdam(shape: $0, name: $1)
        }
        if let tensorRule {
            let most =
                zip(self.tensors, tensorShapes).filter { $0.0.trainable }.map { tensorRule.scratch(shape: $0.1) }
                .max() ?? 0
            scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(most, 1))
        }
        // Non-trainable tensors: a frozen layer's weights (and BatchNormalization's moving statistics,
        // whose gradient no layer writes).
        frozenRanges = self.tensors.filter { !$0.trainable && $0.count > 0 }.map { $0.offset..<($0.offset + $0.count) }
        // Adjacent trainable tensors merged into ranges: weight decay's per-call intersection stays short.
        for t in self.tensors where t.trainable && t.count > 0 {
            if let last = trainableRanges.last, last.upperBound == t.offset {
                trainableRanges[trainableRanges.count - 1] = last.lowerBound..<(t.offset + t.count)
            } else {
                trainableRanges.append(t.offset..<(t.offset + t.count))
            }
        }
        for name in Self.allSlotNames(config) {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
            p.initialize(
                repeating: name == "accumulator" ? Float(config.initialAccumulatorValue) : 0, count: max(count, 1))
            slots.append((name, p))
        }
    }

    deinit {
        for slot in slots { slot.values.deallocate() }
        scratch?.deallocate()
    }

    /// The tensor-wise rule (Lamb, Adafactor, Muon; TensorRules.swift), its scratch, the shapes it reads.
    private let tensorRule: TensorRule?
    private var scratch: UnsafeMutablePointer<Float>?
    private let tensorShapes: [[Int]]
    /// Muon's AdamW tensors (its `velocity` slot is theirs only).
    package let tensorUsesAdam: [Bool]
    /// ScheduleFreeAdamW: the slot `momentum` starts as a copy of the weights (Keras's build),
    /// taken at the first update unless a saved state was restored.
    private var momentumFromWeights: Bool
    /// LossScaleOptimizer's `dynamic_scale` and `step_counter`: every step with a finite gradient
    /// counts, and the scale doubles when the count reaches dynamic_growth_steps (Keras's
    /// _stateful_handle_finite_grads). The gradient itself is unchanged: g·s/s = g in float32 for a
    /// power-of-two s. Tandem stops on a non-finite gradient, where Keras would halve s and skip.
    package var lossScale: Float, lossScaleCounter = 0

    private func countLossScaleStep() {
        guard let l = config.lossScale else { return }
        if lossScaleCounter == l.growthSteps - 1 {
            lossScaleCounter = 0
            lossScale *= 2
        } else {
            lossScaleCounter += 1
        }
    }

    package func slot(_ name: String) -> UnsafeMutablePointer<Float>? { slots.first { $0.name == name }?.values }

    /// The learning rate of the next step (the schedule's value at `iterations`).
    package var currentLearningRate: Float { config.learningRate(iterations: microSteps) }

    /// Why the rule needs the whole gradient, or the whole weights, before any row is updated, so the
    /// table's gradient cannot be streamed to it row block by row block (nil: it can be).
    package var rowStreamRefusal: String? {
        if config.clipnorm != nil || config.globalClipnorm != nil {
            return "clipping by norm needs the whole gradient before any row is updated"
        }
        if tensorRule != nil {
            return "\(config.kind.rawValue) reads whole tensors (norms, factored moments or orthogonalisation)"
        }
        if config.kind == .scheduleFreeAdamW {
            return "ScheduleFreeAdamW's momentum starts as a copy of all the weights"
        }
        return nil
    }
    package var takesRowStreamedGradient: Bool { rowStreamRefusal == nil }

    /// Why zero-gradient table rows are not deferred under this rule (nil: they are, or may be).
    package var deferralRefusal: String? {
        if config.decays { return "weight decay touches every row every step; no rows are deferred" }
        if !constraints.isEmpty { return "weight constraints project every tensor every step; no rows are deferred" }
        if config.useEMA { return "the weights' moving average moves on every row every step; no rows are deferred" }
        if untouchedRowsStay { return "plain SGD leaves untouched rows as they are (nothing to defer)" }
        if config.amsgrad { return "AMSGrad's running maximum is not replayed; no rows are deferred" }
        if config.kind != .adam {
            return
                "\(config.kind.rawValue)'s slots move on untouched rows every step; they take the dense rule (no rows deferred)"
        }
        return nil
    }
    package var defersRows: Bool { deferred != nil }

    /// Weight constraints (Constraint.swift), each applied to its whole tensor after every update,
    /// as Keras's optimizer applies them after update_step.
    package private(set) var constraints: [(offset: Int, shape: [Int], constraint: WeightConstraint)] = []

    /// Resolves `list` against `store`'s tensors; a name the model lacks is an error.
    public func constrain(_ list: [WeightConstraint], in store: ParameterStore) throws {
        if !list.isEmpty && stepsPerUpdate > 1 {
            throw TandemError.usage(
                "weight constraints with gradient_accumulation_steps are not supported (Keras projects the weights on every accumulation step too)"
            )
        }
        constraints = try list.compactMap { c in
            guard let view = store.view(c.tensor) else {
                throw TandemError.usage("constraint on '\(c.tensor)': the model has no such weight")
            }
            // Keras projects trainable variables only: a frozen layer's weights keep their values.
            return view.spec.trainable ? (view.offset, view.spec.shape, c) : nil
        }
    }

    /// What follows the rule, in Keras's order (base_optimizer.apply): the moving average of the
    /// trainable weights (momentum 0 at the first update) and its overwrite every N-th update,
    /// then the constraints. `t` is the update being finished (1-based).
    private func finishUpdate(_ w: UnsafeMutablePointer<Float>, step t: Int) {
        if config.useEMA, let average = slot("average") {
            let momentum: Float = t > 1 ? Float(config.emaMomentum) : 0
            let keep = 1 - momentum
            for range in trainableRanges {
                for i in range { average[i] = momentum * average[i] + keep * w[i] }
            }
            if let f = config.emaOverwriteFrequency, t % f == 0 { copyAverage(into: w) }
        }
        for c in constraints { c.constraint.apply(w + c.offset, shape: c.shape) }
    }

    private func copyAverage(into w: UnsafeMutablePointer<Float>) {
        guard let average = slot("average") else { return }
        for range in trainableRanges {
            (w + range.lowerBound).update(from: average + range.lowerBound, count: range.count)
        }
    }

    /// Keras's finalize_variable_values at the end of fit: with use_ema the weights become their average.
    public func finalizeWeights(_ w: UnsafeMutablePointer<Float>) {
        if config.useEMA { copyAverage(into: w) }
    }

    /// w ← update(w, g) for every parameter; then iterations += 1. With
    /// `clear`, g is left all zero (folded into the pass: no separate memset).
    public func step(
        parameters w: UnsafeMutablePointer<Float>, gradients g: UnsafeMutablePointer<Float>, clear: Bool = false
    ) {
        let t = iterations + 1
        prepare(step: t)
        // A frozen layer's weights get no update: Keras computes no gradient for them, and every rule
        // here leaves a weight whose gradient and slots are zero as it is.
        for frozen in frozenRanges { (g + frozen.lowerBound).update(repeating: 0, count: frozen.count) }
        clipByNorm(g)
        if momentumFromWeights, let z = slot("momentum") {
            for range in trainableRanges {
                (z + range.lowerBound).update(from: w + range.lowerBound, count: range.count)
            }
            momentumFromWeights = false
        }
        if tensorRule != nil {
            applyByTensor(w, g, step: t)
            if clear { g.update(repeating: 0, count: count) }
        } else if let d = deferred {
            let tail = d.offset + d.rows * d.width
            apply(w, g, 0, d.offset, clear: clear)
            apply(w, g + tail, tail, count, clear: clear)
            if scannedStep != t { _ = gradientsAreFinite(g) }
            for k in 0..<scannedRowCount {
                // Rows not listed had an all-zero gradient: deferred, replayed later bit for bit.
                let r = Int(scannedRows[k])
                let o = d.offset + r * d.width
                catchUp(row: r, parameters: w)
                apply(w, g + o, o, o + d.width, clear: clear)
                d.applied[r] = Int32(t)
            }
        } else {
            apply(w, g, 0, count, clear: clear)
        }
        finishUpdate(w, step: t)
        iterations = t
        microSteps += 1
        countLossScaleStep()
    }

    /// A step that only accumulates its gradient (not an update step): the counts move, nothing else.
    package func skipUpdate() {
        precondition(!isUpdateStep, "an update step must apply the gradient")
        microSteps += 1
        countLossScaleStep()
    }

    /// The tensor-wise rules: each trainable tensor in turn, clipped by value, decayed (Muon: its
    /// AdamW tensors by adam_weight_decay, the others by weight_decay), then the rule. Frozen
    /// tensors are not touched, as Keras updates trainable variables only.
    private func applyByTensor(_ w: UnsafeMutablePointer<Float>, _ g: UnsafeMutablePointer<Float>, step t: Int) {
        guard let tensorRule else { return }
        for (i, tensor) in tensors.enumerated() where tensor.trainable && tensor.count > 0 {
            let o = tensor.offset
            if let c = config.clipvalue.map(Float.init) {
                for j in o..<(o + tensor.count) { g[j] = min(max(g[j], -c), c) }
            }
            let decay = config.kind == .muon && tensorUsesAdam[i] ? config.adamWeightDecay : config.weightDecay
            if let decay, decay != 0 {
                let wd = Float(decay)
                let lr = constants.lr
                for j in o..<(o + tensor.count) { w[j] = w[j] - w[j] * wd * lr }
            }
            let view = UpdateTensor(
                w: w + o, g: g + o, slots: slotPointers(at: o), shape: tensorShapes[i], count: tensor.count,
                usesAdam: tensorUsesAdam[i])
            tensorRule.apply(view, step: t, constants, scratch: scratch!)
        }
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
                let x = g + t.offset
                let sum = squaredSum(x, t.count)
                guard sum > 0 else { continue }  // a zero tensor stays zero (Keras's two-tap where)
                let divisor = max(Float(sum.squareRoot()), c)
                for i in 0..<t.count { x[i] = x[i] * c / divisor }
            }
        } else if let c = config.globalClipnorm.map(Float.init) {
            let norm = Float(tensors.reduce(0.0) { $0 + squaredSum(g + $1.offset, $1.count) }.squareRoot())
            let scale = c * min(1 / norm, 1 / c)
            for t in tensors {
                let x = g + t.offset
                for i in 0..<t.count { x[i] *= scale }
            }
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
    package struct TableStep {
        let table: (offset: Int, rows: Int, width: Int)
        let t: Int
        /// The next table row the default rule has not yet passed (rows below it are done).
        var nextRow = 0
    }

    package func beginTableStep(table: (offset: Int, rows: Int, width: Int)) -> TableStep {
        let t = iterations + 1
        prepare(step: t)
        if zeroRow.count < table.width { zeroRow = [Float](repeating: 0, count: table.width) }
        return TableStep(table: table, t: t)
    }

    /// Rows `rows` of the table (ascending, after any earlier call's) take the step with
    /// their gradients `gradients` ([rows.count, width], consecutive).
    package func applyTableRows(
        _ s: inout TableStep, rows: UnsafeBufferPointer<Int32>, gradients: UnsafeMutablePointer<Float>,
        parameters w: UnsafeMutablePointer<Float>
    ) {
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
    package func finishTableStep(
        _ s: inout TableStep, parameters w: UnsafeMutablePointer<Float>,
        gradients g: UnsafeMutablePointer<Float>, clear: Bool
    ) {
        if deferred == nil && !untouchedRowsStay {
            passZeroRows(&s, upTo: s.table.rows, parameters: w)
        }
        let tail = s.table.offset + s.table.rows * s.table.width
        apply(w, g, 0, s.table.offset, clear: clear)
        apply(w, g + tail, tail, count, clear: clear)
        finishUpdate(w, step: s.t)
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
        constants.lr = config.learningRate(iterations: scheduleStep(update: t))
        let b1 = Float(config.beta1)
        let b2 = Float(config.beta2)
        let ft = Float(t)
        switch config.kind {
        case .adam, .adamw: constants.alpha = adamAlpha(step: t)
        case .adamax: constants.correction = 1 - pow(b1, ft)
        case .scheduleFreeAdamW:
            if config.warmupSteps > 0 { constants.lr = constants.lr * min(ft / Float(config.warmupSteps), 1) }
            constants.velocityCorrection = 1 - pow(b2, ft)
            constants.averageWeight = 1 / ft
        case .nadam:
            // Keras's _backend_update_step, then update_step's u_t, u_{t+1} and products (Float32, its order).
            nadamProduct = nadamProduct * b1 * (1 - 0.5 * pow(Float(0.96), ft))
            constants.nadam = (
                u: b1 * (1 - 0.5 * pow(Float(0.96), ft)), next: b1 * (1 - 0.5 * pow(Float(0.96), ft + 1)),
                product: nadamProduct, nextProduct: nadamProduct * (b1 * (1 - 0.5 * pow(Float(0.96), ft + 1))),
                velocityCorrection: 1 - pow(b2, ft)
            )
        default: break
        }
    }
    private var constants = StepConstants()
    private let rule: UpdateRule

    /// The update on elements [from, to); `g` points at the gradient of element `from`.
    /// Keras's order: clip (clipvalue here; norms in `step`), weight decay, the rule (UpdateRules.swift).
    func apply(_ w: UnsafeMutablePointer<Float>, _ g: UnsafeMutablePointer<Float>, _ from: Int, _ to: Int, clear: Bool)
    {
        guard to > from else { return }
        let n = to - from
        if let c = config.clipvalue.map(Float.init) {
            for i in 0..<n { g[i] = min(max(g[i], -c), c) }
        }
        if config.decays { decay(w, from, to) }
        // Ftrl and ScheduleFreeAdamW move a weight even at a zero gradient (it is rebuilt from its
        // slots): they run on the trainable elements only, as Keras updates only trainable variables. The others' zero
        // gradient leaves them as they are, so with non-trainable tensors (a frozen backbone's: most of the arena)
        // they skip them too, which is the same bits for less work.
        if config.kind == .ftrl || config.kind == .scheduleFreeAdamW || !frozenRanges.isEmpty {
            // Each range's pass clears its own gradient; the rest of [from, to) is zeroed apart (a memset of
            // the whole span was 2% of a MobileNetV2 step: BatchNormalization's moving statistics are such tensors).
            for r in trainableRanges where r.lowerBound < to && r.upperBound > from {
                let lo = max(from, r.lowerBound)
                let hi = min(to, r.upperBound)
                let cleared = rule.apply(
                    w + lo, g + (lo - from), slotPointers(at: lo), n: hi - lo, constants, clear: clear)
                if clear && !cleared { (g + (lo - from)).update(repeating: 0, count: hi - lo) }
            }
            if clear {
                for r in frozenRanges where r.lowerBound < to && r.upperBound > from {
                    let lo = max(from, r.lowerBound)
                    (g + (lo - from)).update(repeating: 0, count: min(to, r.upperBound) - lo)
                }
            }
            return
        }
        let cleared = rule.apply(w + from, g, slotPointers(at: from), n: n, constants, clear: clear)
        if clear && !cleared { g.update(repeating: 0, count: n) }
    }

    private func slotPointers(at i: Int) -> SlotPointers {
        SlotPointers(
            s0: slots.count > 0 ? slots[0].values + i : nil, s1: slots.count > 1 ? slots[1].values + i : nil,
            s2: slots.count > 2 ? slots[2].values + i : nil)
    }

    /// w ← w − w·wd·lr on the trainable elements of [from, to) (Keras's _apply_weight_decay).
    private func decay(_ w: UnsafeMutablePointer<Float>, _ from: Int, _ to: Int) {
        let wd = Float(config.weightDecay ?? 0)
        let lr = constants.lr
        for r in trainableRanges where r.lowerBound < to && r.upperBound > from {
            for i in max(from, r.lowerBound)..<min(to, r.upperBound) { w[i] = w[i] - w[i] * wd * lr }
        }
    }

    /// Adam's step size at step t: α = lr_t·√(1−β2^t)/(1−β1^t), rounded to Float once
    /// and kept (`alphas[t − 1]`) so a replay uses the very same value.
    private func adamAlpha(step t: Int) -> Float {
        while alphas.count < t {
            let s = Double(alphas.count + 1)
            let rate = Double(config.learningRate(iterations: scheduleStep(update: alphas.count + 1)))
            alphas.append(Float(rate * (1 - pow(config.beta2, s)).squareRoot() / (1 - pow(config.beta1, s))))
        }
        return alphas[t - 1]
    }
    var alphas: [Float] = []

    /// The step count a schedule reads for update t: Keras's `_iterations` before it, tN − 1.
    private func scheduleStep(update t: Int) -> Int { t * stepsPerUpdate - 1 }

    /// Sets the count from a checkpoint or an archive (Keras's saved `iteration`: steps taken,
    /// `microSteps`), whose values are all current.
    public func restore(iterations steps: Int) {
        if steps > 0 { momentumFromWeights = false }
        microSteps = steps
        iterations = steps / stepsPerUpdate
        deferred?.applied.update(repeating: Int32(iterations), count: deferred!.rows)
    }

}
