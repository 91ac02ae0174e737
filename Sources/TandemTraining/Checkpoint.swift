// Weights and checkpoints as safetensors (docs/SPEC.md §5). Weights: `<layer>/<weight>`
// in Keras layouts. Checkpoint: the weights, the optimizer slots as
// `optimizer/<slot>/<layer>/<weight>`, and JSON metadata in `__metadata__`.
// Rank 0 reads and writes; the values reach other ranks by broadcast.

import Foundation
import TandemCore
import TandemKeras

/// Where training stands; stored in a checkpoint's metadata.
public struct TrainingPosition: Codable, Sendable, Equatable {
    /// Optimizer steps applied so far.
    public var step = 0
    /// The epoch in progress (0-based) and the global batches of it already done.
    public var epoch = 0
    package var batchInEpoch = 0
    /// Running sums of the epoch so far (nil between epochs).
    package var epochSums: EpochSums?
    /// A tandem-checkpoint-1 file's positional sums, until the trainer knows their layout.
    package var legacyEpochSums: [Double]?
    /// --monitor's best value, its epoch and the epochs waited since.
    public var monitor: MonitorState?
    public init() {}

    private enum CodingKeys: String, CodingKey { case step, epoch, batchInEpoch, epochSums, monitor }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        step = try c.decode(Int.self, forKey: .step)
        epoch = try c.decode(Int.self, forKey: .epoch)
        batchInEpoch = try c.decode(Int.self, forKey: .batchInEpoch)
        monitor = try c.decodeIfPresent(MonitorState.self, forKey: .monitor)
        if let legacy = try? c.decodeIfPresent([Double].self, forKey: .epochSums) {
            legacyEpochSums = legacy.isEmpty ? nil : legacy
        } else {
            epochSums = try c.decodeIfPresent(EpochSums.self, forKey: .epochSums)
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(step, forKey: .step)
        try c.encode(epoch, forKey: .epoch)
        try c.encode(batchInEpoch, forKey: .batchInEpoch)
        if let legacyEpochSums {
            try c.encode(legacyEpochSums, forKey: .epochSums)
        } else {
            try c.encodeIfPresent(epochSums, forKey: .epochSums)
        }
        try c.encodeIfPresent(monitor, forKey: .monitor)
    }
}

/// What defines a run: what `tandem train` builds from its flags, and what a checkpoint keeps,
/// so that `--resume` continues the very same run (`CheckpointMetadata.checkResume` refuses a
/// flag that would change it). What a resumed run may change — the epochs, the number of ranks,
/// the intervals, validation, the output — is not part of it.
public struct RunConfiguration: Codable, Sendable, Equatable {
    /// The preset's sizes (for --model headline).
    public var headline: HeadlineConfig?
    /// The model's Keras config.json, compile config included (for an archive model;
    /// `--resume` rebuilds the model from it, so no model flags are needed).
    public var modelConfig: String?
    public var optimizer: OptimizerConfig
    /// The global batch, and the training samples the run's epochs go over.
    public var batchSize: Int
    public var samples: Int
    public var seed: UInt64
    public var shuffle: Bool
    /// Reproducible mode's micro-batch size (nil: ordinary mode).
    public var microBatch: Int?
    /// Outputs whose loss is divided by the labelled weight (`--head-reduction OUTPUT=labeled`).
    public var labeledReduction: [String]?
    /// Per output, its --loss-weight-schedule.
    public var lossWeightSchedules: [String: LossWeightSchedule]?
    /// `--gradient-surgery` (pcgrad).
    public var gradientSurgery: String?

    public init(
        headline: HeadlineConfig?, modelConfig: String?, optimizer: OptimizerConfig, batchSize: Int, samples: Int,
        seed: UInt64, shuffle: Bool
    ) {
        self.headline = headline
        self.modelConfig = modelConfig
        self.optimizer = optimizer
        self.batchSize = batchSize
        self.samples = samples
        self.seed = seed
        self.shuffle = shuffle
    }

    // The keys tandem-checkpoint-1 metadata has always used (the preset's sizes as "model").
    private enum CodingKeys: String, CodingKey {
        case headline = "model"
        case modelConfig, optimizer, batchSize, samples, seed, shuffle, microBatch, labeledReduction,
            lossWeightSchedules, gradientSurgery
    }
}

/// Everything a checkpoint's metadata records: the run's configuration, where it stands, and
/// the training state that is no tensor. In JSON the configuration's fields sit beside the
/// state's, as checkpoints have always written them.
public struct CheckpointMetadata: Codable, Sendable {
    public var configuration: RunConfiguration
    public var position: TrainingPosition
    package var worldSize: Int
    /// Training steps the optimizer has taken (Keras's saved `iteration`; with gradient accumulation
    /// the updates are this ÷ N). Differs from position.step when training continued an archive's state.
    package var optimizerIterations: Int?
    /// Nadam's momentum product (state that is no slot).
    package var nadamProduct: Float?
    /// LossScaleOptimizer's dynamic_scale and step_counter (state that is no slot).
    package var lossScale: Float?, lossScaleCounter: Int?
    /// Reproducible mode's fixed-point bound.
    public var gradientBound: Double?
    /// The learned loss weighting's state.
    public var learnedWeighting: LearnedWeightingState?

    package init(configuration: RunConfiguration, position: TrainingPosition, worldSize: Int) {
        self.configuration = configuration
        self.position = position
        self.worldSize = worldSize
    }

    package init(
        position: TrainingPosition, seed: UInt64, model: HeadlineConfig?, optimizer: OptimizerConfig,
        batchSize: Int, samples: Int, worldSize: Int, shuffle: Bool
    ) {
        self.init(
            configuration: RunConfiguration(
                headline: model, modelConfig: nil, optimizer: optimizer, batchSize: batchSize, samples: samples,
                seed: seed,
                shuffle: shuffle),
            position: position, worldSize: worldSize)
    }

    private enum CodingKeys: String, CodingKey {
        case position, worldSize, optimizerIterations, nadamProduct, gradientBound, learnedWeighting, lossScale,
            lossScaleCounter
    }

    public init(from decoder: Decoder) throws {
        configuration = try RunConfiguration(from: decoder)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        position = try c.decode(TrainingPosition.self, forKey: .position)
        worldSize = try c.decode(Int.self, forKey: .worldSize)
        optimizerIterations = try c.decodeIfPresent(Int.self, forKey: .optimizerIterations)
        nadamProduct = try c.decodeIfPresent(Float.self, forKey: .nadamProduct)
        lossScale = try c.decodeIfPresent(Float.self, forKey: .lossScale)
        lossScaleCounter = try c.decodeIfPresent(Int.self, forKey: .lossScaleCounter)
        gradientBound = try c.decodeIfPresent(Double.self, forKey: .gradientBound)
        learnedWeighting = try c.decodeIfPresent(LearnedWeightingState.self, forKey: .learnedWeighting)
    }

    public func encode(to encoder: Encoder) throws {
        try configuration.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(position, forKey: .position)
        try c.encode(worldSize, forKey: .worldSize)
        try c.encodeIfPresent(optimizerIterations, forKey: .optimizerIterations)
        try c.encodeIfPresent(nadamProduct, forKey: .nadamProduct)
        try c.encodeIfPresent(lossScale, forKey: .lossScale)
        try c.encodeIfPresent(lossScaleCounter, forKey: .lossScaleCounter)
        try c.encodeIfPresent(gradientBound, forKey: .gradientBound)
        try c.encodeIfPresent(learnedWeighting, forKey: .learnedWeighting)
    }
}

/// Writes the model's weights to `path` (atomically).
package func saveWeights(_ store: ParameterStore, to path: String, metadata: [String: String] = [:]) throws {
    let entries = store.tensors.map { SafeTensorsEntry(name: $0.name, shape: $0.shape, values: store.value($0)) }
    try SafeTensorsFile.write(entries, metadata: metadata, to: path)
}

/// Reads every tensor of `store` from `path`, checking names and shapes.
/// Extra tensors in the file (e.g. optimizer slots) are ignored.
public func loadWeights(_ store: ParameterStore, from file: SafeTensorsFile) throws {
    let missing = store.tensors.filter { file.tensors[$0.name] == nil }.map(\.name)
    if !missing.isEmpty {
        throw TandemError.file(
            file.path,
            "missing tensor\(missing.count == 1 ? "" : "s") \(missing.joined(separator: ", ")) needed by the model")
    }
    for view in store.tensors { try file.read(view.name, shape: view.shape, into: store.value(view)) }
}

/// Writes weights, optimizer slots and metadata to `path` atomically. With gradient accumulation the
/// window's gradient sum (folded into rank 0's arena first) is saved as `accumulator/<tensor>`.
package func saveCheckpoint(model: Model, optimizer: Optimizer, metadata: CheckpointMetadata, to path: String) throws {
    let store = model.parameters
    var entries = store.tensors.map { SafeTensorsEntry(name: $0.name, shape: $0.shape, values: store.value($0)) }
    for slot in optimizer.slots {
        entries += store.tensors.map {
            SafeTensorsEntry(
                name: "optimizer/\(slot.name)/\($0.name)", shape: $0.shape, values: slot.values + $0.offset)
        }
    }
    if optimizer.stepsPerUpdate > 1 {
        entries += store.tensors.map {
            SafeTensorsEntry(name: "accumulator/\($0.name)", shape: $0.shape, values: store.gradients + $0.offset)
        }
    }
    let json = String(decoding: try JSONEncoder().encode(metadata), as: UTF8.self)
    try SafeTensorsFile.write(entries, metadata: ["tandem": json, "format": "tandem-checkpoint-1"], to: path)
}

/// Reads a checkpoint into the model and optimizer; returns its metadata.
package func loadCheckpoint(model: Model, optimizer: Optimizer, from path: String) throws -> CheckpointMetadata {
    let file = try SafeTensorsFile(path: path)
    guard let json = file.metadata["tandem"],
        let metadata = try? JSONDecoder().decode(CheckpointMetadata.self, from: Data(json.utf8))
    else {
        throw TandemError.file(path, "not a Tandem checkpoint (no readable training metadata)")
    }
    try loadWeights(model.parameters, from: file)
    for slot in optimizer.slots {
        for view in model.parameters.tensors {
            try file.read("optimizer/\(slot.name)/\(view.name)", shape: view.shape, into: slot.values + view.offset)
        }
    }
    if optimizer.stepsPerUpdate > 1 {
        for view in model.parameters.tensors {
            try file.read("accumulator/\(view.name)", shape: view.shape, into: model.parameters.gradients + view.offset)
        }
    }
    optimizer.restore(iterations: metadata.optimizerIterations ?? metadata.position.step)
    if let product = metadata.nadamProduct { optimizer.nadamProduct = product }
    if let scale = metadata.lossScale, let counter = metadata.lossScaleCounter {
        optimizer.lossScale = scale
        optimizer.lossScaleCounter = counter
    }
    return metadata
}

/// Sends rank 0's parameters (and optimizer slots) to every rank.
public func broadcastState(model: Model, optimizer: Optimizer?, communicator: Communicator) throws {
    let store = model.parameters
    try communicator.broadcast(store.values, bytes: store.count * 4, from: 0)
    for slot in optimizer?.slots ?? [] {
        try communicator.broadcast(slot.values, bytes: store.count * 4, from: 0)
    }
    if let optimizer, optimizer.config.kind == .nadam {
        try withUnsafeMutableBytes(of: &optimizer.nadamProduct) {
            try communicator.broadcast($0.baseAddress!, bytes: 4, from: 0)
        }
    }
    if let optimizer, optimizer.config.lossScale != nil {
        var state = (optimizer.lossScale, Int64(optimizer.lossScaleCounter))
        try withUnsafeMutableBytes(of: &state) { try communicator.broadcast($0.baseAddress!, bytes: $0.count, from: 0) }
        optimizer.lossScale = state.0
        optimizer.lossScaleCounter = Int(state.1)
    }
}

/// The sizes of a headline model read from a weights file's shapes, for the
/// flags the user left out. Sequence length is not in the weights.
public func inferHeadlineConfig(from file: SafeTensorsFile, into config: inout HeadlineConfig, given: Set<String>) {
    if let e = file.tensors["embedding/embeddings"]?.shape, e.count == 2 {
        if !given.contains("vocab") { config.vocabulary = e[0] }
        if !given.contains("embed-dim") { config.embeddingDimension = e[1] }
    }
    if let r = file.tensors["lstm/recurrent_kernel"]?.shape, r.count == 2, !given.contains("lstm-units") {
        config.lstmUnits = r[0]
    }
    if let d = file.tensors["dense/kernel"]?.shape, d.count == 2 {
        // The dense kernel reads [LSTM output, aux_input]: the file's own LSTM width (a
        // --lstm-units flag is applied only later, so config's may still be the default).
        let units = file.tensors["lstm/recurrent_kernel"]?.shape.first ?? config.lstmUnits
        if !given.contains("aux-features") { config.auxFeatures = d[0] - units }
        if !given.contains("dense-units") { config.denseUnits = d[1] }
    }
    if !given.contains("dense-layers") {
        var layers = 0
        while file.tensors["\(layers == 0 ? "dense" : "dense_\(layers)")/kernel"] != nil { layers += 1 }
        config.denseLayers = layers
    }
}
