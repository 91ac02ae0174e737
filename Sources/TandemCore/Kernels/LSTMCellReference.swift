// The LSTM step in plain Swift with libm's exp and tanh: the oracle the
// vectorised kernels of CKernels/lstm.c are tested against.

import Foundation

/// Reference for `tandem_lstm_step_forward` (its arguments less tanh(c), which it does not return).
package func lstmStepForwardReference(
    _ z: UnsafeMutablePointer<Float>, _ cPrev: UnsafePointer<Float>?,
    _ c: UnsafeMutablePointer<Float>, _ h: UnsafeMutablePointer<Float>, units U: Int
) {
    for j in 0..<U {
        let i = sigmoid(z[j])
        let f = sigmoid(z[U + j])
        let g = tanhf(z[2 * U + j])
        let o = sigmoid(z[3 * U + j])
        z[j] = i
        z[U + j] = f
        z[2 * U + j] = g
        z[3 * U + j] = o
        c[j] = f * (cPrev?[j] ?? 0) + i * g
        h[j] = o * tanhf(c[j])
    }
}

/// Reference for `tandem_lstm_step_backward` (c in place of tanh(c)).
package func lstmStepBackwardReference(
    _ a: UnsafePointer<Float>, _ c: UnsafePointer<Float>, _ cPrev: UnsafePointer<Float>?,
    _ dh: UnsafePointer<Float>, _ dc: UnsafeMutablePointer<Float>,
    _ dz: UnsafeMutablePointer<Float>, units U: Int
) {
    for j in 0..<U {
        let i = a[j]
        let f = a[U + j]
        let g = a[2 * U + j]
        let o = a[3 * U + j]
        let tc = tanhf(c[j])
        let cp = cPrev?[j] ?? 0
        let dcell = dc[j] + dh[j] * o * (1 - tc * tc)
        dz[j] = dcell * g * i * (1 - i)
        dz[U + j] = dcell * cp * f * (1 - f)
        dz[2 * U + j] = dcell * i * (1 - g * g)
        dz[3 * U + j] = dh[j] * tc * o * (1 - o)
        dc[j] = dcell * f
    }
}
