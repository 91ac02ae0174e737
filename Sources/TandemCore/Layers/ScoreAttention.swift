// Keras `Attention(use_scale, score_mode, dropout)` and `AdditiveAttention(use_scale, dropout)`
// (keras/src/layers/attention/attention.py, additive_attention.py) on query [B, T, D], value [B, S, Dv] and
// key [B, S, D] (the value when not given). Per sample, the scores [T, S]:
//   dot:      Q·Kᵀ (× `scale`, a scalar weight, with use_scale)
//   concat:   c · Σ_d tanh(scale·(q_t + k_s))_d (c: `concat_score_weight`; scale only with use_scale)
//   additive: Σ_d scale_d · tanh(q_t + k_s)_d (scale: a weight [D] with use_scale, else 1)
// then Keras's causal mask (use_causal_mask): a masked score becomes score − 1e9, which leaves it
// probability 0 (a row always keeps step 0), so the softmax kernel (CKernels/attention.c) runs over the
// allowed span; P = softmax over s, dropout on P in training (draws a pure function of the sample's position, as
// Dropout's), O = P·V. Backward: dP = dO·Vᵀ (through the dropout mask), dS = P ⊙ (dP − Σ dP·P), then each
// score's own rule. The tanh terms are recomputed in backward rather than kept ([T, S, D] per sample).

import CKernels
import Foundation

package final class ScoreAttention: Layer, RandomLayer {
    /// The products' FLOPs of one sample's forward (the dot score's and the mix of values; concat and
    /// additive scores are element-wise).
    public var forwardFlopsPerSample: Double { 2 * Double(T * S) * Double((score == .dot ? D : 0) + valueWidth) }
    package enum Score: Sendable { case dot, concat, additive }

    public let name: String
    package let weightsName: String
    /// Query, value, key (the value's layer again when the call gave no key).
    package let inputs: [Layer]
    public let output: Node
    package let score: Score, scaled: Bool, causal: Bool, dropout: Float
    let T: Int, S: Int, D: Int, valueWidth: Int
    private let stream: DropoutStream
    private var keys: DropoutKeys!
    private var store: ParameterStore!
    private var scaleView, concatView: TensorView?
    /// Per sample: the unscaled dot products (dot), the probabilities, the dropout mask and dropped
    /// probabilities [B, T, S]; one sample's dP [T, S].
    private var raw, probabilities, dropMask, dropped, dP: UnsafeMutablePointer<Float>!
    private var dropping = false

    package init(
        name: String, query: Layer, value: Layer, key: Layer? = nil, score: Score, scaled: Bool,
        causal: Bool = false, dropout: Float = 0, weights: String? = nil
    ) {
        let key = key ?? value
        precondition([query, value, key].allSatisfy { $0.output.shape.count == 2 })
        self.name = name
        weightsName = weights ?? name
        inputs = [query, value, key]
        self.score = score
        self.scaled = scaled
        self.causal = causal
        self.dropout = dropout
        T = query.output.shape[0]
        S = value.output.shape[0]
        D = query.output.features
        valueWidth = value.output.features
        stream = DropoutStream(name: name, rate: dropout)
        output = Node(shape: [T, valueWidth])
    }

    func bind(keys: DropoutKeys) { self.keys = keys }

    public var parameterSpecs: [ParameterSpec] {
        var specs: [ParameterSpec] = []
        if scaled {
            specs.append(
                score == .additive
                    ? ParameterSpec(
                        layer: weightsName, weight: "scale", shape: [D],
                        initializer: .glorotUniform(fanIn: D, fanOut: D))
                    : ParameterSpec(layer: weightsName, weight: "scale", shape: [], initializer: .constant(1)))
        }
        if score == .concat {
            specs.append(
                ParameterSpec(layer: weightsName, weight: "concat_score_weight", shape: [], initializer: .constant(1)))
        }
        return specs
    }

    public func bind(parameters: ParameterStore) {
        store = parameters
        scaleView = scaled ? parameters.view("\(weightsName)/scale") : nil
        concatView = score == .concat ? parameters.view("\(weightsName)/concat_score_weight") : nil
    }

    public func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        ((dropout > 0 ? 4 : 2) * batch * T * S + T * S + batch * T * valueWidth, batch * T * valueWidth)
    }

    public func bind(workspace: inout WorkspaceCursor, batch: Int) {
        raw = workspace.take(batch * T * S)
        probabilities = workspace.take(batch * T * S)
        if dropout > 0 {
            dropMask = workspace.take(batch * T * S)
            dropped = workspace.take(batch * T * S)
        }
        dP = workspace.take(T * S)
        output.values = workspace.take(batch * T * valueWidth)
        output.gradients = workspace.takeGradient(batch * T * valueWidth)
    }

    private var query: UnsafeMutablePointer<Float> { inputs[0].output.values }
    private var value: UnsafeMutablePointer<Float> { inputs[1].output.values }
    private var key: UnsafeMutablePointer<Float> { inputs[2].output.values }

    public func forward(batch: Int, training: Bool) {
        let scale = scaleView.map { store.value($0) }
        let c = concatView.map { store.value($0)[0] } ?? 1
        dropping = training && dropout > 0
        if dropping { stream.fill(dropMask, rows: batch, count: T * S, keys: keys) }
        for b in 0..<batch {
            let (q, k, r, p) = (query + b * T * D, key + b * S * D, raw + b * T * S, probabilities + b * T * S)
            switch score {
            case .dot:
                gemm(.none, .transposed, m: T, n: S, k: D, a: q, lda: D, b: k, ldb: D, beta: 0, c: r, ldc: S)
                for i in 0..<(T * S) { p[i] = scale.map { r[i] * $0[0] } ?? r[i] }
            case .concat, .additive:
                for t in 0..<T {
                    for s in 0..<S {
                        var sum: Float = 0
                        for d in 0..<D {
                            let a = q[t * D + d] + k[s * D + d]
                            if score == .concat {
                                sum += tanhf(scale.map { $0[0] * a } ?? a)
                            } else {
                                sum += (scale?[d] ?? 1) * tanhf(a)
                            }
                        }
                        p[t * S + s] = score == .concat ? c * sum : sum
                    }
                }
            }
            // Keras's `score − 1e9` on a later step leaves it probability 0 (step 0 is never masked): the
            // softmax kernel's span of allowed keys, [0, t + 1).
            for t in 0..<T { tandem_softmax_row(p + t * S, Int32(S), 0, Int32(causal ? min(S, t + 1) : S), nil) }
            var weights = UnsafePointer(p)
            if dropping {
                let (m, d) = (dropMask + b * T * S, dropped + b * T * S)
                for i in 0..<(T * S) { d[i] = p[i] * m[i] }
                weights = UnsafePointer(d)
            }
            gemm(
                .none, .none, m: T, n: valueWidth, k: S, a: weights, lda: S, b: value + b * S * valueWidth,
                ldb: valueWidth, beta: 0, c: output.values + b * T * valueWidth, ldc: valueWidth)
        }
    }

    public func backward(batch: Int) {
        let scale = scaleView.map { store.value($0) }
        let dScale = scaleView.map { store.gradient($0) }
        let c = concatView.map { store.value($0)[0] } ?? 1
        let dC = concatView.map { store.gradient($0) }
        let dy = output.gradients!
        let (dq, dv, dk) = (
            inputs[0].wantsGradient ? inputs[0].output.gradients : nil,
            inputs[1].wantsGradient ? inputs[1].output.gradients : nil,
            inputs[2].wantsGradient ? inputs[2].output.gradients : nil
        )
        for b in 0..<batch {
            let (q, k, r, p) = (query + b * T * D, key + b * S * D, raw + b * T * S, probabilities + b * T * S)
            let dO = dy + b * T * valueWidth
            let weights = dropping ? UnsafePointer(dropped + b * T * S) : UnsafePointer(p)
            if let dv {
                gemm(
                    .transposed, .none, m: S, n: valueWidth, k: T, a: weights, lda: S, b: dO, ldb: valueWidth, beta: 1,
                    c: dv + b * S * valueWidth, ldc: valueWidth)
            }
            gemm(
                .none, .transposed, m: T, n: S, k: valueWidth, a: dO, lda: valueWidth, b: value + b * S * valueWidth,
                ldb: valueWidth, beta: 0, c: dP, ldc: S)
            if dropping { for i in 0..<(T * S) { dP[i] *= dropMask[b * T * S + i] } }
            for t in 0..<T { tandem_softmax_row_backward(p + t * S, dP + t * S, Int32(S)) }  // now dScores
            switch score {
            case .dot:
                if let scale, let dScale {
                    var sum: Float = 0
                    for i in 0..<(T * S) { sum += dP[i] * r[i] }
                    dScale[0] += sum
                    for i in 0..<(T * S) { dP[i] *= scale[0] }
                }
                if let dq {
                    gemm(
                        .none, .none, m: T, n: D, k: S, a: dP, lda: S, b: k, ldb: D, beta: 1, c: dq + b * T * D, ldc: D)
                }
                if let dk {
                    gemm(
                        .transposed, .none, m: S, n: D, k: T, a: dP, lda: S, b: q, ldb: D, beta: 1, c: dk + b * S * D,
                        ldc: D)
                }
            case .concat, .additive:
                for t in 0..<T {
                    for s in 0..<S {
                        let g = dP[t * S + s]
                        var sum: Float = 0
                        for d in 0..<D {
                            let a = q[t * D + d] + k[s * D + d]
                            let grad: Float
                            if score == .concat {
                                let sc = scale?[0] ?? 1
                                let th = tanhf(sc * a)
                                sum += th
                                let inner = g * c * (1 - th * th)
                                grad = inner * sc
                                dScale?[0] += inner * a
                            } else {
                                let th = tanhf(a)
                                dScale?[d] += g * th
                                grad = g * (scale?[d] ?? 1) * (1 - th * th)
                            }
                            dq?[(b * T + t) * D + d] += grad
                            dk?[(b * S + s) * D + d] += grad
                        }
                        if score == .concat { dC?[0] += g * sum }
                    }
                }
            }
        }
    }
}

// MARK: - Keras Attention and AdditiveAttention: the layer table's entries (KerasLayerKind.swift) and their
// builder, which reads a call's config and options and refuses every argument Tandem does not implement by name.

extension KerasLayerKind {
    static let scoreAttention = KerasLayerKind(
        classNames: ["Attention", "AdditiveAttention"],
        build: { a, inputs, _ in try LayerRegistry.scoreAttention(a, inputs) },
        variables: { className, layer, config in
            let scaled = config["use_scale"]?.bool ?? (className == "AdditiveAttention")
            let concat = className == "Attention" && config["score_mode"]?.string == "concat"
            return [top(layer, (scaled ? ["scale"] : []) + (concat ? ["concat_score_weight"] : []))]
        })
}

extension LayerRegistry {
    static func scoreAttention(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let additive = a.node.className == "AdditiveAttention"
        guard (2...3).contains(inputs.count) else {
            throw a.fail("must be called on [query, value] or [query, value, key], got \(inputs.count) tensor(s)")
        }
        for x in inputs where x.output.shape.count != 2 {
            throw a.fail(
                "reads sequences [batch, steps, features]; an input of shape \(x.output.shape) is not supported")
        }
        let (query, value) = (inputs[0], inputs[1])
        let key = inputs.count > 2 ? inputs[2] : value
        guard key.output.shape[0] == value.output.shape[0], key.output.features == query.output.features else {
            throw a.fail("its key must have the value's steps and the query's features")
        }
        var score: ScoreAttention.Score = additive ? .additive : .dot
        if !additive {
            switch try a.string("score_mode", default: "dot") {
            case "dot": score = .dot
            case "concat": score = .concat
            case let mode: throw a.fail("'score_mode' = '\(mode)' is not supported (dot, concat)")
            }
        }
        let dropout = a.config["dropout"]?.number ?? 0
        guard dropout >= 0 && dropout < 1 else { throw a.fail("'dropout' = \(dropout) must be in [0, 1)") }
        var causal = false
        for (name, v) in a.node.callOptions.object ?? [] where !v.isNull {
            switch (name, v.bool) {
            case ("use_causal_mask", let b?): causal = b
            case ("return_attention_scores", false?): break
            default:
                throw a.fail(
                    "the call argument \(name)=\(v) is not supported (supported: use_causal_mask, return_attention_scores=False)"
                )
            }
        }
        return ScoreAttention(
            name: a.node.id, query: query, value: value, key: inputs.count > 2 ? key : nil, score: score,
            scaled: try a.bool("use_scale", default: additive), causal: causal, dropout: Float(dropout),
            weights: a.node.layer)
    }
}
