// Everything Tandem knows about each Keras layer class, one entry per class in one list:
// how one call of it is built from its config (the builders in LayerRegistry.swift), its
// variables in the order Keras saves them (docs/KERAS-FORMAT.md §3), which `*_regularizer`
// keys reach which weight, and whether a call may take Keras's `mask`. The layer states its
// own FLOPs (Layer.forwardFlopsPerSample). Adding a Keras class is its layer file, one entry
// here and its tests.

/// One Keras layer class (or a few that share everything but their name).
struct KerasLayerKind: Sendable {
    typealias VariableGroup = ModelDescription.VariableGroup
    let classNames: [String]
    /// Listed among the supported classes (not the ops Keras records as layers, like NotEqual).
    var listed = true
    /// Whether a call may take Keras's `mask` argument (from Embedding(mask_zero=True)).
    var readsMask = false
    /// Builds the layer for one call: its arguments, its producers' layers, and the mask's layer.
    let build: @Sendable (LayerArguments, [Layer], Layer?) throws -> Layer
    /// Its variable groups for (class, layer name, config); default: none.
    var variables: @Sendable (String, String, JSONValue) -> [VariableGroup] = { _, layer, _ in [top(layer, [])] }
    /// `*_regularizer` keys and the weight each penalises.
    var regularizerKeys: [(key: String, weight: String)] = []

    /// The group of a layer's own variables, named after it.
    static func top(_ layer: String, _ names: [String]) -> VariableGroup {
        VariableGroup(path: "vars", label: layer, names: names)
    }
}

extension LayerRegistry {
    typealias R = LayerRegistry
    private static func kernelAndBias(_ config: JSONValue) -> [String] {
        config["use_bias"]?.bool == false ? ["kernel"] : ["kernel", "bias"]
    }
    private static let denseKeys = [(key: "kernel_regularizer", weight: "kernel"), ("bias_regularizer", "bias")]
    private static let normalizationKeys = [(key: "gamma_regularizer", weight: "gamma"), ("beta_regularizer", "beta")]

    /// An RNN's weights sit in its cell: `cell/vars`, named `<class>_cell`.
    private static func recurrentVariables(_ className: String, _ layer: String, _ config: JSONValue)
        -> [KerasLayerKind.VariableGroup]
    {
        let names = ["kernel", "recurrent_kernel"] + (config["use_bias"]?.bool == false ? [] : ["bias"])
        return [
            KerasLayerKind.top(layer, []),
            .init(path: "cell/vars", label: "\(KerasConfig.snakeCase(className))_cell", names: names),
        ]
    }

    private static func recurrent(_ className: String) -> KerasLayerKind {
        KerasLayerKind(
            classNames: [className], readsMask: true,
            build: { a, inputs, mask in try R.recurrent(a, inputs, mask: mask) },
            variables: recurrentVariables,
            regularizerKeys: [
                ("kernel_regularizer", "kernel"), ("recurrent_regularizer", "recurrent_kernel"),
                ("bias_regularizer", "bias"),
            ])
    }

    /// Every class Tandem builds, in the order the supported list (and the mask readers) name them.
    static let kinds: [KerasLayerKind] =
        [
            KerasLayerKind(classNames: ["InputLayer"], build: { a, _, _ in try R.input(a) }),
            KerasLayerKind(
                classNames: ["Embedding"], build: { a, inputs, _ in try R.embedding(a, inputs) },
                variables: { _, layer, _ in [KerasLayerKind.top(layer, ["embeddings"])] },
                regularizerKeys: [("embeddings_regularizer", "embeddings")]),
            recurrent("LSTM"),
            recurrent("GRU"),
            recurrent("SimpleRNN"),
            KerasLayerKind(
                classNames: ["Bidirectional"], readsMask: true,
                build: { a, inputs, mask in try R.bidirectional(a, inputs, mask: mask) },
                variables: { _, layer, config in
                    // forward_layer/… and backward_layer/…, each an RNN named in the config; Tandem's
                    // names are <layer>/<half>/<weight>.
                    var groups = [KerasLayerKind.top(layer, [])]
                    for (half, attribute) in zip(
                        KerasConfig.bidirectionalHalves(config), ["forward_layer", "backward_layer"])
                    {
                        let name = half["config"]?["name"]?.string ?? attribute
                        groups += R.variables(
                            className: half["class_name"]?.string ?? "", layer: name, config: half["config"] ?? .null
                        ).map {
                            .init(
                                path: "\(attribute)/\($0.path)", label: $0.path == "vars" ? name : $0.label,
                                names: $0.names.map { "\(name)/\($0)" })
                        }
                    }
                    return groups
                }),
            KerasLayerKind(
                classNames: ["Dense"], build: { a, inputs, _ in try R.dense(a, inputs) },
                variables: { _, layer, config in [KerasLayerKind.top(layer, kernelAndBias(config))] },
                regularizerKeys: denseKeys),
            KerasLayerKind(classNames: ["Concatenate"], build: { a, inputs, _ in try R.concatenate(a, inputs) }),
            KerasLayerKind(
                classNames: ["Activation"],
                build: { a, inputs, _ in
                    ActivationLayer(name: a.node.id, activation: try a.activation(), input: try R.single(a, inputs))
                }),
        ]
        + MergeKind.allCases.map { kind in
            KerasLayerKind(classNames: [kind.rawValue], build: { a, inputs, _ in try R.merge(a, kind, inputs) })
        }
        + [
            KerasLayerKind(
                classNames: ["Flatten"],
                build: { a, inputs, _ in
                    try a.channelsLast()
                    return Reshape(
                        name: a.node.id, input: try R.single(a, inputs), shape: [try R.single(a, inputs).output.width])
                }),
            KerasLayerKind(classNames: ["Reshape"], build: { a, inputs, _ in try R.reshape(a, inputs) }),
            KerasLayerKind(
                classNames: ["RepeatVector"],
                build: { a, inputs, _ in
                    let source = try R.single(a, inputs)
                    guard source.output.shape.count == 1 else {
                        throw a.fail("needs [batch, features], got \(R.shapeText(source))")
                    }
                    return RepeatVector(name: a.node.id, input: source, count: try a.int("n"))
                }),
            KerasLayerKind(
                classNames: ["Dropout", "SpatialDropout1D"], build: { a, inputs, _ in try R.dropout(a, inputs) }),
            KerasLayerKind(
                classNames: ["LayerNormalization"], build: { a, inputs, _ in try R.layerNormalization(a, inputs) },
                variables: { _, layer, config in
                    [
                        KerasLayerKind.top(
                            layer,
                            (config["scale"]?.bool == false ? [] : ["gamma"])
                                + (config["center"]?.bool == false ? [] : ["beta"]))
                    ]
                },
                regularizerKeys: normalizationKeys),
            KerasLayerKind(
                classNames: ["TimeDistributed"], build: { a, inputs, _ in try R.timeDistributed(a, inputs) },
                variables: { _, layer, config in
                    // The wrapped layer's, under `layer/`.
                    let inner = config["layer"] ?? .null
                    let groups = R.variables(
                        className: inner["class_name"]?.string ?? "", layer: layer, config: inner["config"] ?? .null)
                    return [KerasLayerKind.top(layer, [])]
                        + groups.map {
                            .init(
                                path: "layer/" + $0.path,
                                label: $0.path == "vars" ? inner["config"]?["name"]?.string ?? "layer" : $0.label,
                                names: $0.names)
                        }
                }),
            KerasLayerKind(
                classNames: ["MaxPooling1D", "AveragePooling1D"], build: { a, inputs, _ in try R.pooling(a, inputs) }),
            KerasLayerKind(
                classNames: ["GlobalAveragePooling1D"], readsMask: true,
                build: { a, inputs, mask in try R.globalPooling(a, inputs, mask: mask) }),
            KerasLayerKind(
                classNames: ["GlobalMaxPooling1D"],
                build: { a, inputs, mask in try R.globalPooling(a, inputs, mask: mask) }),
            KerasLayerKind(
                classNames: ["Conv1D"], build: { a, inputs, _ in try R.conv1D(a, inputs) },
                variables: { _, layer, config in [KerasLayerKind.top(layer, kernelAndBias(config))] },
                regularizerKeys: denseKeys),
            KerasLayerKind(
                classNames: ["BatchNormalization"], build: { a, inputs, _ in try R.batchNormalization(a, inputs) },
                variables: { _, layer, config in
                    [
                        KerasLayerKind.top(
                            layer,
                            (config["scale"]?.bool == false ? [] : ["gamma"])
                                + (config["center"]?.bool == false ? [] : ["beta"]) + [
                                    "moving_mean", "moving_variance",
                                ])
                    ]
                },
                regularizerKeys: normalizationKeys),
            KerasLayerKind(
                classNames: ["NotEqual"], listed: false, build: { a, inputs, _ in try R.notEqual(a, inputs) }),
        ]

    /// The entry of each class name.
    static let kindByClass: [String: KerasLayerKind] = Dictionary(
        kinds.flatMap { kind in kind.classNames.map { ($0, kind) } }, uniquingKeysWith: { first, _ in first })

    /// A layer's variable groups (docs/KERAS-FORMAT.md §3): `vars` (named after the layer), and
    /// for a wrapper its sub-objects' (an RNN's weights under `cell/`, TimeDistributed's under
    /// `layer/`), each holding its own variables.
    static func variables(className: String, layer: String, config: JSONValue) -> [KerasLayerKind.VariableGroup] {
        guard let kind = kindByClass[className] else { return [KerasLayerKind.top(layer, [])] }
        return kind.variables(className, layer, config)
    }
}
