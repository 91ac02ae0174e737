// Per-head losses (SPEC §3), Keras's `sum_over_batch_size`:
//   loss_h = (1/B) · Σ_i w_i · ℓ_h(i),  B = samples in the GLOBAL batch.
// Sigmoid + BCE and softmax + CCE are formed from the logits (stable; dz = p − t).
// Each head writes lossWeight_h · w_i · ∂ℓ/∂z / B straight into its output
// layer's gradient, so backward sees d(total)/d(output) for every head.

import Foundation

/// The loss functions a head can use.
public enum LossKind: String, Sendable, Codable {
    case binaryCrossentropy = "binary_crossentropy"
    case categoricalCrossentropy = "categorical_crossentropy"
    case meanSquaredError = "mse"
}

/// One output's loss, its weight in the total, and optional class weights.
public struct Head: Sendable {
    public let output: String
    public var loss: LossKind
    public var weight: Double
    /// Class index → multiplier of the sample weight.
    public var classWeights: [Int: Double]
    public init(output: String, loss: LossKind, weight: Double, classWeights: [Int: Double] = [:]) {
        self.output = output; self.loss = loss; self.weight = weight; self.classWeights = classWeights
    }
}

/// Sums one head produces on the local rows of a batch (reduced across ranks later).
public struct HeadSums: Sendable {
    /// Σ_i w_i · ℓ(i), in Double.
    public var weightedLoss = 0.0
    /// Samples whose prediction matches the target class (unweighted, as Keras's accuracy).
    public var correct = 0.0
}

/// The class of a target row: round(t) for one column, argmax otherwise.
@inline(__always)
func targetClass(_ t: UnsafePointer<Float>, columns: Int) -> Int {
    if columns == 1 { return t[0] >= 0.5 ? 1 : 0 }
    var best = 0
    for j in 1..<columns where t[j] > t[best] { best = j }
    return best
}

extension Head {
    /// The headline model's heads (SPEC §2): binary cross-entropy, main 1.0, aux 0.2.
    public static var headlineDefaults: [Head] {
        [Head(output: "main_output", loss: .binaryCrossentropy, weight: 1.0),
         Head(output: "aux_output", loss: .binaryCrossentropy, weight: 0.2)]
    }

    /// Checks the output layer fits the loss; marks fused logit gradients.
    public func attach(to layer: Dense) throws {
        switch loss {
        case .binaryCrossentropy where layer.activation != .sigmoid:
            throw TandemError.usage("\(output): binary_crossentropy needs a sigmoid output, found \(layer.activation)")
        case .categoricalCrossentropy where layer.activation != .softmax:
            throw TandemError.usage("\(output): categorical_crossentropy needs a softmax output, found \(layer.activation)")
        default: break
        }
        layer.lossWritesLogitGradient = loss != .meanSquaredError
    }

    /// Effective per-sample weights: sample weight × class weight, written into `weights`.
    public func applyClassWeights(targets: UnsafePointer<Float>, columns: Int, rows: Int,
                                  weights: UnsafeMutablePointer<Float>) {
        guard !classWeights.isEmpty else { return }
        for i in 0..<rows {
            let k = targetClass(targets + i * columns, columns: columns)
            weights[i] *= Float(classWeights[k] ?? 1)
        }
    }

    /// Loss sums over `rows` local samples, and the gradient into `layer`
    /// scaled by weight / globalBatch. `weights` are the effective sample weights.
    public func evaluate(layer: Dense, targets: UnsafePointer<Float>, weights: UnsafePointer<Float>,
                         rows: Int, globalBatch: Int, writeGradient: Bool) -> HeadSums {
        let columns = layer.units
        let z = UnsafePointer(layer.logits!), p = UnsafePointer(layer.output.values!)
        let dz = layer.dLogits!, dy = layer.output.gradients!
        let scale = Float(weight / Double(max(globalBatch, 1)))
        let perColumn = 1 / Float(columns)
        var sums = HeadSums()
        for i in 0..<rows {
            let o = i * columns, w = weights[i]
            var sampleLoss = 0.0
            switch loss {
            case .binaryCrossentropy:
                // ℓ = mean_c [max(z,0) − z·t + log(1 + e^{−|z|})];  ∂ℓ/∂z = (σ(z) − t)/C
                for j in 0..<columns {
                    let zj = Double(z[o + j]), tj = Double(targets[o + j])
                    sampleLoss += max(zj, 0) - zj * tj + Foundation.log1p(Foundation.exp(-abs(zj)))
                    if writeGradient { dz[o + j] = scale * w * perColumn * (p[o + j] - targets[o + j]) }
                }
                sampleLoss /= Double(columns)
            case .categoricalCrossentropy:
                // ℓ = −Σ_c t_c · log softmax(z)_c, via log-sum-exp;  ∂ℓ/∂z = p·Σt − t
                var peak = -Double.infinity
                for j in 0..<columns { peak = max(peak, Double(z[o + j])) }
                var total = 0.0, targetSum = 0.0
                for j in 0..<columns { total += Foundation.exp(Double(z[o + j]) - peak) }
                let logNorm = peak + Foundation.log(total)
                for j in 0..<columns {
                    let tj = Double(targets[o + j])
                    sampleLoss -= tj * (Double(z[o + j]) - logNorm)
                    targetSum += tj
                }
                if writeGradient {
                    for j in 0..<columns {
                        dz[o + j] = scale * w * (p[o + j] * Float(targetSum) - targets[o + j])
                    }
                }
            case .meanSquaredError:
                for j in 0..<columns {
                    let e = Double(p[o + j]) - Double(targets[o + j])
                    sampleLoss += e * e
                    if writeGradient { dy[o + j] = scale * w * perColumn * 2 * Float(e) }
                }
                sampleLoss /= Double(columns)
            }
            sums.weightedLoss += Double(w) * sampleLoss
            sums.correct += isCorrect(p + o, targets + o, columns: columns) ? 1 : 0
        }
        return sums
    }

    /// Keras's accuracy for the loss: binary (threshold 0.5) or categorical (argmax).
    private func isCorrect(_ p: UnsafePointer<Float>, _ t: UnsafePointer<Float>, columns: Int) -> Bool {
        if loss == .binaryCrossentropy || (loss == .meanSquaredError && columns == 1) {
            for j in 0..<columns where (p[j] > 0.5) != (t[j] >= 0.5) { return false }
            return true
        }
        return targetClass(p, columns: columns) == targetClass(t, columns: columns)
    }
}
