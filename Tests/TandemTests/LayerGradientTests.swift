// Central-difference gradient checks: every layer on its own (L = Σ out ⊙ R
// with a fixed random R), then the whole headline model's weighted total loss
// with loss weights ≠ 1, sample weights, class weights and L2.
// Tolerances: ε = 1e-3 on Float32 values of order 1 gives a numerical
// derivative good to ~1e-4 absolute (Float32 rounding of L / 2ε) and O(ε²)
// truncation, so atol 5e-4 plus rtol 1e-2 separates real bugs (errors of
// order the gradient itself) from rounding.

import Foundation
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class LayerGradientTests: XCTestCase {
    func testDenseEveryActivation() {
        for activation in Activation.allCases {
            let x = InputLayer(name: "x", kind: .features, width: 4)
            let dense = Dense(name: "d", units: 5, activation: activation, input: x)
            let model = Model(inputs: [x], outputs: [dense], maxBatch: 3)
            checkLayer(
                model, terminal: dense, batch: 3, seed: 11,
                prepare: { m in
                    guard [.relu, .relu6, .leakyRelu, .selu].contains(activation) else { return }
                    // Keep relu inputs away from the kink: shift the bias until every |z| > 10ε.
                    m.forward(batch: 3)
                    let bias = m.parameters.value(m.parameters.view("d/bias")!)
                    for j in 0..<5 {
                        let near = (0..<3).contains { abs(dense.logits[$0 * 5 + j]) < 10 * eps }
                        if near { bias[j] += 0.05 }
                    }
                })
        }
    }

    func testConcatenate() {
        let a = InputLayer(name: "a", kind: .features, width: 2)
        let b = InputLayer(name: "b", kind: .features, width: 3)
        let cat = Concatenate(name: "c", inputs: [a, b])
        let model = Model(inputs: [a, b], outputs: [cat], maxBatch: 4)
        checkLayer(model, terminal: cat, batch: 4, seed: 12)
    }

    func testEmbeddingSumsRepeatedTokens() {
        let ids = InputLayer(name: "ids", kind: .tokens, width: 4)
        let emb = Embedding(name: "e", vocabulary: 7, dimension: 3, input: ids)
        let model = Model(inputs: [ids], outputs: [emb], maxBatch: 3)
        let tokens: [Int32] = [1, 1, 6, 0, 3, 1, 6, 6, 2, 0, 0, 1]  // repeats within and across samples
        checkLayer(
            model, terminal: emb, batch: 3, seed: 13,
            prepare: { _ in
                for i in 0..<12 { ids.tokens![i] = tokens[i] }
            })
        // Row 5 never occurs: its gradient is exactly zero.
        let g = model.parameters.gradient(model.parameters.view("e/embeddings")!)
        XCTAssertEqual((15..<18).map { g[$0] }, [0, 0, 0])
    }

    func testLSTMFullBackpropagationThroughTime() {
        let x = InputLayer(name: "x", kind: .features, width: 4 * 3)  // T = 4 steps of D = 3
        let lstm = LSTM(name: "lstm", units: 5, input: x, steps: 4)
        let model = Model(inputs: [x], outputs: [lstm], maxBatch: 3)
        checkLayer(model, terminal: lstm, batch: 3, seed: 14)
    }

    func testDenseOnAnInputFormsItsGradientOnlyWhenWanted() {
        // Training never reads a model input's gradient, so the dx product is skipped there.
        let x = InputLayer(name: "x", kind: .features, width: 3)
        let dense = Dense(name: "d", units: 2, input: x)
        let model = Model(inputs: [x], outputs: [dense], maxBatch: 2)
        var rng = SeededGenerator(seed: 2)
        fillUniform(model.parameters.values, model.parameters.count, &rng)
        fillUniform(x.output.values, 6, &rng)
        func inputGradient() -> [Float] {
            model.forward(batch: 2)
            for i in 0..<4 { dense.output.gradients[i] = 1 }
            model.backward(batch: 2)
            return (0..<6).map { x.output.gradients[$0] }
        }
        XCTAssertEqual(inputGradient(), [Float](repeating: 0, count: 6))
        x.wantsGradient = true
        XCTAssertTrue(inputGradient().contains { $0 != 0 })
    }

    func testLSTMSingleStep() {
        let x = InputLayer(name: "x", kind: .features, width: 2)
        let lstm = LSTM(name: "lstm", units: 3, input: x, steps: 1)
        let model = Model(inputs: [x], outputs: [lstm], maxBatch: 2)
        checkLayer(model, terminal: lstm, batch: 2, seed: 15)
    }
}
