// The compiled metrics beyond a head's accuracy (docs/SPEC.md §9), as Keras 3 computes
// them (keras/src/metrics/): each keeps SUMS — Σw·value and Σw, confusion
// counts, AUC's per-bucket counts — that ranks add with the step's figures and
// that add over an epoch or a validation set, so every value is the global one
// for any rank count (never an average of per-rank averages). `result` turns
// the reduced sums into Keras's number.

import Foundation

public enum MetricKind: Sendable, Codable, Equatable {
    /// Means over samples (weighted by w) of a per-sample value.
    case binaryAccuracy(threshold: Double)
    case categoricalAccuracy, sparseCategoricalAccuracy
    case topK(k: Int, sparse: Bool)
    case meanAbsoluteError, meanSquaredError
    /// 100·mean(|t − y| / max(|t|, ε)) and mean((log(max(y, ε) + 1) − log(max(t, ε) + 1))²) per sample.
    case meanAbsolutePercentageError, meanSquaredLogarithmicError
    /// √(Σ w·(y − t)² / Σ w·columns).
    case rootMeanSquaredError
    /// Over every element: prediction > threshold is positive, a non-zero target is true.
    case precision(threshold: Double)
    case recall(threshold: Double)
    /// Keras's AUC with evenly spaced thresholds (num_thresholds), over every element.
    case auc(curve: Curve, thresholds: Int, summation: Summation, fromLogits: Bool)
    /// Keras's IoU family (metrics/iou_metrics.py) from a `classes`² confusion matrix over every
    /// element (rows: true class, columns: predicted), summed over the global batch and the whole set:
    /// the mean IoU of `targetClasses`. A class id is the value cast to an integer (`sparse…`) or the
    /// argmax of the last axis; BinaryIoU's prediction is 1 at or above `threshold`. Out-of-range ids
    /// and `ignoreClass` count for nothing; `integerWeights`: the weights cast to integers, toward zero,
    /// as Keras does with the metric's default dtype (int32).
    case iou(
        classes: Int, targetClasses: [Int], sparseTrue: Bool, sparsePred: Bool, threshold: Double?,
        ignoreClass: Int?, integerWeights: Bool)

    public enum Curve: String, Sendable, Codable {
        case roc = "ROC"
        case pr = "PR"
    }
    public enum Summation: String, Sendable, Codable { case interpolation, minoring, majoring }
}

/// One metric of one head: its reported name (without the output prefix) and
/// whether it takes the sample weights (Keras's `weighted_metrics`).
public struct Metric: Sendable, Codable, Equatable {
    public var name: String
    public var kind: MetricKind
    public var weighted: Bool
    /// How Keras's compile config wrote it (to write it back into model.keras).
    package var keras: String
    package init(name: String, kind: MetricKind, weighted: Bool = false, keras: String) {
        self.name = name
        self.kind = kind
        self.weighted = weighted
        self.keras = keras
    }

    /// Doubles of sums this metric keeps.
    package var slotCount: Int {
        switch kind {
        case .auc(_, let n, _, _): return 2 * n  // per bucket: Σw of true and of false elements
        case .iou(let n, _, _, _, _, _, _): return n * n
        default: return 2
        }
    }

    /// Adds one sample (prediction row `p` of `columns`, target row `t` of `targetColumns`, weight w).
    @inline(__always)
    package func accumulate(
        p: UnsafePointer<Float>, t: UnsafePointer<Float>, columns: Int, targetColumns: Int,
        weight: Double, into s: UnsafeMutablePointer<Double>
    ) {
        let w = weighted ? weight : 1
        func mean(_ value: Double) {
            s[0] += w * value
            s[1] += w
        }
        switch kind {
        case .binaryAccuracy(let threshold):
            var hits = 0
            for j in 0..<columns where t[j] == (Double(p[j]) > threshold ? 1 : 0) { hits += 1 }
            mean(Double(hits) / Double(columns))
        case .categoricalAccuracy:
            mean(argmaxOf(p, columns) == argmaxOf(t, targetColumns) ? 1 : 0)
        case .sparseCategoricalAccuracy:
            mean(Float(argmaxOf(p, columns)) == t[0] ? 1 : 0)
        case .topK(let k, let sparse):
            // JAX's in_top_k: the target's score is at least the k-th largest.
            let c = sparse ? Int(t[0]) : argmaxOf(t, targetColumns)
            guard c >= 0 && c < columns else {
                mean(0)
                return
            }
            var greater = 0
            for j in 0..<columns where p[j] > p[c] { greater += 1 }
            mean(greater < k ? 1 : 0)
        case .meanAbsoluteError, .meanSquaredError:
            var sum = 0.0
            for j in 0..<columns {
                let e = Double(p[j]) - Double(t[j])
                sum += kind == .meanAbsoluteError ? abs(e) : e * e
            }
            mean(sum / Double(columns))
        case .meanAbsolutePercentageError:
            // Keras's loss function, in float32 as it computes it.
            var sum: Float = 0
            for j in 0..<columns { sum += abs((t[j] - p[j]) / max(abs(t[j]), 1e-7)) }
            mean(Double(100 * (sum / Float(columns))))
        case .meanSquaredLogarithmicError:
            var sum: Float = 0
            for j in 0..<columns {
                let e = log(max(p[j], 1e-7) + 1) - log(max(t[j], 1e-7) + 1)
                sum += e * e
            }
            mean(Double(sum / Float(columns)))
        case .rootMeanSquaredError:
            for j in 0..<columns {
                let e = Double(p[j]) - Double(t[j])
                s[0] += w * e * e
            }
            s[1] += w * Double(columns)
        case .precision(let threshold), .recall(let threshold):
            // s[0] true positives; s[1] false positives (precision) or false negatives (recall).
            let isPrecision: Bool = { if case .precision = kind { return true } else { return false } }()
            for j in 0..<columns {
                let positive = Double(p[j]) > threshold
                let truth = t[j] != 0
                if positive && truth {
                    s[0] += w
                } else if isPrecision ? (positive && !truth) : (!positive && truth) {
                    s[1] += w
                }
            }
        case .auc(_, let n, _, let fromLogits):
            // Keras's evenly-spaced path: bucket = max(ceil(p·(n−1)) − 1, 0) in float32, p clipped to [0, 1].
            for j in 0..<columns {
                var x = fromLogits ? sigmoid(p[j]) : p[j]
                x = min(max(x, 0), 1)
                let bucket = max(Int((x * Float(n - 1)).rounded(.up)) - 1, 0)
                if t[j] != 0 { s[bucket] += w } else { s[n + bucket] += w }
            }
        case .iou(let n, _, let sparseTrue, let sparsePred, let threshold, let ignoreClass, let integerWeights):
            let truth = sparseTrue ? integerID(t[0]) : argmaxOf(t, targetColumns)
            let predicted =
                threshold.map { Double(p[0]) >= $0 ? 1 : 0 } ?? (sparsePred ? integerID(p[0]) : argmaxOf(p, columns))
            guard let truth, let predicted, (0..<n).contains(truth), (0..<n).contains(predicted),
                truth != ignoreClass
            else { return }
            s[truth * n + predicted] += integerWeights ? w.rounded(.towardZero) : w
        }
    }

    /// Keras's value from the reduced sums.
    package func result(_ s: UnsafePointer<Double>) -> Double {
        func ratio(_ a: Double, _ b: Double) -> Double { b == 0 ? 0 : a / b }  // divide_no_nan
        switch kind {
        case .rootMeanSquaredError: return ratio(s[0], s[1]).squareRoot()
        case .precision, .recall: return ratio(s[0], s[0] + s[1])
        case .iou(let n, let targets, _, _, _, _, _):
            // Per class: TP / (predicted + true − TP); classes never seen (denominator 0) are left out
            // of the mean. Keras's epsilons kept: TP / (d + 1e-7), Σ / (valid + 1e-7).
            var sum = 0.0
            var valid = 0.0
            for k in targets {
                var predicted = 0.0
                var truth = 0.0
                for j in 0..<n {
                    predicted += s[j * n + k]
                    truth += s[k * n + j]
                }
                let tp = s[k * n + k]
                let denominator = predicted + truth - tp
                guard denominator > 1e-9 else { continue }
                sum += tp / (denominator + 1e-7)
                valid += 1
            }
            return sum / (valid + 1e-7)
        case .auc(let curve, let n, let summation, _):
            // Counts at threshold i: the elements in buckets ≥ i.
            var tp = [Double](repeating: 0, count: n)
            var fp = tp
            var t = 0.0
            var f = 0.0
            for i in stride(from: n - 1, through: 0, by: -1) {
                t += s[i]
                f += s[n + i]
                tp[i] = t
                fp[i] = f
            }
            let fn = tp.map { t - $0 }
            let tn = fp.map { f - $0 }
            if curve == .pr && summation == .interpolation {
                // interpolate_pr_auc (Davis & Goadrich), term by term as Keras writes it.
                var area = 0.0
                for i in 0..<(n - 1) {
                    let dtp = tp[i] - tp[i + 1]
                    let pA = tp[i] + fp[i]
                    let pB = tp[i + 1] + fp[i + 1]
                    let slope = ratio(dtp, max(pA - pB, 0))
                    let intercept = tp[i + 1] - slope * pB
                    let pRatio = pA > 0 && pB > 0 ? ratio(pA, max(pB, 0)) : 1
                    area += ratio(slope * (dtp + intercept * Foundation.log(pRatio)), max(tp[i + 1] + fn[i + 1], 0))
                }
                return area
            }
            let recall = (0..<n).map { ratio(tp[$0], tp[$0] + fn[$0]) }
            let x: [Double]
            let y: [Double]
            if curve == .roc {
                x = (0..<n).map { ratio(fp[$0], fp[$0] + tn[$0]) }
                y = recall
            } else {
                x = recall
                y = (0..<n).map { ratio(tp[$0], tp[$0] + fp[$0]) }
            }
            var area = 0.0
            for i in 0..<(n - 1) {
                let height: Double
                switch summation {
                case .interpolation: height = (y[i] + y[i + 1]) / 2
                case .minoring: height = min(y[i], y[i + 1])
                case .majoring: height = max(y[i], y[i + 1])
                }
                area += (x[i] - x[i + 1]) * height
            }
            return area
        default: return ratio(s[0], s[1])
        }
    }
}

/// A value as Keras's cast to int32 makes it a class id (toward zero); nil when it has none.
@inline(__always) private func integerID(_ x: Float) -> Int? {
    x.isFinite && abs(x) < 2e9 ? Int(x.rounded(.towardZero)) : nil
}

@inline(__always) private func argmaxOf(_ p: UnsafePointer<Float>, _ n: Int) -> Int {
    var best = 0
    for j in 1..<max(n, 1) where p[j] > p[best] { best = j }
    return best
}

extension Head.Accuracy {
    /// The accuracy figures a plain (unweighted) accuracy metric can take.
    package init?(metric m: Metric) {
        guard !m.weighted else { return nil }
        switch m.kind {
        case .binaryAccuracy(threshold: 0.5): self.init(name: m.name, kind: .binary, keras: m.keras)
        case .categoricalAccuracy: self.init(name: m.name, kind: .categorical, keras: m.keras)
        case .sparseCategoricalAccuracy: self.init(name: m.name, kind: .sparseCategorical, keras: m.keras)
        default: return nil
        }
    }
}

extension Head {
    /// Doubles of sums all of this head's metrics keep, and where each starts.
    package var metricSlotCount: Int { metrics.reduce(0) { $0 + $1.slotCount } }

    /// Each metric's value from this head's reduced sums `s` (metricSlotCount doubles).
    package func metricResults(_ s: UnsafePointer<Double>) -> [Double] {
        var offset = 0
        return metrics.map { m in
            defer { offset += m.slotCount }
            return m.result(s + offset)
        }
    }
}
