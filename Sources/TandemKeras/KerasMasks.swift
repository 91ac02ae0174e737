// Which Keras mask reaches a model output (KerasCompile: a loss on an output with time axes reads it).
// Keras 3 passes a layer's first input's mask on when the layer supports masking; what each layer
// does was measured in Keras 3.15, layer by layer, and only those are followed. A mask reaching an
// output through any other layer is refused by name, never guessed.
//
// MultiHeadAttention's call takes its query's, value's and key's masks and then clears them on those very
// tensors (multi_head_attention.py: backend.set_keras_mask(query, None), …): a layer that runs after it and
// reads one of them sees no mask there. A residual Add([x, attention(x, x)]) therefore has no mask in Keras
// 3.15 (its merge rule wants both), and nor has anything after it but what reads the mask Keras saved in
// the file (GlobalAveragePooling1D's `mask` argument). The walk follows that: it knows who reads each tensor.
// (GroupQueryAttention reads the masks without clearing them.)

import TandemCore

extension KerasCompile {
    /// The Keras mask that reaches output `node`, as Keras 3.15 propagates it (measured: a layer that
    /// supports masking passes its first input's mask on; a sequence-returning RNN keeps it; a
    /// convolution, a pooling, Flatten or an RNN's last step drop it); nil without one. A mask that
    /// reaches the output through any other layer is refused by name.
    static func elementMask(of node: String, in nodes: [GraphNode], output: String) throws -> Head.ElementMask? {
        try MaskWalk(nodes, reader: "output '\(output)'").mask(of: node, readBy: nil)
    }

    /// The model input whose token ids ≠ 0 are the Keras mask on `node`'s output (what a MultiHeadAttention
    /// call derives its attention mask from); nil without one. Masking's feature masks are refused.
    static func tokenMask(of node: String, readBy consumer: String, in nodes: [GraphNode], reader: String) throws
        -> String?
    {
        switch try MaskWalk(nodes, reader: reader).mask(of: node, readBy: consumer) {
        case nil: return nil
        case .tokens(let input)?: return input
        case .features?:
            throw TandemError.usage(
                "\(reader): a Masking layer's mask reaches it; only Embedding(mask_zero=True)'s is supported there")
        }
    }

    /// The walk both share: `reader` names who asks, in the messages.
    private struct MaskWalk {
        let byID: [String: GraphNode]
        let nodes: [GraphNode]
        let reader: String

        init(_ nodes: [GraphNode], reader: String) {
            self.nodes = nodes
            byID = Dictionary(nodes.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            self.reader = reader
        }

        func ancestors(of id: String) -> Set<String> {
            var seen = Set<String>()
            var stack = byID[id]?.inputs ?? []
            while let next = stack.popLast() {
                if seen.insert(next).inserted { stack += byID[next]?.inputs ?? [] }
            }
            return seen
        }

        /// Whether `tensor`'s mask has been cleared by the time `consumer` reads it (nil: the loss, after all).
        func cleared(_ tensor: String, readBy consumer: String?) throws -> Bool {
            let before = consumer.map { ancestors(of: $0) }
            // A KerasHub TransformerEncoder calls its attention on its very input (unless it normalises first).
            func clears(_ m: GraphNode) -> Bool {
                m.className == "MultiHeadAttention"
                    || (m.className == "TransformerEncoder" && m.config["normalize_first"]?.bool != true)
            }
            for m in nodes where clears(m) && m.id != consumer && m.inputs.contains(tensor) {
                guard let consumer, let before else { return true }
                if before.contains(m.id) { return true }  // the attention ran first
                if !ancestors(of: m.id).contains(consumer) {
                    throw TandemError.usage(
                        "\(reader): MultiHeadAttention '\(m.layer)' clears the Keras mask of its input '\(tensor)', which '\(byID[consumer]?.layer ?? consumer)' also reads, and nothing orders the two (Keras's answer depends on its run order)"
                    )
                }
            }
            return false
        }

        func mask(of node: String, readBy consumer: String?) throws -> Head.ElementMask? {
            let passes: Set<String> = [
                "Dense", "Activation", "Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout",
                "AlphaDropout",
                "LayerNormalization", "BatchNormalization", "GroupNormalization", "UnitNormalization", "Normalization",
                "TimeDistributed", "ReLU", "LeakyReLU", "ELU", "Rescaling", "Identity", "ActivityRegularization",
                "MultiHeadAttention", "GroupQueryAttention",  // the output carries the query's mask (as it had it)
                "TransformerEncoder", "TransformerDecoder",  // KerasHub's: the input's mask (kept before any clearing)
            ]
            // Keras 3.15's Merge.compute_mask: the OR of its inputs' masks, none if any input has none; Concatenate's:
            // the AND of those there are. Followed when they all come from one source (then either is that mask).
            let merges: Set<String> = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"]
            let drops: Set<String> = [
                "Conv1D", "Conv1DTranspose", "DepthwiseConv1D", "GlobalAveragePooling1D", "GlobalMaxPooling1D",
                "Flatten",
                "RMSNormalization", "ZeroPadding1D", "UpSampling1D", "InputLayer",
                "SinePositionEncoding", "PositionEmbedding", "RotaryEmbedding",  // KerasHub's: no masking support
            ]
            func modelInput(_ n: GraphNode) throws -> String {
                guard let source = n.inputs.first, let input = byID[source], input.className == "InputLayer" else {
                    throw TandemError.usage(
                        "\(reader): the mask of \(n.className) '\(n.layer)' reaches it, but that layer does not read a model input (masks are followed from a model input)"
                    )
                }
                return input.layer
            }
            var (id, consumer) = (node, consumer)
            while let n = byID[id] {
                if try cleared(id, readBy: consumer) { return nil }
                switch n.className {
                case "Embedding", "TokenAndPositionEmbedding", "ReversibleEmbedding":
                    guard n.config["mask_zero"]?.bool == true, !LayerRegistry.isReverse(n) else { return nil }
                    return .tokens(input: try modelInput(n))
                case "Masking":
                    return .features(input: try modelInput(n), value: Float(n.config["mask_value"]?.number ?? 0))
                case "LSTM", "GRU", "SimpleRNN", "Bidirectional":
                    let config = n.className == "Bidirectional" ? n.config["layer"]?["config"] : n.config
                    guard config?["return_sequences"]?.bool == true else { return nil }
                    (id, consumer) = (n.inputs[0], n.id)
                case _ where passes.contains(n.className): (id, consumer) = (n.inputs[0], n.id)
                case _ where merges.contains(n.className):
                    let all = try n.inputs.map { try mask(of: $0, readBy: n.id) }
                    if n.className != "Concatenate" && all.contains(where: { $0 == nil }) { return nil }
                    let masks = all.compactMap { $0 }
                    guard let first = masks.first else { return nil }
                    guard masks.allSatisfy({ $0 == first }) else {
                        throw TandemError.usage(
                            "\(reader): \(n.className) '\(n.layer)' combines the Keras masks of different inputs (\(masks.map(\.input).joined(separator: ", "))); only one mask source is supported"
                        )
                    }
                    return first
                case _ where drops.contains(n.className): return nil
                default:
                    if let source = KerasCompile.maskSource(of: id, in: nodes) {
                        throw TandemError.usage(
                            "\(reader): the mask of \(source) may reach it through \(n.className) '\(n.layer)', whose mask Tandem does not follow (it follows Dense, activations, dropout, normalisation, merges, TimeDistributed, MultiHeadAttention and sequence-returning RNNs)"
                        )
                    }
                    return nil
                }
            }
            return nil
        }
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
            if ["Embedding", "TokenAndPositionEmbedding", "ReversibleEmbedding"].contains(n.className)
                && n.config["mask_zero"]?.bool == true && !LayerRegistry.isReverse(n)
            {
                return "\(n.className)(mask_zero=True) '\(n.layer)'"
            }
            if n.className == "Masking" { return "Masking '\(n.layer)'" }
            stack += n.inputs
        }
        return nil
    }
}
