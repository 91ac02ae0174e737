// The compiled metrics (Metrics.swift) on small cases worked out by hand from
// Keras's formulas (and checked against keras.metrics on the same values):
// AUC by its bucketed confusion counts (ROC and Davis–Goadrich PR), precision
// and recall at a threshold, top-k, weighted MAE and RMSE — and that sums of
// any split of the samples give the same result (the rank reduction).

import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class MetricTests: XCTestCase {
    /// The metric over rows (p, t, w), accumulated in `parts` pieces and the sums added, as ranks do.
    private func value(_ metric: Metric, _ rows: [([Float], [Float], Double)], parts: Int = 1) -> Double {
        var total = [Double](repeating: 0, count: metric.slotCount)
        for piece in 0..<parts {
            var sums = [Double](repeating: 0, count: metric.slotCount)
            for (i, (p, t, w)) in rows.enumerated() where i % parts == piece {
                p.withUnsafeBufferPointer { pp in
                    t.withUnsafeBufferPointer { tp in
                        sums.withUnsafeMutableBufferPointer { s in
                            metric.accumulate(
                                p: pp.baseAddress!, t: tp.baseAddress!, columns: p.count, targetColumns: t.count,
                                weight: w, into: s.baseAddress!)
                        }
                    }
                }
            }
            for k in total.indices { total[k] += sums[k] }
        }
        return total.withUnsafeBufferPointer { metric.result($0.baseAddress!) }
    }

    private let binary: [([Float], [Float], Double)] = [
        ([0.1], [0], 1), ([0.4], [0], 1), ([0.35], [1], 1), ([0.8], [1], 1),
    ]

    func testAUCFromItsBucketedCounts() {
        // 3 thresholds (−ε, 0.5, 1+ε): buckets 0, 0, 0, 1 → tp [2, 1, 0], fp [2, 0, 0]; ROC = (1 − 0)·(1 + ½)/2.
        let roc = Metric(
            name: "auc", kind: .auc(curve: .roc, thresholds: 3, summation: .interpolation, fromLogits: false), keras: ""
        )
        XCTAssertEqual(value(roc, binary), 0.75, accuracy: 1e-12)
        // PR: ⅓·(1 + ⅔·ln 4)/2 + 1·(1 + 0)/2.
        let pr = Metric(
            name: "pr", kind: .auc(curve: .pr, thresholds: 3, summation: .interpolation, fromLogits: false), keras: "")
        XCTAssertEqual(value(pr, binary), (1 + 2.0 / 3 * log(4.0)) / 6 + 0.5, accuracy: 1e-12)
        // With 200 thresholds ROC AUC is the pair count: 3 of the 4 (positive, negative) pairs are ordered.
        let fine = Metric(
            name: "auc", kind: .auc(curve: .roc, thresholds: 200, summation: .interpolation, fromLogits: false),
            keras: "")
        XCTAssertEqual(value(fine, binary), 0.75, accuracy: 1e-12)
        // From logits: σ keeps the order.
        let logits = binary.map { ([Float(log(Double($0.0[0]) / (1 - Double($0.0[0]))))], $0.1, $0.2) }
        let fromLogits = Metric(
            name: "auc", kind: .auc(curve: .roc, thresholds: 200, summation: .interpolation, fromLogits: true),
            keras: "")
        XCTAssertEqual(value(fromLogits, logits), 0.75, accuracy: 1e-12)
        XCTAssertEqual(value(fine, binary, parts: 3), value(fine, binary), "any split of the samples: the same counts")
    }

    func testPrecisionRecallTopKAndWeightedMeans() {
        // p > 0.3: 0.4 (false), 0.35 and 0.8 (true) → precision 2/3, recall 2/2.
        XCTAssertEqual(
            value(Metric(name: "p", kind: .precision(threshold: 0.3), keras: ""), binary), 2.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(value(Metric(name: "r", kind: .recall(threshold: 0.3), keras: ""), binary), 1, accuracy: 1e-12)
        XCTAssertEqual(value(Metric(name: "r", kind: .recall(threshold: 0.5), keras: ""), binary), 0.5, accuracy: 1e-12)
        // Top-2 of class ids 2, 0, 1: only the first is within its row's two largest.
        let rows: [([Float], [Float], Double)] = [
            ([0.1, 0.3, 0.6], [2], 1), ([0.2, 0.5, 0.3], [0], 1), ([0.5, 0.2, 0.3], [1], 1),
        ]
        XCTAssertEqual(
            value(Metric(name: "k", kind: .topK(k: 2, sparse: true), keras: ""), rows), 1.0 / 3, accuracy: 1e-12)
        // Weighted (1 and 3): MAE (1·0.25 + 3·1)/4; RMSE √((1·0.25 + 3·2)/(1·2 + 3·2)).
        let regression: [([Float], [Float], Double)] = [([1.5, 2], [1, 2], 1), ([2, 5], [3, 4], 3)]
        XCTAssertEqual(
            value(Metric(name: "mae", kind: .meanAbsoluteError, weighted: true, keras: ""), regression), 0.8125,
            accuracy: 1e-12)
        XCTAssertEqual(
            value(Metric(name: "rmse", kind: .rootMeanSquaredError, weighted: true, keras: ""), regression),
            (6.25 / 8).squareRoot(), accuracy: 1e-12)
        // Unweighted, the same rows count once each.
        XCTAssertEqual(
            value(Metric(name: "mae", kind: .meanAbsoluteError, keras: ""), regression), (0.25 + 1) / 2, accuracy: 1e-12
        )
        // Binary accuracy at a threshold of 0.38: 0.1 ✓, 0.4 ✗, 0.35 ✗, 0.8 ✓.
        XCTAssertEqual(
            value(Metric(name: "b", kind: .binaryAccuracy(threshold: 0.38), keras: ""), binary), 0.5, accuracy: 1e-12)
    }
}
