// Which Keras mask reaches a model output (KerasCompile: a loss on an output with time axes reads it).
// Keras 3 passes a layer's first input's mask on when the layer supports masking; what each layer
// does was measured in Keras 3.15, layer by layer, and only those are followed. A mask reaching an
// output through any other layer is refused by name, never guessed.

import TandemCore

extension KerasCompile {
    /// The Keras mask that reaches output `node`, as Keras 3.15 propagates it (measured: a layer that
    /// supports masking passes its first input's mask on; a sequence-returning RNN keeps it; a
    /// convolution, a pooling, Flatten or an RNN's last step drop it); nil without one. A mask that
    /// reaches the output through any other layer is refused by name.
    static func elementMask(of node: String, in nodes: [GraphNode], output: String) throws -> Head.ElementMask? {
        let byID = Dictionary(nodes.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let passes: Set<String> = [
            "Dense", "Activation", "Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
            "LayerNormalization", "BatchNormalization", "GroupNormalization", "UnitNormalization", "Normalization",
            "TimeDistributed", "ReLU", "LeakyReLU", "ELU", "Rescaling", "Identity", "ActivityRegularization",
        ]
        let drops: Set<String> = [
            "Conv1D", "Conv1DTranspose", "DepthwiseConv1D", "GlobalAveragePooling1D", "GlobalMaxPooling1D", "Flatten",
            "RMSNormalization", "ZeroPadding1D", "UpSampling1D", "InputLayer",
        ]
        func modelInput(_ n: GraphNode) throws -> String {
            guard let source = n.inputs.first, let input = byID[source], input.className == "InputLayer" else {
                throw TandemError.usage(
                    "output '\(output)': the mask of \(n.className) '\(n.layer)' reaches it, but that layer does not read a model input (masks are followed from a model input)"
                )
            }
            return input.layer
        }
        var id = node
        while let n = byID[id] {
            switch n.className {
            case "Embedding":
                guard n.config["mask_zero"]?.bool == true else { return nil }
                return .tokens(input: try modelInput(n))
            case "Masking":
                return .features(input: try modelInput(n), value: Float(n.config["mask_value"]?.number ?? 0))
            case "LSTM", "GRU", "SimpleRNN", "Bidirectional":
                let config = n.className == "Bidirectional" ? n.config["layer"]?["config"] : n.config
                guard config?["return_sequences"]?.bool == true else { return nil }
                id = n.inputs[0]
            case _ where passes.contains(n.className): id = n.inputs[0]
            case _ where drops.contains(n.className): return nil
            default:
                if let source = maskSource(of: id, in: nodes) {
                    throw TandemError.usage(
                        "output '\(output)': the mask of \(source) may reach it through \(n.className) '\(n.layer)', whose mask Tandem does not follow (it follows Dense, activations, dropout, normalisation, TimeDistributed and sequence-returning RNNs)"
                    )
                }
                return nil
            }
        }
        return nil
    }

    /// A layer before `node` that makes a Keras mask (Embedding(mask_zero=True), Masking), described; nil
    /// without one. Keras may have consumed it on the way (an RNN without return_sequences, a pooling):
    /// this errs on the side of refusing.
    static func maskSource(of node: String, in nodes: [GraphNode]) -> String? {
        let byID = Dictionary(nodes.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var seen = Set<String>()
        var stack = [node]
        while let id = stack.popLast() {
            guard seen.insert(id).inserted, let n = byID[id] else { continue }
            if n.className == "Embedding" && n.config["mask_zero"]?.bool == true {
                return "Embedding(mask_zero=True) '\(n.layer)'"
            }
            if n.className == "Masking" { return "Masking '\(n.layer)'" }
            stack += n.inputs
        }
        return nil
    }
}
