// Keras `ReversibleEmbedding(input_dim, output_dim, tie_weights=True, mask_zero)` (keras/src/layers/core/
// reversible_embedding.py): a call on token ids is an Embedding; a call with reverse=True projects features
// back onto the vocabulary with the same table, logits = x·Eᵀ (a language model's tied output). The two
// calls share `<layer>/embeddings`, so its gradient is dense (the training step sees the table read by a
// layer that is not its lookup and takes the dense path). A reverse call carries no Keras mask; a lookup
// with mask_zero carries ids ≠ 0, set at run time only (KerasMasks follows it).

/// The reverse call: y = x·Eᵀ over the last axis, E [V, D] the embedding table.
package final class TiedProjection: Layer {
    public let name: String
    package let weightsName: String
    package let inputs: [Layer]
    public let output: Node
    package let vocabulary: Int, dimension: Int
    private var store: ParameterStore!
    private var table: TensorView!
    private var rows: Int { output.width / vocabulary }

    package init(name: String, input: Layer, vocabulary: Int, weights: String) {
        self.name = name
        weightsName = weights
        inputs = [input]
        self.vocabulary = vocabulary
        dimension = input.output.features
        output = Node(shape: input.output.shape.dropLast() + [vocabulary])
    }

    public var forwardFlopsPerSample: Double { 2 * Double(rows * vocabulary * dimension) }
    public var parameterSpecs: [ParameterSpec] {
        [
            ParameterSpec(
                layer: weightsName, weight: "embeddings", shape: [vocabulary, dimension],
                initializer: .uniform(limit: 0.05))
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
        gemm(
            .none, .transposed, m: batch * rows, n: vocabulary, k: dimension, a: inputs[0].output.values,
            lda: dimension, b: store.value(table), ldb: dimension, beta: 0, c: output.values, ldc: vocabulary)
    }
    public func backward(batch: Int) {
        // dE += dyᵀ·x;  dx += dy·E
        gemm(
            .transposed, .none, m: vocabulary, n: dimension, k: batch * rows, a: output.gradients, lda: vocabulary,
            b: inputs[0].output.values, ldb: dimension, beta: 1, c: store.gradient(table), ldc: dimension)
        guard inputs[0].wantsGradient, let dx = inputs[0].output.gradients else { return }
        gemm(
            .none, .none, m: batch * rows, n: dimension, k: vocabulary, a: output.gradients, lda: vocabulary,
            b: store.value(table), ldb: dimension, beta: 1, c: dx, ldc: dimension)
    }
}

// MARK: - Keras ReversibleEmbedding: the layer table's entry (KerasLayerKind.swift) and its builder.

extension KerasLayerKind {
    static let reversibleEmbedding = KerasLayerKind(
        classNames: ["ReversibleEmbedding"],
        build: { a, inputs, _ in try LayerRegistry.reversibleEmbedding(a, inputs) },
        variables: { _, layer, _ in [top(layer, ["embeddings"])] })
}

extension LayerRegistry {
    /// Whether this call of a ReversibleEmbedding is its reverse projection (`reverse=True`).
    package static func isReverse(_ node: GraphNode) -> Bool {
        node.callOptions["reverse"]?.bool == true
    }

    static func reversibleEmbedding(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        try a.require("tie_weights", is: .bool(true), supported: "true: a separate reverse table is not supported")
        try a.requireNull("reverse_dtype", "logit_soft_cap", "embeddings_regularizer", "embeddings_constraint")
        for (key, value) in a.node.callOptions.object ?? [] where !value.isNull && key != "reverse" {
            throw a.fail("the call argument \(key)=\(value) is not supported (supported: reverse)")
        }
        guard isReverse(a.node) else { return try embedding(a, inputs) }
        let source = try single(a, inputs)
        let dimension = try a.int("output_dim")
        guard source.output.features == dimension else {
            throw a.fail("its reverse call reads \(source.output.features) features, not its output_dim \(dimension)")
        }
        return TiedProjection(
            name: a.node.id, input: source, vocabulary: try a.int("input_dim"), weights: a.node.layer)
    }
}
