// The SimpleRNN cell of the general recurrent layer (Recurrent.swift has the legend):
// h = act(x·W + b + h̃·R); `gates` keeps the pre-activation for the backward.

extension Recurrent {
    /// Step p (input step t) for every sample; x·W + b is read from `projected`.
    func simpleStep(_ p: Int, _ t: Int, batch B: Int, _ act: Activation) {
        let T = steps
        let U = units
        recurrentProduct(p, batch: B, columns: G, into: gates + p * G)
        for s in 0..<B {
            let z = gates + (s * T + p) * G
            let x = projected(s, t)
            let h = next(hPrev, hLast, s, p)
            for j in 0..<G { z[j] += x[j] }
            act.apply(z, h, rows: 1, columns: U)
        }
    }

    /// Sample s at step p: dz = act'(z)·dh into `dr`; dx = dz.
    func simpleStepBackward(
        _ s: Int, _ p: Int, _ act: Activation, dh: UnsafeMutablePointer<Float>, dx: UnsafeMutablePointer<Float>,
        dr: UnsafeMutablePointer<Float>, keep: UnsafeMutablePointer<Float>
    ) {
        let T = steps
        let U = units
        // gates hold the pre-activation, the next state its value.
        act.backward(dy: dh, z: gates + (s * T + p) * G, y: next(hPrev, hLast, s, p), dz: dr, rows: 1, columns: U)
        dx.update(from: dr, count: G)
        keep.update(repeating: 0, count: U)
    }
}
