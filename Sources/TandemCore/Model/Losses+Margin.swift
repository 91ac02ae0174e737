// Keras 3.15's margin, similarity and overlap losses (keras/src/losses/losses.py), each on one
// sample's row of C columns, with its gradient as JAX takes it (max(·, 0): 1 above 0, else 0;
// a max over columns: shared equally among tied columns).
//   hinge          mean_c max(1 − t'·y, 0)          t' = 2t − 1 when t ∈ {0, 1}, else t
//   squared_hinge  mean_c max(1 − t'·y, 0)²
//   categorical_hinge  max(max_c((1 − t)·y) − Σ_c t·y + 1, 0)
//   cosine_similarity  −Σ_c t̂·ŷ,  x̂ = x · min(1/‖x‖, 1/ε)
//   dice           1 − 2Σty / (Σt + Σy + ε)          (axis: the sample's own columns)
//   tversky        1 − I / (I + α·Σ(1 − y)t + β·Σy(1 − t) + ε),  I = Σty
// Keras decides hinge's {0, 1} → {−1, 1} conversion over the whole batch of targets; here it is
// decided per sample, which is the same whenever a dataset uses one label convention.

import Foundation

package struct MarginLoss: LossFunction {
    package let kind: LossKind
    package let options: LossOptions
    package init(kind: LossKind, options: LossOptions) {
        self.kind = kind
        self.options = options
    }
    package func targetWidth(outputWidth: Int) -> Int { outputWidth }
    package func folds(_ activation: Activation) -> Bool { false }

    package func sample(
        y: UnsafePointer<Float>, z: UnsafePointer<Float>?, t: UnsafePointer<Float>, columns: Int,
        d: UnsafeMutablePointer<Float>?, scale: Double
    ) -> Double {
        switch kind {
        case .hinge, .squaredHinge: return hinge(y, t, columns, d, scale, squared: kind == .squaredHinge)
        case .categoricalHinge: return categoricalHinge(y, t, columns, d, scale)
        case .cosineSimilarity: return cosine(y, t, columns, d, scale)
        default: return overlap(y, t, columns, d, scale)
        }
    }

    private func hinge(
        _ y: UnsafePointer<Float>, _ t: UnsafePointer<Float>, _ n: Int, _ d: UnsafeMutablePointer<Float>?,
        _ scale: Double, squared: Bool
    ) -> Double {
        let binary = (0..<n).allSatisfy { t[$0] == 0 || t[$0] == 1 }
        var s = 0.0
        for j in 0..<n {
            let tj = binary ? 2 * Double(t[j]) - 1 : Double(t[j])
            let margin = max(1 - tj * Double(y[j]), 0)
            s += squared ? margin * margin : margin
            if let d {
                let slope = margin > 0 ? (squared ? -2 * margin * tj : -tj) : 0
                d[j] = Float(scale * slope / Double(n))
            }
        }
        return s / Double(n)
    }

    private func categoricalHinge(
        _ y: UnsafePointer<Float>, _ t: UnsafePointer<Float>, _ n: Int, _ d: UnsafeMutablePointer<Float>?,
        _ scale: Double
    ) -> Double {
        var pos = 0.0
        var neg = -Double.infinity
        for j in 0..<n {
            pos += Double(t[j]) * Double(y[j])
            neg = max(neg, (1 - Double(t[j])) * Double(y[j]))
        }
        let value = max(neg - pos + 1, 0)
        if let d {
            let ties = Double((0..<n).filter { (1 - Double(t[$0])) * Double(y[$0]) == neg }.count)
            for j in 0..<n {
                guard value > 0 else {
                    d[j] = 0
                    continue
                }
                let tj = Double(t[j])
                let atMax = (1 - tj) * Double(y[j]) == neg ? (1 - tj) / ties : 0
                d[j] = Float(scale * (atMax - tj))
            }
        }
        return value
    }

    private func cosine(
        _ y: UnsafePointer<Float>, _ t: UnsafePointer<Float>, _ n: Int, _ d: UnsafeMutablePointer<Float>?,
        _ scale: Double
    ) -> Double {
        var yy = 0.0
        var tt = 0.0
        var ty = 0.0
        for j in 0..<n {
            yy += Double(y[j]) * Double(y[j])
            tt += Double(t[j]) * Double(t[j])
            ty += Double(t[j]) * Double(y[j])
        }
        let cap = 1 / epsilon
        let inverseY = min(1 / yy.squareRoot(), cap)
        let inverseT = min(1 / tt.squareRoot(), cap)
        let value = -ty * inverseY * inverseT
        if let d {
            // ŷ = y·r(y): ∂ŷ_i/∂y_j = r·δ_ij − r³·y_i·y_j where r = 1/‖y‖ (r constant where capped).
            let capped = 1 / yy.squareRoot() >= cap
            for j in 0..<n {
                let yj = Double(y[j])
                let direct = Double(t[j]) * inverseT * inverseY
                let through = capped ? 0 : ty * inverseT * inverseY * inverseY * inverseY * yj
                d[j] = Float(scale * -(direct - through))
            }
        }
        return value
    }

    /// Dice (α = β = ½ of Tversky's form with 2I in the numerator: the same ratio) and Tversky.
    private func overlap(
        _ y: UnsafePointer<Float>, _ t: UnsafePointer<Float>, _ n: Int, _ d: UnsafeMutablePointer<Float>?,
        _ scale: Double
    ) -> Double {
        var intersection = 0.0
        var sumT = 0.0
        var sumY = 0.0
        for j in 0..<n {
            intersection += Double(t[j]) * Double(y[j])
            sumT += Double(t[j])
            sumY += Double(y[j])
        }
        if kind == .dice {
            let denominator = sumT + sumY + epsilon
            if let d {
                for j in 0..<n {
                    let numerator: Double = 2 * Double(t[j]) * denominator - 2 * intersection
                    d[j] = Float(-scale * numerator / (denominator * denominator))
                }
            }
            return 1 - 2 * intersection / denominator
        }
        let alpha = options.alpha
        let beta = options.beta ?? 0.5
        let falsePositives = sumT - intersection  // Σ(1 − y)·t
        let falseNegatives = sumY - intersection  // Σy·(1 − t)
        let denominator = intersection + alpha * falsePositives + beta * falseNegatives + epsilon
        if let d {
            for j in 0..<n {
                let tj = Double(t[j])
                let dDenominator: Double = tj - alpha * tj + beta * (1 - tj)
                let numerator: Double = tj * denominator - intersection * dDenominator
                d[j] = Float(-scale * numerator / (denominator * denominator))
            }
        }
        return 1 - intersection / denominator
    }
}

/// Keras `categorical_focal_crossentropy` and `categorical_generalized_cross_entropy`.
///   focal: q = clip(p / Σp, ε, 1 − ε) with p = y (or softmax(z) from logits), t smoothed as CCE's;
///          ℓ = Σ_c α·(1 − q_c)^γ · (−t_c·log q_c).
///   generalized: ℓ = (1 − p_k^q) / q for the target class k (targets are class ids).
package struct CategoricalVariantLoss: LossFunction {
    package let kind: LossKind
    package let options: LossOptions
    package init(kind: LossKind, options: LossOptions) {
        self.kind = kind
        self.options = options
    }
    package func targetWidth(outputWidth: Int) -> Int { kind == .categoricalGeneralizedCrossEntropy ? 1 : outputWidth }
    package func folds(_ activation: Activation) -> Bool { false }

    package func sample(
        y: UnsafePointer<Float>, z: UnsafePointer<Float>?, t: UnsafePointer<Float>, columns: Int,
        d: UnsafeMutablePointer<Float>?, scale: Double
    ) -> Double {
        if kind == .categoricalGeneralizedCrossEntropy {
            let k = Int(t[0])
            let q = options.q ?? 0.5
            let p = Double(y[k])
            if let d {
                for j in 0..<columns { d[j] = 0 }
                d[k] = Float(scale * -Foundation.pow(p, q - 1))
            }
            return (1 - Foundation.pow(p, q)) / q
        }
        // p: the probabilities (softmax of the logits when given).
        var p = [Double](repeating: 0, count: columns)
        if let z {
            var peak = -Double.infinity
            for j in 0..<columns { peak = max(peak, Double(z[j])) }
            var total = 0.0
            for j in 0..<columns {
                p[j] = Foundation.exp(Double(z[j]) - peak)
                total += p[j]
            }
            for j in 0..<columns { p[j] /= total }
        } else {
            for j in 0..<columns { p[j] = Double(y[j]) }
        }
        let smoothing = options.labelSmoothing
        let gamma = options.gamma
        let alpha = options.alpha
        var total = 0.0
        for j in 0..<columns { total += p[j] }
        var s = 0.0
        var dq = [Double](repeating: 0, count: columns)
        for j in 0..<columns {
            let tj = smoothing == 0 ? Double(t[j]) : Double(t[j]) * (1 - smoothing) + smoothing / Double(columns)
            let raw = p[j] / total
            let q = min(max(raw, epsilon), 1 - epsilon)
            let ce = -tj * Foundation.log(q)
            let modulating = Foundation.pow(1 - q, gamma)
            s += alpha * modulating * ce
            if raw > epsilon && raw < 1 - epsilon {
                // d/dq [α(1 − q)^γ·(−t·log q)] = α[−γ(1 − q)^{γ−1}·(−t·log q) + (1 − q)^γ·(−t/q)]
                let dModulating = gamma == 0 ? 0 : -gamma * Foundation.pow(1 - q, gamma - 1)
                dq[j] = alpha * (dModulating * ce + modulating * (-tj / q))
            }
        }
        guard let d else { return s }
        // Back through q = p/Σp, then (from logits) through the softmax.
        var dot = 0.0
        for j in 0..<columns { dot += dq[j] * p[j] / total }
        var dp = (0..<columns).map { (dq[$0] - dot) / total }
        if z != nil {
            var inner = 0.0
            for j in 0..<columns { inner += dp[j] * p[j] }
            dp = (0..<columns).map { p[$0] * (dp[$0] - inner) }
        }
        for j in 0..<columns { d[j] = Float(scale * dp[j]) }
        return s
    }
}
