// The update rules that read a whole tensor at once (keras/src/optimizers/lamb.py, adafactor.py,
// muon.py): Lamb's trust ratio and Adafactor's RMS scales are norms over the tensor, Adafactor
// factors the last two axes, Muon orthogonalises a 2-D update. The driver (Optimizer.swift) calls
// them once per trainable tensor, after clipping and weight decay, as Keras's update_step runs once
// per variable. Float32 throughout, in Keras's operation order; sums over a tensor in Double.

import Foundation

/// One trainable tensor for a tensor-wise rule.
struct UpdateTensor {
    let w: UnsafeMutablePointer<Float>, g: UnsafeMutablePointer<Float>
    let slots: SlotPointers
    let shape: [Int], count: Int
    /// Muon: the tensor takes the AdamW rule.
    let usesAdam: Bool
}

protocol TensorRule {
    /// Scratch floats the rule needs for a tensor of `shape` (allocated once by the driver).
    func scratch(shape: [Int]) -> Int
    func apply(_ t: UpdateTensor, step: Int, _ k: StepConstants, scratch: UnsafeMutablePointer<Float>)
}

private func squaredSum(_ x: UnsafePointer<Float>, _ n: Int) -> Double {
    var sum = 0.0
    for i in 0..<n { sum += Double(x[i]) * Double(x[i]) }
    return sum
}

/// Keras's Lamb: Adam's bias-corrected update scaled by ‖w‖/‖update‖ (1 when either is 0).
struct LambRule: TensorRule {
    let beta1: Float, beta2: Float, keep1: Float, keep2: Float, eps: Float
    func scratch(shape: [Int]) -> Int { shape.reduce(1, *) }
    func apply(_ t: UpdateTensor, step: Int, _ k: StepConstants, scratch update: UnsafeMutablePointer<Float>) {
        let m = t.slots.s0!
        let v = t.slots.s1!
        let s = Float(step)
        let c1 = 1 - powf(beta1, s)
        let c2 = 1 - powf(beta2, s)
        for i in 0..<t.count {
            let gi = t.g[i]
            m[i] += (gi - m[i]) * keep1
            v[i] += (gi * gi - v[i]) * keep2
            update[i] = (m[i] / c1) / ((v[i] / c2).squareRoot() + eps)
        }
        let wNorm = Float(squaredSum(t.w, t.count).squareRoot())
        let uNorm = Float(squaredSum(update, t.count).squareRoot())
        let ratio: Float = wNorm > 0 && uNorm > 0 ? wNorm / uNorm : 1
        let scale = ratio * k.lr
        for i in 0..<t.count { t.w[i] -= scale * update[i] }
    }
}

/// Keras's Adafactor: second moments factored over the last two axes (a row and a column
/// average, `r` and `c`; `v` rebuilt from them), unfactored below two axes; the update clipped by
/// its RMS and scaled by max(ε2, RMS(w))·min(lr, 1/√t).
struct AdafactorRule: TensorRule {
    let decay: Float, eps1: Float, eps2: Float, clipThreshold: Float
    /// Keras caps a constant learning rate at 1/√t when relative_step (not a schedule's).
    let capsLearningRate: Bool
    func scratch(shape: [Int]) -> Int { shape.reduce(1, *) }
    func apply(_ t: UpdateTensor, step: Int, _ k: StepConstants, scratch u: UnsafeMutablePointer<Float>) {
        let r = t.slots.s0!
        let c = t.slots.s1!
        let v = t.slots.s2!
        let n = t.count
        let s = Float(step)
        let inverseRoot = 1 / s.squareRoot()
        var lr = k.lr
        if capsLearningRate { lr = min(lr, inverseRoot) }
        let rho = min(lr, inverseRoot)
        let alpha = max(eps2, Float((squaredSum(t.w, n) / Double(n)).squareRoot())) * rho
        let beta2 = 1 - powf(s, decay)
        let keep = 1 - beta2
        if t.shape.count >= 2 {
            let rows = t.shape[t.shape.count - 2]
            let cols = t.shape[t.shape.count - 1]
            let blocks = n / max(rows * cols, 1)
            for p in 0..<blocks {
                let g = t.g + p * rows * cols
                let rp = r + p * rows
                let cp = c + p * cols
                // u holds the regulated squares g² + ε1 of this block for the two means.
                let sq = u + p * rows * cols
                for i in 0..<(rows * cols) { sq[i] = g[i] * g[i] + eps1 }
                for i in 0..<rows {
                    var sum = 0.0
                    for j in 0..<cols { sum += Double(sq[i * cols + j]) }
                    rp[i] = beta2 * rp[i] + keep * Float(sum / Double(cols))
                }
                for j in 0..<cols {
                    var sum = 0.0
                    for i in 0..<rows { sum += Double(sq[i * cols + j]) }
                    cp[j] = beta2 * cp[j] + keep * Float(sum / Double(rows))
                }
                var rowSum = 0.0
                for i in 0..<rows { rowSum += Double(rp[i]) }
                let rowMean = Float(rowSum / Double(rows))
                let vp = v + p * rows * cols
                for i in 0..<rows {
                    let ri = rp[i] / rowMean
                    for j in 0..<cols { vp[i * cols + j] = ri * cp[j] }
                }
            }
        } else {
            for i in 0..<n { v[i] = beta2 * v[i] + keep * (t.g[i] * t.g[i] + eps1) }
        }
        for i in 0..<n { u[i] = t.g[i] / v[i].squareRoot() }
        let rmsU = Float((squaredSum(u, n) / Double(n)).squareRoot())
        let divisor = max(1, rmsU / clipThreshold)
        for i in 0..<n { t.w[i] -= alpha * (u[i] / divisor) }
    }
}

/// Keras's Muon: 2-D weights move by the Newton–Schulz orthogonalisation of their (Nesterov)
/// momentum, scaled by √max(rows, cols)·rms_rate; every other weight by AdamW's rule at
/// lr·adam_lr_ratio (its velocity slot exists for those only).
struct MuonRule: TensorRule {
    let a: Float, b: Float, c: Float, steps: Int, momentum: Float, nesterov: Bool
    let rmsRate: Float?, adamRatio: Float
    let beta1: Float, beta2: Float, keep1: Float, keep2: Float, eps: Float

    func scratch(shape: [Int]) -> Int {
        guard shape.count == 2 else { return 0 }
        let small = min(shape[0], shape[1])
        return 2 * shape[0] * shape[1] + 3 * small * small
    }

    func apply(_ t: UpdateTensor, step: Int, _ k: StepConstants, scratch: UnsafeMutablePointer<Float>) {
        let m = t.slots.s0!
        let n = t.count
        if t.usesAdam {
            let v = t.slots.s1!
            let lr = k.lr * adamRatio
            let s = Float(step)
            let alpha = lr * (1 - powf(beta2, s)).squareRoot() / (1 - powf(beta1, s))
            for i in 0..<n {
                let gi = t.g[i]
                m[i] += (gi - m[i]) * keep1
                v[i] += (gi * gi - v[i]) * keep2
                t.w[i] -= (m[i] * alpha) / (v[i].squareRoot() + eps)
            }
            return
        }
        let (rows, cols) = (t.shape[0], t.shape[1])
        let x = scratch
        let y = scratch + n
        let small = min(rows, cols)
        let gram = y + n
        let poly = gram + small * small
        let square = poly + small * small
        let lessMomentum = momentum - 1
        for i in 0..<n {
            m[i] += t.g[i] + m[i] * lessMomentum
            x[i] = nesterov ? t.g[i] + momentum * m[i] : m[i]
        }
        // Work on X [small, large]: the transpose when rows > cols, as Keras's transpose_last_axis.
        let transposed = rows > cols
        let large = max(rows, cols)
        if transposed {
            for i in 0..<rows { for j in 0..<cols { y[j * rows + i] = x[i * cols + j] } }
            x.update(from: y, count: n)
        }
        let norm = Float(squaredSum(x, n).squareRoot()) + 1e-7
        for i in 0..<n { x[i] /= norm }
        for _ in 0..<steps {
            // A = X·Xᵀ;  B = b·A + (c·A)·A;  X = a·X + B·X
            gemm(
                .none, .transposed, m: small, n: small, k: large, a: x, lda: large, b: x, ldb: large, beta: 0, c: gram,
                ldc: small)
            for i in 0..<(small * small) { poly[i] = c * gram[i] }
            gemm(
                .none, .none, m: small, n: small, k: small, a: poly, lda: small, b: gram, ldb: small, beta: 0,
                c: square, ldc: small)
            for i in 0..<(small * small) { poly[i] = b * gram[i] + square[i] }
            gemm(
                .none, .none, m: small, n: large, k: small, a: poly, lda: small, b: x, ldb: large, beta: 0, c: y,
                ldc: large)
            for i in 0..<n { x[i] = a * x[i] + y[i] }
        }
        if transposed {
            for j in 0..<cols { for i in 0..<rows { y[i * cols + j] = x[j * rows + i] } }
            x.update(from: y, count: n)
        }
        // lr_adjust: (lr·X)·√max(rows, cols)·rms_rate, in that order.
        let lr = k.lr
        let root = Float(large).squareRoot()
        if let rate = rmsRate {
            for i in 0..<n { t.w[i] -= lr * x[i] * root * rate }
        } else {
            for i in 0..<n { t.w[i] -= lr * x[i] }
        }
    }
}
