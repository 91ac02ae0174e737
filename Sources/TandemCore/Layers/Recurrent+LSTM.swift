// The LSTM cell of the general recurrent layer (Recurrent.swift has the legend): per step,
// z = x·W + b + h̃·R, then i, f, g, o, the cell and the state in one vectorised kernel.

import CKernels

extension Recurrent {
    /// Step p (input step t) for every sample; x·W + b is read from `projected`.
    func lstmStep(_ p: Int, _ t: Int, batch B: Int) {
        let T = steps
        let U = units
        recurrentProduct(p, batch: B, columns: G, into: gates + p * G)
        for s in 0..<B {
            let z = gates + (s * T + p) * G
            let x = projected(s, t)
            let h = next(hPrev, hLast, s, p)
            // z += x inside the kernel (CKernels/lstm.c).
            tandem_lstm_step_forward(
                z, x, cPrev + (s * T + p) * U, next(cPrev, cLast, s, p), tanhCells + (s * T + p) * U, h, Int32(U))
        }
    }

    /// Sample s at step p: dz from dh (and the carried dc) into `dr`; dx = dz; no gradient bypasses the cell.
    func lstmStepBackward(
        _ s: Int, _ p: Int, dh: UnsafeMutablePointer<Float>, dx: UnsafeMutablePointer<Float>,
        dr: UnsafeMutablePointer<Float>, keep: UnsafeMutablePointer<Float>
    ) {
        let T = steps
        let U = units
        tandem_lstm_step_backward(
            gates + (s * T + p) * G, tanhCells + (s * T + p) * U, cPrev + (s * T + p) * U, dh, dc + s * U, dr, Int32(U))
        dx.update(from: dr, count: G)
        keep.update(repeating: 0, count: U)
    }
}
