// The GRU cell of the general recurrent layer (Recurrent.swift has the legend), Keras's two
// variants: reset_after (the default; r applied to h̃·R_h + b_h, one vectorised kernel each
// way, CKernels/gru.c) and reset before (r applied to h̃ before the product with R_h).

import CKernels

extension Recurrent {
    /// Step p (input step t) for every sample; x·W + b is read from `projected`.
    func gruStep(_ p: Int, _ t: Int, batch B: Int, resetAfter: Bool) {
        let T = steps
        let U = units
        let R = UnsafePointer(store.value(recurrent))
        let b = bias.map { UnsafePointer(store.value($0)) }
        let ld = T * U  // rows (s, p) of h̃
        let GR = resetAfter ? G : 2 * U
        recurrentProduct(p, batch: B, columns: GR, into: rec + p * G)
        if resetAfter, let b { addBias(b + G, to: rec + p * G, rows: B, columns: G, stride: T * G) }
        if resetAfter {  // every gate and the new state in one vectorised kernel (CKernels/gru.c)
            for s in 0..<B {
                tandem_gru_step_forward(
                    projected(s, t), rec + (s * T + p) * G, gates + (s * T + p) * G,
                    hPrev + (s * T + p) * U, next(hPrev, hLast, s, p), Int32(U))
            }
            return
        }
        // Reset before: z and r, then r ⊙ h̃ and its product with R_h, then h̃ and the state.
        for s in 0..<B {
            let a = gates + (s * T + p) * G
            let x = projected(s, t)
            let r = rec + (s * T + p) * G
            for j in 0..<(2 * U) { a[j] = sigmoid(x[j] + r[j]) }
            let h = hIn + (s * T + p) * U
            let o = rh + (s * T + p) * U
            for j in 0..<U { o[j] = a[U + j] * h[j] }
        }
        // (r ⊙ h̃)·R_h
        gemm(
            .none, .none, m: B, n: U, k: U, a: rh + p * U, lda: ld, b: R + 2 * U, ldb: G, beta: 0,
            c: rec + p * G + 2 * U, ldc: T * G)
        for s in 0..<B {
            let a = gates + (s * T + p) * G
            let x = projected(s, t)
            let r = rec + (s * T + p) * G
            let before = hPrev + (s * T + p) * U
            let h = next(hPrev, hLast, s, p)
            for j in 0..<U {
                let hh = fastTanh(x[2 * U + j] + r[2 * U + j])
                a[2 * U + j] = hh
                h[j] = a[j] * before[j] + (1 - a[j]) * hh
            }
        }
    }

    /// Sample s at step p: the gates' gradients into `dx` (input side) and `dr` (recurrent side),
    /// and into `keep` the part of dh that bypasses the products (z ⊙ dh).
    func gruStepBackward(
        _ s: Int, _ p: Int, resetAfter: Bool, dh: UnsafeMutablePointer<Float>, dx: UnsafeMutablePointer<Float>,
        dr: UnsafeMutablePointer<Float>, keep: UnsafeMutablePointer<Float>
    ) {
        let T = steps
        let U = units
        if resetAfter {
            tandem_gru_step_backward(
                gates + (s * T + p) * G, rec + (s * T + p) * G, hPrev + (s * T + p) * U,
                dh, keep, dx, dr, Int32(U))
            return
        }
        let a = gates + (s * T + p) * G
        let before = hPrev + (s * T + p) * U
        for j in 0..<U {
            let z = a[j]
            let hh = a[2 * U + j]
            let g = dh[j]
            let daz = g * (before[j] - hh) * z * (1 - z)
            let dah = g * (1 - z) * (1 - hh * hh)
            keep[j] = g * z
            dx[j] = daz
            dr[j] = daz
            dx[2 * U + j] = dah
            dr[2 * U + j] = dah  // r's own gradient comes in resetBeforeBackward
        }
    }

    /// Reset before, after the per-sample pass of step p: d(r ⊙ h̃) = dah · R_hᵀ, then dr and
    /// the extra path into h̃.
    func resetBeforeBackward(_ p: Int, _ t: Int, batch B: Int) {
        let T = steps
        let U = units
        let R = UnsafePointer(store.value(recurrent))
        gemm(
            .none, .transposed, m: B, n: U, k: U, a: dRec + p * G + 2 * U, lda: T * G, b: R + 2 * U, ldb: G,
            beta: 0, c: dRH, ldc: U)
        for s in 0..<B where !masked(s, t) {
            let a = gates + (s * T + p) * G
            let h = hIn + (s * T + p) * U
            let dx = dXProj + (s * T + t) * G
            let dr = dRec + (s * T + p) * G
            let d = dRH + s * U
            for j in 0..<U {
                let rj = a[U + j]
                let dar = d[j] * h[j] * rj * (1 - rj)
                dx[U + j] = dar
                dr[U + j] = dar
                d[j] *= rj
            }
        }
    }
}
