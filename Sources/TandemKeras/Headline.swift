// The `headline` preset (docs/SPEC.md §2): Keras's multi-input / multi-output example.
// tokens → embedding → lstm (shared trunk) → aux_output;
// lstm ⊕ aux_input → dense, dense_1, dense_2 (relu) → main_output.
// It is written as the config.json Keras itself would save for that model, so
// the preset and a user's archive take the same path (ModelDescription), and
// RUN/model.keras of a headline run loads in Keras.

import TandemCore

/// Sizes of the headline model; defaults are docs/SPEC.md §2's.
public struct HeadlineConfig: Sendable, Equatable, Codable {
    public var vocabulary = 10000
    public var sequenceLength = 100
    public var embeddingDimension = 512
    public var lstmUnits = 32
    public var auxFeatures = 5
    public var denseUnits = 64
    public var denseLayers = 3
    public init() {}

    /// Layer names of the dense stack: dense, dense_1, dense_2, … (Keras's naming).
    package var denseNames: [String] {
        (0..<denseLayers).map { $0 == 0 ? "dense" : "dense_\($0)" }
    }
}

extension ModelDescription {
    /// The headline model as Keras would save it, compiled with binary
    /// cross-entropy on both heads, loss weights main 1.0 / aux 0.2 and accuracy.
    public static func headline(_ c: HeadlineConfig) throws -> ModelDescription {
        typealias K = KerasJSON
        let T = c.sequenceLength
        var layers: [JSONValue] = [K.input("main_input", shape: [T], dtype: "int32")]
        layers.append(
            K.layer(
                "Embedding", "embedding",
                [
                    ("trainable", .bool(true)), ("dtype", K.float32Policy), ("input_dim", .int(Int64(c.vocabulary))),
                    ("output_dim", .int(Int64(c.embeddingDimension))),
                    (
                        "embeddings_initializer",
                        K.initializer(
                            "RandomUniform", [("seed", .null), ("minval", .double(-0.05)), ("maxval", .double(0.05))])
                    ),
                    ("embeddings_regularizer", .null), ("activity_regularizer", .null),
                    ("embeddings_constraint", .null),
                    ("mask_zero", .bool(false)),
                ], inbound: [K.tensor("main_input", shape: [nil, T], dtype: "int32")]))
        layers.append(
            K.layer(
                "LSTM", "lstm",
                [
                    ("trainable", .bool(true)), ("dtype", K.float32Policy), ("return_sequences", .bool(false)),
                    ("return_state", .bool(false)),
                    ("go_backwards", .bool(false)), ("stateful", .bool(false)), ("unroll", .bool(false)),
                    ("zero_output_for_mask", .bool(false)),
                    ("units", .int(Int64(c.lstmUnits))), ("activation", .string("tanh")),
                    ("recurrent_activation", .string("sigmoid")),
                    ("use_bias", .bool(true)),
                    ("kernel_initializer", K.initializer("GlorotUniform", [("seed", .null)])),
                    ("recurrent_initializer", K.initializer("Orthogonal", [("seed", .null), ("gain", .double(1))])),
                    ("bias_initializer", K.initializer("Zeros")), ("unit_forget_bias", .bool(true)),
                    ("kernel_regularizer", .null), ("recurrent_regularizer", .null), ("bias_regularizer", .null),
                    ("activity_regularizer", .null),
                    ("kernel_constraint", .null), ("recurrent_constraint", .null), ("bias_constraint", .null),
                    ("dropout", .double(0)), ("recurrent_dropout", .double(0)), ("seed", .null),
                ],
                inbound: [K.tensor("embedding", shape: [nil, T, c.embeddingDimension], dtype: "float32")]))
        layers.append(K.input("aux_input", shape: [c.auxFeatures], dtype: "float32"))
        layers.append(
            K.layer(
                "Concatenate", "concatenate",
                [("trainable", .bool(true)), ("dtype", K.float32Policy), ("axis", .int(-1))],
                inbound: [
                    .array([
                        K.tensor("lstm", shape: [nil, c.lstmUnits], dtype: "float32"),
                        K.tensor("aux_input", shape: [nil, c.auxFeatures], dtype: "float32"),
                    ])
                ]))
        var previous = "concatenate"
        var width = c.lstmUnits + c.auxFeatures
        for name in c.denseNames {
            layers.append(
                K.dense(
                    name, units: c.denseUnits, activation: "relu",
                    from: K.tensor(previous, shape: [nil, width], dtype: "float32")))
            previous = name
            width = c.denseUnits
        }
        layers.append(
            K.dense(
                "main_output", units: 1, activation: "sigmoid",
                from: K.tensor(previous, shape: [nil, width], dtype: "float32")))
        layers.append(
            K.dense(
                "aux_output", units: 1, activation: "sigmoid",
                from: K.tensor("lstm", shape: [nil, c.lstmUnits], dtype: "float32")))
        func pairs(_ names: [String]) -> JSONValue { .array(names.map { .array([.string($0), .int(0), .int(0)]) }) }
        let both: (JSONValue) -> JSONValue = { v in .object([("main_output", v), ("aux_output", v)]) }
        let compile: JSONValue = .object([
            ("optimizer", .null),
            ("loss", both(.string("binary_crossentropy"))),
            ("loss_weights", .object([("main_output", .double(1.0)), ("aux_output", .double(0.2))])),
            ("metrics", both(.array([.string("accuracy")]))),
            ("weighted_metrics", .null), ("run_eagerly", .bool(false)), ("steps_per_execution", .int(1)),
            ("jit_compile", .bool(false)),
        ])
        let json: JSONValue = .object([
            ("module", .string("keras.src.models.functional")), ("class_name", .string("Functional")),
            (
                "config",
                .object([
                    ("name", .string("headline")), ("trainable", .bool(true)), ("layers", .array(layers)),
                    ("input_layers", pairs(["main_input", "aux_input"])),
                    ("output_layers", pairs(["main_output", "aux_output"])),
                ])
            ),
            ("registered_name", .string("Functional")), ("compile_config", compile),
        ])
        var d = try KerasConfig.description(from: json)
        d.preset = "headline"
        return d
    }
}

extension Model {
    /// Builds the headline graph for batches of up to `maxBatch` samples.
    public static func headline(_ config: HeadlineConfig, maxBatch: Int, fuse: Bool = true) -> Model {
        // The preset's sizes are checked by the CLI; an impossible size is a programming error here.
        try! ModelDescription.headline(config).build(maxBatch: maxBatch, fuse: fuse)
    }
}
