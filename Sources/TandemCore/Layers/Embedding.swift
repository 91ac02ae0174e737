// Embedding: token ids [B, T] → vectors [B, T, D] by row lookup.
// Its gradient is the true dense gradient: every occurrence of a token id adds
// its row of dY into that id's row of dEmbeddings (docs/SPEC.md §3).

/// Keras `Embedding`: `embeddings` [vocab, D], uniform ±0.05.
package final class Embedding: Layer {
    public let name: String
    package let weightsName: String
    package let initializer: Initializer
    package let inputs: [Layer]
    public let output: Node
    public let vocabulary: Int, dimension: Int
    package let source: InputLayer
    private(set) var table: TensorView!
    private(set) var store: ParameterStore!
    /// Set by the fusion pass when its readers (recurrent layers) read the table themselves
    /// (TokenProjection.swift, Fusion.swift): this layer then has no buffers and is not scheduled.
    package internal(set) var fused = false

    /// Output [B, T, D] for token ids [B, T]. `weights` names the Keras layer
    /// whose table a shared call uses (default: `name`).
    package init(
        name: String, vocabulary: Int, dimension: Int, input: InputLayer, weights: String? = nil,
        initializer: Initializer = .uniform(limit: 0.05)
    ) {
        precondition(input.kind == .tokens, "Embedding reads a token input")
        self.name = name
        self.vocabulary = vocabulary
        self.dimension = dimension
        weightsName = weights ?? name
        self.initializer = initializer
        source = input
        inputs = [input]
        output = Node(shape: [input.width, dimension])
    }

    package var parameterSpecs: [ParameterSpec] {
        [
            ParameterSpec(
                layer: weightsName, weight: "embeddings", shape: [vocabulary, dimension], initializer: initializer)
        ]
    }

    package func bind(parameters: ParameterStore) {
        store = parameters
        table = parameters.view("\(weightsName)/embeddings")
    }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        fused ? (0, 0) : (batch * output.width, batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        guard !fused else { return }
        output.values = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    /// Y[b, t, :] = E[ids[b, t], :]. Ids were range-checked when the data was read.
    public func forward(batch: Int, training: Bool) {
        guard !fused else { return }
        let ids = source.tokens!
        let e = store.value(table)
        let y = output.values!
        let d = dimension
        for r in 0..<(batch * source.width) {
            (y + r * d).update(from: e + Int(ids[r]) * d, count: d)
        }
    }

    /// dE[ids[b, t], :] += dY[b, t, :] — repeated ids sum.
    package func backward(batch: Int) {
        guard !fused else { return }
        let ids = source.tokens!
        let dE = store.gradient(table)
        let dy = output.gradients!
        let d = dimension
        for r in 0..<(batch * source.width) {
            let row = dE + Int(ids[r]) * d
            let g = dy + r * d
            for j in 0..<d { row[j] += g[j] }
        }
    }
}

// MARK: - Keras Embedding, and the NotEqual op Keras records for Embedding(mask_zero=True)'s mask: the layer
// table's entries (KerasLayerKind.swift) and their builders, which read a call's config and refuse every
// argument Tandem does not implement by name.

extension KerasLayerKind {
    package static let embedding = KerasLayerKind(
        classNames: ["Embedding"], build: { a, inputs, _ in try LayerRegistry.embedding(a, inputs) },
        variables: { _, layer, _ in [KerasLayerKind.top(layer, ["embeddings"])] },
        regularizerKeys: [("embeddings_regularizer", "embeddings")])

    static let notEqual = KerasLayerKind(
        classNames: ["NotEqual"], listed: false, build: { a, inputs, _ in try LayerRegistry.notEqual(a, inputs) })
}

extension LayerRegistry {
    package static func embedding(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        guard let source = try single(a, inputs) as? InputLayer, source.kind == .tokens else {
            throw a.fail("must read a model input directly (its token ids)")
        }
        let vocabulary = try a.int("input_dim")
        let dimension = try a.int("output_dim")
        // mask_zero: the file carries the mask as a NotEqual op passed to the layers that read it.
        try a.require("sparse", is: .bool(false), supported: "dense gradients")
        try a.requireNull("lora_rank", "quantization_config")
        let initializer = try a.initializer("embeddings_initializer", fanIn: vocabulary, fanOut: dimension)
        return Embedding(
            name: a.node.id, vocabulary: vocabulary, dimension: dimension, input: source,
            weights: a.node.layer, initializer: initializer ?? .uniform(limit: 0.05))
    }

    /// `ops.not_equal(ids, value)` on a model input of token ids: Embedding(mask_zero=True)'s mask;
    /// with a float value on any float tensor, the first half of Masking's (Masking.swift).
    static func notEqual(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        if case .double(let v) = a.config["value"] {
            let source = try single(a, inputs)
            if let input = source as? InputLayer, input.kind == .tokens {
                throw a.fail("compares token ids with the float \(v) (Masking on token ids is not supported)")
            }
            return ValueMask(name: a.node.id, value: Float(v), input: source)
        }
        guard let tokens = try single(a, inputs) as? InputLayer, tokens.kind == .tokens else {
            throw a.fail("compares a model input of token ids only")
        }
        guard let v = a.config["value"]?.integer, let value = Int32(exactly: v) else {
            throw a.fail("needs an integer value")
        }
        return SequenceMask(name: a.node.id, tokens: tokens, value: value)
    }
}
