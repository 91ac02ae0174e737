// The fusion pass: an Embedding whose only consumer is a recurrent layer
// (LSTM, GRU, SimpleRNN) becomes, with that layer, ONE explicit layer in the
// model's schedule (the order forward and backward run), computed over the
// batch's distinct tokens (TokenProjection.swift). The graph (`Model.layers`)
// keeps both Keras layers, so names, weights, summaries and archives are
// unchanged; only what runs differs. Tested against the plain pair (FusionTests).

/// Embedding → recurrent layer as one layer: token ids [B, T] in, the recurrent layer's output out.
/// The two layers' weights stay theirs (`embedding/embeddings`, `gru/kernel`, …).
public final class FusedEmbeddingRecurrent: Layer {
    public let embedding: Embedding
    let recurrent: TokenFusable
    public var name: String { "\(embedding.name)+\(recurrent.name)" }
    public var inputs: [Layer] { embedding.inputs + recurrent.inputs.filter { $0 !== embedding } }
    public var output: Node { recurrent.output }
    public var parameterSpecs: [ParameterSpec] { embedding.parameterSpecs + recurrent.parameterSpecs }
    /// The recurrent half (an LSTM, or a Recurrent for GRU and SimpleRNN).
    public var recurrentLayer: Layer { recurrent }

    init(_ embedding: Embedding, _ recurrent: TokenFusable) {
        self.embedding = embedding; self.recurrent = recurrent
        recurrent.fuse(with: embedding)
    }

    public func bind(parameters: ParameterStore) {
        embedding.bind(parameters: parameters)
        recurrent.bind(parameters: parameters)
    }
    public func workspaceSize(batch: Int) -> (values: Int, gradients: Int) { recurrent.workspaceSize(batch: batch) }
    public func bind(workspace: inout WorkspaceCursor, batch: Int) { recurrent.bind(workspace: &workspace, batch: batch) }
    public func forward(batch: Int, training: Bool) { recurrent.forward(batch: batch, training: training) }
    public func backward(batch: Int) { recurrent.backward(batch: batch) }
}

enum FusionPass {
    /// `order` (a topological order of the graph) with each fusable Embedding → recurrent pair
    /// replaced by one FusedEmbeddingRecurrent at the recurrent layer's place (the Embedding's
    /// own place held nothing to run once fused).
    static func apply(to order: [Layer]) -> [Layer] {
        var consumers: [ObjectIdentifier: Int] = [:]
        for layer in order { for input in layer.inputs { consumers[ObjectIdentifier(input), default: 0] += 1 } }
        var fused: [ObjectIdentifier: FusedEmbeddingRecurrent] = [:], absorbed = Set<ObjectIdentifier>()
        for layer in order {
            guard let recurrent = layer as? TokenFusable, recurrent.canFuse,
                  let embedding = recurrent.source as? Embedding, consumers[ObjectIdentifier(embedding)] == 1 else { continue }
            fused[ObjectIdentifier(recurrent)] = FusedEmbeddingRecurrent(embedding, recurrent)
            absorbed.insert(ObjectIdentifier(embedding))
        }
        return order.compactMap { layer in
            if absorbed.contains(ObjectIdentifier(layer)) { return nil }
            return fused[ObjectIdentifier(layer)] ?? layer
        }
    }
}
