// Keras LSTM, GRU, SimpleRNN (the plain LSTM class or the general recurrent layer) and
// Bidirectional: the Keras layer table's entries (KerasLayerKind.swift) and their builders, which
// read a call's config and refuse every argument Tandem does not implement by name.

import TandemCore

extension KerasLayerKind {
    static let lstm = recurrent("LSTM")
    static let gru = recurrent("GRU")
    static let simpleRNN = recurrent("SimpleRNN")

    /// An RNN's weights sit in its cell: `cell/vars`, named `<class>_cell`.
    private static func recurrentVariables(_ className: String, _ layer: String, _ config: JSONValue) -> [VariableGroup]
    {
        let names = ["kernel", "recurrent_kernel"] + (config["use_bias"]?.bool == false ? [] : ["bias"])
        return [
            top(layer, []), .init(path: "cell/vars", label: "\(KerasConfig.snakeCase(className))_cell", names: names),
        ]
    }

    private static func recurrent(_ className: String) -> KerasLayerKind {
        KerasLayerKind(
            classNames: [className], readsMask: true,
            build: { a, inputs, mask in try LayerRegistry.recurrent(a, inputs, mask: mask) },
            variables: recurrentVariables,
            regularizerKeys: [
                ("kernel_regularizer", "kernel"), ("recurrent_regularizer", "recurrent_kernel"),
                ("bias_regularizer", "bias"),
            ])
    }

    static let bidirectional = KerasLayerKind(
        classNames: ["Bidirectional"], readsMask: true,
        build: { a, inputs, mask in try LayerRegistry.bidirectional(a, inputs, mask: mask) },
        variables: { _, layer, config in
            // forward_layer/… and backward_layer/…, each an RNN named in the config; Tandem's
            // names are <layer>/<half>/<weight>.
            var groups = [KerasLayerKind.top(layer, [])]
            for (half, attribute) in zip(
                KerasConfig.bidirectionalHalves(config), ["forward_layer", "backward_layer"])
            {
                let name = half["config"]?["name"]?.string ?? attribute
                groups += LayerRegistry.variables(
                    className: half["class_name"]?.string ?? "", layer: name, config: half["config"] ?? .null
                ).map {
                    .init(
                        path: "\(attribute)/\($0.path)", label: $0.path == "vars" ? name : $0.label,
                        names: $0.names.map { "\(name)/\($0)" })
                }
            }
            return groups
        })
}

extension LayerRegistry {
    /// LSTM, GRU, SimpleRNN. The plain LSTM class when nothing more is asked
    /// (the fusion pass knows it); otherwise `Recurrent`. Input dropout is a
    /// SpatialDropout1D in front: one mask per sample and feature, all steps.
    package static func recurrent(
        _ a: LayerArguments, _ inputs: [Layer], mask: Layer?, name: String? = nil, weights: String? = nil,
        zeroOutputForMask: Bool? = nil
    ) throws -> Layer {
        var source = try sequence(a, inputs)
        let id = name ?? a.node.id
        let className = a.node.className
        let units = try a.int("units")
        guard units <= LSTM.maxUnits else { throw a.fail("'units' must be at most \(LSTM.maxUnits), got \(units)") }
        let activation = try a.activation(default: "tanh")
        if className != "SimpleRNN" {
            guard activation == .tanh else { throw a.fail("activation must be tanh (Keras's default)") }
            guard try a.activation("recurrent_activation", default: "sigmoid") == .sigmoid else {
                throw a.fail("recurrent_activation must be sigmoid (Keras's default)")
            }
        } else if activation == .softmax || activation == .logSoftmax {
            throw a.fail(
                "activation \(activation.rawValue) is not supported for SimpleRNN (element-wise activations only)")
        }
        try a.require("return_state", is: .bool(false), supported: "return_state = false")
        try a.require("stateful", is: .bool(false), supported: "stateful = false")
        try a.requireNull("kernel_constraint", "recurrent_constraint", "bias_constraint", "activity_regularizer")
        // `unroll` and `implementation` change how Keras schedules the same arithmetic; `seed`
        // seeds Keras's own generator (Tandem's masks come from the run's seed, docs/SPEC.md §9).
        let useBias = try a.bool("use_bias", default: true)
        let goBackwards = try a.bool("go_backwards", default: false)
        let returnSequences = try a.bool("return_sequences", default: false)
        let dropout = try a.rate("dropout")
        let recurrentDropout = try a.rate("recurrent_dropout")
        let zeroOutput = try zeroOutputForMask ?? a.bool("zero_output_for_mask", default: false)
        let features = source.output.shape[1]
        let cell: Recurrent.Cell
        switch className {
        case "LSTM": cell = .lstm
        case "GRU": cell = .gru(resetAfter: try a.bool("reset_after", default: true))
        default: cell = .simple(activation)
        }
        let g = cell == .lstm ? 4 * units : (className == "GRU" ? 3 * units : units)
        var bias = try a.initializer("bias_initializer", fanIn: units, fanOut: g)
        if cell == .lstm, try a.bool("unit_forget_bias", default: true) {
            // Keras: the forget block is ones, the rest from the bias initializer (zeros by default).
            switch bias {
            case nil, .zeros?: bias = .lstmBias(units: units)
            default: bias = .unsupported("\(a.node.layer)/bias_initializer with unit_forget_bias")
            }
        } else if bias == nil {
            bias = .zeros
        }
        let kernelInit = try a.initializer("kernel_initializer", fanIn: features, fanOut: g)
        let recurrentInit = try a.initializer("recurrent_initializer", fanIn: units, fanOut: g) ?? .orthogonal
        if dropout > 0 { source = Dropout(name: "\(id)/dropout", input: source, rate: dropout, spatial: true) }
        if cell == .lstm, useBias, !goBackwards, mask == nil, recurrentDropout == 0 {
            return LSTM(
                name: id, units: units, input: source, steps: source.output.shape[0], returnSequences: returnSequences,
                weights: weights ?? a.node.layer, kernelInitializer: kernelInit, recurrentInitializer: recurrentInit,
                biasInitializer: bias)
        }
        return Recurrent(
            name: id, cell: cell, units: units, input: source, mask: mask, returnSequences: returnSequences,
            goBackwards: goBackwards, useBias: useBias, zeroOutputForMask: zeroOutput,
            recurrentDropout: recurrentDropout,
            weights: weights ?? a.node.layer, kernelInitializer: kernelInit, recurrentInitializer: recurrentInit,
            biasInitializer: bias)
    }

    /// Keras `Bidirectional(layer, merge_mode, backward_layer)`: the forward RNN, the
    /// backward one (go_backwards; its sequence flipped back to input order) and the merge.
    /// Weights are `<layer>/<half's name>/<weight>` (Keras's forward_layer / backward_layer).
    static func bidirectional(_ a: LayerArguments, _ inputs: [Layer], mask: Layer?) throws -> Layer {
        let source = try sequence(a, inputs)
        guard a.config["layer"]?["config"]?["name"]?.string != nil else { throw a.fail("has no 'layer'") }
        let configs = KerasConfig.bidirectionalHalves(a.config)
        for (half, role) in zip(configs, ["forward", "backward"]) {
            try KerasConfig.refuseCustom(half, what: "layer '\(a.node.layer)'s \(role) layer")
        }
        let mode = try a.string("merge_mode", default: "concat")
        guard ["concat", "sum", "mul", "ave"].contains(mode) else {
            throw a.fail("merge_mode '\(mode)' is not supported (concat, sum, mul, ave)")
        }
        var halves: [Layer] = []
        for half in configs {
            let className = half["class_name"]?.string ?? "?"
            guard ["LSTM", "GRU", "SimpleRNN"].contains(className), let hname = half["config"]?["name"]?.string else {
                throw a.fail("wraps \(className); only LSTM, GRU and SimpleRNN are supported")
            }
            let node = GraphNode(
                id: "\(a.node.id)/\(hname)", layer: "\(a.node.layer)/\(hname)", className: className,
                config: half["config"] ?? .object([]), inputs: a.node.inputs, call: a.node.call)
            let inner = LayerArguments(node: node)
            try inner.require("return_state", is: .bool(false), supported: "return_state = false")
            // Keras forces zero_output_for_mask = return_sequences on both halves.
            var layer = try recurrent(
                inner, [source], mask: mask, zeroOutputForMask: try inner.bool("return_sequences", default: false))
            if let r = layer as? Recurrent, r.goBackwards, r.returnSequences {
                layer = TimeReverse(name: "\(node.id)/reversed", input: r)
            }
            halves.append(layer)
        }
        guard halves[0].output.shape == halves[1].output.shape else { throw a.fail("its halves give different shapes") }
        if mode == "concat" { return Concatenate(name: a.node.id, inputs: halves) }
        let kind: MergeKind = mode == "sum" ? .add : mode == "mul" ? .multiply : .average
        return Merge(name: a.node.id, kind: kind, inputs: halves)
    }
}
