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
