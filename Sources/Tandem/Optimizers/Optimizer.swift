// Optimizers with Keras 3's update rules and defaults (SPEC §3). Each applies
// one fused pass over the flat parameter / gradient arenas; its slots live in
// arenas of the same layout. Every parameter gets the dense rule each step,
// so embedding rows without gradient still see their moments decay.

import CKernels
import Foundation

/// Which optimizer and its hyper-parameters. Defaults are Keras's.
public struct OptimizerConfig: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable, CaseIterable { case sgd, adam, rmsprop }
    public var kind: Kind = .sgd
    public var learningRate: Double = 0.01
    public var momentum: Double = 0
    public var nesterov = false
    public var beta1 = 0.9, beta2 = 0.999, epsilon = 1e-7, rho = 0.9
    public init(kind: Kind = .sgd, learningRate: Double? = nil) {
        self.kind = kind
        self.learningRate = learningRate ?? (kind == .sgd ? 0.01 : 0.001)
    }
}

/// A stateful optimizer over a `ParameterStore`.
public final class Optimizer {
    public let config: OptimizerConfig
    /// Steps applied so far (Keras's `iterations`).
    public var iterations: Int = 0
    /// Slot arenas by name (`momentum`, `m`, `v`, `velocity`), parameter layout.
    public private(set) var slots: [(name: String, values: UnsafeMutablePointer<Float>)] = []
    private let count: Int
    /// Deferred rows (Adam on an embedding table), see `enableDeferredRows`.
    private var deferred: DeferredRows?

    public init(_ config: OptimizerConfig, parameterCount: Int) {
        self.config = config
        count = parameterCount
        let names: [String]
        switch config.kind {
        case .sgd: names = config.momentum != 0 ? ["momentum"] : []
        case .adam: names = ["m", "v"]
        case .rmsprop: names = ["velocity"]
        }
        for name in names {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
            p.initialize(repeating: 0, count: max(count, 1))
            slots.append((name, p))
        }
    }

    deinit { slots.forEach { $0.values.deallocate() } }

    public func slot(_ name: String) -> UnsafeMutablePointer<Float>? { slots.first { $0.name == name }?.values }

    /// w ← update(w, g) for every parameter; then iterations += 1. With
    /// `clear`, g is left all zero (folded into the pass: no separate memset).
    public func step(parameters w: UnsafeMutablePointer<Float>, gradients g: UnsafeMutablePointer<Float>, clear: Bool = false) {
        let t = iterations + 1
        prepare(step: t)
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
        switch config.kind {
        case .adam where deferred != nil:
            // Untouched rows are deferred and replayed later, as in `step`.
            for (k, r) in rows.enumerated() {
                let o = s.table.offset + Int(r) * W
                catchUp(row: Int(r), parameters: w)
                apply(w, gradients + k * W, o, o + W, clear: false)
                deferred!.applied[Int(r)] = Int32(s.t)
            }
        case .sgd where config.momentum == 0:
            // w − lr·0 = w: untouched rows do not change.
            for (k, r) in rows.enumerated() {
                let o = s.table.offset + Int(r) * W
                apply(w, gradients + k * W, o, o + W, clear: false)
            }
        default:
            // Slots decay on every row: untouched rows up to each listed row take the step with g = 0.
            for (k, r) in rows.enumerated() {
                passZeroRows(&s, upTo: Int(r), parameters: w)
                let o = s.table.offset + Int(r) * W
                apply(w, gradients + k * W, o, o + W, clear: false)
                s.nextRow = Int(r) + 1
            }
        }
    }

    /// The rest of the step: untouched table rows after the last listed one, then every
    /// other parameter from its own offset in `g` (cleared with `clear`); iterations += 1.
    public func finishTableStep(_ s: inout TableStep, parameters w: UnsafeMutablePointer<Float>,
                                gradients g: UnsafeMutablePointer<Float>, clear: Bool) {
        if !(config.kind == .adam && deferred != nil) && !(config.kind == .sgd && config.momentum == 0) {
            passZeroRows(&s, upTo: s.table.rows, parameters: w)
        }
        let tail = s.table.offset + s.table.rows * s.table.width
        apply(w, g, 0, s.table.offset, clear: clear)
        apply(w, g + tail, tail, count, clear: clear)
        iterations = s.t
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

    /// Per-step constants (Adam's α_t).
    private func prepare(step t: Int) {
        if config.kind == .adam { alpha = adamAlpha(step: t) }
    }
    private var alpha: Float = 0

    /// The update rule on elements [from, to); `g` points at the gradient of element `from`.
    private func apply(_ w: UnsafeMutablePointer<Float>, _ g: UnsafeMutablePointer<Float>, _ from: Int, _ to: Int, clear: Bool) {
        guard to > from else { return }
        let n = to - from, w = w + from, lr = Float(config.learningRate)
        switch config.kind {
        case .sgd where config.momentum == 0:
            for i in 0..<n { w[i] -= lr * g[i] }
        case .sgd:
            // m ← μ·m − lr·g;  w ← w + m,  or nesterov  w ← w + μ·m − lr·g (new m)
            let mu = Float(config.momentum), m = slots[0].values + from
            if config.nesterov {
                for i in 0..<n { let mi = mu * m[i] - lr * g[i]; m[i] = mi; w[i] += mu * mi - lr * g[i] }
            } else {
                for i in 0..<n { let mi = mu * m[i] - lr * g[i]; m[i] = mi; w[i] += mi }
            }
        case .adam:
            // m += (g−m)(1−β1);  v += (g²−v)(1−β2);  w −= α·m/(√v+ε). The loop is C
            // (CKernels): Swift's SIMD square root runs lane by lane. It clears g itself.
            tandem_adam(w, g, slots[0].values + from, slots[1].values + from, n, alpha,
                        Float(1 - config.beta1), Float(1 - config.beta2), Float(config.epsilon), clear ? 1 : 0)
            return
        case .rmsprop:
            // v ← ρ·v + (1−ρ)·g²;  w ← w − lr·g/√(v + ε)   (ε inside the root, as Keras)
            let rho = Float(config.rho), eps = Float(config.epsilon), v = slots[0].values + from
            for i in 0..<n {
                let gi = g[i]
                let vi = rho * v[i] + (1 - rho) * gi * gi
                v[i] = vi
                w[i] -= lr * gi / (vi + eps).squareRoot()
            }
        }
        if clear { g.update(repeating: 0, count: n) }
    }

    /// Adam's step size at step t: α = lr·√(1−β2^t)/(1−β1^t), rounded to Float once
    /// and kept (`alphas[t − 1]`) so a replay uses the very same value.
    private func adamAlpha(step t: Int) -> Float {
        while alphas.count < t {
            let s = Double(alphas.count + 1)
            alphas.append(Float(config.learningRate * (1 - pow(config.beta2, s)).squareRoot() / (1 - pow(config.beta1, s))))
        }
        return alphas[t - 1]
    }
    private var alphas: [Float] = []

    // MARK: Deferred rows
    //
    // An embedding table's rows get gradient only from the tokens of a batch;
    // the rest see g = 0, for which Adam still decays m and v and moves w.
    // Streaming all of m, v and w every step is most of Adam's cost. Instead a
    // row whose combined gradient is exactly zero is skipped and its zero-
    // gradient steps are REPLAYED later with the same code and the same α_t,
    // so the result is bit-identical to the dense rule (SPEC §3). A row is
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
        guard config.kind == .adam, rows > 0, width > 0 else { return }
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

    /// Sets the step count from a checkpoint, whose values are all current.
    public func restore(iterations steps: Int) {
        iterations = steps
        deferred?.applied.update(repeating: Int32(steps), count: deferred!.rows)
    }

    /// One read of the gradient arena before the step: false when any value is
    /// NaN or ±Inf (then nothing may be updated). With deferred rows it also
    /// lists the table rows whose gradient is not all zero, for `step`.
    public func gradientsAreFinite(_ g: UnsafePointer<Float>) -> Bool {
        var exponent: UInt32 = 0
        guard let d = deferred else { return maxExponent(g, count) != 0x7F80_0000 }
        let tail = d.offset + d.rows * d.width
        exponent = max(maxExponent(g, d.offset), maxExponent(g + tail, count - tail))
        if scannedRows.count < d.rows { scannedRows = [Int32](repeating: 0, count: d.rows) }
        var listed = 0
        scannedRows.withUnsafeMutableBufferPointer { rows in
            for r in 0..<d.rows {
                let (any, e) = bitsAndExponent(g + d.offset + r * d.width, d.width)
                exponent = max(exponent, e)
                if any != 0 { rows[listed] = Int32(r); listed += 1 }
            }
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
        let raw = UnsafeRawPointer(p), mask = SIMD8<UInt32>(repeating: 0x7F80_0000)
        var any = SIMD8<UInt32>(repeating: 0), top = SIMD8<UInt32>(repeating: 0)
        var i = 0
        while i + 8 <= n {
            let x = raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<UInt32>.self)
            any |= x
            top = pointwiseMax(top, x & mask)
            i += 8
        }
        var anyTail: UInt32 = 0, topTail: UInt32 = 0
        while i < n {
            let x = raw.load(fromByteOffset: 4 * i, as: UInt32.self)
            anyTail |= x; topTail = max(topTail, x & 0x7F80_0000)
            i += 1
        }
        return ((any == SIMD8(repeating: 0) ? 0 : 1) | anyTail, max(top.max(), topTail))
    }
}

