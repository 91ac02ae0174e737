// Keras Embedding, and the NotEqual op Keras records for Embedding(mask_zero=True)'s mask: the
// Keras layer table's entries (KerasLayerKind.swift) and their builders, which read a call's
// config and refuse every argument Tandem does not implement by name.

import TandemCore

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
        try a.requireNull("embeddings_constraint", "activity_regularizer", "lora_rank", "quantization_config")
        let initializer = try a.initializer("embeddings_initializer", fanIn: vocabulary, fanOut: dimension)
        return Embedding(
            name: a.node.id, vocabulary: vocabulary, dimension: dimension, input: source,
            weights: a.node.layer, initializer: initializer ?? .uniform(limit: 0.05))
    }

    /// `ops.not_equal(ids, value)` on a model input of token ids: Embedding(mask_zero=True)'s mask.
    static func notEqual(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        guard let tokens = try single(a, inputs) as? InputLayer, tokens.kind == .tokens else {
            throw a.fail("compares a model input of token ids only")
        }
        guard let v = a.config["value"]?.integer, let value = Int32(exactly: v) else {
            throw a.fail("needs an integer value")
        }
        return SequenceMask(name: a.node.id, tokens: tokens, value: value)
    }
}
