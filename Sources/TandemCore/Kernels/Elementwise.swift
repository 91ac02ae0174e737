// Element-wise kernels: activations, their derivatives, and small vector ops.
// Legend: n element count, B batch rows, N columns. Derivatives are written
// in terms of the activation's OUTPUT y where that is cheaper (sigmoid, tanh).

import CKernels
import Foundation

@inline(__always) package func sigmoid(_ x: Float) -> Float {
    // Two branches keep exp from overflowing for large |x|.
    if x >= 0 { return 1 / (1 + expf(-x)) }
    let e = expf(x)
    return e / (1 + e)
}

/// tanh from one expf: glibc's tanhf goes through expm1f and was 15% of a
/// training step. Odd Taylor series below |x| = 0.1 (where 1 − e^{−2|x|}
/// would cancel; the first omitted term is < 1e-13), (1 − e)/(1 + e) above.
/// Relative error ≤ ~1e-6 (tested against Foundation's tanh).
@inline(__always) package func fastTanh(_ x: Float) -> Float {
    let a = abs(x)
    if a < 0.1 {
        let x2 = x * x
        return x * (1 - x2 * (1.0 / 3 - x2 * (2.0 / 15 - x2 * (17.0 / 315 - x2 * (62.0 / 2835)))))
    }
    let e = expf(-2 * a)
    let t = (1 - e) / (1 + e)
    return x < 0 ? -t : t
}

/// The activation functions (Keras 3's closed-form string activations, with
/// Keras's defaults: leaky_relu slope 0.2, elu α 1, selu's constants, exact
/// erf gelu, hard_sigmoid = relu6(x + 3)/6). softmax and log_softmax act per row.
package enum Activation: String, Sendable, CaseIterable {
    case linear, relu, sigmoid, tanh, softmax
    case relu6
    case leakyRelu = "leaky_relu"
    case elu, selu, gelu
    case hardSigmoid = "hard_sigmoid"
    case softplus, softsign, silu, mish, exponential
    case logSoftmax = "log_softmax"

    /// Keras's name or alias (`swish` is `silu`).
    public static func named(_ name: String) -> Activation? { name == "swish" ? .silu : Activation(rawValue: name) }

    static let seluScale: Float = 1.0507009873554805, seluAlpha: Float = 1.6732632423543772

    /// y = act(z) for one element (not softmax / log_softmax).
    @inline(__always) func value(_ x: Float) -> Float {
        switch self {
        case .linear, .softmax, .logSoftmax: return x
        case .relu: return x > 0 ? x : 0
        case .sigmoid: return TandemCore.sigmoid(x)
        case .tanh: return fastTanh(x)
        case .relu6: return min(max(x, 0), 6)
        case .leakyRelu: return x > 0 ? x : 0.2 * x
        case .elu: return x > 0 ? x : expm1f(x)
        case .selu: return Activation.seluScale * (x > 0 ? x : Activation.seluAlpha * expm1f(x))
        case .gelu: return 0.5 * x * (1 + erff(x / Float(2).squareRoot()))
        case .hardSigmoid: return min(max(x + 3, 0), 6) / 6
        case .softplus: return softplusValue(x)
        case .softsign: return x / (1 + abs(x))
        case .silu: return x * TandemCore.sigmoid(x)
        case .mish: return x * Foundation.tanh(softplusValue(x))
        case .exponential: return expf(x)
        }
    }

    /// dy/dz for one element, from z and y = act(z).
    @inline(__always) func derivative(_ z: Float, _ y: Float) -> Float {
        switch self {
        case .linear, .softmax, .logSoftmax: return 1
        case .relu: return z > 0 ? 1 : 0
        case .sigmoid: return y * (1 - y)
        case .tanh: return 1 - y * y
        case .relu6: return z > 0 && z < 6 ? 1 : 0
        case .leakyRelu: return z > 0 ? 1 : 0.2
        case .elu: return z > 0 ? 1 : y + 1
        case .selu: return z > 0 ? Activation.seluScale : y + Activation.seluScale * Activation.seluAlpha
        case .gelu:
            let cdf = 0.5 * (1 + erff(z / Float(2).squareRoot()))
            let pdf = expf(-0.5 * z * z) / (2 * Float.pi).squareRoot()
            return cdf + z * pdf
        case .hardSigmoid: return z > -3 && z < 3 ? 1.0 / 6 : 0
        case .softplus: return TandemCore.sigmoid(z)
        case .softsign:
            let d = 1 + abs(z)
            return 1 / (d * d)
        case .silu:
            let s = TandemCore.sigmoid(z)
            return s * (1 + z * (1 - s))
        case .mish:
            let t = Foundation.tanh(softplusValue(z))
            return t + z * (1 - t * t) * TandemCore.sigmoid(z)
        case .exponential: return y
        }
    }

    /// y = act(z) for B rows of N columns (softmax and log_softmax per row).
    package func apply(_ z: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, columns: Int) {
        let n = rows * columns
        switch self {
        case .linear: if UnsafePointer(y) != z { y.update(from: z, count: n) }  // aliased: nothing to copy
        case .relu: for i in 0..<n { y[i] = z[i] > 0 ? z[i] : 0 }
        case .sigmoid: for i in 0..<n { y[i] = TandemCore.sigmoid(z[i]) }
        case .tanh: for i in 0..<n { y[i] = fastTanh(z[i]) }
        case .relu6: tandem_relu6(z, y, n)
        case .softmax, .logSoftmax:
            for r in 0..<rows {
                let zr = z + r * columns
                let yr = y + r * columns
                var peak = -Float.infinity
                for j in 0..<columns { peak = max(peak, zr[j]) }
                var total: Float = 0
                for j in 0..<columns {
                    let e = expf(zr[j] - peak)
                    yr[j] = e
                    total += e
                }
                if self == .softmax {
                    for j in 0..<columns { yr[j] /= total }
                } else {
                    let logTotal = logf(total)
                    for j in 0..<columns { yr[j] = zr[j] - peak - logTotal }
                }
            }
        default: for i in 0..<n { y[i] = value(z[i]) }
        }
    }

    /// dz = dy · act'(z), from the stored z and y. Softmax and log_softmax use the full Jacobian per row.
    package func backward(
        dy: UnsafePointer<Float>, z: UnsafePointer<Float>, y: UnsafePointer<Float>,
        dz: UnsafeMutablePointer<Float>, rows: Int, columns: Int
    ) {
        let n = rows * columns
        switch self {
        case .linear: if UnsafePointer(dz) != dy { dz.update(from: dy, count: n) }
        case .relu: tandem_relu_backward(dy, z, dz, n)
        case .relu6: tandem_relu6_backward(dy, z, dz, n)
        case .sigmoid: for i in 0..<n { dz[i] = dy[i] * y[i] * (1 - y[i]) }
        case .tanh: for i in 0..<n { dz[i] = dy[i] * (1 - y[i] * y[i]) }
        case .softmax:
            for r in 0..<rows {
                let o = r * columns
                var dot: Float = 0
                for j in 0..<columns { dot += dy[o + j] * y[o + j] }
                for j in 0..<columns { dz[o + j] = y[o + j] * (dy[o + j] - dot) }
            }
        case .logSoftmax:
            // y = z − logΣe^z:  dz = dy − softmax(z)·Σdy, softmax = e^y.
            for r in 0..<rows {
                let o = r * columns
                var total: Float = 0
                for j in 0..<columns { total += dy[o + j] }
                for j in 0..<columns { dz[o + j] = dy[o + j] - expf(y[o + j]) * total }
            }
        default: for i in 0..<n { dz[i] = dy[i] * derivative(z[i], y[i]) }
        }
    }
}

/// log(1 + e^x) without overflow.
@inline(__always) func softplusValue(_ x: Float) -> Float { x > 0 ? x + log1pf(expf(-x)) : log1pf(expf(x)) }

/// out[j] += Σ_r x[r, j] over B rows of N columns: a bias gradient.
@inline(__always)
package func addColumnSums(
    _ x: UnsafePointer<Float>, rows: Int, columns: Int, stride: Int,
    into out: UnsafeMutablePointer<Float>
) {
    for r in 0..<rows {
        let row = x + r * stride
        for j in 0..<columns { out[j] += row[j] }
    }
}

/// y[r, j] += bias[j] for B rows of N columns.
@inline(__always)
package func addBias(
    _ bias: UnsafePointer<Float>, to y: UnsafeMutablePointer<Float>,
    rows: Int, columns: Int, stride: Int
) {
    for r in 0..<rows {
        let row = y + r * stride
        for j in 0..<columns { row[j] += bias[j] }
    }
}
