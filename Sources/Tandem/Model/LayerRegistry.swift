// Keras class names → Tandem layers. Each constructor reads the layer's Keras
// config, checks every argument Tandem does not implement against the value
// that means "off", and throws one message naming the layer, the argument and
// what is supported — never a precondition on user input. Nothing in a config
// is executed: a Lambda or a custom class is refused by name.

import Foundation

/// Reads one layer's config with errors that name the layer.
struct LayerArguments {
    let node: GraphNode
    var config: JSONValue { node.config }
    var label: String { "layer '\(node.layer)' (\(node.className))" }

    func fail(_ message: String) -> TandemError { .usage("\(label): \(message)") }

    func int(_ key: String, min: Int = 1) throws -> Int {
        guard let v = config[key]?.integer else { throw fail("'\(key)' must be an integer") }
        guard v >= min else { throw fail("'\(key)' must be at least \(min), got \(v)") }
        return v
    }
    func bool(_ key: String, default value: Bool) throws -> Bool {
        guard let v = config[key], !v.isNull else { return value }
        guard let b = v.bool else { throw fail("'\(key)' must be true or false") }
        return b
    }
    func string(_ key: String, default value: String) throws -> String {
        guard let v = config[key], !v.isNull else { return value }
        guard let s = v.string else { throw fail("'\(key)' must be a string, found \(v)") }
        return s
    }

    /// The argument is absent, null, or equal to `off` (the only value Tandem implements).
    func require(_ key: String, is off: JSONValue, supported: String) throws {
        guard let v = config[key], !v.isNull else { return }
        if v == off { return }
        if case .int(let i) = v, case .double(let d) = off, Double(i) == d { return }
        if case .double(let d) = v, case .int(let i) = off, Double(i) == d { return }
        throw fail("'\(key)' = \(v) is not supported (\(supported))")
    }
    func requireNull(_ keys: String...) throws {
        for key in keys {
            if let v = config[key], !v.isNull { throw fail("'\(key)' is not supported (only null)") }
        }
    }

    /// An activation by name; absent means Keras's default for the argument (`otherwise`).
    func activation(_ key: String = "activation", default otherwise: String = "linear") throws -> Activation {
        let name = try string(key, default: otherwise)
        guard let a = Activation.named(name) else {
            throw fail(
                "activation '\(name)' is not supported (supported: \(Activation.allCases.map(\.rawValue).joined(separator: ", ")))"
            )
        }
        return a
    }

    /// A normalisation's `axis` (an int or a list of one): the last axis only.
    func lastAxis(rank: Int) throws {
        let axes = config["axis"]?.array ?? [config["axis"] ?? .int(-1)]
        guard axes.count == 1, let axis = axes[0].integer, axis == -1 || axis == rank - 1 else {
            throw fail("'axis' = \(config["axis"]!) is not supported (the last axis, -1)")
        }
    }

    /// Keras's `data_format`: channels_last (the default) only.
    func channelsLast() throws {
        try require("data_format", is: .string("channels_last"), supported: "channels_last")
    }

    /// An int, or a one-element list of one (Keras's 1-D sizes).
    func size(_ key: String, default value: Int? = nil) throws -> Int {
        guard let v = config[key], !v.isNull else {
            if let value { return value }
            throw fail("'\(key)' must be given")
        }
        guard let n = v.integer ?? (v.array?.count == 1 ? v.array![0].integer : nil), n > 0 else {
            throw fail("'\(key)' must be a positive integer (or a list of one), got \(v)")
        }
        return n
    }

    /// A rate in [0, 1).
    func rate(_ key: String) throws -> Float {
        guard let v = config[key], !v.isNull else { return 0 }
        guard let r = v.number, r >= 0, r < 1 else { throw fail("'\(key)' must be in [0, 1), got \(v)") }
        return Float(r)
    }

    func dtypePolicy() throws {
        guard let d = config["dtype"], !d.isNull else { return }
        let name = d.string ?? d["config"]?["name"]?.string
        guard name == nil || name == "float32" else { throw fail("dtype '\(name!)' is not supported (float32 only)") }
    }

    /// A Keras initializer object, in Tandem's terms (nil: Keras's default for that weight).
    func initializer(_ key: String, fanIn: Int, fanOut: Int) throws -> Initializer? {
        guard let v = config[key], !v.isNull else { return nil }
        let name = v.string ?? v["class_name"]?.string ?? ""
        let args = v["config"] ?? .object([])
        switch name {
        case "Zeros", "zeros": return .zeros
        case "Ones", "ones": return .constant(1)
        case "Constant", "constant": return .constant(args["value"]?.number ?? 0)
        case "GlorotUniform", "glorot_uniform": return .glorotUniform(fanIn: fanIn, fanOut: fanOut)
        case "RandomUniform", "random_uniform", "uniform":
            return .uniformRange(low: args["minval"]?.number ?? -0.05, high: args["maxval"]?.number ?? 0.05)
        case "Orthogonal", "orthogonal":
            if let g = args["gain"]?.number, g != 1 { return .scaledOrthogonal(gain: g) }
            return .orthogonal
        default:
            // Only needed when the archive carries no weights; the CLI says so then.
            return .unsupported("\(node.layer)/\(key) = \(name)")
        }
    }

    /// λ₁, λ₂ of a Keras regularizer object (L1, L2, L1L2), nil when absent.
    func regularizer(_ key: String) throws -> (l1: Double, l2: Double)? {
        guard let v = config[key], !v.isNull else { return nil }
        let name = v.string ?? v["class_name"]?.string ?? ""
        let args = v["config"] ?? .object([])
        switch name {
        case "L2", "l2": return (0, args["l2"]?.number ?? 0.01)
        case "L1", "l1": return (args["l1"]?.number ?? 0.01, 0)
        case "L1L2", "l1_l2": return (args["l1"]?.number ?? 0, args["l2"]?.number ?? 0)
        default: throw fail("'\(key)' \(name) is not supported (supported: L1, L2, L1L2)")
        }
    }
}

/// The registry of Keras layer classes Tandem builds.
public enum LayerRegistry {
    /// Keras classes Tandem can build.
    public static let supported = kinds.filter(\.listed).flatMap(\.classNames)

    /// Classes whose call takes Keras's `mask` argument (Embedding(mask_zero=True) → NotEqual).
    static let maskConsumers = kinds.filter(\.readsMask).flatMap(\.classNames)

    /// Builds the Tandem layer for one call; `inputs` are its producers' layers.
    static func make(_ node: GraphNode, inputs: [Layer]) throws -> Layer {
        let a = LayerArguments(node: node)
        if node.className != "InputLayer" { try a.dtypePolicy() }  // an input's dtype is its data's
        if node.className != "InputLayer", let t = node.config["trainable"]?.bool, !t {
            throw a.fail("frozen layers (trainable = false) are not supported")
        }
        var inputs = inputs
        var mask: Layer?
        if node.masked {
            guard maskConsumers.contains(node.className) else {
                throw a.fail(
                    "its 'mask' argument is not supported (masks are read by \(maskConsumers.joined(separator: ", ")))")
            }
            mask = inputs.removeLast()
            guard mask is SequenceMask else {
                throw a.fail("its mask must come from Embedding(mask_zero=True) (ops.not_equal on the token ids)")
            }
        }
        guard let kind = kindByClass[node.className] else {
            throw TandemError.usage(
                "layer '\(node.layer)': Keras class \(node.className) is not supported (supported: \(supported.joined(separator: ", ")))"
            )
        }
        return try kind.build(a, inputs, mask)
    }

    /// `ops.not_equal(ids, value)` on a model input of token ids: Embedding(mask_zero=True)'s mask.
    static func notEqual(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        guard let tokens = try single(a, inputs) as? InputLayer, tokens.kind == .tokens else {
            throw a.fail("compares a model input of integer token ids only")
        }
        guard let v = a.config["value"]?.integer, let value = Int32(exactly: v) else {
            throw a.fail("needs an integer value")
        }
        return SequenceMask(name: a.node.id, tokens: tokens, value: value)
    }

    static func globalPooling(_ a: LayerArguments, _ inputs: [Layer], mask: Layer?) throws -> Layer {
        let source = try sequence(a, inputs)
        try a.channelsLast()
        try a.require("keepdims", is: .bool(false), supported: "keepdims = false")
        return GlobalPooling1D(
            name: a.node.id, kind: a.node.className.hasPrefix("GlobalMax") ? .max : .average, input: source, mask: mask)
    }

    /// The penalties a node's config asks for, as tensors (`*_regularizer`).
    static func regularizers(_ node: GraphNode) throws -> [Regularizer] {
        // A TimeDistributed's are the wrapped layer's, under the wrapper's name.
        if node.className == "TimeDistributed", let inner = node.config["layer"] {
            return try regularizers(
                GraphNode(
                    id: node.id, layer: node.layer, className: inner["class_name"]?.string ?? "",
                    config: inner["config"] ?? .null, inputs: node.inputs, call: node.call))
        }
        if node.className == "Bidirectional" {  // each half's, under <layer>/<half's name>/
            return try ["layer", "backward_layer"].flatMap { key -> [Regularizer] in
                guard let half = node.config[key], let name = half["config"]?["name"]?.string else { return [] }
                let inner = GraphNode(
                    id: node.id, layer: "\(node.layer)/\(name)", className: half["class_name"]?.string ?? "",
                    config: half["config"] ?? .null, inputs: node.inputs, call: node.call)
                return try regularizers(inner)
            }
        }
        let a = LayerArguments(node: node)
        let keys = kindByClass[node.className]?.regularizerKeys ?? []
        return try keys.compactMap { key, weight in
            try a.regularizer(key).map { Regularizer(tensor: "\(node.layer)/\(weight)", l1: $0.l1, l2: $0.l2) }
        }
    }

    static func single(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        guard inputs.count == 1 else { throw a.fail("takes one input, got \(inputs.count)") }
        return inputs[0]
    }

    static func input(_ a: LayerArguments) throws -> Layer {
        let shape = a.config["batch_shape"] ?? a.config["batch_input_shape"]
        guard let dims = shape?.array, dims.count >= 2, dims[0].isNull || dims[0].integer != nil else {
            throw a.fail("'batch_shape' must be [null, …] with at least one feature axis")
        }
        let sample = try dims.dropFirst().map { d -> Int in
            guard let n = d.integer, n > 0 else {
                throw a.fail("every axis but the batch must have a fixed size, got \(shape!)")
            }
            return n
        }
        try a.require("sparse", is: .bool(false), supported: "dense inputs only")
        try a.require("ragged", is: .bool(false), supported: "dense inputs only")
        try a.require("optional", is: .bool(false), supported: "inputs that are always given")
        let dtype = a.config["dtype"]?.string ?? a.config["dtype"]?["config"]?["name"]?.string ?? "float32"
        switch dtype {
        case "int32", "int64", "int16", "int8", "uint8", "uint16", "uint32":
            guard sample.count == 1 else {
                throw a.fail("integer (token) inputs must be [batch, length], got \(sample)")
            }
            return InputLayer(name: a.node.id, kind: .tokens, shape: sample)
        case "float32", "float64", "float16":
            guard sample.count <= 2 else {
                throw a.fail("inputs of rank \(sample.count + 1) are not supported (features or [time, features])")
            }
            return InputLayer(name: a.node.id, kind: .features, shape: sample)
        default:
            throw a.fail("input dtype '\(dtype)' is not supported (integer ids or floats)")
        }
    }

    static func embedding(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        guard let source = try single(a, inputs) as? InputLayer, source.kind == .tokens else {
            throw a.fail("must read an integer model input directly (token ids)")
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

    /// LSTM, GRU, SimpleRNN. The plain LSTM class when nothing more is asked
    /// (the fusion pass knows it); otherwise `Recurrent`. Input dropout is a
    /// SpatialDropout1D in front: one mask per sample and feature, all steps.
    static func recurrent(
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

    static func dense(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let source = try single(a, inputs)
        let units = try a.int("units")
        try a.requireNull(
            "kernel_constraint", "bias_constraint", "activity_regularizer", "lora_rank", "quantization_config")
        let useBias = try a.bool("use_bias", default: true)
        return Dense(
            name: a.node.id, units: units, activation: try a.activation(), input: source, useBias: useBias,
            weights: a.node.layer,
            kernelInitializer: try a.initializer("kernel_initializer", fanIn: source.output.features, fanOut: units),
            biasInitializer: try a.initializer("bias_initializer", fanIn: source.output.features, fanOut: units)
                ?? .zeros)
    }

    static func shapeText(_ layer: Layer) -> String {
        "[batch, \(layer.output.shape.map(String.init).joined(separator: ", "))]"
    }

    static func sequence(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let source = try single(a, inputs)
        guard source.output.shape.count == 2 else {
            throw a.fail("needs a sequence input [batch, time, features], got \(shapeText(source))")
        }
        return source
    }

    static func reshape(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let source = try single(a, inputs)
        guard let dims = a.config["target_shape"]?.array, !dims.isEmpty else {
            throw a.fail("'target_shape' must be a list of sizes")
        }
        var shape = try dims.map { d -> Int in
            guard let n = d.integer, n > 0 || n == -1 else {
                throw a.fail("'target_shape' sizes must be positive or -1, got \(d)")
            }
            return n
        }
        if let free = shape.firstIndex(of: -1) {
            let known = shape.filter { $0 != -1 }.reduce(1, *)
            guard shape.filter({ $0 == -1 }).count == 1, source.output.width % known == 0 else {
                throw a.fail("cannot reshape \(shapeText(source)) to \(shape)")
            }
            shape[free] = source.output.width / known
        }
        guard shape.reduce(1, *) == source.output.width else {
            throw a.fail("cannot reshape \(shapeText(source)) (\(source.output.width) values a sample) to \(shape)")
        }
        guard shape.count <= 2 else {
            throw a.fail("target shapes of rank \(shape.count) are not supported (features or [time, features])")
        }
        return Reshape(name: a.node.id, input: source, shape: shape)
    }

    static func dropout(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let spatial = a.node.className == "SpatialDropout1D"
        let source = spatial ? try sequence(a, inputs) : try single(a, inputs)
        try a.requireNull("noise_shape")  // SpatialDropout1D's is fixed; Dropout's must be absent
        // `seed` seeds Keras's own generator; Tandem's masks come from the run's seed (docs/SPEC.md §9).
        return Dropout(name: a.node.id, input: source, rate: try a.rate("rate"), spatial: spatial)
    }

    static func layerNormalization(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let source = try single(a, inputs)
        try a.lastAxis(rank: source.output.shape.count + 1)
        try a.require("rms_scaling", is: .bool(false), supported: "rms_scaling = false")
        try a.requireNull("beta_constraint", "gamma_constraint", "activity_regularizer")
        let f = source.output.features
        let epsilon = a.config["epsilon"]?.number ?? 1e-3
        guard epsilon > 0 else { throw a.fail("'epsilon' must be positive") }
        return LayerNormalization(
            name: a.node.id, input: source, epsilon: Float(epsilon),
            center: try a.bool("center", default: true), scale: try a.bool("scale", default: true),
            weights: a.node.layer,
            gammaInitializer: try a.initializer("gamma_initializer", fanIn: f, fanOut: f) ?? .constant(1),
            betaInitializer: try a.initializer("beta_initializer", fanIn: f, fanOut: f) ?? .zeros)
    }

    /// Statistics over the global batch whatever `synchronized` says: one process
    /// of Keras's fit computes them over the whole batch, and so do N ranks here.
    static func batchNormalization(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let source = try single(a, inputs)
        try a.lastAxis(rank: source.output.shape.count + 1)
        try a.require("renorm", is: .bool(false), supported: "renorm = false")
        try a.requireNull("beta_constraint", "gamma_constraint", "activity_regularizer")
        let f = source.output.features
        let epsilon = a.config["epsilon"]?.number ?? 1e-3
        let momentum = a.config["momentum"]?.number ?? 0.99
        guard epsilon > 0, (0...1).contains(momentum) else {
            throw a.fail("'epsilon' must be positive and 'momentum' in [0, 1]")
        }
        func initializer(_ key: String, _ otherwise: Initializer) throws -> Initializer {
            try a.initializer(key, fanIn: f, fanOut: f) ?? otherwise
        }
        return BatchNormalization(
            name: a.node.id, input: source, momentum: Float(momentum), epsilon: Float(epsilon),
            center: try a.bool("center", default: true), scale: try a.bool("scale", default: true),
            weights: a.node.layer,
            gammaInitializer: try initializer("gamma_initializer", .constant(1)),
            betaInitializer: try initializer("beta_initializer", .zeros),
            movingMeanInitializer: try initializer("moving_mean_initializer", .zeros),
            movingVarianceInitializer: try initializer("moving_variance_initializer", .constant(1)))
    }

    /// Layers that act on each step's last axis alone: TimeDistributed(X) is X on the sequence.
    /// (Not BatchNormalization: Keras's TimeDistributed calls it once per step, so each step has
    /// its own statistics and the moving statistics move T times a batch.)
    static let perStep = ["Dense", "Activation", "Dropout", "LayerNormalization"]

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
        try KerasConfig.refuseCustom(inner, what: "layer '\(a.node.layer)'s inner layer")
        let node = GraphNode(
            id: a.node.id, layer: a.node.layer, className: innerClass, config: inner["config"] ?? .object([]),
            inputs: a.node.inputs, call: a.node.call)
        return try make(node, inputs: [source])
    }

    static func conv1D(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let source = try sequence(a, inputs)
        try a.channelsLast()
        try a.require("groups", is: .int(1), supported: "groups = 1")
        try a.requireNull("kernel_constraint", "bias_constraint", "activity_regularizer", "lora_rank")
        let filters = try a.int("filters")
        let size = try a.size("kernel_size")
        let stride = try a.size("strides", default: 1)
        let dilation = try a.size("dilation_rate", default: 1)
        guard stride == 1 || dilation == 1 else {
            throw a.fail("strides > 1 with dilation_rate > 1 is not allowed (as in Keras)")
        }
        let name = try a.string("padding", default: "valid")
        guard let padding = Conv1D.Padding(rawValue: name) else {
            throw a.fail("padding '\(name)' is not supported (valid, same, causal)")
        }
        let steps = source.output.shape[0]
        let channels = source.output.shape[1]
        guard Conv1D.outputSteps(steps: steps, kernel: size, stride: stride, dilation: dilation, padding: padding) > 0
        else {
            throw a.fail("its kernel (size \(size), dilation \(dilation)) is longer than the \(steps) steps it reads")
        }
        return Conv1D(
            name: a.node.id, filters: filters, kernelSize: size, input: source, stride: stride, dilation: dilation,
            padding: padding, activation: try a.activation(), useBias: try a.bool("use_bias", default: true),
            weights: a.node.layer,
            kernelInitializer: try a.initializer("kernel_initializer", fanIn: size * channels, fanOut: size * filters),
            biasInitializer: try a.initializer("bias_initializer", fanIn: size * channels, fanOut: filters) ?? .zeros)
    }

    static func pooling(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let source = try sequence(a, inputs)
        try a.channelsLast()
        let pool = try a.size("pool_size", default: 2)
        let stride = try a.size("strides", default: pool)
        let padding = try a.string("padding", default: "valid")
        guard padding == "valid" || padding == "same" else {
            throw a.fail("padding '\(padding)' is not supported (valid, same)")
        }
        let steps = source.output.shape[0]
        guard padding == "same" || pool <= steps else {
            throw a.fail("pool_size \(pool) is longer than the \(steps) steps it pools")
        }
        return Pooling1D(
            name: a.node.id, kind: a.node.className.hasPrefix("Max") ? .max : .average, input: source,
            pool: pool, stride: stride, same: padding == "same")
    }

    static func merge(_ a: LayerArguments, _ kind: MergeKind, _ inputs: [Layer]) throws -> Layer {
        guard inputs.count >= 2 else { throw a.fail("needs at least two inputs, got \(inputs.count)") }
        guard kind != .subtract || inputs.count == 2 else {
            throw a.fail("takes exactly two inputs, got \(inputs.count)")
        }
        guard inputs.allSatisfy({ $0.output.shape == inputs[0].output.shape }) else {
            throw a.fail(
                "inputs must share one shape (broadcasting is not supported), got \(inputs.map { "\($0.output.shape)" }.joined(separator: " and "))"
            )
        }
        return Merge(name: a.node.id, kind: kind, inputs: inputs)
    }

    static func concatenate(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        guard inputs.count >= 2 else { throw a.fail("needs at least two inputs, got \(inputs.count)") }
        let rank = inputs[0].output.shape.count
        let shapes = inputs.map { shapeText($0) }.joined(separator: " and ")
        guard inputs.allSatisfy({ $0.output.shape.count == rank }) else {
            throw a.fail("inputs must have one rank, got \(shapes)")
        }
        let given = a.config["axis"]?.integer ?? -1
        // Keras counts the batch axis: axis 1 is the first per-sample axis, −1 the last.
        let axis = given < 0 ? rank + given : given - 1
        guard (0..<rank).contains(axis) else {
            throw a.fail("axis \(given) is not an axis of \(shapes) (the batch axis cannot be joined)")
        }
        for i in 0..<rank where i != axis {
            guard inputs.allSatisfy({ $0.output.shape[i] == inputs[0].output.shape[i] }) else {
                throw a.fail("inputs must agree on every axis but \(given), got \(shapes)")
            }
        }
        return Concatenate(name: a.node.id, inputs: inputs, axis: axis)
    }
}
