// The `headline` preset (SPEC §2): Keras's multi-input / multi-output example.
// tokens → embedding → lstm (shared trunk) → aux_output;
// lstm ⊕ aux_input → dense, dense_1, dense_2 (relu) → main_output.

/// Sizes of the headline model; defaults are SPEC §2's.
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
    public var denseNames: [String] {
        (0..<denseLayers).map { $0 == 0 ? "dense" : "dense_\($0)" }
    }
}

extension Model {
    /// Builds the headline graph for batches of up to `maxBatch` samples.
    public static func headline(_ config: HeadlineConfig, maxBatch: Int, fuse: Bool = true) -> Model {
        let tokens = InputLayer(name: "main_input", kind: .tokens, width: config.sequenceLength)
        let aux = InputLayer(name: "aux_input", kind: .features, width: config.auxFeatures)
        let embedding = Embedding(name: "embedding", vocabulary: config.vocabulary,
                                  dimension: config.embeddingDimension, input: tokens)
        let lstm = LSTM(name: "lstm", units: config.lstmUnits, input: embedding, steps: config.sequenceLength)
        let auxOutput = Dense(name: "aux_output", units: 1, activation: .sigmoid, input: lstm)
        var x: Layer = Concatenate(name: "concatenate", inputs: [lstm, aux])
        for name in config.denseNames {
            x = Dense(name: name, units: config.denseUnits, activation: .relu, input: x)
        }
        let mainOutput = Dense(name: "main_output", units: 1, activation: .sigmoid, input: x)
        return Model(inputs: [tokens, aux], outputs: [mainOutput, auxOutput], maxBatch: maxBatch, fuse: fuse)
    }
}
