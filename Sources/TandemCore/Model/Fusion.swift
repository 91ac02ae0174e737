// The fusion pass: an Embedding read only by recurrent layers (LSTM, GRU,
// SimpleRNN) becomes, with each of them, ONE explicit layer in the
// model's schedule (the order forward and backward run), computed over the
// batch's distinct tokens (TokenProjection.swift). The graph (`Model.layers`)
// keeps both Keras layers, so names, weights, summaries and archives are
// unchanged; only what runs differs. Tested against the plain pair (FusionTests).

/// Embedding → recurrent layer as one layer: token ids [B, T] in, the recurrent layer's output out.
/// The two layers' weights stay theirs (`embedding/embeddings`, `gru/kernel`, …).
package final class FusedEmbeddingRecurrent: Layer {
    package let embedding: Embedding
    package let recurrent: TokenFusable
    public var name: String { "\(embedding.name)+\(recurrent.name)" }
    package var inputs: [Layer] { embedding.inputs + recurrent.inputs.filter { $0 !== embedding } }
    public var output: Node { recurrent.output }
    package var parameterSpecs: [ParameterSpec] { embedding.parameterSpecs + recurrent.parameterSpecs }
    /// The recurrent half (an LSTM, or a Recurrent for GRU and SimpleRNN).
    package var recurrentLayer: Layer { recurrent }

    init(_ embedding: Embedding, _ recurrent: TokenFusable) {
        self.embedding = embedding
        self.recurrent = recurrent
        recurrent.fuse(with: embedding)
    }

    package func bind(parameters: ParameterStore) {
        embedding.bind(parameters: parameters)
        recurrent.bind(parameters: parameters)
    }
    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) { recurrent.workspaceSize(batch: batch) }
    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        recurrent.bind(workspace: &workspace, batch: batch)
    }
    public func forward(batch: Int, training: Bool) { recurrent.forward(batch: batch, training: training) }
    package func backward(batch: Int) { recurrent.backward(batch: batch) }
}

enum FusionPass {
    /// Pairs each BatchNormalization with the ReLU or ReLU6 layer that is its only reader (the
    /// convolutional blocks of MobileNet and ResNet): the normalisation then writes the ReLU's output
    /// and takes the ReLU's backward on the way, one pass each way instead of two, and its own output
    /// and gradient are never formed. Both layers keep their place in the schedule (reproducible
    /// mode's per-layer statistics passes find the normalisation where it was). Tested against the
    /// plain pair (FusionTests).
    static func pairNormalizationActivations(in order: [Layer], outputs: [Layer]) {
        var readers: [ObjectIdentifier: [Layer]] = [:]
        for layer in order { for input in layer.inputs { readers[ObjectIdentifier(input), default: []].append(layer) } }
        for case let normalization as BatchNormalization in order
        where !outputs.contains(where: { $0 === normalization }) {
            guard let r = readers[ObjectIdentifier(normalization)], r.count == 1,
                let activation = r[0] as? ActivationLayer,
                activation.activation == .relu || activation.activation == .relu6
            else { continue }
            normalization.fuse(activation)
        }
    }

    /// `order` (a topological order of the graph) with each fusable Embedding → recurrent pair
    /// replaced by one FusedEmbeddingRecurrent at the recurrent layer's place (the Embedding's
    /// own place held nothing to run once fused). An Embedding read only by recurrent layers
    /// (a Bidirectional's two halves, say) fuses into each: every one projects the batch's
    /// distinct tokens with its own kernel, and their table gradients add up.
    static func apply(to order: [Layer]) -> [Layer] {
        var readers: [ObjectIdentifier: [Layer]] = [:]
        for layer in order { for input in layer.inputs { readers[ObjectIdentifier(input), default: []].append(layer) } }
        var fused: [ObjectIdentifier: FusedEmbeddingRecurrent] = [:]
        var absorbed = Set<ObjectIdentifier>()
        for case let embedding as Embedding in order {
            let consumers = readers[ObjectIdentifier(embedding)] ?? []
            let recurrent = consumers.compactMap { $0 as? TokenFusable }.filter {
                $0.canFuse && $0.source === embedding
            }
            guard !consumers.isEmpty, recurrent.count == consumers.count else { continue }
            for r in recurrent { fused[ObjectIdentifier(r)] = FusedEmbeddingRecurrent(embedding, r) }
            absorbed.insert(ObjectIdentifier(embedding))
        }
        return order.compactMap { layer in
            if absorbed.contains(ObjectIdentifier(layer)) { return nil }
            return fused[ObjectIdentifier(layer)] ?? layer
        }
    }
}
