// Losses that couple the samples of a batch (keras/src/losses/losses.py): one sample's loss depends on
// the others, so they are computed over the GLOBAL batch, whose rows every rank holds after a gather
// (TrainingStep) — the same rows in the same order for any rank count, so the same value everywhere.
//   Dice (axis None)     L = 1 − 2I / (Σt + Σy + ε),  I = Σ t·y over every element of the batch
//   Tversky (axis None)  L = 1 − I / (I + α·Σ(1 − y)·t + β·Σy·(1 − t) + ε)
//     a scalar for the batch: Keras's reduction weighs it by the sample weights (× mean w for
//     sum_over_batch_size, × Σw for sum, × 1 for mean_with_sample_weight).
//   Circle               ℓ_i = softplus(LSE_{j∈P(i)} z_ij + LSE_{j∈N(i)} z_ij) on the cosine distances
//     d_ij = max(1 − y_i·y_j, 0) of L2-normalised embeddings, P(i) the other rows of i's class and N(i)
//     the rows of other classes, z_ij = −γ·max(m + d, 0)·(m − d) on P and γ·max(1 + m − d, 0)·(1 − m − d)
//     on N; Keras masks the rows with ℓ_i = 0 (no positive or no negative pair), so the mean is over the
//     V others: Σ w_i·ℓ_i / (V + ε).
// The gradients are JAX's (max(·, 0): 1 above 0, else 0), in Double over float32 outputs.

import Foundation

/// The global batch of one head: its outputs [B, C], targets [B, T] and effective sample weights [B].
package struct GatheredBatch {
    package let outputs: UnsafePointer<Float>, targets: UnsafePointer<Float>, weights: UnsafePointer<Float>
    package let rows: Int, columns: Int, targetColumns: Int
    package init(
        outputs: UnsafePointer<Float>, targets: UnsafePointer<Float>, weights: UnsafePointer<Float>, rows: Int,
        columns: Int, targetColumns: Int
    ) {
        self.outputs = outputs
        self.targets = targets
        self.weights = weights
        self.rows = rows
        self.columns = columns
        self.targetColumns = targetColumns
    }
}

/// A coupled loss's per-row stand-in: no per-sample value or gradient (Head.batchLoss computes both
/// over the gathered batch); its targets are Circle's class ids or Dice's and Tversky's rows.
package struct BatchCoupledLoss: LossFunction {
    package let kind: LossKind
    package func targetWidth(outputWidth: Int) -> Int { kind == .circle ? 1 : outputWidth }
    package func folds(_ activation: Activation) -> Bool { false }
    package func sample(
        y: UnsafePointer<Float>, z: UnsafePointer<Float>?, t: UnsafePointer<Float>, columns: Int,
        d: UnsafeMutablePointer<Float>?, scale: Double
    ) -> Double { 0 }
}

extension Head {
    /// Whether this head's loss couples the samples of a batch.
    public var couplesBatch: Bool { loss == .circle || ((loss == .dice || loss == .tversky) && options.wholeBatch) }

    /// Mean over the batches of `groupSize` rows of `batch`, each weighted by its size (Keras's
    /// evaluate: one loss per batch, tracked as a mean weighted by the batch's size).
    package func batchLossByGroups(_ batch: GatheredBatch, groupSize: Int) -> Double {
        var total = 0.0
        var start = 0
        while start < batch.rows {
            let n = min(groupSize, batch.rows - start)
            let group = GatheredBatch(
                outputs: batch.outputs + start * batch.columns, targets: batch.targets + start * batch.targetColumns,
                weights: batch.weights + start, rows: n, columns: batch.columns, targetColumns: batch.targetColumns)
            total += Double(n) * batchLoss(group, own: 0..<0, gradient: nil).loss
            start += n
        }
        return total / Double(max(batch.rows, 1))
    }

    /// The head's loss over `batch` (its reduction applied), and for the rows `own` its share of the
    /// figure Σ w·ℓ (whose sum over all rows, ÷ the reduction's divisor, is that loss); with `gradient`,
    /// weight · ∂loss/∂output for the rows `own`, written at `gradient` (rows of `own` in turn).
    package func batchLoss(
        _ batch: GatheredBatch, own: Range<Int>, gradient: UnsafeMutablePointer<Float>?
    ) -> (loss: Double, figure: Double) {
        guard batch.rows > 0 else { return (0, 0) }
        switch loss {
        case .circle: return circle(batch, own: own, gradient: gradient)
        default: return overlap(batch, own: own, gradient: gradient)
        }
    }

    /// What the reduction multiplies a whole-batch scalar by: mean w, Σw or 1.
    private func scalarFactor(_ batch: GatheredBatch) -> Double {
        var sum = 0.0
        for i in 0..<batch.rows { sum += Double(batch.weights[i]) }
        switch reduction {
        case .batch: return sum / Double(max(batch.rows, 1))
        case .sum: return sum
        case .labeled: return 1
        }
    }

    private func overlap(
        _ b: GatheredBatch, own: Range<Int>, gradient: UnsafeMutablePointer<Float>?
    ) -> (loss: Double, figure: Double) {
        let n = b.rows * b.columns
        var intersection = 0.0
        var targetSum = 0.0
        var outputSum = 0.0
        for k in 0..<n {
            let t = Double(b.targets[k])
            let y = Double(b.outputs[k])
            intersection += t * y
            targetSum += t
            outputSum += y
        }
        let alpha = options.alpha
        let beta = options.beta ?? 0.5
        let value: Double
        // ∂L/∂y_k = a·t_k + c for the scalars a, c below.
        let a: Double
        let c: Double
        if loss == .dice {
            let s = targetSum + outputSum + epsilon
            value = 1 - 2 * intersection / s
            a = -2 / s
            c = 2 * intersection / (s * s)
        } else {
            let missed = targetSum - intersection  // Σ(1 − y)·t
            let extra = outputSum - intersection  // Σy·(1 − t)
            let s = intersection + alpha * missed + beta * extra + epsilon
            value = 1 - intersection / s
            // ∂s/∂y_k = t_k(1 − α − β) + β;  ∂L/∂y_k = −(t_k·s − I·∂s/∂y_k) / s²
            a = -(s - intersection * (1 - alpha - beta)) / (s * s)
            c = intersection * beta / (s * s)
        }
        let factor = scalarFactor(b)
        if let gradient {
            let scale = weight * factor
            for (r, i) in own.enumerated() {
                for j in 0..<b.columns {
                    let k = i * b.columns + j
                    gradient[r * b.columns + j] = Float(scale * (a * Double(b.targets[k]) + c))
                }
            }
        }
        // Each row's share L·w_i: summed over the batch and ÷ the reduction's divisor (B, 1 or Σw), L·factor.
        var ownWeights = 0.0
        for i in own { ownWeights += Double(b.weights[i]) }
        return (value * factor, value * ownWeights)
    }

    private func circle(
        _ b: GatheredBatch, own: Range<Int>, gradient: UnsafeMutablePointer<Float>?
    ) -> (loss: Double, figure: Double) {
        let B = b.rows
        let D = b.columns
        let gamma = options.circleGamma ?? 80
        let m = options.margin ?? 0.4
        let label = (0..<B).map { b.targets[$0 * b.targetColumns] }
        // Similarities as XLA forms them (a float32 matrix product), then distances.
        var distance = [Double](repeating: 0, count: B * B)
        for i in 0..<B {
            for j in 0..<B {
                var s: Float = 0
                for k in 0..<D { s += b.outputs[i * D + k] * b.outputs[j * D + k] }
                distance[i * B + j] = Double(max(1 - s, 0))
            }
        }
        func positive(_ i: Int, _ j: Int) -> Bool { label[i] == label[j] && !(options.removeDiagonal && i == j) }
        func z(_ i: Int, _ j: Int) -> (value: Double, slope: Double) {
            let d = distance[i * B + j]
            if positive(i, j) {
                let w = max(m + d, 0)
                // z = −γ·w·(m − d);  dz/dd = −γ·(w'·(m − d) − w)
                return (-gamma * w * (m - d), -gamma * ((m + d > 0 ? 1 : 0) * (m - d) - w))
            }
            let w = max(1 + m - d, 0)
            // z = γ·w·(1 − m − d);  dz/dd = γ·(−w'·(1 − m − d) − w)
            return (gamma * w * (1 - m - d), gamma * (-(1 + m - d > 0 ? 1 : 0) * (1 - m - d) - w))
        }
        // Per row: ℓ_i and, for the gradient, σ(p_i + n_i) and the two log-sum-exps.
        var loss = [Double](repeating: 0, count: B)
        var sigmoid = [Double](repeating: 0, count: B)
        var lse = [(p: Double, n: Double)](repeating: (-.infinity, -.infinity), count: B)
        for i in 0..<B {
            var topP = -Double.infinity
            var topN = -Double.infinity
            for j in 0..<B where label[i] != label[j] || positive(i, j) {
                let v = z(i, j).value
                if positive(i, j) { topP = max(topP, v) } else { topN = max(topN, v) }
            }
            var sumP = 0.0
            var sumN = 0.0
            for j in 0..<B where label[i] != label[j] || positive(i, j) {
                let v = z(i, j).value
                if positive(i, j) { sumP += exp(v - topP) } else { sumN += exp(v - topN) }
            }
            let p = sumP > 0 ? topP + log(sumP) : -Double.infinity
            let n = sumN > 0 ? topN + log(sumN) : -Double.infinity
            lse[i] = (p, n)
            let x = p + n
            loss[i] = x == -.infinity ? 0 : max(x, 0) + log1p(exp(-abs(x)))  // softplus
            sigmoid[i] = x == -.infinity ? 0 : 1 / (1 + exp(-x))
        }
        let valid = Double(loss.filter { Float($0) > 0 }.count)
        // Keras's mask: sum_over_batch_size rescales the valid rows by B / (V + ε), then ÷ B.
        let rowScale = reduction == .sum ? 1 : Double(B) / (valid + epsilon)
        let divisor = reduction == .sum ? 1.0 : Double(B)
        var value = 0.0
        var figure = 0.0
        for i in 0..<B where Float(loss[i]) > 0 {
            let share = Double(b.weights[i]) * loss[i] * rowScale
            value += share
            if own.contains(i) { figure += share }
        }
        value /= divisor
        guard let gradient else { return (value, figure) }
        // G_ij = c_i·∂ℓ_i/∂z_ij·dz/dd·dd/ds;  ∂loss/∂y = (G + Gᵀ)·Y, for the rows `own`.
        var g = [Double](repeating: 0, count: B * B)
        for i in 0..<B where Float(loss[i]) > 0 {
            let c = Double(b.weights[i]) * rowScale / divisor * sigmoid[i]
            for j in 0..<B where label[i] != label[j] || positive(i, j) {
                let (v, slope) = z(i, j)
                let soft = exp(v - (positive(i, j) ? lse[i].p : lse[i].n))
                let dds: Double = distance[i * B + j] > 0 ? -1 : 0  // d = max(1 − s, 0)
                g[i * B + j] = c * soft * slope * dds
            }
        }
        for (r, i) in own.enumerated() {
            for k in 0..<D {
                var sum = 0.0
                for j in 0..<B { sum += (g[i * B + j] + g[j * B + i]) * Double(b.outputs[j * D + k]) }
                gradient[r * D + k] = Float(weight * sum)
            }
        }
        return (value, figure)
    }
}
