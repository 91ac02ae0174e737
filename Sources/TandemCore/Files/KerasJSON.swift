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
}
