// The fusion pass: an Embedding whose only consumer is an LSTM becomes, with
// that LSTM, ONE explicit layer in the model's schedule (the order forward and
// backward run), computed over the batch's distinct tokens (LSTM+Embedding.swift).
// The graph (`Model.layers`) keeps both Keras layers, so names, weights,
// summaries and archives are unchanged; only what runs differs. Tested against
// the plain pair (FusionTests).

/// Embedding → LSTM as one layer: token ids [B, T] in, the LSTM's output out.
/// The two layers' weights stay theirs (`embedding/embeddings`, `lstm/kernel`, …).
public final class FusedEmbeddingLSTM: Layer {
    public let embedding: Embedding
    public let lstm: LSTM
    public var name: String { "\(embedding.name)+\(lstm.name)" }
    public var inputs: [Layer] { embedding.inputs }
    public var output: Node { lstm.output }
    public var parameterSpecs: [ParameterSpec] { embedding.parameterSpecs + lstm.parameterSpecs }

    init(_ embedding: Embedding, _ lstm: LSTM) {
        self.embedding = embedding; self.lstm = lstm
        lstm.fuse(with: embedding)
    }

    public func bind(parameters: ParameterStore) {
        embedding.bind(parameters: parameters)
        lstm.bind(parameters: parameters)
    }
    public func workspaceSize(batch: Int) -> (values: Int, gradients: Int) { lstm.workspaceSize(batch: batch) }
    public func bind(workspace: inout WorkspaceCursor, batch: Int) { lstm.bind(workspace: &workspace, batch: batch) }
    public func forward(batch: Int, training: Bool) { lstm.forward(batch: batch, training: training) }
    public func backward(batch: Int) { lstm.backward(batch: batch) }
}

enum FusionPass {
    /// `order` (a topological order of the graph) with each fusable Embedding → LSTM pair
    /// replaced by one FusedEmbeddingLSTM at the LSTM's place (the Embedding's own place
    /// held nothing to run once fused).
    static func apply(to order: [Layer]) -> [Layer] {
        var consumers: [ObjectIdentifier: Int] = [:]
        for layer in order { for input in layer.inputs { consumers[ObjectIdentifier(input), default: 0] += 1 } }
        var fused: [ObjectIdentifier: FusedEmbeddingLSTM] = [:], absorbed = Set<ObjectIdentifier>()
        for case let lstm as LSTM in order {
            if let embedding = lstm.source as? Embedding, consumers[ObjectIdentifier(embedding)] == 1 {
                fused[ObjectIdentifier(lstm)] = FusedEmbeddingLSTM(embedding, lstm)
                absorbed.insert(ObjectIdentifier(embedding))
            }
        }
        return order.compactMap { layer in
            if absorbed.contains(ObjectIdentifier(layer)) { return nil }
            return fused[ObjectIdentifier(layer)] ?? layer
        }
    }
}
