// MultiHeadAttention: gradients checked numerically for every option (self and cross attention with
// different query and key lengths, a separate key, odd head counts and key dims, value_dim and
// output_shape, no bias, causal and sliding-window masks), and its forward against attention
// written out in Double.

import XCTest

@testable import TandemCore
@testable import TandemKeras

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

    /// GroupQueryAttention: 4 query heads over 2 key/value heads (heads 0, 1 read key/value head 0).
    func testGroupedQueryGradients() {
        let q = InputLayer(name: "q", kind: .features, shape: [3, 5])
        let v = InputLayer(name: "v", kind: .features, shape: [4, 3])
        for dropout in [Float(0), 0.25] {
            let a = MultiHeadAttention(
                name: "gqa", query: q, value: v, heads: 4, kvHeads: 2, keyDim: 2, causal: true, dropout: dropout)
            XCTAssertEqual(a.parameterSpecs.map(\.shape)[2], [3, 2, 2], "key kernel [D, kv heads, head dim]")
            checkLayer(Model(inputs: [q, v], outputs: [a], maxBatch: 2), terminal: a, batch: 2, seed: 38)
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

    /// An explicit attention_mask [T, S] (nonzero: may attend): a lower-triangular one gives exactly the causal
    /// mask's outputs and gradients, and a row it blanks attends uniformly (Keras's dot-product path).
    func testExplicitAttentionMaskEqualsTheCausalMask() {
        let x = InputLayer(name: "x", kind: .features, shape: [4, 3])
        let m = InputLayer(name: "m", kind: .features, shape: [4, 4])
        let causal = MultiHeadAttention(name: "mha", query: x, value: x, heads: 2, keyDim: 2, causal: true)
        let explicit = MultiHeadAttention(name: "mha", query: x, value: x, heads: 2, keyDim: 2, attentionMask: m)
        let a = Model(inputs: [x], outputs: [causal], maxBatch: 2)
        let b = Model(inputs: [x, m], outputs: [explicit], maxBatch: 2)
        a.parameters.initialize(seed: 39)
        b.parameters.initialize(seed: 39)
        var rng = SeededGenerator(seed: 40)
        fillUniform(x.output.values, 24, &rng)
        for s in 0..<2 { for t in 0..<4 { for k in 0..<4 { m.output.values[s * 16 + t * 4 + k] = k <= t ? 1 : 0 } } }
        let dy = (0..<24).map { _ in Float(rng.uniform(-1, 1)) }
        var results: [[Float]] = []
        for (model, layer) in [(a, causal), (b, explicit)] as [(Model, MultiHeadAttention)] {
            model.parameters.zeroGradients()
            model.forward(batch: 2)
            let out = (0..<24).map { layer.output.values[$0] }
            layer.output.gradients.update(from: dy, count: 24)
            model.backward(batch: 2)
            results.append(out + (0..<model.parameters.count).map { model.parameters.gradients[$0] })
        }
        XCTAssertEqual(results[0], results[1])
        for k in 0..<4 { m.output.values[16 + 2 * 4 + k] = 0 }  // sample 1, step 2: nothing allowed
        b.forward(batch: 2)
        XCTAssertEqual(explicit.attentionRowForTesting(sample: 1, head: 1, step: 2), [0.25, 0.25, 0.25, 0.25])
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

/// EinsumDense: gradients for each kind of equation (a plain product, a transposed kernel with the output's
/// axes reordered, MultiHeadAttention's projections, `...`), and the transposed one's forward against the
/// einsum written out.
final class EinsumDenseTests: XCTestCase {
    private func layer(_ x: Layer, _ equation: String, _ shape: [Int], bias: String?, _ act: Activation = .linear)
        -> EinsumDense
    {
        let sides = equation.components(separatedBy: "->")
        let operands = sides[0].components(separatedBy: ",")
        return EinsumDense(
            name: "e", input: x, equation: equation, inputLetters: Array(operands[0]),
            kernelLetters: Array(operands[1]),
            outputLetters: Array(sides[1]), outputShape: shape, biasAxes: bias, activation: act)
    }

    func testGradientsForEveryKindOfEquation() {
        let cases: [([Int], String, [Int], String?, Activation)] = [
            ([4, 5], "abc,cd->abd", [4, 3], "d", .linear),
            ([4, 5], "abc,dc->adb", [3, 4], "d", .tanh),
            ([3, 2, 4], "abcd,cde->abe", [3, 5], "e", .linear),
            ([4, 5], "abc,cde->abde", [4, 2, 3], "de", .linear),
            ([4, 5], "ABb,bc->ABc", [4, 3], "c", .relu),  // "...b,bc->...c" as the builder writes it
            ([2, 3, 4], "abcd,dce->aeb", [5, 2], "e", .linear),  // two contracted axes in the kernel's other order
        ]
        for (input, equation, shape, bias, act) in cases {
            let x = InputLayer(name: "x", kind: .features, shape: input)
            let e = layer(x, equation, shape, bias: bias, act)
            checkLayer(Model(inputs: [x], outputs: [e], maxBatch: 3), terminal: e, batch: 3, seed: 41)
        }
    }

    func testTransposedEquationMatchesTheEinsum() {
        // y[a, d, b] = Σ_c x[a, b, c]·K[d, c] + bias[d] (bias shape [3, 1]: Keras's, from the first bias axis on).
        let x = InputLayer(name: "x", kind: .features, shape: [4, 5])
        let e = layer(x, "abc,dc->adb", [3, 4], bias: "d")
        XCTAssertEqual(e.biasShape, [3, 1])
        XCTAssertEqual(e.kernelShape, [3, 5])
        let model = Model(inputs: [x], outputs: [e], maxBatch: 2)
        var rng = SeededGenerator(seed: 42)
        fillUniform(model.parameters.values, model.parameters.count, &rng, -1, 1)
        fillUniform(x.output.values, 2 * 20, &rng)
        model.forward(batch: 2)
        let k = model.parameters.view("e/kernel")!
        let b = model.parameters.view("e/bias")!
        for a in 0..<2 {
            for d in 0..<3 {
                for t in 0..<4 {
                    var sum = Double(model.parameters.value(b)[d])
                    for c in 0..<5 {
                        sum +=
                            Double(x.output.values[a * 20 + t * 5 + c]) * Double(model.parameters.value(k)[d * 5 + c])
                    }
                    XCTAssertEqual(Double(e.output.values[a * 12 + d * 4 + t]), sum, accuracy: 1e-5)
                }
            }
        }
    }
}

/// Attention (dot, scaled, concat) and AdditiveAttention: gradients with a separate key, the causal mask and
/// dropout; the dot score's forward against the definition.
final class ScoreAttentionTests: XCTestCase {
    func testGradientsForEveryScore() {
        let q = InputLayer(name: "q", kind: .features, shape: [3, 4])
        let v = InputLayer(name: "v", kind: .features, shape: [5, 2])
        let k = InputLayer(name: "k", kind: .features, shape: [5, 4])
        for (score, scaled, causal, dropout) in [
            (ScoreAttention.Score.dot, false, false, Float(0)), (.dot, true, true, 0), (.concat, true, false, 0),
            (.concat, false, true, 0.3), (.additive, true, true, 0), (.additive, false, false, 0.3),
        ] {
            let a = ScoreAttention(
                name: "att", query: q, value: v, key: k, score: score, scaled: scaled, causal: causal, dropout: dropout)
            let model = Model(inputs: [q, v, k], outputs: [a], maxBatch: 2)
            model.dropoutKeys.seed = 3
            checkLayer(model, terminal: a, batch: 2, seed: 51)
        }
    }

    func testDotScoresMatchTheDefinition() {
        let q = InputLayer(name: "q", kind: .features, shape: [3, 2])
        let v = InputLayer(name: "v", kind: .features, shape: [4, 2])  // the key too
        let a = ScoreAttention(name: "att", query: q, value: v, score: .dot, scaled: true, causal: true)
        let model = Model(inputs: [q, v], outputs: [a], maxBatch: 1)
        var rng = SeededGenerator(seed: 52)
        fillUniform(q.output.values, 6, &rng)
        fillUniform(v.output.values, 8, &rng)
        model.parameters.value(model.parameters.view("att/scale")!)[0] = 0.7
        model.forward(batch: 1)
        func x(_ l: InputLayer, _ i: Int) -> Double { Double(l.output.values[i]) }
        for t in 0..<3 {
            // Keras: a masked score is score − 1e9, so step t sees only key steps ≤ t.
            let e = (0...t).map { s in exp(0.7 * (x(q, t * 2) * x(v, s * 2) + x(q, t * 2 + 1) * x(v, s * 2 + 1))) }
            let total = e.reduce(0, +)
            for d in 0..<2 {
                let expected = (0...t).reduce(0.0) { $0 + e[$1] / total * x(v, $1 * 2 + d) }
                XCTAssertEqual(Double(a.output.values[t * 2 + d]), expected, accuracy: 1e-6)
            }
        }
    }
}

/// KerasHub's layers from their configs: the TransformerEncoder (post-norm and pre-norm, with dropout, under a
/// padding mask from its tokens) and PositionEmbedding checked numerically; an unknown registered name and an
/// unknown config key refused by name.
final class KerasHubLayerTests: XCTestCase {
    private func hub(_ cls: String, _ name: String, _ config: String, _ input: String, _ shape: String) -> String {
        #"{"module": "keras_hub.src.layers.modeling.x", "class_name": "\#(cls)", "config": {"name": "\#(name)"\#(config)}, "registered_name": "keras_hub>\#(cls)", "name": "\#(name)", "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {"shape": \#(shape), "dtype": "float32", "keras_history": ["\#(input)", 0, 0]}}], "kwargs": {}}]}"#
    }
    private func model(_ layers: [String], input: String, output: String) -> String {
        #"{"class_name": "Functional", "config": {"name": "m", "layers": [\#(([input] + layers).joined(separator: ", "))], "input_layers": [["x", 0, 0]], "output_layers": [["\#(output)", 0, 0]]}}"#
    }
    private let features =
        #"{"module": "keras.layers", "class_name": "InputLayer", "config": {"name": "x", "batch_shape": [null, 4, 6], "dtype": "float32"}, "registered_name": null, "name": "x", "inbound_nodes": []}"#
    private let tokens =
        #"{"module": "keras.layers", "class_name": "InputLayer", "config": {"name": "x", "batch_shape": [null, 4], "dtype": "int32"}, "registered_name": null, "name": "x", "inbound_nodes": []}"#

    func testEncoderGradients() throws {
        for options in [
            #", "normalize_first": false, "dropout": 0"#,
            #", "normalize_first": true, "dropout": 0.2, "activation": "gelu""#,
        ] {
            let json = model(
                [
                    hub(
                        "TransformerEncoder", "enc", #", "intermediate_dim": 5, "num_heads": 2\#(options)"#, "x",
                        "[null, 4, 6]")
                ],
                input: features, output: "enc")
            let m = try KerasConfig.description(fromJSON: Array(json.utf8), source: "m.keras").build(maxBatch: 2)
            m.dropoutKeys.seed = 5
            checkLayer(m, terminal: m.outputs[0], batch: 2, seed: 61)
        }
    }

    func testMaskedEncoderAndPositionGradients() throws {
        let json = model(
            [
                hub(
                    "TokenAndPositionEmbedding", "embed",
                    #", "vocabulary_size": 9, "sequence_length": 5, "embedding_dim": 6, "mask_zero": true"#, "x",
                    "[null, 4]"),
                hub("TransformerEncoder", "enc", #", "intermediate_dim": 5, "num_heads": 3"#, "embed", "[null, 4, 6]"),
            ], input: tokens, output: "enc")
        let m = try KerasConfig.description(fromJSON: Array(json.utf8), source: "m.keras").build(maxBatch: 2)
        let ids = try XCTUnwrap(m.inputs.first)
        XCTAssertEqual(
            m.parameters.tensors.map(\.name).prefix(4),
            [
                "embed/token_embedding/embeddings", "embed/position_embedding/embeddings",
                "enc/self_attention_layer/query/kernel", "enc/self_attention_layer/query/bias",
            ])
        checkLayer(m, terminal: m.outputs[0], batch: 2, seed: 62) { _ in
            ids.tokens!.update(from: [3, 1, 0, 0, 4, 0, 0, 0], count: 8)
        }
    }

    func testRotaryAndSineGradients() throws {
        let json = model(
            [
                hub("RotaryEmbedding", "rope", #", "max_wavelength": 100, "scaling_factor": 2.0"#, "x", "[null, 4, 6]"),
                hub("SinePositionEncoding", "sine", #", "max_wavelength": 50"#, "rope", "[null, 4, 6]"),
                #"{"module": "keras.layers", "class_name": "Add", "config": {"name": "sum"}, "registered_name": null, "name": "sum", "inbound_nodes": [{"args": [[{"class_name": "__keras_tensor__", "config": {"shape": [null, 4, 6], "dtype": "float32", "keras_history": ["rope", 0, 0]}}, {"class_name": "__keras_tensor__", "config": {"shape": [null, 4, 6], "dtype": "float32", "keras_history": ["sine", 0, 0]}}]], "kwargs": {}}]}"#,
                hub("TransformerEncoder", "enc", #", "intermediate_dim": 5, "num_heads": 2"#, "sum", "[null, 4, 6]"),
            ], input: features, output: "enc")
        let m = try KerasConfig.description(fromJSON: Array(json.utf8), source: "m.keras").build(maxBatch: 2)
        checkLayer(m, terminal: m.outputs[0], batch: 2, seed: 63)
    }

    func testUnknownKerasHubNamesAndKeysAreRefused() throws {
        for (layer, expected) in [
            (
                hub("AlibiBias", "dec", #", "alibi_bias_max": 8"#, "x", "[null, 4, 6]"),
                "'keras_hub>AlibiBias' is not a KerasHub layer Tandem implements (supported: keras_hub>PositionEmbedding"
            ),
            (
                hub(
                    "TransformerEncoder", "enc", #", "intermediate_dim": 5, "num_heads": 2, "rope": true"#, "x",
                    "[null, 4, 6]"),
                "the KerasHub config key 'rope' is not understood"
            ),
        ] {
            let name = layer.contains("AlibiBias") ? "dec" : "enc"
            XCTAssertThrowsError(
                try KerasConfig.description(
                    fromJSON: Array(model([layer], input: features, output: name).utf8), source: "m.keras"
                )
                .build(maxBatch: 2)
            ) { error in XCTAssertTrue("\(error)".contains(expected), "\(error)") }
        }
    }
}
