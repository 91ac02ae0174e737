// The losses Keras 3.15 added beyond the first ten (Losses+Margin.swift, Regression's MAPE and
// MSLE): each value against Keras's formula worked by hand on one row, and each gradient against
// central differences of the loss itself (the model's backward is the same for every loss).

import Foundation
import XCTest

@testable import TandemCore

final class MarginLossTests: XCTestCase {
    private func value(
        _ kind: LossKind, _ y: [Float], _ t: [Float], options: LossOptions = LossOptions(), logits: Bool = false
    ) -> Double {
        y.withUnsafeBufferPointer { yp in
            t.withUnsafeBufferPointer { tp in
                kind.function(options).sample(
                    y: yp.baseAddress!, z: logits ? yp.baseAddress! : nil, t: tp.baseAddress!, columns: y.count,
                    d: nil, scale: 1)
            }
        }
    }

    private func gradient(
        _ kind: LossKind, _ y: [Float], _ t: [Float], options: LossOptions = LossOptions(), logits: Bool = false
    ) -> [Float] {
        var d = [Float](repeating: 0, count: y.count)
        y.withUnsafeBufferPointer { yp in
            t.withUnsafeBufferPointer { tp in
                _ = kind.function(options).sample(
                    y: yp.baseAddress!, z: logits ? yp.baseAddress! : nil, t: tp.baseAddress!, columns: y.count,
                    d: &d, scale: 1)
            }
        }
        return d
    }

    func testValuesByHand() {
        let e = 1e-7
        // hinge: 0/1 targets become −1/+1.  t' = [1, −1, 1], y = [0.3, 0.5, 2]: margins 0.7, 1.5, 0.
        XCTAssertEqual(value(.hinge, [0.3, 0.5, 2], [1, 0, 1]), (0.7 + 1.5 + 0) / 3, accuracy: 1e-6)
        XCTAssertEqual(value(.squaredHinge, [0.3, 0.5, 2], [1, 0, 1]), (0.49 + 2.25) / 3, accuracy: 1e-6)
        // Already ±1: unchanged (a row with −1 is not binary).
        XCTAssertEqual(value(.hinge, [0.3, 0.5], [1, -1]), (0.7 + 1.5) / 2, accuracy: 1e-6)
        // categorical hinge: pos = 0.2, neg = max(0.5, 0, 0.3) = 0.5 → 1.3.
        XCTAssertEqual(value(.categoricalHinge, [0.5, 0.2, 0.3], [0, 1, 0]), 1.3, accuracy: 1e-6)
        XCTAssertEqual(value(.meanAbsolutePercentageError, [1.5, -2], [2, -1]), 100 * (0.25 + 1) / 2, accuracy: 1e-4)
        XCTAssertEqual(
            value(.meanSquaredLogarithmicError, [1, 0], [3, 1]),
            (pow(log(2.0) - log(4.0), 2) + pow(log(1 + e) - log(2.0), 2)) / 2, accuracy: 1e-6)
        // cosine similarity: −cos of the angle between [3, 4] and [4, 3] = −24/25.
        XCTAssertEqual(value(.cosineSimilarity, [3, 4], [4, 3]), -24.0 / 25, accuracy: 1e-6)
        // dice: I = 0.6 + 1.0, so 1 − 2·1.6 / (2 + 1.9).
        XCTAssertEqual(value(.dice, [0.6, 0.3, 1.0], [1, 0, 1]), 1 - 3.2 / (3.9 + e), accuracy: 1e-6)
        // tversky (α 0.7, β 0.3): I = 1.6, fp = Σ(1 − y)t = 0.4, fn = Σy(1 − t) = 0.3.
        var tversky = LossOptions()
        tversky.alpha = 0.7
        tversky.beta = 0.3
        XCTAssertEqual(
            value(.tversky, [0.6, 0.3, 1.0], [1, 0, 1], options: tversky), 1 - 1.6 / (1.6 + 0.28 + 0.09 + e),
            accuracy: 1e-6)
        // categorical focal: α(1 − q)^γ·(−log q) at the target, q = y/Σy.
        var focal = LossOptions()
        focal.alpha = 0.4
        focal.gamma = 1.5
        let q = 0.5 / 1.0
        XCTAssertEqual(
            value(.categoricalFocalCrossentropy, [0.2, 0.5, 0.3], [0, 1, 0], options: focal),
            0.4 * pow(1 - q, 1.5) * -log(q), accuracy: 1e-6)
        // generalized cross-entropy: (1 − p^q)/q at the class id.
        var gce = LossOptions()
        gce.q = 0.7
        XCTAssertEqual(
            value(.categoricalGeneralizedCrossEntropy, [0.2, 0.5, 0.3], [2], options: gce),
            (1 - pow(0.3, 0.7)) / 0.7, accuracy: 1e-6)
    }

    func testGradientsAgainstCentralDifferences() {
        var tversky = LossOptions()
        tversky.alpha = 0.7
        tversky.beta = 0.3
        var focal = LossOptions()
        focal.alpha = 0.4
        focal.gamma = 1.5
        focal.labelSmoothing = 0.1
        var gce = LossOptions()
        gce.q = 0.7
        let cases: [(LossKind, [Float], [Float], LossOptions, Bool)] = [
            (.hinge, [0.3, -0.5, 0.8], [1, 0, 1], LossOptions(), false),
            (.squaredHinge, [0.3, -0.5, 0.8], [1, 0, 1], LossOptions(), false),
            (.categoricalHinge, [0.5, 0.2, 0.3], [0, 1, 0], LossOptions(), false),
            (.meanAbsolutePercentageError, [1.5, -2, 0.7], [2, -1, 1.1], LossOptions(), false),
            (.meanSquaredLogarithmicError, [1, 0.4, 2.5], [3, 1, 0.2], LossOptions(), false),
            (.cosineSimilarity, [3, 4, -1], [4, 3, 0.5], LossOptions(), false),
            (.dice, [0.6, 0.3, 0.9], [1, 0, 1], LossOptions(), false),
            (.tversky, [0.6, 0.3, 0.9], [1, 0, 1], tversky, false),
            (.categoricalFocalCrossentropy, [0.2, 0.5, 0.3], [0, 1, 0], focal, false),
            (.categoricalFocalCrossentropy, [0.4, -1.2, 0.9], [0, 0, 1], focal, true),
            (.categoricalGeneralizedCrossEntropy, [0.2, 0.5, 0.3], [1], gce, false),
        ]
        for (kind, y, t, options, logits) in cases {
            let d = gradient(kind, y, t, options: options, logits: logits)
            for j in y.indices {
                let h: Float = 1e-3
                var up = y
                var down = y
                up[j] += h
                down[j] -= h
                let numeric =
                    (value(kind, up, t, options: options, logits: logits)
                        - value(kind, down, t, options: options, logits: logits)) / Double(2 * h)
                XCTAssertEqual(
                    Double(d[j]), numeric, accuracy: 2e-3 * max(1, abs(numeric)),
                    "\(kind.rawValue)\(logits ? " (logits)" : "") column \(j)")
            }
        }
    }
}
