// Per-head losses (docs/SPEC.md §3), Keras's `sum_over_batch_size`:
//   loss_h = (1/B) · Σ_i w_i · ℓ_h(i),  B = samples in the GLOBAL batch.
// Each head writes lossWeight_h · w_i · ∂ℓ/∂(output) / B into its output
// layer's gradient, so backward sees d(total)/d(output) for every head. Where
// a loss meets the activation it inverts (sigmoid + binary cross-entropy,
// softmax + (sparse) categorical cross-entropy, on a Dense output nothing else
// reads) it works from the logits instead: stable, and ∂ℓ/∂z = p − t.
// Otherwise the loss works on the output itself: from logits (`from_logits`)
// or from probabilities clipped to [ε, 1 − ε] exactly as Keras does.

import Foundation

/// The loss functions a head can use (Keras names); `function` implements each.
public enum LossKind: String, Sendable, Codable, CaseIterable {
    case binaryCrossentropy = "binary_crossentropy"
    case categoricalCrossentropy = "categorical_crossentropy"
    case sparseCategoricalCrossentropy = "sparse_categorical_crossentropy"
    case meanSquaredError = "mean_squared_error"
    case meanAbsoluteError = "mean_absolute_error"
    case huber
    case logCosh = "log_cosh"
    case poisson
    case klDivergence = "kl_divergence"
    case binaryFocalCrossentropy = "binary_focal_crossentropy"
    case meanAbsolutePercentageError = "mean_absolute_percentage_error"
    case meanSquaredLogarithmicError = "mean_squared_logarithmic_error"
    case hinge
    case squaredHinge = "squared_hinge"
    case categoricalHinge = "categorical_hinge"
    case cosineSimilarity = "cosine_similarity"
    case dice
    case tversky
    case categoricalFocalCrossentropy = "categorical_focal_crossentropy"
    case categoricalGeneralizedCrossEntropy = "categorical_generalized_cross_entropy"
    case circle

    /// Keras's names and aliases for each loss (function names and class names).
    public static func named(_ name: String) -> LossKind? {
        switch name {
        case "binary_crossentropy", "BinaryCrossentropy", "bce": return .binaryCrossentropy
        case "categorical_crossentropy", "CategoricalCrossentropy": return .categoricalCrossentropy
        case "sparse_categorical_crossentropy", "SparseCategoricalCrossentropy": return .sparseCategoricalCrossentropy
        case "mean_squared_error", "MeanSquaredError", "mse", "MSE": return .meanSquaredError
        case "mean_absolute_error", "MeanAbsoluteError", "mae", "MAE": return .meanAbsoluteError
        case "huber", "Huber", "huber_loss": return .huber
        case "log_cosh", "LogCosh", "logcosh": return .logCosh
        case "poisson", "Poisson": return .poisson
        case "kl_divergence", "KLDivergence", "kld", "KLD", "kullback_leibler_divergence": return .klDivergence
        case "binary_focal_crossentropy", "BinaryFocalCrossentropy": return .binaryFocalCrossentropy
        case "mean_absolute_percentage_error", "MeanAbsolutePercentageError", "mape", "MAPE":
            return .meanAbsolutePercentageError
        case "mean_squared_logarithmic_error", "MeanSquaredLogarithmicError", "msle", "MSLE":
            return .meanSquaredLogarithmicError
        case "hinge", "Hinge": return .hinge
        case "squared_hinge", "SquaredHinge": return .squaredHinge
        case "categorical_hinge", "CategoricalHinge": return .categoricalHinge
        case "cosine_similarity", "CosineSimilarity": return .cosineSimilarity
        case "dice", "Dice": return .dice
        case "tversky", "Tversky": return .tversky
        case "categorical_focal_crossentropy", "CategoricalFocalCrossentropy": return .categoricalFocalCrossentropy
        case "categorical_generalized_cross_entropy", "CategoricalGeneralizedCrossEntropy":
            return .categoricalGeneralizedCrossEntropy
        case "circle", "Circle": return .circle
        default: return nil
        }
    }

    /// Columns of the target for an output of `width` columns: class ids are one column.
    package func targetWidth(outputWidth: Int) -> Int { function(LossOptions()).targetWidth(outputWidth: outputWidth) }
}

/// A loss's arguments beyond its kind (Keras's defaults).
public struct LossOptions: Sendable, Codable, Equatable {
    /// Targets squeezed towards uniform: binary t(1 − s) + s/2, categorical t(1 − s) + s/C.
    public var labelSmoothing = 0.0
    /// Huber's δ.
    public var delta = 1.0
    /// Binary focal cross-entropy: the focusing power, and the class balance α for targets 1 (when balancing).
    public var gamma = 2.0, alpha = 0.25
    public var applyClassBalancing = false
    /// Sparse categorical cross-entropy: targets of this class count for nothing, and the loss is
    /// divided by the labelled count instead of the batch (Keras's mask on the loss).
    public var ignoreClass: Int?
    /// Tversky's β (nil: 0.5); its α is `alpha`.
    public var beta: Double?
    /// Generalized cross-entropy's q (nil: 0.5).
    public var q: Double?
    /// Dice and Tversky over the whole batch (Keras's axis None) rather than per sample.
    public var batchAxis: Bool?
    /// Circle's γ (nil: 80), margin (nil: 0.4) and remove_diagonal (nil: true).
    public var circleGamma: Double?, margin: Double?, keepDiagonal: Bool?
    public init() {}
    package var wholeBatch: Bool { batchAxis ?? false }
    package var removeDiagonal: Bool { !(keepDiagonal ?? false) }
}

/// The accuracy metrics (Keras's "accuracy" resolves to one of them).
public enum AccuracyKind: String, Sendable, Codable {
    case binary = "binary_accuracy"
    case categorical = "categorical_accuracy"
    case sparseCategorical = "sparse_categorical_accuracy"

    /// What Keras's "accuracy" means for this output (trainers/compile_utils.py):
    /// one output column → binary; class-id targets → sparse categorical; else categorical.
    package static func resolving(outputWidth: Int, targetWidth: Int) -> AccuracyKind {
        if outputWidth == 1 { return .binary }
        return targetWidth == 1 ? .sparseCategorical : .categorical
    }
}

/// One output's loss, its weight in the total, its accuracy metric and optional class weights.
public struct Head: Sendable, Codable, Equatable {
    public let output: String
    public var loss: LossKind
    public var options = LossOptions()
    /// The output holds logits, not probabilities (Keras's `from_logits`).
    public var fromLogits = false
    public var weight: Double
    /// Class index → multiplier of the sample weight.
    public var classWeights: [Int: Double]
    /// The reported name (e.g. "accuracy") and kind; nil: no accuracy for this head.
    public var accuracy: Accuracy?
    /// The other compiled metrics (Metrics.swift), in Keras's order.
    public var metrics: [Metric] = []
    /// What the head's loss over a batch is divided by (docs/SPEC.md §10).
    public var reduction: Reduction = .batch
    /// The Keras mask that reaches this output (an output with time axes after Embedding(mask_zero=True)
    /// or Masking): masked elements add nothing to the loss or the metrics, and the loss divides by the
    /// unmasked elements (Keras's apply_mask). Nil: no mask.
    public var elementMask: ElementMask?
    public enum ElementMask: Sendable, Codable, Equatable {
        /// Token ids ≠ 0 of this model input, one per time step.
        case tokens(input: String)
        /// A step whose features are not all `value` (Masking's), of this model input.
        case features(input: String, value: Float)
        package var input: String {
            switch self {
            case .tokens(let i), .features(let i, _): return i
            }
        }
    }
    public enum Reduction: String, Sendable, Codable, CaseIterable {
        /// Keras's sum_over_batch_size: the global batch size (a missing label counts as weight 0).
        case batch
        /// The global Σ weight of the labelled samples: the true mean over labelled samples
        /// (Keras's `mean_with_sample_weight`).
        case labeled
        /// Nothing: the sum over the global batch (Keras's `sum`).
        case sum
    }
    public struct Accuracy: Sendable, Codable, Equatable {
        public var name: String
        public var kind: AccuracyKind
        /// How the compile config wrote it, when it came from one.
        package var keras: String?
        package init(name: String, kind: AccuracyKind, keras: String? = nil) {
            self.name = name
            self.kind = kind
            self.keras = keras
        }
    }

    package init(
        output: String, loss: LossKind, weight: Double, classWeights: [Int: Double] = [:],
        fromLogits: Bool = false, accuracy: Accuracy? = nil
    ) {
        self.output = output
        self.loss = loss
        self.weight = weight
        self.classWeights = classWeights
        self.fromLogits = fromLogits
        self.accuracy = accuracy
    }
}

/// Sums one head produces on the local rows of a batch (reduced across ranks later).
public struct HeadSums: Sendable {
    /// Σ_i w_i · ℓ(i), in Double.
    package var weightedLoss = 0.0
    /// Σ_i accuracy(i) over labelled rows (unweighted, as Keras's compiled metrics).
    package var correct = 0.0
}

/// The class of a target row: round(t) for one column, argmax otherwise.
@inline(__always)
func targetClass(_ t: UnsafePointer<Float>, columns: Int) -> Int {
    if columns == 1 { return t[0] >= 0.5 ? 1 : 0 }
    var best = 0
    for j in 1..<columns where t[j] > t[best] { best = j }
    return best
}

@inline(__always) private func argmax(_ p: UnsafePointer<Float>, _ n: Int) -> Int {
    var best = 0
    for j in 1..<max(n, 1) where p[j] > p[best] { best = j }
    return best
}

/// Keras's backend epsilon, the clip of probabilities.
let epsilon = 1e-7

/// How a head reads its output layer, decided once when the step is wired.
public enum LossInput {
    /// From the Dense's pre-activation z (the activation the loss inverts); writes dz.
    case logits(Dense)
    /// From the output's values; writes d(output).
    case output(Layer)

    public var layer: Layer {
        switch self {
        case .logits(let d): return d
        case .output(let l): return l
        }
    }
}

extension Head {
    /// The headline model's heads (docs/SPEC.md §2): binary cross-entropy, main 1.0, aux 0.2, accuracy.
    public static var headlineDefaults: [Head] {
        [
            Head(
                output: "main_output", loss: .binaryCrossentropy, weight: 1.0,
                accuracy: .init(name: "accuracy", kind: .binary)),
            Head(
                output: "aux_output", loss: .binaryCrossentropy, weight: 0.2,
                accuracy: .init(name: "accuracy", kind: .binary)),
        ]
    }

    /// Target floats per sample for its output layer: every element's target columns.
    package func targetWidth(of layer: Layer) -> Int {
        let e = elements(of: layer)
        return e.cells * e.targetColumns
    }

    /// How the loss splits its output layer: [B, d1…dk, C] is B·cells elements (a token, a pixel) of C
    /// columns, each with its own loss and target, as Keras's loss functions reduce the last axis only.
    package func elements(of layer: Layer) -> Elements {
        let shape = layer.output.shape
        let columns = shape.last ?? 1
        return Elements(
            cells: shape.dropLast().reduce(1, *), columns: columns,
            targetColumns: function.targetWidth(outputWidth: columns))
    }

    /// Whether the loss is one function of each element (the last axis) that Keras averages over every
    /// element: what an output with spatial or time axes needs.
    package var isElementwise: Bool {
        !couplesBatch && ![.dice, .tversky, .categoricalGeneralizedCrossEntropy, .circle].contains(loss)
    }

    /// Decides how the loss reads `layer` and marks a Dense whose logit gradient it writes.
    /// `consumers` is how many layers read `layer` (a Dense read further on keeps act').
    package func attach(to layer: Layer, consumers: Int) throws -> LossInput {
        try check(layer)
        guard let dense = layer as? Dense else { return .output(layer) }
        let folds = function.folds(dense.activation)
        dense.lossWritesLogitGradient = folds && !fromLogits && consumers == 0
        return dense.lossWritesLogitGradient ? .logits(dense) : .output(layer)
    }

    /// Whether this loss can read `layer`'s output (its classes; spatial or time axes).
    package func check(_ layer: Layer) throws {
        if loss == .sparseCategoricalCrossentropy && elements(of: layer).columns < 2 {
            throw TandemError.usage(
                "output '\(output)': sparse_categorical_crossentropy needs an output of at least 2 classes, found \(elements(of: layer).columns)"
            )
        }
        if layer.output.shape.count != 1 {
            let shape = "[batch, " + layer.output.shape.map(String.init).joined(separator: ", ") + "]"
            guard isElementwise else {
                throw TandemError.usage(
                    "output '\(output)' \(shape): \(loss.rawValue)\(couplesBatch ? " over the whole batch" : "") on an output with spatial or time axes is not supported (element-wise losses are: every loss but dice, tversky, categorical_generalized_cross_entropy and circle)"
                )
            }
            guard classWeights.isEmpty else {
                throw TandemError.usage(
                    "output '\(output)' \(shape): class weights on an output with spatial or time axes are not supported (Keras refuses them too; pass sample weights of the output's shape)"
                )
            }
        }
    }

    /// An output's loss elements: `cells` per sample, each `columns` outputs and `targetColumns` targets.
    public struct Elements: Sendable, Equatable {
        public var cells, columns, targetColumns: Int
    }

    /// Effective per-sample weights: sample weight × class weight, written into `weights`.
    package func applyClassWeights(
        targets: UnsafePointer<Float>, columns: Int, rows: Int,
        weights: UnsafeMutablePointer<Float>
    ) {
        guard !classWeights.isEmpty else { return }
        for i in 0..<rows {
            let k =
                loss == .sparseCategoricalCrossentropy
                ? Int(targets[i * columns]) : targetClass(targets + i * columns, columns: columns)
            if k == options.ignoreClass { continue }
            weights[i] *= Float(classWeights[k] ?? 1)
        }
    }

    /// Loss sums over `rows` local samples, and the gradient into the output
    /// (or its logits) scaled by weight / globalBatch. `weights` are the effective weights of each
    /// element (`elements(of:)`; one per sample without spatial or time axes).
    /// With `metricSums`, each metric's sums over these rows are added there (`metricSlotCount` doubles).
    /// Rows whose `labelled` flag is false (a NaN target, docs/SPEC.md §10) weigh 0 and add to no metric;
    /// so do elements whose `masked` flag is true (`elementMask`).
    /// A sample's loss and accuracy are the means over its elements (Keras divides the sum over every
    /// element by B·cells); the metrics count each element, as Keras's flatten them.
    public func evaluate(
        _ input: LossInput, targets: UnsafePointer<Float>, weights: UnsafePointer<Float>,
        labelled: UnsafePointer<Bool>? = nil, masked: UnsafePointer<Bool>? = nil, rows: Int, globalBatch: Int,
        writeGradient: Bool,
        metricSums: UnsafeMutablePointer<Double>? = nil
    ) -> HeadSums {
        let layer = input.layer
        let function = self.function
        let (cells, columns, tw) = { e in (e.cells, e.columns, e.targetColumns) }(elements(of: layer))
        let y = UnsafePointer(layer.output.values!)
        let scale = weight / Double(max(globalBatch, 1) * cells)
        let perCell = 1 / Double(cells)
        var sums = HeadSums()
        let dOut: UnsafeMutablePointer<Float>?
        let fromZ: UnsafePointer<Float>?
        switch input {
        case .logits(let dense):
            fromZ = UnsafePointer(dense.logits!)
            dOut = writeGradient ? dense.dLogits! : nil
        case .output:
            fromZ = fromLogits ? y : nil
            dOut = writeGradient ? layer.output.gradients! : nil
        }
        for e in 0..<(rows * cells) {
            let o = e * columns
            let t = targets + e * tw
            let w = Double(weights[e])
            let g = w * scale
            let elementLoss = function.sample(
                y: y + o, z: fromZ.map { $0 + o }, t: t, columns: columns, d: dOut.map { $0 + o }, scale: g)
            sums.weightedLoss += w * elementLoss * perCell
            if let labelled, !labelled[e / cells] { continue }
            if let masked, masked[e] { continue }  // Keras's metrics skip masked elements too
            if let accuracy {
                // Keras's metric reads the output as it is (on logits too: threshold 0.5, argmax).
                sums.correct +=
                    Head.accuracy(accuracy.kind, p: y + o, t: t, columns: columns, targetColumns: tw) * perCell
            }
            if let metricSums {
                var offset = 0
                for m in metrics {
                    m.accumulate(
                        p: y + o, t: t, columns: columns, targetColumns: tw, weight: w, into: metricSums + offset)
                    offset += m.slotCount
                }
            }
        }
        return sums
    }

    /// One sample's accuracy as Keras computes it (mean over columns for binary).
    static func accuracy(
        _ kind: AccuracyKind, p: UnsafePointer<Float>, t: UnsafePointer<Float>, columns: Int, targetColumns: Int
    ) -> Double {
        switch kind {
        case .binary:
            // Keras: mean over the last axis of (y_true == (y_pred > 0.5)).
            var hits = 0
            for j in 0..<columns where t[j] == (p[j] > 0.5 ? 1 : 0) { hits += 1 }
            return Double(hits) / Double(columns)
        case .categorical:
            return argmax(p, columns) == argmax(t, targetColumns) ? 1 : 0
        case .sparseCategorical:
            return Float(argmax(p, columns)) == t[0] ? 1 : 0
        }
    }
}

/// One sample's loss and its gradient: the small protocol every loss implements.
/// `y` is the output row; `z`, when given, the logits the loss works from instead
/// (the output's own pre-activation, or the output itself with from_logits);
/// with `d`, scale·∂ℓ/∂z (or ∂ℓ/∂y without z) is written there.
package protocol LossFunction: Sendable {
    /// Target columns for an output of `outputWidth` columns.
    func targetWidth(outputWidth: Int) -> Int
    /// True when the loss inverts `activation` and so works from its logits.
    func folds(_ activation: Activation) -> Bool
    func sample(
        y: UnsafePointer<Float>, z: UnsafePointer<Float>?, t: UnsafePointer<Float>, columns: Int,
        d: UnsafeMutablePointer<Float>?, scale: Double
    ) -> Double
}

extension LossKind {
    /// The implementation of this loss with `options`.
    package func function(_ options: LossOptions) -> LossFunction {
        switch self {
        case .binaryCrossentropy: return BinaryCrossentropy(labelSmoothing: options.labelSmoothing)
        case .categoricalCrossentropy:
            return CategoricalCrossentropy(sparse: false, labelSmoothing: options.labelSmoothing)
        case .sparseCategoricalCrossentropy: return CategoricalCrossentropy(sparse: true, labelSmoothing: 0)
        case .meanSquaredError: return MeanSquaredError()
        case .meanAbsoluteError, .huber, .logCosh, .poisson, .klDivergence, .meanAbsolutePercentageError,
            .meanSquaredLogarithmicError:
            return Regression(kind: self, delta: options.delta)
        case .binaryFocalCrossentropy: return BinaryFocalCrossentropy(options)
        // (A `where` binds to its own pattern: each kind states it.)
        case .dice where options.wholeBatch, .tversky where options.wholeBatch, .circle:
            return BatchCoupledLoss(kind: self)
        case .hinge, .squaredHinge, .categoricalHinge, .cosineSimilarity, .dice, .tversky:
            return MarginLoss(kind: self, options: options)
        case .categoricalFocalCrossentropy, .categoricalGeneralizedCrossEntropy:
            return CategoricalVariantLoss(kind: self, options: options)
        }
    }
}

extension Head {
    /// This head's loss with its arguments.
    package var function: LossFunction { loss.function(options) }
}

/// Keras `binary_crossentropy` (mean over the last axis).
package struct BinaryCrossentropy: LossFunction {
    public let labelSmoothing: Double
    package init(labelSmoothing: Double = 0) { self.labelSmoothing = labelSmoothing }
    package func targetWidth(outputWidth: Int) -> Int { outputWidth }
    package func folds(_ activation: Activation) -> Bool { activation == .sigmoid }
    /// ℓ = mean_c BCE, on t smoothed to t(1 − s) + s/2. From logits z: max(z,0) − z·t + log(1 + e^{−|z|}),
    /// ∂ℓ/∂z = (σ(z) − t)/C. From probabilities (Keras): p = clip(y, ε, 1−ε), −[t·log p + (1−t)·log(1−p)],
    /// ∂/∂y zero where clipped.
    package func sample(
        y: UnsafePointer<Float>, z: UnsafePointer<Float>?, t: UnsafePointer<Float>, columns: Int,
        d: UnsafeMutablePointer<Float>?, scale: Double
    ) -> Double {
        var s = 0.0
        let perColumn = 1 / Double(columns)
        for j in 0..<columns {
            let tj = labelSmoothing == 0 ? Double(t[j]) : Double(t[j]) * (1 - labelSmoothing) + 0.5 * labelSmoothing
            if let z {
                let zj = Double(z[j])
                s += max(zj, 0) - zj * tj + Foundation.log1p(Foundation.exp(-abs(zj)))
                if let d {
                    // σ(z) in Float as the output layer computes it (the same bits the fused path always used).
                    d[j] = Float(scale * perColumn) * (sigmoid(z[j]) - Float(tj))
                }
            } else {
                let raw = Double(y[j])
                let p = min(max(raw, epsilon), 1 - epsilon)
                s -= tj * Foundation.log(p) + (1 - tj) * Foundation.log(1 - p)
                if let d {
                    d[j] =
                        raw > epsilon && raw < 1 - epsilon
                        ? Float(scale * perColumn * (-tj / p + (1 - tj) / (1 - p))) : 0
                }
            }
        }
        return s * perColumn
    }

}

/// Keras `categorical_crossentropy`, or with `sparse` `sparse_categorical_crossentropy` (targets are class ids).
package struct CategoricalCrossentropy: LossFunction {
    package let sparse: Bool
    public let labelSmoothing: Double
    package init(sparse: Bool, labelSmoothing: Double = 0) {
        self.sparse = sparse
        self.labelSmoothing = labelSmoothing
    }
    package func targetWidth(outputWidth: Int) -> Int { sparse ? 1 : outputWidth }
    package func folds(_ activation: Activation) -> Bool { activation == .softmax }
    /// ℓ = −Σ_c t_c·log q_c (t one-hot from a class id when sparse; smoothed to t(1 − s) + s/C). From logits:
    /// q = softmax(z) via log-sum-exp, ∂ℓ/∂z = q·Σt − t. From probabilities (Keras):
    /// q = clip(y / Σy, ε, 1−ε), and the gradient goes back through the normalisation.
    package func sample(
        y: UnsafePointer<Float>, z: UnsafePointer<Float>?, t: UnsafePointer<Float>, columns: Int,
        d: UnsafeMutablePointer<Float>?, scale: Double
    ) -> Double {
        let label = sparse ? Int(t[0]) : -1
        let keep = 1 - labelSmoothing
        let spread = labelSmoothing / Double(columns)
        @inline(__always) func target(_ j: Int) -> Double {
            let tj: Double = sparse ? (j == label ? 1 : 0) : Double(t[j])
            return labelSmoothing == 0 ? tj : tj * keep + spread
        }
        var s = 0.0
        if let z {
            var peak = -Double.infinity
            for j in 0..<columns { peak = max(peak, Double(z[j])) }
            var total = 0.0
            var targetSum = 0.0
            for j in 0..<columns { total += Foundation.exp(Double(z[j]) - peak) }
            let logNorm = peak + Foundation.log(total)
            for j in 0..<columns {
                let tj = target(j)
                if tj != 0 { s -= tj * (Double(z[j]) - logNorm) }
                targetSum += tj
            }
            if let d {
                // Softmax in Float as the output layer computes it, when it is that layer's own output.
                let folded = z != y
                for j in 0..<columns {
                    let q = folded ? Double(y[j]) : Foundation.exp(Double(z[j]) - logNorm)
                    d[j] = Float(scale * (q * targetSum - target(j)))
                }
            }
            return s
        }
        var total = 0.0
        for j in 0..<columns { total += Double(y[j]) }
        var dq = [Double](repeating: 0, count: d == nil ? 0 : columns)
        var dot = 0.0
        for j in 0..<columns {
            let raw = Double(y[j]) / total
            let q = min(max(raw, epsilon), 1 - epsilon)
            let tj = target(j)
            if tj != 0 { s -= tj * Foundation.log(q) }
            if d != nil {
                dq[j] = raw > epsilon && raw < 1 - epsilon ? -tj / q : 0
                dot += dq[j] * raw
            }
        }
        if let d { for j in 0..<columns { d[j] = Float(scale * (dq[j] - dot) / total) } }
        return s
    }

}

/// Keras `mean_squared_error` (mean over the last axis).
package struct MeanSquaredError: LossFunction {
    package init() {}
    package func targetWidth(outputWidth: Int) -> Int { outputWidth }
    package func folds(_ activation: Activation) -> Bool { false }
    package func sample(
        y: UnsafePointer<Float>, z: UnsafePointer<Float>?, t: UnsafePointer<Float>, columns: Int,
        d: UnsafeMutablePointer<Float>?, scale: Double
    ) -> Double {
        var s = 0.0
        for j in 0..<columns {
            let e = Double(y[j]) - Double(t[j])
            s += e * e
            if let d { d[j] = Float(scale * 2 * e / Double(columns)) }
        }
        return s / Double(columns)
    }
}

/// Keras's other element-wise losses, each the mean over the last axis of ℓ(y, t)
/// (KL divergence: the sum), as keras/src/losses/losses.py computes them:
///   mean_absolute_error |y − t|;  huber ½e² for |e| ≤ δ, else δ|e| − ½δ²;
///   mean_absolute_percentage_error 100·|y − t| / max(|t|, ε);
///   mean_squared_logarithmic_error (log(max(y, ε) + 1) − log(max(t, ε) + 1))²;
///   log_cosh x + softplus(−2x) − log 2 with x = y − t;  poisson y − t·log(y + ε);
///   kl_divergence t'·log(t'/y') with t', y' clipped to [ε, 1].
/// Derivatives as JAX takes them: sign(e) (0 at 0), clamp(e, −δ, δ), tanh(x),
/// 1 − t/(y + ε), −t'/y' (0 where y is clipped).
package struct Regression: LossFunction {
    public let kind: LossKind
    public let delta: Double
    package init(kind: LossKind, delta: Double = 1) {
        self.kind = kind
        self.delta = delta
    }
    package func targetWidth(outputWidth: Int) -> Int { outputWidth }
    package func folds(_ activation: Activation) -> Bool { false }
    package func sample(
        y: UnsafePointer<Float>, z: UnsafePointer<Float>?, t: UnsafePointer<Float>, columns: Int,
        d: UnsafeMutablePointer<Float>?, scale: Double
    ) -> Double {
        let reduce = kind == .klDivergence ? 1.0 : 1 / Double(columns)
        var s = 0.0
        for j in 0..<columns {
            let yj = Double(y[j])
            let tj = Double(t[j])
            let e = yj - tj
            let value: Double
            let slope: Double
            switch kind {
            case .meanAbsoluteError:
                value = abs(e)
                slope = e > 0 ? 1 : (e < 0 ? -1 : 0)
            case .huber:
                value = abs(e) <= delta ? 0.5 * e * e : delta * abs(e) - 0.5 * delta * delta
                slope = min(max(e, -delta), delta)
            case .logCosh:
                value = e + softplusDouble(-2 * e) - Foundation.log(2.0)
                slope = Foundation.tanh(e)
            case .poisson:
                value = yj - tj * Foundation.log(yj + epsilon)
                slope = 1 - tj / (yj + epsilon)
            case .meanAbsolutePercentageError:
                let divisor = max(abs(tj), epsilon)
                value = 100 * abs(e) / divisor
                slope = 100 * (e > 0 ? 1 : (e < 0 ? -1 : 0)) / divisor
            case .meanSquaredLogarithmicError:
                let first = Foundation.log(max(yj, epsilon) + 1)
                let second = Foundation.log(max(tj, epsilon) + 1)
                value = (first - second) * (first - second)
                slope = yj > epsilon ? 2 * (first - second) / (yj + 1) : 0
            default:  // kl_divergence
                let tc = min(max(tj, epsilon), 1)
                let yc = min(max(yj, epsilon), 1)
                value = tc * Foundation.log(tc / yc)
                slope = yj > epsilon && yj < 1 ? -tc / yc : 0
            }
            s += value
            if let d { d[j] = Float(scale * reduce * slope) }
        }
        return s * reduce
    }
}

/// Keras `binary_focal_crossentropy` (mean over the last axis), keras/src/losses/losses.py:
/// t smoothed as BCE's; p = σ(y) with from_logits, else y; bce on p clipped to [ε, 1−ε];
/// p_t = t·p + (1−t)(1−p);  ℓ = (1 − p_t)^γ · bce, × (t·α + (1−t)(1−α)) with class balancing.
/// ∂ℓ/∂p = w·[−γ(1−p_t)^{γ−1}(2t − 1)·bce + (1−p_t)^γ·∂bce/∂p] (∂bce/∂p zero where clipped), × p(1−p) from logits.
package struct BinaryFocalCrossentropy: LossFunction {
    public let options: LossOptions
    package init(_ options: LossOptions) { self.options = options }
    package func targetWidth(outputWidth: Int) -> Int { outputWidth }
    package func folds(_ activation: Activation) -> Bool { false }
    package func sample(
        y: UnsafePointer<Float>, z: UnsafePointer<Float>?, t: UnsafePointer<Float>, columns: Int,
        d: UnsafeMutablePointer<Float>?, scale: Double
    ) -> Double {
        let ls = options.labelSmoothing
        let gamma = options.gamma
        let alpha = options.alpha
        let perColumn = 1 / Double(columns)
        var s = 0.0
        for j in 0..<columns {
            let tj = ls == 0 ? Double(t[j]) : Double(t[j]) * (1 - ls) + 0.5 * ls
            let p = z.map { Double(sigmoid($0[j])) } ?? Double(y[j])
            let pc = min(max(p, epsilon), 1 - epsilon)
            let bce = -(tj * Foundation.log(pc) + (1 - tj) * Foundation.log(1 - pc))
            let pt = tj * p + (1 - tj) * (1 - p)
            let rest = 1 - pt
            let balance = options.applyClassBalancing ? tj * alpha + (1 - tj) * (1 - alpha) : 1
            let focal = Foundation.pow(rest, gamma)
            s += balance * focal * bce
            if let d {
                let dBCE = p > epsilon && p < 1 - epsilon ? -tj / pc + (1 - tj) / (1 - pc) : 0
                let dFocal = rest == 0 && gamma < 1 ? 0 : -gamma * Foundation.pow(rest, gamma - 1) * (2 * tj - 1)
                var slope = balance * (dFocal * bce + focal * dBCE)
                if z != nil { slope *= p * (1 - p) }
                d[j] = Float(scale * perColumn * slope)
            }
        }
        return s * perColumn
    }
}

/// log(1 + e^x) in Double without overflow.
@inline(__always) func softplusDouble(_ x: Double) -> Double {
    x > 0 ? x + Foundation.log1p(Foundation.exp(-x)) : Foundation.log1p(Foundation.exp(x))
}
