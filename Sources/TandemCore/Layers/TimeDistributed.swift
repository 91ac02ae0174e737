// Keras TimeDistributed (of a Dense): the layer table's entry (KerasLayerKind.swift) and its
// builder, which reads a call's config and refuses every argument Tandem does not implement by
// name. The wrapped layer runs on [batch·time, features]: no layer class of its own.

extension KerasLayerKind {
    static let timeDistributed = KerasLayerKind(
        // A mask passed to it (Embedding(mask_zero=True) before) changes no value: the per-step layers it
        // wraps read none (Keras's TimeDistributed hands it only to a layer whose call takes one).
        classNames: ["TimeDistributed"], readsMask: true,
        build: { a, inputs, _ in try LayerRegistry.timeDistributed(a, inputs) },
        variables: { _, layer, config in
            // The wrapped layer's, under `layer/`.
            let inner = config["layer"] ?? .null
            let groups = LayerRegistry.variables(
                className: inner["class_name"]?.string ?? "", layer: layer, config: inner["config"] ?? .null)
            return [KerasLayerKind.top(layer, [])]
                + groups.map {
                    .init(
                        path: "layer/" + $0.path,
                        label: $0.path == "vars" ? inner["config"]?["name"]?.string ?? "layer" : $0.label,
                        names: $0.names)
                }
        })
}

extension LayerRegistry {
    /// TimeDistributed of a per-step layer (weights under `layer/`, named after the wrapper).
    static func timeDistributed(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let source = try sequence(a, inputs)
        guard let inner = a.config["layer"], let innerClass = inner["class_name"]?.string, perStep.contains(innerClass)
        else {
            let name = a.config["layer"]?["class_name"]?.string ?? "?"
            throw a.fail(
                "wraps \(name); TimeDistributed supports \(perStep.joined(separator: ", "))\(name == "BatchNormalization" ? " (Keras normalises each step of a TimeDistributed BatchNormalization on its own; use BatchNormalization on the sequence for statistics over batch and time)" : "")"
            )
        }
        try KerasJSON.refuseCustom(inner, what: "layer '\(a.node.layer)'s inner layer")
        let node = GraphNode(
            id: a.node.id, layer: a.node.layer, className: innerClass, config: inner["config"] ?? .object([]),
            inputs: a.node.inputs, call: a.node.call)
        return try make(LayerArguments(node: node), inputs: [source])
    }
}
