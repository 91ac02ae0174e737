// Element-wise kernels: activations, their derivatives, and small vector ops.
// Legend: n element count, B batch rows, N columns. Derivatives are written
// in terms of the activation's OUTPUT y where that is cheaper (sigmoid, tanh).

import Foundation

@inline(__always) public func sigmoid(_ x: Float) -> Float {
    // Two branches keep exp from overflowing for large |x|.
    if x >= 0 { return 1 / (1 + expf(-x)) }
    let e = expf(x)
    return e / (1 + e)
}

/// tanh from one expf: glibc's tanhf goes through expm1f and was 15% of a
/// training step. Odd Taylor series below |x| = 0.1 (where 1 − e^{−2|x|}
/// would cancel; the first omitted term is < 1e-13), (1 − e)/(1 + e) above.
/// Relative error ≤ ~1e-6 (tested against Foundation's tanh).
@inline(__always) public func fastTanh(_ x: Float) -> Float {
    let a = abs(x)
    if a < 0.1 {
        let x2 = x * x
        return x * (1 - x2 * (1.0 / 3 - x2 * (2.0 / 15 - x2 * (17.0 / 315 - x2 * (62.0 / 2835)))))
    }
    let e = expf(-2 * a)
    let t = (1 - e) / (1 + e)
    return x < 0 ? -t : t
}

/// The activation functions a Dense layer can apply.
public enum Activation: String, Sendable, CaseIterable {
    case linear, relu, sigmoid, tanh, softmax

    /// y = act(z) for B rows of N columns (softmax is per row).
    public func apply(_ z: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, columns: Int) {
        let n = rows * columns
        switch self {
        case .linear: y.update(from: z, count: n)
        case .relu: for i in 0..<n { y[i] = z[i] > 0 ? z[i] : 0 }
        case .sigmoid: for i in 0..<n { y[i] = Tandem.sigmoid(z[i]) }
        case .tanh: for i in 0..<n { y[i] = fastTanh(z[i]) }
        case .softmax:
            for r in 0..<rows {
                let zr = z + r * columns, yr = y + r * columns
                var peak = -Float.infinity
                for j in 0..<columns { peak = max(peak, zr[j]) }
                var total: Float = 0
                for j in 0..<columns { let e = expf(zr[j] - peak); yr[j] = e; total += e }
                for j in 0..<columns { yr[j] /= total }
            }
        }
    }

    /// dz = dy · act'(z), from the stored z and y. Softmax uses the full Jacobian per row.
    public func backward(dy: UnsafePointer<Float>, z: UnsafePointer<Float>, y: UnsafePointer<Float>,
                         dz: UnsafeMutablePointer<Float>, rows: Int, columns: Int) {
        let n = rows * columns
        switch self {
        case .linear: dz.update(from: dy, count: n)
        case .relu: for i in 0..<n { dz[i] = z[i] > 0 ? dy[i] : 0 }
        case .sigmoid: for i in 0..<n { dz[i] = dy[i] * y[i] * (1 - y[i]) }
        case .tanh: for i in 0..<n { dz[i] = dy[i] * (1 - y[i] * y[i]) }
        case .softmax:
            for r in 0..<rows {
                let o = r * columns
                var dot: Float = 0
                for j in 0..<columns { dot += dy[o + j] * y[o + j] }
                for j in 0..<columns { dz[o + j] = y[o + j] * (dy[o + j] - dot) }
            }
        }
    }
}

/// out[j] += Σ_r x[r, j] over B rows of N columns: a bias gradient.
@inline(__always)
public func addColumnSums(_ x: UnsafePointer<Float>, rows: Int, columns: Int, stride: Int,
                          into out: UnsafeMutablePointer<Float>) {
    for r in 0..<rows {
        let row = x + r * stride
        for j in 0..<columns { out[j] += row[j] }
    }
}

/// y[r, j] += bias[j] for B rows of N columns.
@inline(__always)
public func addBias(_ bias: UnsafePointer<Float>, to y: UnsafeMutablePointer<Float>,
                    rows: Int, columns: Int, stride: Int) {
    for r in 0..<rows {
        let row = y + r * stride
        for j in 0..<columns { row[j] += bias[j] }
    }
}
