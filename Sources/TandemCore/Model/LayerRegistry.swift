// Keras class names → Tandem layers, through the table of KerasLayerKind.swift; the builders end
// each layer's file in Layers/. Each builder reads the layer's Keras config, checks every argument
// Tandem does not implement against the value that means "off", and throws one message naming
// the layer, the argument and what is supported — never a precondition on user input. Nothing
// in a config is executed: a Lambda or a custom class is refused by name.

import Foundation

/// Reads one layer's config with errors that name the layer.
package struct LayerArguments {
    let node: GraphNode
    /// An InputLayer that an Embedding reads: token ids whatever its dtype (ModelDescription).
    package var readAsTokens = false
    /// An InputLayer's per-sample shape in the data, for its None axes (ModelDescription.dataShapes).
    package var dataShape: [Int]?
    /// A MultiHeadAttention call's query, value and key masks (nil: none), which Keras does not save
    /// in the call: ModelDescription follows the Keras masks to them.
    package var attentionMasks: [Layer?] = []
    /// The Keras mask a mask-reading call gets at run time when the file holds none for it.
    package var runtimeMask: Layer?

    package init(node: GraphNode) { self.node = node }
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
package enum LayerRegistry {
    /// Keras classes Tandem can build.
    package static let supported = kinds.filter(\.listed).flatMap(\.classNames)

    /// Classes whose call takes Keras's `mask` argument (Embedding(mask_zero=True) → NotEqual).
    package static let maskConsumers = kinds.filter(\.readsMask).flatMap(\.classNames)

    /// Classes that read a model input's values as token ids (Keras casts them to integers):
    /// Embedding, and the NotEqual with an integer value that Embedding(mask_zero=True) saves
    /// (Masking's compares floats with a float value).
    package static func readsTokens(_ node: GraphNode) -> Bool {
        if node.className == "Embedding" || node.className == "TokenAndPositionEmbedding" { return true }
        if node.className == "ReversibleEmbedding" { return !isReverse(node) }
        if node.className == "NotEqual", case .int = node.config["value"] { return true }
        return false
    }

    /// Builds the Tandem layer for one call; `inputs` are its producers' layers. A layer's
    /// activity_regularizer is a separate layer after it (`activityPenalty`).
    package static func make(_ a: LayerArguments, inputs: [Layer]) throws -> Layer {
        let node = a.node
        if node.className != "InputLayer" { try a.dtypePolicy() }  // an input's dtype is its data's
        // A wrapped layer's activity_regularizer would run on the wrapper's reshaped calls (its
        // batch T times larger, for TimeDistributed): refused by name.
        for key in ["layer", "backward_layer"] {
            if let inner = node.config[key]?["config"]?["activity_regularizer"], !inner.isNull {
                throw a.fail("an activity_regularizer on the layer it wraps is not supported (set it on the wrapper)")
            }
        }
        // trainable = false freezes the layer's weights (ModelDescription.frozenLayers); a layer inside
        // a wrapper is frozen with its wrapper only.
        for key in ["layer", "backward_layer"] {
            if node.config[key]?["config"]?["trainable"]?.bool == false && node.config["trainable"]?.bool != false {
                throw a.fail("a frozen layer inside a trainable wrapper is not supported (freeze the wrapper)")
            }
        }
        var inputs = inputs
        var mask: Layer?
        if node.masked {
            guard maskConsumers.contains(node.className) else {
                throw a.fail(
                    "its 'mask' argument is not supported (masks are read by \(maskConsumers.joined(separator: ", ")))")
            }
            mask = inputs.removeLast()
            guard mask is MaskProducer else {
                throw a.fail(
                    "its mask must come from Embedding(mask_zero=True) or Masking (ops.not_equal on the token ids, or ops.any of ops.not_equal on the features)"
                )
            }
        }
        if mask == nil { mask = a.runtimeMask }
        guard let kind = kindByClass[node.className] else {
            throw TandemError.usage(
                "layer '\(node.layer)': Keras class \(node.className) is not supported (supported: \(supported.joined(separator: ", ")))"
            )
        }
        return try kind.build(a, inputs, mask)
    }

    /// The layer after `layer` that adds its activity_regularizer to the loss (nil when it has none).
    package static func activityPenalty(_ a: LayerArguments, after layer: Layer) throws -> Layer? {
        guard let strengths = try a.regularizer("activity_regularizer") else { return nil }
        return ActivityPenalty(
            name: a.node.id + "/activity_regularizer", l1: Float(strengths.l1), l2: Float(strengths.l2), input: layer)
    }

    /// The penalties a node's config asks for, as tensors (`*_regularizer`).
    package static func regularizers(_ node: GraphNode) throws -> [Regularizer] {
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

    /// The weight constraints a node's config asks for (`*_constraint`, each beside its
    /// `*_regularizer` key: the same weight), TimeDistributed's and Bidirectional's as their regularizers.
    package static func constraints(_ node: GraphNode) throws -> [WeightConstraint] {
        if node.className == "TimeDistributed", let inner = node.config["layer"] {
            return try constraints(
                GraphNode(
                    id: node.id, layer: node.layer, className: inner["class_name"]?.string ?? "",
                    config: inner["config"] ?? .null, inputs: node.inputs, call: node.call))
        }
        if node.className == "Bidirectional" {
            return try ["layer", "backward_layer"].flatMap { key -> [WeightConstraint] in
                guard let half = node.config[key], let name = half["config"]?["name"]?.string else { return [] }
                return try constraints(
                    GraphNode(
                        id: node.id, layer: "\(node.layer)/\(name)", className: half["class_name"]?.string ?? "",
                        config: half["config"] ?? .null, inputs: node.inputs, call: node.call))
            }
        }
        let keys = kindByClass[node.className]?.regularizerKeys ?? []
        return try keys.compactMap { key, weight in
            let constraintKey = key.replacingOccurrences(of: "_regularizer", with: "_constraint")
            guard let value = node.config[constraintKey] else { return nil }
            do {
                return try WeightConstraint.keras(value, tensor: "\(node.layer)/\(weight)", key: constraintKey)
            } catch let TandemError.usage(message) {
                throw TandemError.usage("layer '\(node.layer)' (\(node.className)): \(message)")
            }
        }
    }

    static func single(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        guard inputs.count == 1 else { throw a.fail("takes one input, got \(inputs.count)") }
        return inputs[0]
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

    /// Layers that act on each step's last axis alone: TimeDistributed(X) is X on the sequence.
    /// (Not BatchNormalization: Keras's TimeDistributed calls it once per step, so each step has
    /// its own statistics and the moving statistics move T times a batch.)
    static let perStep = ["Dense", "Activation", "Dropout", "LayerNormalization"]

}
