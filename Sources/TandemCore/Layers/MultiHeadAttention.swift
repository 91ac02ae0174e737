// Keras `MultiHeadAttention` (keras/src/layers/attention/multi_head_attention.py) on sequences:
// query [B, T, Dq], value [B, S, Dv], key [B, S, Dk] (the value when not given). Legend: H heads,
// K key_dim, V value_dim, E the output width (the query's features unless `output_shape`).
//   Q = xq·Wq + bq [B, T, H, K],  Kt = xk·Wk + bk [B, S, H, K],  Vt = xv·Wv + bv [B, S, H, V]
//   per sample b and head h:  L = (Q_bh·Kt_bhᵀ)·K^-½ [T, S],  P = softmax over s of L where allowed,
//   O_bh = P·Vt_bh,  y = O·Wo + bo with O [B, T, H·V] and Wo [H, V, E].
// The kernels are EinsumDense's ([D, H, K], bias [H, K]; [H, V, E], bias [E]) and, as laid out in
// memory, exactly Dense kernels [D, H·K] and [H·V, E], so every projection is one product over
// B·T rows; the per-head products read Q, Kt, Vt and O in place with a row stride of H·K (H·V).
// The scale multiplies the product, as jax.nn.dot_product_attention does (Keras 3.15's path when
// dropout is 0); with dropout Keras takes its einsum path instead, which scales the query first, zeroes a
// row with nothing allowed, and drops probabilities (inverted dropout, each draw a pure function of (seed,
// layer, epoch, sample position, element) as Dropout's): O = (P ⊙ M)·Vt. Masks: `use_causal_mask` (s ≤ t), `sliding_window` (|t − s| < w) and the Keras masks
// of the query, value and key (padding: token id 0; ModelDescription finds them, as Keras does not save
// them in the call), AND-ed as Keras's _compute_attention_mask does; a masked logit is excluded (its
// probability exactly 0), and a row with nothing allowed (a padded query) attends uniformly, as XLA's
// `where(mask, logits, −0.7·max)` then softmax gives. Backward: dP = dO·Vtᵀ,
// dL = P ⊙ (dP − Σ_s dP·P) (zero on a row with nothing allowed: its logits were constants),
// dQ = K^-½·dL·Kt, dKt = K^-½·dLᵀ·Q, dVt = Pᵀ·dO, then each projection as Dense's backward.

import CKernels
import Foundation

package final class MultiHeadAttention: Layer, RandomLayer {
    /// The products' FLOPs of one sample's forward: the four projections, the scores and the mix of values.
    public var forwardFlopsPerSample: Double {
        let (h, t, s) = (Double(heads), Double(T), Double(S))
        let kv = Double(kvHeads)
        let projections =
            t * Double(queryWidth) * h * Double(keyDim) + s * Double(keyWidth) * kv * Double(keyDim)
            + s * Double(valueWidth) * kv * Double(valueDim) + t * h * Double(valueDim) * Double(outputWidth)
        return 2 * (projections + h * t * s * Double(keyDim + valueDim))
    }
    public let name: String
    package let weightsName: String
    /// Query, value, key (the value's layer again when the call gave no key), then the masks given.
    package let inputs: [Layer]
    /// The query's, value's and key's Keras masks (1 kept, 0 padding, per step), when they have one.
    private let masks: [Layer?]
    /// An explicit `attention_mask` [T, S] per sample (nonzero: may attend), when the call gave one.
    private let attentionMask: Layer?
    /// One row's keys kept by every mask (the key masks and the row of attention_mask).
    private var rowKept: UnsafeMutablePointer<Float>!
    public let output: Node
    package let heads: Int, keyDim: Int, valueDim: Int, useBias: Bool
    /// Key/value heads (GroupQueryAttention's num_key_value_heads; MultiHeadAttention's: every head): query
    /// head h reads key/value head h / repeats, as Keras's ops.repeat(key, repeats, axis=2) lays them out.
    package let kvHeads: Int
    private var repeats: Int { heads / kvHeads }
    package let causal: Bool, window: Int?
    /// Dropout on the probabilities (Keras's einsum path when > 0).
    package let dropout: Float
    private let stream: DropoutStream
    private var keys: DropoutKeys!
    /// This training pass's dropout mask and the dropped probabilities P ⊙ M, [B, H, T, S].
    private var dropMask, dropped: UnsafeMutablePointer<Float>!
    private var dropping = false
    /// Query steps T, key/value steps S; the inputs' feature widths; the output width E.
    let T: Int, S: Int, queryWidth: Int, keyWidth: Int, valueWidth: Int, outputWidth: Int
    /// Query, key, value and output kernels' initializers (nil: glorot uniform over each's fans).
    let kernelInitializers: [Initializer?], biasInitializer: Initializer
    private let scale: Float
    private var store: ParameterStore!
    private var weights: [TensorView] = []
    /// Forward: projected Q, Kt, Vt, the probabilities P [B, H, T, S], the heads' output O; backward scratch.
    private var q, k, v, probabilities, o: UnsafeMutablePointer<Float>!
    private var dq, dk, dv, dO, dP: UnsafeMutablePointer<Float>!
    /// Per sample and query step: whether any key was allowed (else the row attended uniformly).
    private var anyAllowed: UnsafeMutablePointer<Float>!
    /// One sample's query and key steps as the Keras masks leave them (1 or 0).
    private var queryKept, keyKept: UnsafeMutablePointer<Float>!

    package init(
        name: String, query: Layer, value: Layer, key: Layer? = nil, heads: Int, kvHeads: Int? = nil, keyDim: Int,
        valueDim: Int? = nil,
        outputWidth: Int? = nil, useBias: Bool = true, causal: Bool = false, window: Int? = nil,
        masks: [Layer?] = [], attentionMask: Layer? = nil, dropout: Float = 0,
        weights: String? = nil, kernelInitializers: [Initializer?] = [nil, nil, nil, nil],
        biasInitializer: Initializer = .zeros
    ) {
        precondition(query.output.shape.count == 2 && value.output.shape.count == 2, "attention reads [B, T, D]")
        self.name = name
        weightsName = weights ?? name
        let key = key ?? value
        self.masks = (0..<3).map { $0 < masks.count ? masks[$0] : nil }
        self.attentionMask = attentionMask
        inputs = [query, value, key] + self.masks.compactMap { $0 } + (attentionMask.map { [$0] } ?? [])
        self.heads = heads
        self.kvHeads = kvHeads ?? heads
        precondition(heads % self.kvHeads == 0, "query heads are a multiple of key/value heads")
        self.keyDim = keyDim
        self.valueDim = valueDim ?? keyDim
        self.useBias = useBias
        self.causal = causal
        self.window = window
        self.kernelInitializers = kernelInitializers
        self.dropout = dropout
        stream = DropoutStream(name: name, rate: dropout)
        self.biasInitializer = biasInitializer
        T = query.output.shape[0]
        S = value.output.shape[0]
        precondition(key.output.shape[0] == S, "key and value have the same steps")
        queryWidth = query.output.features
        valueWidth = value.output.features
        keyWidth = key.output.features
        self.outputWidth = outputWidth ?? queryWidth
        scale = Float(1 / Double(keyDim).squareRoot())
        output = Node(shape: [T, self.outputWidth])
    }

    /// The key steps query step t may see before the padding masks: [lo, hi) (Keras's causal mask: row ≥
    /// column; the sliding window: |t − s| < w).
    @inline(__always) private func span(_ t: Int) -> (lo: Int, hi: Int) {
        var (lo, hi) = (0, causal ? min(S, t + 1) : S)
        if let w = window { (lo, hi) = (max(lo, t - w + 1), min(hi, t + w)) }
        return (lo, hi)
    }

    /// The keys row t of sample b may see by the masks, in `rowKept` (nil: every key, no mask says otherwise).
    private func rowKeep(_ b: Int, _ t: Int) -> UnsafePointer<Float>? {
        guard let attentionMask else { return hasKeyMask ? UnsafePointer(keyKept) : nil }
        let m = attentionMask.output.values + (b * T + t) * S
        for s in 0..<S { rowKept[s] = (m[s] != 0 ? 1 : 0) * (hasKeyMask ? keyKept[s] : 1) }
        return UnsafePointer(rowKept)
    }

    /// Whether query step t of sample b attends to any key (after `keep(sample:)`).
    private func attends(_ b: Int, _ t: Int) -> Bool {
        guard queryKept[t] != 0 else { return false }
        let (lo, hi) = span(t)
        let keep = rowKeep(b, t)
        guard let keep else { return hi > lo }
        return (lo..<max(lo, hi)).contains { keep[$0] != 0 }
    }

    func bind(keys: DropoutKeys) { self.keys = keys }

    /// The sample's kept query and key steps from the masks (a key step needs the value's and the key's).
    private func keep(sample b: Int) {
        for t in 0..<T { queryKept[t] = masks[0].map { $0.output.values[b * T + t] } ?? 1 }
        for s in 0..<S {
            keyKept[s] =
                (masks[1].map { $0.output.values[b * S + s] } ?? 1)
                * (masks[2].map { $0.output.values[b * S + s] } ?? 1)
        }
    }

    /// (sublayer, input width, kernel shape, bias shape), in Keras's variable order.
    private var projections: [(String, Int, [Int], [Int])] {
        [
            ("query", queryWidth, [queryWidth, heads, keyDim], [heads, keyDim]),
            ("key", keyWidth, [keyWidth, kvHeads, keyDim], [kvHeads, keyDim]),
            ("value", valueWidth, [valueWidth, kvHeads, valueDim], [kvHeads, valueDim]),
            ("attention_output", heads * valueDim, [heads, valueDim, outputWidth], [outputWidth]),
        ]
    }

    public var parameterSpecs: [ParameterSpec] {
        projections.enumerated().flatMap { i, projection -> [ParameterSpec] in
            let (sub, fanIn, kernel, bias) = projection
            let k = ParameterSpec(
                layer: weightsName, weight: "\(sub)/kernel", shape: kernel,
                initializer: kernelInitializers[i] ?? .glorotUniform(fanIn: fanIn, fanOut: bias.reduce(1, *)))
            return useBias
                ? [
                    k,
                    ParameterSpec(layer: weightsName, weight: "\(sub)/bias", shape: bias, initializer: biasInitializer),
                ]
                : [k]
        }
    }

    public func bind(parameters: ParameterStore) {
        store = parameters
        weights = projections.flatMap { sub, _, _, _ in
            [parameters.view("\(weightsName)/\(sub)/kernel")!]
                + (useBias ? [parameters.view("\(weightsName)/\(sub)/bias")!] : [])
        }
    }

    private func kernel(_ i: Int) -> TensorView { weights[useBias ? 2 * i : i] }
    private func bias(_ i: Int) -> TensorView? { useBias ? weights[2 * i + 1] : nil }

    public func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        let projected = batch * (T * heads * keyDim + S * kvHeads * (keyDim + valueDim) + T * heads * valueDim)
        return (
            2 * projected + (dropout > 0 ? 3 : 1) * batch * heads * T * S + T * S + batch * T * (outputWidth + 1) + T
                + 2 * S,
            batch * T * outputWidth
        )
    }

    public func bind(workspace: inout WorkspaceCursor, batch: Int) {
        q = workspace.take(batch * T * heads * keyDim)
        k = workspace.take(batch * S * kvHeads * keyDim)
        v = workspace.take(batch * S * kvHeads * valueDim)
        o = workspace.take(batch * T * heads * valueDim)
        dq = workspace.take(batch * T * heads * keyDim)
        dk = workspace.take(batch * S * kvHeads * keyDim)
        dv = workspace.take(batch * S * kvHeads * valueDim)
        dO = workspace.take(batch * T * heads * valueDim)
        probabilities = workspace.take(batch * heads * T * S)
        if dropout > 0 {
            dropMask = workspace.take(batch * heads * T * S)
            dropped = workspace.take(batch * heads * T * S)
        }
        dP = workspace.take(T * S)
        anyAllowed = workspace.take(batch * T)
        queryKept = workspace.take(T)
        keyKept = workspace.take(S)
        rowKept = workspace.take(S)
        output.values = workspace.take(batch * T * outputWidth)
        output.gradients = workspace.takeGradient(batch * T * outputWidth)
    }

    /// y = x·W (+ b) over `rows` rows: W [width, columns].
    private func project(
        _ x: UnsafePointer<Float>, rows: Int, width: Int, _ i: Int, into y: UnsafeMutablePointer<Float>
    ) {
        let columns = kernel(i).count / width
        gemm(
            .none, .none, m: rows, n: columns, k: width, a: x, lda: width, b: store.value(kernel(i)), ldb: columns,
            beta: 0, c: y, ldc: columns)
        if let b = bias(i) { addBias(store.value(b), to: y, rows: rows, columns: columns, stride: columns) }
    }

    /// dW += xᵀ·dy, db += Σ dy, and dx (+)= dy·Wᵀ (beta 0 overwrites `dx`; nil: no dx wanted).
    private func projectBack(
        rows: Int, width: Int, _ i: Int, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
        dx: UnsafeMutablePointer<Float>?, beta: Float = 1
    ) {
        let columns = kernel(i).count / width
        gemm(
            .transposed, .none, m: width, n: columns, k: rows, a: x, lda: width, b: dy, ldb: columns, beta: 1,
            c: store.gradient(kernel(i)), ldc: columns)
        if let b = bias(i) { addColumnSums(dy, rows: rows, columns: columns, stride: columns, into: store.gradient(b)) }
        guard let dx else { return }
        gemm(
            .none, .transposed, m: rows, n: width, k: columns, a: dy, lda: columns, b: store.value(kernel(i)),
            ldb: columns, beta: beta, c: dx, ldc: width)
    }

    public func forward(batch: Int, training: Bool) {
        let (hk, hv, kk, kv) = (heads * keyDim, heads * valueDim, kvHeads * keyDim, kvHeads * valueDim)
        project(inputs[0].output.values, rows: batch * T, width: queryWidth, 0, into: q)
        project(inputs[2].output.values, rows: batch * S, width: keyWidth, 1, into: k)
        project(inputs[1].output.values, rows: batch * S, width: valueWidth, 2, into: v)
        if dropout > 0 { for i in 0..<(batch * T * hk) { q[i] *= scale } }  // Keras's einsum path: Q·K^-½ first
        dropping = training && dropout > 0
        if dropping { stream.fill(dropMask, rows: batch, count: heads * T * S, keys: keys) }
        for b in 0..<batch {
            keep(sample: b)
            for t in 0..<T { anyAllowed[b * T + t] = attends(b, t) ? 1 : 0 }
            for h in 0..<heads {
                let block = (b * heads + h) * T * S
                let p = probabilities + block
                gemm(
                    .none, .transposed, m: T, n: S, k: keyDim, alpha: dropout > 0 ? 1 : scale,
                    a: q + b * T * hk + h * keyDim, lda: hk, b: k + b * S * kk + h / repeats * keyDim, ldb: kk, beta: 0,
                    c: p,
                    ldc: S)
                for t in 0..<T { softmaxRow(p + t * S, b, t, anyAllowed[b * T + t] != 0) }
                var weights = UnsafePointer(p)
                if dropping {
                    for i in 0..<(T * S) { dropped[block + i] = p[i] * dropMask[block + i] }
                    weights = UnsafePointer(dropped + block)
                }
                gemm(
                    .none, .none, m: T, n: valueDim, k: S, a: weights, lda: S,
                    b: v + b * S * kv + h / repeats * valueDim,
                    ldb: kv, beta: 0, c: o + b * T * hv + h * valueDim, ldc: hv)
            }
        }
        project(o, rows: batch * T, width: hv, 3, into: output.values)
    }

    /// One row of the last forward's probabilities (the tests read it).
    package func attentionRowForTesting(sample b: Int, head h: Int, step t: Int) -> [Float] {
        Array(UnsafeBufferPointer(start: probabilities + ((b * heads + h) * T + t) * S, count: S))
    }

    /// P over one query row: exp(l − max)/Σ over the allowed keys, 0 elsewhere. A row with nothing allowed:
    /// uniform in XLA's dot-product path, zero in Keras's einsum path (its Softmax zeroes masked positions).
    private func softmaxRow(_ row: UnsafeMutablePointer<Float>, _ b: Int, _ t: Int, _ any: Bool) {
        guard any else {
            for s in 0..<S { row[s] = dropout > 0 ? 0 : 1 / Float(S) }
            return
        }
        let (lo, hi) = span(t)
        tandem_softmax_row(row, Int32(S), Int32(lo), Int32(hi), rowKeep(b, t))
    }

    private var hasKeyMask: Bool { masks[1] != nil || masks[2] != nil }

    public func backward(batch: Int) {
        let (hk, hv, kk, kv) = (heads * keyDim, heads * valueDim, kvHeads * keyDim, kvHeads * valueDim)
        let dy = output.gradients!
        projectBack(rows: batch * T, width: hv, 3, dy: dy, x: o, dx: dO, beta: 0)
        for b in 0..<batch {
            for h in 0..<heads {
                let block = (b * heads + h) * T * S
                let p = probabilities + block
                let dOh = dO + b * T * hv + h * valueDim
                let vh = v + b * S * kv + h / repeats * valueDim
                let weights = dropping ? UnsafePointer(dropped + block) : UnsafePointer(p)
                gemm(
                    .transposed, .none, m: S, n: valueDim, k: T, a: weights, lda: S, b: dOh, ldb: hv,
                    beta: h % repeats == 0 ? 0 : 1,
                    c: dv + b * S * kv + h / repeats * valueDim, ldc: kv)
                gemm(
                    .none, .transposed, m: T, n: S, k: valueDim, a: dOh, lda: hv, b: vh, ldb: kv, beta: 0, c: dP, ldc: S
                )
                if dropping { for i in 0..<(T * S) { dP[i] *= dropMask[block + i] } }  // d(P ⊙ M)/dP = M
                for t in 0..<T {
                    let (pr, dr) = (p + t * S, dP + t * S)
                    guard anyAllowed[b * T + t] != 0 else {
                        dr.update(repeating: 0, count: S)
                        continue
                    }
                    tandem_softmax_row_backward(pr, dr, Int32(S))
                }
                // dQ = K^-½·dL·Kt either way; dKt = dLᵀ·(the query the product read: scaled already with dropout).
                gemm(
                    .none, .none, m: T, n: keyDim, k: S, alpha: scale, a: dP, lda: S,
                    b: k + b * S * kk + h / repeats * keyDim,
                    ldb: kk, beta: 0, c: dq + b * T * hk + h * keyDim, ldc: hk)
                gemm(
                    .transposed, .none, m: S, n: keyDim, k: T, alpha: dropout > 0 ? 1 : scale, a: dP, lda: S,
                    b: q + b * T * hk + h * keyDim, ldb: hk, beta: h % repeats == 0 ? 0 : 1,
                    c: dk + b * S * kk + h / repeats * keyDim, ldc: kk)
            }
        }
        for (i, input, rows, width, d) in [
            (0, inputs[0], T, queryWidth, dq!), (1, inputs[2], S, keyWidth, dk!), (2, inputs[1], S, valueWidth, dv!),
        ] {
            projectBack(
                rows: batch * rows, width: width, i, dy: d, x: input.output.values,
                dx: input.wantsGradient ? input.output.gradients : nil)
        }
    }
}

// MARK: - Keras MultiHeadAttention: the layer table's entry (KerasLayerKind.swift) and its builder, which
// reads a call's config and options and refuses every argument Tandem does not implement by name.

extension KerasLayerKind {
    /// The projections' weights sit in EinsumDense sublayers (`query_dense/vars`, named `query`, …); the
    /// softmax and dropout sublayers have empty groups, which Keras's loader expects.
    static let multiHeadAttention = KerasLayerKind(
        classNames: ["MultiHeadAttention", "GroupQueryAttention"],
        build: { a, inputs, _ in try LayerRegistry.multiHeadAttention(a, inputs) },
        variables: { className, layer, config in
            // GroupQueryAttention keeps the attributes' underscores in its paths (`_query_dense/vars`).
            let prefix = className == "GroupQueryAttention" ? "_" : ""
            let bias = config["use_bias"]?.bool != false
            let sublayers = [
                ("query_dense", "query"), ("key_dense", "key"), ("value_dense", "value"),
                ("output_dense", "attention_output"),
            ]
            return [top(layer, [])]
                + sublayers.map { path, sub in
                    VariableGroup(
                        path: "\(prefix)\(path)/vars", label: sub,
                        names: ["\(sub)/kernel"] + (bias ? ["\(sub)/bias"] : []))
                }
                + [
                    VariableGroup(path: "_softmax/vars", label: "softmax", names: []),
                    VariableGroup(path: "_dropout_layer/vars", label: "dropout", names: []),
                ]
        })
}

extension LayerRegistry {
    static func multiHeadAttention(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        // An explicit attention_mask tensor is the last input (KerasConfig says so in the call's options).
        var inputs = inputs
        var attentionMask: Layer?
        if a.node.callOptions["attention_mask"] != nil, let last = inputs.popLast() { attentionMask = last }
        guard (2...3).contains(inputs.count) else {
            throw a.fail("must be called on a query and a value (and a key), got \(inputs.count) tensor(s)")
        }
        for x in inputs where x.output.shape.count != 2 {
            throw a.fail(
                "reads sequences [batch, steps, features]; an input of shape \(x.output.shape) is not supported (attention over one steps axis only)"
            )
        }
        guard inputs.count < 3 || inputs[2].output.shape[0] == inputs[1].output.shape[0] else {
            throw a.fail("its key has \(inputs[2].output.shape[0]) steps and its value \(inputs[1].output.shape[0])")
        }
        // GroupQueryAttention: num_query_heads over num_key_value_heads, one head_dim, the query's width out.
        let grouped = a.node.className == "GroupQueryAttention"
        let heads = try a.int(grouped ? "num_query_heads" : "num_heads")
        let kvHeads = grouped ? try a.int("num_key_value_heads") : heads
        guard heads % kvHeads == 0 else {
            throw a.fail("'num_query_heads' = \(heads) is not a multiple of 'num_key_value_heads' = \(kvHeads)")
        }
        let keyDim = try a.int(grouped ? "head_dim" : "key_dim")
        let valueDim =
            grouped || (a.config["value_dim"].map { $0.isNull } ?? true) ? keyDim : try a.int("value_dim")
        let dropout = a.config["dropout"]?.number ?? 0
        guard dropout >= 0 && dropout < 1 else { throw a.fail("'dropout' = \(dropout) must be in [0, 1)") }
        try a.require("use_gate", is: .bool(false), supported: "false")
        try a.requireNull("kernel_regularizer", "bias_regularizer", "kernel_constraint", "bias_constraint")
        if let axes = a.config["attention_axes"], !axes.isNull {
            let list = axes.array ?? [axes]
            guard list.count == 1, let axis = list[0].integer, axis == 1 || axis == -3 else {
                throw a.fail("'attention_axes' = \(axes) is not supported (the steps axis: null or [1])")
            }
        }
        var width: Int?
        if let shape = a.config["output_shape"], !shape.isNull {
            let list = shape.array ?? [shape]
            guard list.count == 1, let w = list[0].integer, w > 0 else {
                throw a.fail("'output_shape' = \(shape) is not supported (one width: an integer or a list of one)")
            }
            width = w
        }
        var window: Int?
        if let w = a.config["sliding_window"], !w.isNull { window = try a.int("sliding_window") }
        var causal = false
        for (key, value) in a.node.callOptions.object ?? [] where !value.isNull {
            switch (key, value.bool) {
            case ("use_causal_mask", let b?): causal = b
            case ("return_attention_scores", false?), ("attention_mask", nil): break
            default:
                throw a.fail(
                    "the call argument \(key)=\(value) is not supported (supported: use_causal_mask, return_attention_scores=False)"
                )
            }
        }
        let (query, value) = (inputs[0], inputs[1])
        let key = inputs.count > 2 ? inputs[2] : value
        if let m = attentionMask, m.output.shape != [query.output.shape[0], value.output.shape[0]] {
            throw a.fail(
                "its attention_mask is \(m.output.shape) per sample; it must be [query steps, key steps] = [\(query.output.shape[0]), \(value.output.shape[0])]"
            )
        }
        let fans = [
            (query.output.features, heads * keyDim), (key.output.features, kvHeads * keyDim),
            (value.output.features, kvHeads * valueDim), (heads * valueDim, width ?? query.output.features),
        ]
        return MultiHeadAttention(
            name: a.node.id, query: query, value: value, key: inputs.count > 2 ? key : nil, heads: heads,
            kvHeads: kvHeads, keyDim: keyDim, valueDim: valueDim, outputWidth: width,
            useBias: try a.bool("use_bias", default: true),
            causal: causal, window: window, masks: a.attentionMasks, attentionMask: attentionMask,
            dropout: Float(dropout),
            weights: a.node.layer,
            kernelInitializers: try fans.map { try a.initializer("kernel_initializer", fanIn: $0.0, fanOut: $0.1) },
            biasInitializer: try a.initializer("bias_initializer", fanIn: 1, fanOut: 1) ?? .zeros)
    }
}
