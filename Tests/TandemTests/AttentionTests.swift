// MultiHeadAttention: gradients checked numerically for every option (self and cross attention with
// different query and key lengths, a separate key, odd head counts and key dims, value_dim and
// output_shape, no bias, causal and sliding-window masks), and its forward against attention
// written out in Double.

import XCTest

@testable import TandemCore

final class AttentionTests: XCTestCase {
    func testSelfAttentionGradients() {
        let x = InputLayer(name: "x", kind: .features, shape: [4, 5])
        let a = MultiHeadAttention(name: "mha", query: x, value: x, heads: 3, keyDim: 2)
        checkLayer(Model(inputs: [x], outputs: [a], maxBatch: 3), terminal: a, batch: 3, seed: 31)
    }

    func testCrossAttentionWithKeyValueDimOutputWidthNoBiasAndCausalMask() {
        let q = InputLayer(name: "q", kind: .features, shape: [3, 4])
        let v = InputLayer(name: "v", kind: .features, shape: [5, 3])
        let k = InputLayer(name: "k", kind: .features, shape: [5, 2])
        for (causal, bias) in [(false, true), (true, false)] {
            let a = MultiHeadAttention(
                name: "mha", query: q, value: v, key: k, heads: 2, keyDim: 3, valueDim: 4, outputWidth: 6,
                useBias: bias, causal: causal)
            checkLayer(Model(inputs: [q, v, k], outputs: [a], maxBatch: 2), terminal: a, batch: 2, seed: 32)
        }
    }

    func testCausalSlidingWindowGradients() {
        let x = InputLayer(name: "x", kind: .features, shape: [6, 4])
        let a = MultiHeadAttention(name: "mha", query: x, value: x, heads: 1, keyDim: 5, causal: true, window: 2)
        checkLayer(Model(inputs: [x], outputs: [a], maxBatch: 2), terminal: a, batch: 2, seed: 33)
    }

    /// Padding masks from token ids (0: padding) on the query and on the value/key steps: a padded query
    /// step attends uniformly and gets no gradient through its logits; a padded key step gets probability 0.
    func testPaddingMaskGradientsAndProbabilities() {
        let ids = InputLayer(name: "ids", kind: .tokens, shape: [5])
        let x = InputLayer(name: "x", kind: .features, shape: [5, 4])
        let mask = SequenceMask(name: "mask", tokens: ids)
        let a = MultiHeadAttention(
            name: "mha", query: x, value: x, heads: 2, keyDim: 3, causal: true, masks: [mask, mask])
        let model = Model(inputs: [ids, x], outputs: [a], maxBatch: 3)
        // Sample 0 unpadded, sample 1's last two steps padding, sample 2's first step too (a query row with
        // nothing allowed under the causal mask: step 0 may see only key 0, which is padding).
        let tokens: [Int32] = [3, 1, 4, 1, 5, 9, 2, 6, 0, 0, 0, 3, 5, 8, 9]
        checkLayer(model, terminal: a, batch: 3, seed: 36) { _ in ids.tokens!.update(from: tokens, count: 15) }
        model.forward(batch: 3)
        // Uniform where nothing is allowed; none anywhere else on a padded key.
        XCTAssertEqual(a.attentionRowForTesting(sample: 2, head: 0, step: 0), [Float](repeating: 0.2, count: 5))
        let row = a.attentionRowForTesting(sample: 2, head: 1, step: 3)  // key 0 padding, key 4 in the future
        XCTAssertEqual(row[0], 0)
        XCTAssertEqual(row[4], 0)
        XCTAssertGreaterThan(row[1] * row[2] * row[3], 0)
        XCTAssertEqual(row.reduce(0, +), 1, accuracy: 1e-6)
    }

    /// Dropout on the probabilities (Keras's einsum path: the query scaled first, a row with nothing allowed
    /// zero): gradients through a fixed mask, the mask a function of the sample's position (not of the batch
    /// it lands in), and inference without it.
    func testDropoutGradientsAndDraws() {
        let ids = InputLayer(name: "ids", kind: .tokens, shape: [4])
        let x = InputLayer(name: "x", kind: .features, shape: [4, 3])
        let mask = SequenceMask(name: "mask", tokens: ids)
        let a = MultiHeadAttention(
            name: "mha", query: x, value: x, heads: 2, keyDim: 3, causal: true, masks: [mask, mask], dropout: 0.3)
        let model = Model(inputs: [ids, x], outputs: [a], maxBatch: 3)
        model.dropoutKeys.seed = 7
        let tokens: [Int32] = [3, 1, 4, 1, 0, 2, 6, 5, 9, 2, 0, 0]
        checkLayer(model, terminal: a, batch: 3, seed: 37) { _ in ids.tokens!.update(from: tokens, count: 12) }
        XCTAssertEqual(a.attentionRowForTesting(sample: 1, head: 0, step: 0), [0, 0, 0, 0], "nothing allowed: zero")
        // Sample 2 alone at position 2 draws what it drew as row 2 of the batch.
        model.dropoutKeys.firstPosition = 0
        model.forward(batch: 3, training: true)
        let whole = (0..<12).map { a.output.values[2 * 12 + $0] }  // [T, E] = [4, 3] per sample
        let row = (0..<12).map { x.output.values[24 + $0] }
        x.output.values.update(from: row, count: 12)
        ids.tokens!.update(from: Array(tokens[8...]), count: 4)
        model.dropoutKeys.firstPosition = 2
        model.forward(batch: 1, training: true)
        XCTAssertEqual((0..<12).map { a.output.values[$0] }, whole)
        model.forward(batch: 1, training: false)
        XCTAssertNotEqual((0..<12).map { a.output.values[$0] }, whole, "inference drops nothing")
    }

    /// The forward pass against the definition in Double: projections, scaled products, masked softmax.
    func testForwardMatchesTheDefinition() {
        let (B, T, S, D, H, K, V, E) = (2, 3, 4, 5, 2, 3, 2, 4)
        let q = InputLayer(name: "q", kind: .features, shape: [T, D])
        let v = InputLayer(name: "v", kind: .features, shape: [S, D])
        let a = MultiHeadAttention(
            name: "mha", query: q, value: v, heads: H, keyDim: K, valueDim: V, outputWidth: E, causal: true, window: 2)
        let model = Model(inputs: [q, v], outputs: [a], maxBatch: B)
        var rng = SeededGenerator(seed: 34)
        fillUniform(model.parameters.values, model.parameters.count, &rng, -0.7, 0.7)
        fillUniform(q.output.values, B * T * D, &rng)
        fillUniform(v.output.values, B * S * D, &rng)
        model.forward(batch: B)
        let store = model.parameters
        func w(_ name: String) -> [Double] {
            let view = store.view("mha/\(name)")!
            return (0..<view.count).map { Double(store.value(view)[$0]) }
        }
        let (wq, bq, wk, bk, wv, bv, wo, bo) = (
            w("query/kernel"), w("query/bias"), w("key/kernel"), w("key/bias"), w("value/kernel"), w("value/bias"),
            w("attention_output/kernel"), w("attention_output/bias")
        )
        for b in 0..<B {
            func x(_ layer: InputLayer, _ steps: Int, _ t: Int, _ d: Int) -> Double {
                Double(layer.output.values[(b * steps + t) * D + d])
            }
            var heads = [[Double]](repeating: [Double](repeating: 0, count: H * V), count: T)
            for h in 0..<H {
                func project(
                    _ layer: InputLayer, _ steps: Int, _ t: Int, _ kernel: [Double], _ bias: [Double], _ n: Int,
                    _ j: Int
                ) -> Double {
                    (0..<D).reduce(bias[h * n + j]) { $0 + x(layer, steps, t, $1) * kernel[($1 * H + h) * n + j] }
                }
                for t in 0..<T {
                    var logits = (0..<S).map { s in
                        (0..<K).reduce(0.0) { $0 + project(q, T, t, wq, bq, K, $1) * project(v, S, s, wk, bk, K, $1) }
                            / Double(K).squareRoot()
                    }
                    let allowed = (0..<S).map { s in s <= t && abs(t - s) < 2 }
                    let top = zip(logits, allowed).filter(\.1).map(\.0).max()!
                    logits = zip(logits, allowed).map { $1 ? exp($0 - top) : 0 }
                    let sum = logits.reduce(0, +)
                    for j in 0..<V {
                        heads[t][h * V + j] = (0..<S).reduce(0.0) {
                            $0 + logits[$1] / sum * project(v, S, $1, wv, bv, V, j)
                        }
                    }
                }
            }
            for t in 0..<T {
                for e in 0..<E {
                    let expected = (0..<(H * V)).reduce(bo[e]) { $0 + heads[t][$1] * wo[$1 * E + e] }
                    XCTAssertEqual(Double(a.output.values[(b * T + t) * E + e]), expected, accuracy: 1e-5)
                }
            }
        }
    }
}
