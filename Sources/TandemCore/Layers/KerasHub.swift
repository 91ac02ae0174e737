// KerasHub's layers (keras_hub 0.32.0, keras_hub/src/layers/modeling/), implemented natively from their
// config: an archive entry whose registered_name is one of these `keras_hub>…` names loads when Tandem
// understands every key of its config; nothing from the file is executed, and any other registered name
// is refused (KerasJSON.refuseCustom). TokenAndPositionEmbedding and TransformerEncoder are Blocks of
// Tandem's own layers, their weights under KerasHub's paths.
//
// - PositionEmbedding(sequence_length): a weight `embeddings` [L, F]; on [B, T, F] its output is the first
//   T rows, broadcast over the batch (the input's values are not read). Inside TokenAndPositionEmbedding
//   the same weight is added to the token embeddings.
// - TokenAndPositionEmbedding(vocabulary_size, sequence_length, embedding_dim, mask_zero): token_embedding
//   (a ReversibleEmbedding; tie_weights, the default, adds no weight) plus position_embedding; with
//   mask_zero its Keras mask is ids ≠ 0.
// - TransformerEncoder(intermediate_dim, num_heads, dropout, activation, layer_norm_epsilon,
//   normalize_first): x + Dropout(MHA(x, x)) then LayerNorm (or the norm first, normalize_first), then the
//   same around Dense(intermediate, activation) → Dense(hidden); MultiHeadAttention with key_dim =
//   hidden / heads, its dropout the block's, masked by the input's Keras mask on queries and keys (KerasHub
//   passes it as the attention mask and Keras adds the query's).

import Foundation

/// KerasHub's PositionEmbedding, and the position half of TokenAndPositionEmbedding (`addsInput`).
package final class PositionEmbedding: Layer {
    public let name: String
    package let weightsName: String
    package let inputs: [Layer]
    public let output: Node
    package let length: Int, addsInput: Bool
    let initializer: Initializer
    private var store: ParameterStore!
    private var table: TensorView!

    package init(
        name: String, input: Layer, length: Int, addsInput: Bool, weights: String? = nil,
        initializer: Initializer = .uniform(limit: 0.05)
    ) {
        precondition(input.output.shape.count == 2 && input.output.shape[0] <= length)
        self.name = name
        weightsName = weights ?? name
        inputs = [input]
        self.length = length
        self.addsInput = addsInput
        self.initializer = initializer
        output = Node(shape: input.output.shape)
    }

    public var parameterSpecs: [ParameterSpec] {
        [
            ParameterSpec(
                layer: weightsName, weight: "embeddings", shape: [length, output.features], initializer: initializer)
        ]
    }
    public func bind(parameters: ParameterStore) {
        store = parameters
        table = parameters.view("\(weightsName)/embeddings")
    }
    public func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (batch * output.width, batch * output.width)
    }
    public func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    public func forward(batch: Int, training: Bool) {
        let (w, p, x) = (output.width, store.value(table), inputs[0].output.values!)
        for b in 0..<batch {
            let y = output.values + b * w
            if addsInput {
                for i in 0..<w { y[i] = x[b * w + i] + p[i] }  // the first T rows of the table are the first T·F
            } else {
                y.update(from: p, count: w)
            }
        }
    }

    public func backward(batch: Int) {
        let (w, g, dy) = (output.width, store.gradient(table), output.gradients!)
        for b in 0..<batch { for i in 0..<w { g[i] += dy[b * w + i] } }
        guard addsInput, inputs[0].wantsGradient, let dx = inputs[0].output.gradients else { return }
        for i in 0..<(batch * w) { dx[i] += dy[i] }
    }
}

/// KerasHub's SinePositionEncoding(max_wavelength): the sinusoidal encoding of the steps, [T, F] broadcast
/// over the batch — sin(t·w_j) on even features, cos on odd, w_j = (1/max_wavelength)^(2⌊j/2⌋/F) — computed
/// in float32 as KerasHub's ops do. It reads no value of its input and has no weights, so no gradient.
package final class SinePositionEncoding: Layer {
    public let name: String
    package let inputs: [Layer]
    public let output: Node
    private let table: [Float]

    package init(name: String, input: Layer, maxWavelength: Double) {
        precondition(input.output.shape.count == 2)
        self.name = name
        inputs = [input]
        output = Node(shape: input.output.shape)
        let (steps, features) = (input.output.shape[0], input.output.features)
        let minFrequency = Float(1 / maxWavelength)
        var table: [Float] = []
        for t in 0..<steps {
            for j in 0..<features {
                let timescale = powf(minFrequency, Float(2 * (j / 2)) / Float(features))
                let angle = Float(t) * timescale
                table.append(j % 2 == 0 ? sinf(angle) : cosf(angle))
            }
        }
        self.table = table
    }

    public func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (batch * output.width, batch * output.width)
    }
    public func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
    }
    public func forward(batch: Int, training: Bool) {
        table.withUnsafeBufferPointer { t in
            for b in 0..<batch { (output.values + b * output.width).update(from: t.baseAddress!, count: output.width) }
        }
    }
    package func backward(batch: Int) {}
}

/// KerasHub's RotaryEmbedding on [B, T, F] (sequence axis 1, features last, F even; rope_type linear or
/// dynamic): with h = F/2, θ_i = t·inv_i (inv_i = max_wavelength^(−2i/F) / scaling), the angle of feature j is
/// θ_{j mod h}, and y_j = x_j·cos + r_j·sin where r = [−x_{h…F−1}, x_{0…h−1}] — linear in x, no weights.
package final class RotaryEmbedding: Layer {
    public let name: String
    package let inputs: [Layer]
    public let output: Node
    /// cos and sin per (step, feature), [T, F] each.
    private let cosines: [Float], sines: [Float]

    package init(name: String, input: Layer, inverseFrequencies: [Float]) {
        precondition(input.output.shape.count == 2 && input.output.features == 2 * inverseFrequencies.count)
        self.name = name
        inputs = [input]
        output = Node(shape: input.output.shape)
        let (steps, h) = (input.output.shape[0], inverseFrequencies.count)
        var (c, s) = ([Float](), [Float]())
        for t in 0..<steps {
            for j in 0..<(2 * h) {
                let angle = Float(t) * inverseFrequencies[j % h]
                c.append(cosf(angle))
                s.append(sinf(angle))
            }
        }
        (cosines, sines) = (c, s)
    }

    public func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (batch * output.width, batch * output.width)
    }
    public func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
    }
    public func forward(batch: Int, training: Bool) {
        let (w, F, h) = (output.width, output.features, output.features / 2)
        let x = inputs[0].output.values!
        for b in 0..<batch {
            for i in 0..<w {
                let (row, j) = (b * w + i - i % F, i % F)
                let rotated = j < h ? -x[row + j + h] : x[row + j - h]
                output.values[b * w + i] = x[b * w + i] * cosines[i] + rotated * sines[i]
            }
        }
    }
    public func backward(batch: Int) {
        guard inputs[0].wantsGradient, let dx = inputs[0].output.gradients else { return }
        let (w, F, h, dy) = (output.width, output.features, output.features / 2, output.gradients!)
        for b in 0..<batch {
            for i in 0..<w {
                let (row, j) = (b * w + i - i % F, i % F)
                let g = dy[b * w + i]
                dx[b * w + i] += g * cosines[i]
                if j < h { dx[row + j + h] -= g * sines[i] } else { dx[row + j - h] += g * sines[i] }
            }
        }
    }
}

// MARK: - The layer table's entries (KerasLayerKind.swift) and their builders.

extension KerasLayerKind {
    /// KerasHub classes by registered name (`keras_hub>Class`), with the config keys each understands.
    package static let kerasHubConfigKeys: [String: Set<String>] = [
        "PositionEmbedding": ["sequence_length", "initializer"],
        "SinePositionEncoding": ["max_wavelength"],
        "RotaryEmbedding": [
            "max_wavelength", "scaling_factor", "rope_type", "beta_fast", "beta_slow",
            "original_max_position_embeddings",
            "truncate", "sequence_axis", "feature_axis", "denominator_dim",
        ],
        "TokenAndPositionEmbedding": [
            "vocabulary_size", "sequence_length", "embedding_dim", "embeddings_initializer", "tie_weights", "mask_zero",
        ],
        "TransformerEncoder": [
            "intermediate_dim", "num_heads", "dropout", "activation", "layer_norm_epsilon", "kernel_initializer",
            "bias_initializer", "normalize_first",
        ],
        "TransformerDecoder": [
            "intermediate_dim", "num_heads", "dropout", "activation", "layer_norm_epsilon", "kernel_initializer",
            "bias_initializer", "normalize_first", "decoder_sequence_shape", "encoder_sequence_shape",
        ],
    ]

    static let positionEmbedding = KerasLayerKind(
        classNames: ["PositionEmbedding"], build: { a, inputs, _ in try LayerRegistry.positionEmbedding(a, inputs) },
        variables: { _, layer, _ in [top(layer, ["embeddings"])] })

    static let sinePositionEncoding = KerasLayerKind(
        classNames: ["SinePositionEncoding"],
        build: { a, inputs, _ in
            try LayerRegistry.checkKerasHubKeys(a)
            let source = try LayerRegistry.single(a, inputs)
            guard source.output.shape.count == 2 else {
                throw a.fail("reads [batch, steps, features], got \(source.output.shape)")
            }
            let wavelength = a.config["max_wavelength"]?.number ?? 10000
            guard wavelength > 0 else { throw a.fail("'max_wavelength' must be positive") }
            return SinePositionEncoding(name: a.node.id, input: source, maxWavelength: wavelength)
        })

    static let rotaryEmbedding = KerasLayerKind(
        classNames: ["RotaryEmbedding"], build: { a, inputs, _ in try LayerRegistry.rotaryEmbedding(a, inputs) })

    static let tokenAndPositionEmbedding = KerasLayerKind(
        classNames: ["TokenAndPositionEmbedding"],
        build: { a, inputs, _ in try LayerRegistry.tokenAndPositionEmbedding(a, inputs) },
        variables: { _, layer, _ in
            [
                top(layer, []),
                VariableGroup(
                    path: "token_embedding/vars", label: "token_embedding", names: ["token_embedding/embeddings"]),
                VariableGroup(
                    path: "position_embedding/vars", label: "position_embedding",
                    names: ["position_embedding/embeddings"]),
            ]
        })

    static let transformerEncoder = KerasLayerKind(
        classNames: ["TransformerEncoder"],
        build: { a, inputs, _ in try LayerRegistry.transformerBlock(a, inputs, decoder: false) },
        variables: { _, layer, _ in transformerVariables(layer, attention: "self_attention_layer", cross: false) })

    static let transformerDecoder = KerasLayerKind(
        classNames: ["TransformerDecoder"],
        build: { a, inputs, _ in try LayerRegistry.transformerBlock(a, inputs, decoder: true) },
        variables: { _, layer, config in
            let cross = config["encoder_sequence_shape"].map { !$0.isNull } ?? false
            return transformerVariables(layer, attention: "self_attention", cross: cross)
        })

    /// A KerasHub encoder's or decoder's groups: its parts under their attributes (`_self_attention_layer/…`),
    /// each labelled with the part's name (`attention`: the attention's, which the two classes name apart).
    private static func transformerVariables(_ layer: String, attention: String, cross: Bool) -> [VariableGroup] {
        func mha(_ attribute: String, _ name: String) -> [VariableGroup] {
            LayerRegistry.variables(className: "MultiHeadAttention", layer: name, config: .object([])).map {
                VariableGroup(path: "\(attribute)/\($0.path)", label: $0.label, names: $0.names.map { "\(name)/\($0)" })
            }
        }
        func part(_ name: String, _ weights: [String]) -> VariableGroup {
            VariableGroup(path: "_\(name)/vars", label: name, names: weights.map { "\(name)/\($0)" })
        }
        // In the order Keras creates the variables (the optimizer's slots follow it): the decoder makes its
        // Denses before its feedforward norm.
        let norm = part("feedforward_layer_norm", ["gamma", "beta"])
        let denses = [
            part("feedforward_intermediate_dense", ["kernel", "bias"]),
            part("feedforward_output_dense", ["kernel", "bias"]),
        ]
        let crossGroups =
            cross
            ? mha("_cross_attention_layer", "cross_attention")
                + [part("cross_attention_layer_norm", ["gamma", "beta"]), part("cross_attention_dropout", [])] : []
        return [top(layer, [])] + mha("_self_attention_layer", attention)
            + [part("self_attention_layer_norm", ["gamma", "beta"]), part("self_attention_dropout", [])] + crossGroups
            + (attention == "self_attention" ? denses + [norm] : [norm] + denses) + [part("feedforward_dropout", [])]
    }
}

extension LayerRegistry {
    /// Refuses a KerasHub config key Tandem does not know (the version the tests pin writes only these).
    static func checkKerasHubKeys(_ a: LayerArguments) throws {
        let known = KerasLayerKind.kerasHubConfigKeys[a.node.className] ?? []
        let base: Set<String> = ["name", "trainable", "dtype"]
        for (key, _) in a.config.object ?? [] where !known.contains(key) && !base.contains(key) {
            throw a.fail(
                "the KerasHub config key '\(key)' is not understood (Tandem implements \(a.node.className) from keras_hub 0.32.0's keys: \(known.sorted().joined(separator: ", ")))"
            )
        }
    }

    static func positionEmbedding(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        try checkKerasHubKeys(a)
        let source = try single(a, inputs)
        let length = try a.int("sequence_length")
        guard source.output.shape.count == 2, source.output.shape[0] <= length else {
            throw a.fail("reads [batch, steps ≤ \(length), features], got \(source.output.shape)")
        }
        return PositionEmbedding(
            name: a.node.id, input: source, length: length, addsInput: false, weights: a.node.layer,
            initializer: try a.initializer("initializer", fanIn: length, fanOut: source.output.features)
                ?? .uniform(limit: 0.05))
    }

    static func rotaryEmbedding(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        try checkKerasHubKeys(a)
        let source = try single(a, inputs)
        let sequenceAxis = a.config["sequence_axis"]?.integer ?? 1
        let featureAxis = a.config["feature_axis"]?.integer ?? -1
        guard source.output.shape.count == 2, [1, -2].contains(sequenceAxis), [2, -1].contains(featureAxis) else {
            throw a.fail(
                "rotates [batch, steps, features] with sequence_axis 1 and feature_axis -1 only (got \(source.output.shape), axes \(sequenceAxis), \(featureAxis))"
            )
        }
        let F = source.output.features
        guard F % 2 == 0 else { throw a.fail("rotates an even number of features, got \(F)") }
        let rope = try a.string("rope_type", default: "linear")
        let scaling = Float(a.config["scaling_factor"]?.number ?? 1)
        let wavelength = Float(a.config["max_wavelength"]?.number ?? 10000)
        let denominator = Float(a.config["denominator_dim"]?.integer ?? F)
        // In float32 as KerasHub's ops: inv_i = wavelength^(−2i/denominator), then the rope type's scaling.
        var inverse = (0..<(F / 2)).map { powf(wavelength, -(Float(2 * $0) / denominator)) }
        switch rope {
        case "linear": inverse = inverse.map { $0 / scaling }
        case "dynamic":
            let exponent = Float(F) / Float(max(1, F - 2))
            inverse = inverse.map { $0 / powf(scaling, exponent) }
        default: throw a.fail("'rope_type' = '\(rope)' is not supported (linear, dynamic)")
        }
        return RotaryEmbedding(name: a.node.id, input: source, inverseFrequencies: inverse)
    }

    static func tokenAndPositionEmbedding(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        try checkKerasHubKeys(a)
        guard let tokens = try single(a, inputs) as? InputLayer, tokens.kind == .tokens else {
            throw a.fail("must read a model input directly (its token ids)")
        }
        try a.require("tie_weights", is: .bool(true), supported: "true: a reverse projection is not supported")
        let (vocabulary, length, dimension) = (
            try a.int("vocabulary_size"), try a.int("sequence_length"), try a.int("embedding_dim")
        )
        guard tokens.width <= length else {
            throw a.fail("reads \(tokens.width) tokens, more than its sequence_length \(length)")
        }
        let initializer =
            try a.initializer("embeddings_initializer", fanIn: vocabulary, fanOut: dimension) ?? .uniform(limit: 0.05)
        let w = a.node.layer
        let embedding = Embedding(
            name: "\(a.node.id)/token_embedding", vocabulary: vocabulary, dimension: dimension, input: tokens,
            weights: "\(w)/token_embedding", initializer: initializer)
        let position = PositionEmbedding(
            name: "\(a.node.id)/position_embedding", input: embedding, length: length, addsInput: true,
            weights: "\(w)/position_embedding", initializer: initializer)
        return Block(name: a.node.id, inputs: [tokens], parts: [embedding, position])
    }

    /// TransformerEncoder, or TransformerDecoder without cross-attention (a decoder-only block): the same parts,
    /// but the decoder's attention (KerasHub's CachedMultiHeadAttention) is causal unless the call says
    /// use_causal_mask=False, takes the input's mask on its keys only (its call has no query mask for Keras to
    /// fill), is named `self_attention`, and Keras creates its Denses before its feedforward norm.
    static func transformerBlock(_ a: LayerArguments, _ inputs: [Layer], decoder: Bool) throws -> Layer {
        try checkKerasHubKeys(a)
        var causal = decoder
        for (key, value) in a.node.callOptions.object ?? [] where !value.isNull {
            switch (key, value.bool) {
            case ("use_causal_mask", let b?) where decoder: causal = b
            default:
                throw a.fail(
                    "the call argument \(key)=\(value) is not supported\(decoder ? " (supported: use_causal_mask)" : "")"
                )
            }
        }
        // A decoder built with an encoder_sequence attends to it after its self-attention (its second input).
        let crossAttends = decoder && (a.config["encoder_sequence_shape"].map { !$0.isNull } ?? false)
        guard inputs.count == (crossAttends ? 2 : 1) else {
            throw a.fail(
                crossAttends
                    ? "was built with an encoder_sequence; call it on a decoder sequence and encoder_sequence="
                    : "takes one sequence (an encoder_sequence needs a decoder built with one)")
        }
        let source = inputs[0]
        let encoded: Layer? = crossAttends ? inputs[1] : nil
        if let encoded, encoded.output.shape.count != 2 || encoded.output.features != source.output.features {
            throw a.fail(
                "its encoder_sequence must be [batch, steps, \(source.output.features)], got \(encoded.output.shape)")
        }
        guard source.output.shape.count == 2 else {
            throw a.fail("reads sequences [batch, steps, features], got \(source.output.shape)")
        }
        let hidden = source.output.features
        let heads = try a.int("num_heads")
        guard hidden / heads > 0 else { throw a.fail("its \(hidden) features are fewer than its \(heads) heads") }
        let intermediate = try a.int("intermediate_dim")
        let dropout = a.config["dropout"]?.number ?? 0
        guard dropout >= 0 && dropout < 1 else { throw a.fail("'dropout' = \(dropout) must be in [0, 1)") }
        let epsilon = Float(a.config["layer_norm_epsilon"]?.number ?? 1e-5)
        let first = try a.bool("normalize_first", default: false)
        let (id, w) = (a.node.id, a.node.layer)
        let kernel = { (i: Int, o: Int) in try a.initializer("kernel_initializer", fanIn: i, fanOut: o) }
        let bias = try a.initializer("bias_initializer", fanIn: 1, fanOut: 1) ?? .zeros
        // The input's Keras mask masks the attention's queries and keys (ModelDescription finds it); the
        // encoder sequence's masks the cross-attention's keys.
        let mask = a.attentionMasks.first ?? nil
        let encoderMask = a.attentionMasks.count > 1 ? a.attentionMasks[1] : nil
        var parts: [Layer] = []
        func add<L: Layer>(_ l: L) -> L {
            parts.append(l)
            return l
        }
        func norm(_ name: String, _ input: Layer) -> LayerNormalization {
            add(LayerNormalization(name: "\(id)/\(name)", input: input, epsilon: epsilon, weights: "\(w)/\(name)"))
        }
        func dropped(_ name: String, _ input: Layer) -> Layer {
            dropout > 0 ? add(Dropout(name: "\(id)/\(name)", input: input, rate: Float(dropout))) : input
        }
        let keyDim = hidden / heads
        let attentionInput: Layer = first ? norm("self_attention_layer_norm", source) : source
        let attentionName = decoder ? "self_attention" : "self_attention_layer"
        let attention = add(
            MultiHeadAttention(
                name: "\(id)/\(attentionName)", query: attentionInput, value: attentionInput, heads: heads,
                keyDim: keyDim,
                causal: causal, masks: decoder ? [nil, mask] : [mask, mask], dropout: Float(dropout),
                weights: "\(w)/\(attentionName)",
                kernelInitializers: try [
                    kernel(hidden, hidden), kernel(hidden, hidden), kernel(hidden, hidden), kernel(hidden, hidden),
                ], biasInitializer: bias))
        var x: Layer = add(
            Merge(
                name: "\(id)/self_attention_residual", kind: .add,
                inputs: [dropped("self_attention_dropout", attention), source]))
        if !first { x = norm("self_attention_layer_norm", x) }
        var cross: MultiHeadAttention?
        if let encoded {
            let crossResidual = x
            let crossInput: Layer = first ? norm("cross_attention_layer_norm", x) : x
            cross = add(
                MultiHeadAttention(
                    name: "\(id)/cross_attention", query: crossInput, value: encoded, heads: heads, keyDim: keyDim,
                    masks: [nil, encoderMask], dropout: Float(dropout), weights: "\(w)/cross_attention",
                    kernelInitializers: try [
                        kernel(hidden, hidden), kernel(hidden, hidden), kernel(hidden, hidden), kernel(hidden, hidden),
                    ], biasInitializer: bias))
            x = add(
                Merge(
                    name: "\(id)/cross_attention_residual", kind: .add,
                    inputs: [dropped("cross_attention_dropout", cross!), crossResidual]))
            if !first { x = norm("cross_attention_layer_norm", x) }
        }
        let residual = x
        let up = add(
            Dense(
                name: "\(id)/feedforward_intermediate_dense", units: intermediate,
                activation: try a.activation("activation", default: "relu"),
                input: first ? norm("feedforward_layer_norm", x) : x, weights: "\(w)/feedforward_intermediate_dense",
                kernelInitializer: try kernel(hidden, intermediate), biasInitializer: bias))
        let down = add(
            Dense(
                name: "\(id)/feedforward_output_dense", units: hidden, input: up,
                weights: "\(w)/feedforward_output_dense",
                kernelInitializer: try kernel(intermediate, hidden), biasInitializer: bias))
        x = add(
            Merge(
                name: "\(id)/feedforward_residual", kind: .add,
                inputs: [dropped("feedforward_dropout", down), residual]))
        if !first { x = norm("feedforward_layer_norm", x) }
        // Keras creates the variables of the attention and its norm, the cross-attention and its norm, then the
        // feedforward's norm and Denses (the decoder: its Denses, then the norm).
        let norms = parts.compactMap { $0 as? LayerNormalization }
        func named(_ suffix: String) -> [Layer] { norms.filter { $0.name.hasSuffix("/\(suffix)") } }
        let feedforward: [Layer] =
            decoder ? [up, down] + named("feedforward_layer_norm") : named("feedforward_layer_norm") + [up, down]
        let order: [Layer] =
            [attention] + named("self_attention_layer_norm") + (cross.map { [$0] } ?? [])
            + named("cross_attention_layer_norm") + feedforward
            + parts.filter { !($0 is MultiHeadAttention || $0 is LayerNormalization || $0 is Dense) }
        return Block(
            name: id, inputs: inputs + [mask, encoderMask].compactMap { $0 }, parts: parts, variableOrder: order)
    }
}
