// An embedding table's rows get gradient only from the tokens of a batch;
// the rest see g = 0, for which Adam still decays m and v and moves w.
// Streaming all of m, v and w every step is most of Adam's cost. Instead a
// row whose combined gradient is exactly zero is skipped and its zero-
// gradient steps are REPLAYED later with the same code and the same α_t,
// so the result is bit-identical to the dense rule (docs/SPEC.md §3). A row is
// replayed before anything reads it: the batch's tokens before forward,
// every row before hashing, evaluation or saving (`catchUpAll`).
// The finiteness scans live here too: the one read of the arena before a step also
// lists the table rows whose gradient is not zero, which `step` then updates.

import CKernels
import Foundation

extension Optimizer {
    final class DeferredRows {
        let offset: Int, rows: Int, width: Int
        /// Steps applied to each row so far.
        let applied: UnsafeMutablePointer<Int32>
        init(offset: Int, rows: Int, width: Int) {
            self.offset = offset
            self.rows = rows
            self.width = width
            applied = .allocate(capacity: rows)
            applied.initialize(repeating: 0, count: rows)
        }
        deinit { applied.deallocate() }
    }

    /// Lets Adam defer zero-gradient rows of the [rows, width] table at `offset`.
    /// Other optimizers keep the plain dense pass.
    package func enableDeferredRows(offset: Int, rows: Int, width: Int) {
        guard deferralRefusal == nil, rows > 0, width > 0 else { return }
        let d = DeferredRows(offset: offset, rows: rows, width: width)
        d.applied.update(repeating: Int32(iterations), count: rows)
        deferred = d
    }

    /// Replays row `r`'s deferred zero-gradient steps up to `iterations`.
    @inline(__always)
    package func catchUp(row r: Int, parameters w: UnsafeMutablePointer<Float>) {
        guard let d = deferred, Int(d.applied[r]) < iterations else { return }
        let o = d.offset + r * d.width
        let b1 = Float(1 - config.beta1)
        let b2 = Float(1 - config.beta2)
        let eps = Float(config.epsilon)
        for t in (Int(d.applied[r]) + 1)...iterations {
            tandem_adam_zero_gradient(
                w + o, slots[0].values + o, slots[1].values + o, d.width, alphas[t - 1], b1, b2, eps)
        }
        d.applied[r] = Int32(iterations)
    }

    /// Replays every deferred row: afterwards values and slots equal the dense rule's.
    package func catchUpAll(parameters w: UnsafeMutablePointer<Float>) {
        guard let d = deferred else { return }
        for r in 0..<d.rows { catchUp(row: r, parameters: w) }
    }

    /// One read of the gradient arena before the step: false when any value is
    /// NaN or ±Inf (then nothing may be updated). With deferred rows it also
    /// lists the table rows whose gradient is not all zero, for `step`.
    /// `tableRows`, when given, lists (ascending) every table row that may be non-zero:
    /// only those are read (a dense table gradient is mostly rows no token touched).
    package func gradientsAreFinite(_ g: UnsafePointer<Float>, tableRows: UnsafeBufferPointer<Int32>? = nil) -> Bool {
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
                if any != 0 {
                    rows[listed] = Int32(r)
                    listed += 1
                }
            }
            if let tableRows { for r in tableRows { scan(Int(r)) } } else { for r in 0..<d.rows { scan(r) } }
        }
        scannedRowCount = listed
        scannedStep = iterations + 1
        return exponent != 0x7F80_0000
    }

    /// An upper bound on |x| over the n values at `p` (a power of two), or nil
    /// when one of them is NaN or ±Inf.
    package func magnitudeBound(_ p: UnsafePointer<Float>, count n: Int) -> Double? {
        let e = maxExponent(p, n)
        guard e != 0x7F80_0000 else { return nil }
        return pow(2.0, Double(Int(e >> 23) - 126))
    }

    /// False when any of the n values at `g` is NaN or ±Inf.
    package func allFinite(_ g: UnsafePointer<Float>, count n: Int) -> Bool {
        maxExponent(g, n) != 0x7F80_0000
    }

    /// The largest exponent field (bits 23–30) among n floats; 0x7F80_0000 means NaN or Inf.
    func maxExponent(_ p: UnsafePointer<Float>, _ n: Int) -> UInt32 {
        guard n > 0 else { return 0 }
        return bitsAndExponent(p, n).exponent
    }

    /// Non-zero when any bit of any value is set (so −0 counts as a gradient, which
    /// is harmless: its update equals the +0 replay), and the largest exponent field.
    @inline(__always) func bitsAndExponent(_ p: UnsafePointer<Float>, _ n: Int) -> (any: UInt32, exponent: UInt32) {
        var any: UInt32 = 0
        let exponent = tandem_bits_and_exponent(p, n, &any)  // CKernels/elementwise.c (vectorised)
        return (any, exponent)
    }
}
