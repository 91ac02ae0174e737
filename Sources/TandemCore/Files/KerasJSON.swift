// Keras's serialized-object form ({module, class_name, config, registered_name}) and the
// pieces of a config.json built from it: what the headline preset, learning-rate schedules and
// the archive writer use to speak Keras's own terms.

/// Pieces of a Keras 3 config.json, as `Model.save` writes them.
package enum KerasJSON {
    static func object(_ fields: [(String, JSONValue)]) -> JSONValue { .object(fields) }

    public static func serialized(_ module: String, _ className: String, _ config: [(String, JSONValue)]) -> JSONValue {
        .object([
            ("module", .string(module)), ("class_name", .string(className)), ("config", .object(config)),
            ("registered_name", .null),
        ])
    }

    package static let float32Policy = serialized("keras", "DTypePolicy", [("name", .string("float32"))])

    public static func tensor(_ layer: String, shape: [Int?], dtype: String) -> JSONValue {
        .object([
            ("class_name", .string("__keras_tensor__")),
            (
                "config",
                .object([
                    ("shape", .array(shape.map { $0.map { .int(Int64($0)) } ?? .null })),
                    ("dtype", .string(dtype)),
                    ("keras_history", .array([.string(layer), .int(0), .int(0)])),
                ])
            ),
        ])
    }

    public static func layer(
        _ className: String, _ name: String, _ config: [(String, JSONValue)], inbound: [JSONValue]?
    )
        -> JSONValue
    {
        var fields: [(String, JSONValue)] = [
            ("module", .string("keras.layers")), ("class_name", .string(className)),
            ("config", .object([("name", .string(name))] + config)), ("registered_name", .null),
            ("name", .string(name)),
        ]
        let calls: [JSONValue] = inbound.map { [.object([("args", .array($0)), ("kwargs", .object([]))])] } ?? []
        fields.append(("inbound_nodes", .array(calls)))
        return .object(fields)
    }

    package static func input(_ name: String, shape: [Int], dtype: String) -> JSONValue {
        layer(
            "InputLayer", name,
            [
                ("batch_shape", .array([.null] + shape.map { .int(Int64($0)) })), ("dtype", .string(dtype)),
                ("sparse", .bool(false)), ("ragged", .bool(false)), ("optional", .bool(false)),
            ], inbound: nil)
    }

    package static func initializer(_ className: String, _ config: [(String, JSONValue)] = []) -> JSONValue {
        serialized("keras.initializers", className, config)
    }

    package static func dense(_ name: String, units: Int, activation: String, from: JSONValue) -> JSONValue {
        layer(
            "Dense", name,
            [
                ("trainable", .bool(true)), ("dtype", float32Policy), ("units", .int(Int64(units))),
                ("activation", .string(activation)), ("use_bias", .bool(true)),
                ("kernel_initializer", initializer("GlorotUniform", [("seed", .null)])),
                ("bias_initializer", initializer("Zeros")),
                ("kernel_regularizer", .null), ("bias_regularizer", .null),
                ("kernel_constraint", .null), ("bias_constraint", .null),
            ], inbound: [from])
    }

    /// A Bidirectional config's forward and backward RNN entries. Without a
    /// `backward_layer`, Keras builds it from the forward one: go_backwards
    /// flipped, named `backward_<name without "forward_">`.
    package static func bidirectionalHalves(_ config: JSONValue) -> [JSONValue] {
        let forward = config["layer"] ?? .null
        if let b = config["backward_layer"], !b.isNull { return [forward, b] }
        let name = forward["config"]?["name"]?.string ?? ""
        let fields = (forward["config"]?.object ?? []).map { key, value -> (String, JSONValue) in
            switch key {
            case "go_backwards": return (key, .bool(!(value.bool ?? false)))
            case "name": return (key, .string("backward_" + name.replacingOccurrences(of: "forward_", with: "")))
            default: return (key, value)
            }
        }
        return [forward, .object([("class_name", forward["class_name"] ?? .null), ("config", .object(fields))])]
    }

    /// Refuses custom classes and anything outside Keras's own modules (never executed).
    package static func refuseCustom(_ entry: JSONValue, what: String) throws {
        let className = entry["class_name"]?.string ?? "?"
        if className == "Lambda" || className == "TFOpLambda" {
            throw TandemError.usage(
                "\(what): a \(className) layer holds Python code, which Tandem never executes; rebuild the model from built-in layers"
            )
        }
        // KerasHub's layers that Tandem implements natively, by registered name (KerasHub.swift).
        if let registered = entry["registered_name"]?.string, registered == "keras_hub>\(className)",
            KerasLayerKind.kerasHubConfigKeys[className] != nil,
            entry["module"]?.string?.hasPrefix("keras_hub.src.layers.modeling.") == true
        {
            return
        }
        if let registered = entry["registered_name"]?.string, registered.hasPrefix("keras_hub>") {
            let supported = KerasLayerKind.kerasHubConfigKeys.keys.sorted().map { "keras_hub>\($0)" }
            throw TandemError.usage(
                "\(what): '\(registered)' is not a KerasHub layer Tandem implements (supported: \(supported.joined(separator: ", "))); nothing from a file is executed"
            )
        }
        if let module = entry["module"]?.string, !(module == "keras" || module.hasPrefix("keras.")) {
            throw TandemError.usage(
                "\(what): class \(className) comes from module '\(module)' (a custom object); Tandem reads built-in Keras classes only and never executes code from a file"
            )
        }
        if let registered = entry["registered_name"], !registered.isNull,
            !(["Functional", "Sequential", "Model"].contains(registered.string ?? ""))
        {
            throw TandemError.usage(
                "\(what): '\(registered.string ?? "\(registered)")' is a registered custom object; Tandem reads built-in Keras classes only and never executes code from a file"
            )
        }
    }

    /// Keras's `naming.to_snake_case` (HDF5 group names come from the class name — the Python class's: the
    /// one class exported under another name, GroupQueryAttention, is GroupedQueryAttention there).
    package static func snakeCase(_ name: String) -> String {
        var s =
            name == "GroupQueryAttention"
            ? "GroupedQueryAttention" : name.replacingOccurrences(of: "\\W+", with: "", options: .regularExpression)
        s = s.replacingOccurrences(of: "(.)([A-Z][a-z]+)", with: "$1_$2", options: .regularExpression)
        s = s.replacingOccurrences(of: "([a-z])([A-Z])", with: "$1_$2", options: .regularExpression)
        return s.lowercased()
    }
}
