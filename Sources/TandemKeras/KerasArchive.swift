// A Keras 3 `.keras` archive (docs/KERAS-FORMAT.md): a zip (or a directory) with
// config.json and model.weights.h5. Reading takes the two members by name —
// member names are never used as paths, and an archive that holds a name with
// `..` or an absolute path is refused — with sizes checked before anything is
// unpacked. Weights go into the model's parameter store through the HDF5
// paths Keras uses (named after the layer CLASS, numbered in model.layers
// order); the optimizer state into Tandem's optimizer in Keras's variable
// order. Writing produces the same layout, zipped through ZIPFoundation.

import Foundation
import TandemCore
import ZIPFoundation

/// The members of a `.keras` archive, read into memory.
public final class KerasArchive {
    package let path: String
    public let configBytes: [UInt8]
    /// nil when the archive has no weights file (a config-only directory).
    public let weightsBytes: [UInt8]?

    /// Largest member Tandem unpacks, and the largest expansion over its compressed size.
    static let memberLimit: UInt64 = 16 << 30, expansionLimit: UInt64 = 100

    /// Reads `path`: a `.keras` zip, or a directory holding config.json (and model.weights.h5).
    public init(path: String) throws {
        self.path = path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw TandemError.file(path, "model archive not found")
        }
        if isDirectory.boolValue {
            let config = URL(fileURLWithPath: path).appendingPathComponent("config.json").path
            let weights = URL(fileURLWithPath: path).appendingPathComponent("model.weights.h5").path
            guard let c = FileManager.default.contents(atPath: config) else {
                throw TandemError.file(path, "the model directory has no config.json")
            }
            configBytes = Array(c)
            weightsBytes = FileManager.default.contents(atPath: weights).map(Array.init)
            return
        }
        let archive: Archive
        do { archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .read) } catch {
            throw TandemError.file(path, "not a .keras archive (not a readable zip file)")
        }
        let fileSize = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? UInt64) ?? 0
        var config: [UInt8]?
        var weights: [UInt8]?
        for entry in archive {
            let name = entry.path
            if name.hasPrefix("/") || name.hasPrefix("\\")
                || name.split(whereSeparator: { $0 == "/" || $0 == "\\" }).contains("..")
            {
                throw TandemError.file(
                    path, "the archive holds a member named '\(name)' (an absolute path or '..'); refusing it")
            }
            guard name == "config.json" || name == "model.weights.h5" else { continue }
            let size = entry.uncompressedSize
            guard size <= KerasArchive.memberLimit,
                size <= max(fileSize, 1) * KerasArchive.expansionLimit || size < 1 << 20
            else {
                throw TandemError.file(
                    path, "member \(name) claims \(size) bytes from a \(fileSize)-byte archive; refusing to unpack it")
            }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(Int(min(size, 1 << 30)))
            do {
                _ = try archive.extract(entry) { chunk in
                    guard UInt64(bytes.count + chunk.count) <= size else {
                        throw TandemError.file(path, "member \(name) is longer than its header says")
                    }
                    bytes.append(contentsOf: chunk)
                }
            } catch let e as TandemError { throw e } catch {
                throw TandemError.file(path, "member \(name) is corrupt (\(error))")
            }
            guard UInt64(bytes.count) == size else {
                throw TandemError.file(path, "member \(name) is shorter than its header says")
            }
            if name == "config.json" { config = bytes } else { weights = bytes }
        }
        guard let config else {
            throw TandemError.file(path, "the archive has no config.json (is it a .keras file saved by Keras 3?)")
        }
        guard let weights else { throw TandemError.file(path, "the archive has no model.weights.h5") }
        configBytes = config
        weightsBytes = weights
    }

    /// The model description from config.json.
    public func description() throws -> ModelDescription {
        try KerasConfig.description(fromJSON: configBytes, source: path + " (config.json)")
    }

    /// The weights file, opened on first use (HDF5 copies the image, so once).
    func weights() throws -> HDF5Reader? {
        if opened == nil, let bytes = weightsBytes {
            opened = try HDF5Reader(bytes: bytes, source: path + " (model.weights.h5)")
        }
        return opened
    }
    private var opened: HDF5Reader?
}

extension ModelDescription {
    /// Reads every weight of `store` from `file` (names and shapes checked) —
    /// what Keras's load_model reads into the same model.
    public func loadWeights(_ store: ParameterStore, from archive: KerasArchive) throws {
        guard let file = try archive.weights() else {
            throw TandemError.file(archive.path, "the archive has no model.weights.h5")
        }
        for (layer, className, group) in weightGroups {
            let config = nodes.first { $0.layer == layer }?.config ?? .null
            for v in ModelDescription.kerasVariables(className: className, layer: layer, config: config) {
                for (i, name) in v.names.enumerated() {
                    guard let view = store.view("\(layer)/\(name)") else { continue }
                    try file.readFloats("layers/\(group)/\(v.path)/\(i)", shape: view.shape, into: store.value(view))
                }
                // Exactly the variables the class has (Keras fails on a missing or an extra one too).
                let count = try file.childCount("layers/\(group)/\(v.path)") ?? (v.names.isEmpty ? 0 : -1)
                if count != v.names.count {
                    throw TandemError.file(
                        file.source,
                        "layer '\(layer)' (layers/\(group)/\(v.path)) holds \(count < 0 ? "no" : String(count)) variable\(count == 1 ? "" : "s"), \(className) needs \(v.names.count)"
                    )
                }
            }
        }
    }

    /// An optimizer's variables in the order Keras saves them (docs/KERAS-FORMAT.md §3): after
    /// `iterations` (and `learning_rate` unless a schedule sets it), with gradient accumulation
    /// one `gradient_accumulator` per trainable variable (`accumulatorCount`), groups of slots, each
    /// group interleaved per trainable variable (Adam's momentum, velocity), groups in turn;
    /// then Nadam's scalar `_u_product`. A LossScaleOptimizer's own four come first (its
    /// iterations and learning rate, both 0, `step_counter`, `dynamic_scale`).
    static func kerasSlots(_ config: OptimizerConfig) -> (
        groups: [[(keras: String, tandem: String)]], leading: Int, trailingScalars: Int
    ) {
        // use_ema: the base optimizer's `average` per trainable variable comes before the rule's slots.
        let rule = ruleSlots(config)
        return ((config.useEMA ? [[("average", "average")]] : []) + rule.groups, rule.leading, rule.trailingScalars)
    }

    /// One slot variable of the archive: the Tandem slot it holds (at the tensor's offset), its
    /// shape, and whether it is one of Adafactor's int32 placeholders for a tensor below two axes.
    struct KerasSlotVariable {
        let slot: String, tensor: String, shape: [Int], placeholder: Bool
    }

    /// The slot variables in Keras's order for `variables` (trainable, with their shapes); `paths`:
    /// Keras's variable paths where they differ from the names (kerasVariablePaths).
    static func kerasSlotVariables(
        _ config: OptimizerConfig, variables: [(name: String, shape: [Int])], paths: [String: String] = [:]
    ) -> [KerasSlotVariable] {
        var list: [KerasSlotVariable] = []
        for group in kerasSlots(config).groups {
            for v in variables {
                for s in group {
                    switch (config.kind, s.tandem) {
                    case (.adafactor, "r"), (.adafactor, "c"):
                        if v.shape.count < 2 {
                            list.append(.init(slot: s.tandem, tensor: v.name, shape: [], placeholder: true))
                        } else {
                            let shape =
                                s.tandem == "r" ? Array(v.shape.dropLast()) : v.shape.dropLast(2) + [v.shape.last!]
                            list.append(.init(slot: s.tandem, tensor: v.name, shape: shape, placeholder: false))
                        }
                    case (.muon, "velocity") where !config.muonUsesAdam(shape: v.shape, name: paths[v.name] ?? v.name):
                        continue  // Muon's own 2-D tensors keep a momentum only
                    default: list.append(.init(slot: s.tandem, tensor: v.name, shape: v.shape, placeholder: false))
                    }
                }
            }
        }
        return list
    }

    private static func ruleSlots(_ config: OptimizerConfig) -> (
        groups: [[(keras: String, tandem: String)]], leading: Int, trailingScalars: Int
    ) {
        let leading = (config.schedule == nil ? 2 : 1) + (config.lossScale != nil ? 4 : 0)
        switch config.kind {
        case .adam, .adamw:
            return (
                [[("momentum", "m"), ("velocity", "v")]] + (config.amsgrad ? [[("velocity_hat", "velocity_hat")]] : []),
                leading, 0
            )
        case .nadam: return ([[("momentum", "m"), ("velocity", "v")]], leading, 1)
        case .adamax: return ([[("momentum", "m"), ("norm", "u")]], leading, 0)
        case .adadelta:
            return (
                [[("accumulated_grad", "accumulated_grad"), ("accumulated_delta_var", "accumulated_delta_var")]],
                leading, 0
            )
        case .lion: return ([[("momentum", "m")]], leading, 0)
        case .ftrl: return ([[("accumulator", "accumulator"), ("linear", "linear")]], leading, 0)
        case .lamb: return ([[("momentum", "m"), ("velocity", "v")]], leading, 0)
        case .adafactor: return ([[("r", "r"), ("c", "c"), ("velocity", "v")]], leading, 0)
        case .muon, .scheduleFreeAdamW: return ([[("momentum", "momentum"), ("velocity", "velocity")]], leading, 0)
        case .sgd, .rmsprop, .adagrad:
            let names = Optimizer.slotNames(config)
            return (names.map { [($0, $0)] }, leading, 0)
        }
    }

    /// Reads the archive's optimizer state into `optimizer` when it is complete
    /// for this optimizer; returns the iterations read, or nil (with the reason)
    /// when there is none to continue from — as Keras drops a mismatched state.
    /// With gradient accumulation the archive's `gradient_accumulator` values are read into
    /// `accumulator` (the gradient arena's layout); an archive saved without them (or a run
    /// without accumulation) leaves it, or skips them.
    package func loadOptimizerState(
        _ optimizer: Optimizer, store: ParameterStore, from archive: KerasArchive,
        accumulator: UnsafeMutablePointer<Float>? = nil
    ) throws -> (iterations: Int?, note: String?) {
        guard let file = try archive.weights(), let count = try file.childCount("optimizer/vars") else {
            return (nil, nil)
        }
        let variables = trainableVariables
        let (_, leading, scalars) = ModelDescription.kerasSlots(optimizer.config)
        let slotVariables = ModelDescription.kerasSlotVariables(
            optimizer.config, variables: variables.map { ($0, store.view($0)!.shape) }, paths: kerasVariablePaths)
        let withoutAccumulators = leading + slotVariables.count + scalars
        if count == leading || count == 0 {
            // Compiled but never trained: iterations (0) and the learning rate only.
            let first = optimizer.config.lossScale != nil ? 4 : 0
            return (count == leading ? Int(try file.readInteger("optimizer/vars/\(first)")) : nil, nil)
        }
        // The archive may have been saved with or without accumulation (a flag can change it).
        let hasAccumulators = count == withoutAccumulators + variables.count
        guard count == withoutAccumulators || hasAccumulators else {
            let expected = withoutAccumulators + (optimizer.stepsPerUpdate > 1 ? variables.count : 0)
            return (
                nil,
                "the archive's optimizer state has \(count) variables, \(optimizer.config.kind.rawValue)\(optimizer.config.lossScale != nil ? " in a LossScaleOptimizer" : "") on this model needs \(expected); starting the optimizer afresh (as Keras does)"
            )
        }
        var index = 0
        func path() -> String {
            defer { index += 1 }
            return "optimizer/vars/\(index)"
        }
        if optimizer.config.lossScale != nil {
            // The wrapper's iterations and learning rate (0, unused), then its two counters.
            index = 2
            let counter = try file.readInteger(path())
            var scale: Float = 0
            try file.readFloats(path(), shape: [], into: &scale)
            guard counter >= 0 && counter < Int64(Int32.max), scale > 0 && scale.isFinite else {
                throw TandemError.file(
                    file.source,
                    "LossScaleOptimizer's step_counter \(counter) or dynamic_scale \(scale) is out of range")
            }
            optimizer.lossScaleCounter = Int(counter)
            optimizer.lossScale = scale
        }
        let iterations = try file.readInteger(path())
        guard iterations >= 0 && iterations < Int64(Int32.max) else {
            throw TandemError.file(file.source, "optimizer iterations \(iterations) out of range")
        }
        index = leading
        if hasAccumulators {
            for name in variables {
                let view = store.view(name)!
                let target = path()
                if optimizer.stepsPerUpdate > 1, let accumulator {
                    try file.readFloats(target, shape: view.shape, into: accumulator + view.offset)
                }
            }
        }
        for v in slotVariables {
            let target = path()
            if v.placeholder { continue }
            try file.readFloats(target, shape: v.shape, into: optimizer.slot(v.slot)! + store.view(v.tensor)!.offset)
        }
        if scalars == 1 {
            var product: Float = 0
            try file.readFloats(path(), shape: [], into: &product)
            guard product.isFinite else {
                throw TandemError.file(file.source, "Nadam's momentum product \(product) is not finite")
            }
            optimizer.nadamProduct = product
        }
        return (Int(iterations), nil)
    }

    /// config.json with `heads` and `optimizer` written into the compile config
    /// (so the saved model compiles as it was trained).
    public func configWithCompile(heads: [Head], optimizer: OptimizerConfig?) -> JSONValue {
        var compile = config["compile_config"] ?? .object([])
        if compile.object == nil || compile.object!.isEmpty {
            compile = .object([
                ("optimizer", .null), ("loss", .null), ("loss_weights", .null), ("metrics", .null),
                ("weighted_metrics", .null), ("run_eagerly", .bool(false)), ("steps_per_execution", .int(1)),
                ("jit_compile", .bool(false)),
            ])
        }
        let names = outputNames
        // A dict by output name; a single-output model (Sequential too) takes plain values,
        // as Keras's compile cannot match a dict to an unnamed output.
        let single = outputs.count == 1 && heads.count == 1
        func byOutput(_ value: (Head) -> JSONValue) -> JSONValue {
            if single { return value(heads[0]) }
            return .object(heads.map { h in (names[outputs.firstIndex(of: h.output)!], value(h)) })
        }
        compile = compile.setting("loss", to: byOutput(kerasLoss))
        compile = compile.setting(
            "loss_weights", to: single ? .array([.double(heads[0].weight)]) : byOutput { .double($0.weight) })
        // Each metric as the compile config wrote it (validated when it was read).
        func written(_ m: Metric) -> JSONValue { (try? JSONValue.parse(Array(m.keras.utf8))) ?? .string(m.name) }
        compile = compile.setting(
            "metrics",
            to: byOutput { h in
                .array(
                    (h.accuracy.map { a in [a.keras.flatMap { try? JSONValue.parse(Array($0.utf8)) } ?? .string(a.name)]
                    } ?? [])
                        + h.metrics.filter { !$0.weighted }.map(written))
            })
        let weighted = heads.contains { $0.metrics.contains(where: \.weighted) }
        compile = compile.setting(
            "weighted_metrics",
            to: weighted ? byOutput { h in .array(h.metrics.filter(\.weighted).map(written)) } : .null)
        if let optimizer { compile = compile.setting("optimizer", to: kerasOptimizer(optimizer)) }
        return config.setting("compile_config", to: compile)
    }

    /// A head's loss as Keras serialises it: the name when it has Keras's defaults, else the object.
    private func kerasLoss(_ h: Head) -> JSONValue {
        // Dice and Tversky: per sample (axis −1) or over the whole batch (axis None, their names' default).
        let overlap = [.dice, .tversky].contains(h.loss)
        var plain = LossOptions()
        if overlap { plain.batchAxis = true }
        if !h.fromLogits && h.options == plain && h.reduction == .batch && h.loss != .circle {
            return .string(h.loss.rawValue)
        }
        let reduction: String
        switch h.reduction {
        case .batch: reduction = "sum_over_batch_size"
        case .labeled: reduction = "mean_with_sample_weight"  // Σ w·ℓ / Σ w, as Tandem's labeled
        case .sum: reduction = "sum"
        }
        var fields: [(String, JSONValue)] = [("name", .string(h.loss.rawValue)), ("reduction", .string(reduction))]
        let o = h.options
        for key in KerasCompile.lossArguments[h.loss] ?? [] {
            switch key {
            case "from_logits": fields.append((key, .bool(h.fromLogits)))
            case "label_smoothing": fields.append((key, .double(o.labelSmoothing)))
            case "gamma": fields.append((key, .double(h.loss == .circle ? o.circleGamma ?? 80 : o.gamma)))
            case "margin": fields.append((key, .double(o.margin ?? 0.4)))
            case "remove_diagonal": fields.append((key, .bool(o.removeDiagonal)))
            case "alpha": fields.append((key, .double(o.alpha)))
            case "apply_class_balancing": fields.append((key, .bool(o.applyClassBalancing)))
            case "ignore_class": fields.append((key, o.ignoreClass.map { .int(Int64($0)) } ?? .null))
            case "delta": fields.append((key, .double(o.delta)))
            case "beta": fields.append((key, .double(o.beta ?? 0.5)))
            case "q": fields.append((key, .double(o.q ?? 0.5)))
            default: break
            }
        }
        if overlap { fields.append(("axis", o.wholeBatch ? .null : .int(-1))) }
        return KerasJSON.serialized("keras.losses", lossClassName(h.loss), fields)
    }

    private func lossClassName(_ k: LossKind) -> String {
        switch k {
        case .binaryCrossentropy: return "BinaryCrossentropy"
        case .categoricalCrossentropy: return "CategoricalCrossentropy"
        case .sparseCategoricalCrossentropy: return "SparseCategoricalCrossentropy"
        case .meanSquaredError: return "MeanSquaredError"
        case .meanAbsoluteError: return "MeanAbsoluteError"
        case .huber: return "Huber"
        case .logCosh: return "LogCosh"
        case .poisson: return "Poisson"
        case .klDivergence: return "KLDivergence"
        case .binaryFocalCrossentropy: return "BinaryFocalCrossentropy"
        case .meanAbsolutePercentageError: return "MeanAbsolutePercentageError"
        case .meanSquaredLogarithmicError: return "MeanSquaredLogarithmicError"
        case .hinge: return "Hinge"
        case .squaredHinge: return "SquaredHinge"
        case .categoricalHinge: return "CategoricalHinge"
        case .cosineSimilarity: return "CosineSimilarity"
        case .dice: return "Dice"
        case .tversky: return "Tversky"
        case .categoricalFocalCrossentropy: return "CategoricalFocalCrossentropy"
        case .categoricalGeneralizedCrossEntropy: return "CategoricalGeneralizedCrossEntropy"
        case .circle: return "Circle"
        }
    }

    /// The optimizer as Keras serialises it (its arguments; learning rate widened from float32, as Keras writes it).
    func kerasOptimizer(_ o: OptimizerConfig) -> JSONValue {
        func optional(_ x: Double?) -> JSONValue { x.map { .double($0) } ?? .null }
        let names: [OptimizerConfig.Kind: (String, String)] = [
            .sgd: ("SGD", "SGD"), .adam: ("Adam", "adam"), .adamw: ("AdamW", "adam_w"),
            .rmsprop: ("RMSprop", "rm_sprop"),
            .adagrad: ("Adagrad", "adagrad"), .adamax: ("Adamax", "adamax"), .nadam: ("Nadam", "nadam"),
            .adadelta: ("Adadelta", "adadelta"), .lion: ("Lion", "lion"), .ftrl: ("Ftrl", "ftrl"),
            .adafactor: ("Adafactor", "adafactor"), .lamb: ("Lamb", "lamb"), .muon: ("Muon", "muon"),
            .scheduleFreeAdamW: ("ScheduleFreeAdamW", "schedule_free_adam_w"),
        ]
        let (className, name) = names[o.kind]!
        var fields: [(String, JSONValue)] = [
            ("name", .string(name)),
            ("learning_rate", o.schedule?.kerasConfig ?? .double(Double(Float(o.learningRate)))),
            ("weight_decay", optional(o.weightDecay)), ("clipnorm", optional(o.clipnorm)),
            ("global_clipnorm", optional(o.globalClipnorm)),
            ("clipvalue", optional(o.clipvalue)), ("use_ema", .bool(o.useEMA)),
            ("ema_momentum", .double(o.emaMomentum)),
            ("ema_overwrite_frequency", o.emaOverwriteFrequency.map { .int(Int64($0)) } ?? .null),
            ("loss_scale_factor", .null),
            ("gradient_accumulation_steps", o.gradientAccumulationSteps.map { .int(Int64($0)) } ?? .null),
        ]
        switch o.kind {
        case .sgd: fields += [("momentum", .double(o.momentum)), ("nesterov", .bool(o.nesterov))]
        case .adam, .adamw:
            fields += [
                ("beta_1", .double(o.beta1)), ("beta_2", .double(o.beta2)), ("epsilon", .double(o.epsilon)),
                ("amsgrad", .bool(o.amsgrad)),
            ]
        case .rmsprop:
            fields += [
                ("rho", .double(o.rho)), ("momentum", .double(o.momentum)), ("epsilon", .double(o.epsilon)),
                ("centered", .bool(o.centered)),
            ]
        case .adagrad:
            fields += [
                ("initial_accumulator_value", .double(o.initialAccumulatorValue)), ("epsilon", .double(o.epsilon)),
            ]
        case .adamax, .nadam:
            fields += [("beta_1", .double(o.beta1)), ("beta_2", .double(o.beta2)), ("epsilon", .double(o.epsilon))]
        case .adadelta: fields += [("rho", .double(o.rho)), ("epsilon", .double(o.epsilon))]
        case .lion: fields += [("beta_1", .double(o.beta1)), ("beta_2", .double(o.beta2))]
        case .ftrl:
            fields += [
                ("learning_rate_power", .double(o.learningRatePower)),
                ("initial_accumulator_value", .double(o.initialAccumulatorValue)),
                ("l1_regularization_strength", .double(o.l1Strength)),
                ("l2_regularization_strength", .double(o.l2Strength)),
                ("l2_shrinkage_regularization_strength", .double(o.l2ShrinkageStrength)), ("beta", .double(o.ftrlBeta)),
            ]
        case .lamb:
            fields += [("beta_1", .double(o.beta1)), ("beta_2", .double(o.beta2)), ("epsilon", .double(o.epsilon))]
        case .scheduleFreeAdamW:
            fields += [
                ("beta_1", .double(o.beta1)), ("beta_2", .double(o.beta2)), ("epsilon", .double(o.epsilon)),
                ("warmup_steps", .int(Int64(o.warmupSteps))),
            ]
        case .adafactor:
            fields += [
                ("beta_2_decay", .double(o.beta2Decay)), ("epsilon_1", .double(o.epsilon1)),
                ("epsilon_2", .double(o.epsilon2)), ("clip_threshold", .double(o.clipThreshold)),
                ("relative_step", .bool(o.relativeStep)),
            ]
        case .muon:
            fields += [
                ("adam_beta_1", .double(o.beta1)), ("adam_beta_2", .double(o.beta2)), ("epsilon", .double(o.epsilon)),
                ("exclude_layers", .array(o.excludeLayers.map { .string($0) })), ("muon_a", .double(o.muonA)),
                ("muon_b", .double(o.muonB)), ("muon_c", .double(o.muonC)),
                ("adam_lr_ratio", .double(o.adamLearningRateRatio)), ("momentum", .double(o.momentum)),
                ("ns_steps", .int(Int64(o.newtonSchulzSteps))), ("nesterov", .bool(o.nesterov)),
                ("exclude_embeddings", .bool(o.excludeEmbeddings)), ("adam_weight_decay", optional(o.adamWeightDecay)),
                ("rms_rate", optional(o.rmsRate)),
            ]
        }
        let inner = KerasJSON.serialized("keras.optimizers", className, fields)
        guard let l = o.lossScale else { return inner }
        return KerasJSON.serialized(
            "keras.optimizers", "LossScaleOptimizer",
            [
                ("name", .string("loss_scale_optimizer")), ("inner_optimizer", inner),
                ("initial_scale", .double(l.initialScale)), ("dynamic_growth_steps", .int(Int64(l.growthSteps))),
            ])
    }

    /// model.weights.h5 for the current weights and optimizer state, in Keras's layout.
    /// `accumulator`: Keras's gradient accumulators in the arena's layout (gradient accumulation only).
    package func weightsFile(_ store: ParameterStore, optimizer: Optimizer?, accumulator: [Float]? = nil) throws
        -> [UInt8]
    {
        let h5 = try HDF5Writer()
        try h5.group("layers")
        for (layer, className, group) in weightGroups {
            let config = nodes.first { $0.layer == layer }?.config ?? .null
            for v in ModelDescription.kerasVariables(className: className, layer: layer, config: config) {
                // A nested model's layer is `<model>/<layer>` to Tandem, `<layer>` to Keras.
                try h5.group("layers/\(group)/\(v.path)", name: String(v.label.split(separator: "/").last ?? ""))
                for (i, name) in v.names.enumerated() {
                    let view = store.view("\(layer)/\(name)")!
                    try h5.floats("layers/\(group)/\(v.path)/\(i)", shape: view.shape, values: store.value(view))
                }
            }
        }
        try h5.group("vars", name: isSequential ? "sequential" : "functional")
        if let optimizer {
            try h5.group("optimizer/vars", name: optimizer.config.kind.rawValue)
            let (_, leading, scalars) = ModelDescription.kerasSlots(optimizer.config)
            var index = 0
            if optimizer.config.lossScale != nil {
                // The wrapper's own iterations and learning rate stay 0 in Keras; then its counters.
                try h5.integer("optimizer/vars/0", 0)
                var zero: Float = 0
                try h5.floats("optimizer/vars/1", shape: [], values: &zero)
                try h5.integer("optimizer/vars/2", Int64(optimizer.lossScaleCounter))
                var scale = optimizer.lossScale
                try h5.floats("optimizer/vars/3", shape: [], values: &scale)
                index = 4
            }
            try h5.integer("optimizer/vars/\(index)", Int64(optimizer.microSteps))
            if optimizer.config.schedule == nil {
                var lr = Float(optimizer.config.learningRate)
                try h5.floats("optimizer/vars/\(index + 1)", shape: [], values: &lr)
            }
            index = leading
            if optimizer.stepsPerUpdate > 1 {
                let values = accumulator ?? [Float](repeating: 0, count: store.count)
                for name in trainableVariables {
                    let view = store.view(name)!
                    try values.withUnsafeBufferPointer { a in
                        try h5.floats(
                            "optimizer/vars/\(index)", shape: view.shape, values: a.baseAddress! + view.offset)
                    }
                    index += 1
                }
            }
            let slotVariables = ModelDescription.kerasSlotVariables(
                optimizer.config, variables: trainableVariables.map { ($0, store.view($0)!.shape) },
                paths: kerasVariablePaths)
            for v in slotVariables {
                if v.placeholder {
                    try h5.integer("optimizer/vars/\(index)", 0)
                } else {
                    try h5.floats(
                        "optimizer/vars/\(index)", shape: v.shape,
                        values: optimizer.slot(v.slot)! + store.view(v.tensor)!.offset)
                }
                index += 1
            }
            if scalars == 1 {
                var product = optimizer.nadamProduct
                try h5.floats("optimizer/vars/\(index)", shape: [], values: &product)
            }
        }
        return try h5.bytes()
    }

    /// Writes RUN/model.keras: config.json (with `heads` and `optimizer` compiled in),
    /// metadata.json and model.weights.h5, stored uncompressed as Keras does, atomically.
    package func saveArchive(
        to path: String, store: ParameterStore, optimizer: Optimizer?, heads: [Head],
        accumulator: [Float]? = nil
    ) throws {
        let configText = configWithCompile(heads: heads, optimizer: optimizer?.config).serialized()
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM-dd@HH:mm:ss"
        formatter.locale = Locale(identifier: "en_US_POSIX")
        let metadata = JSONValue.object([
            ("keras_version", .string("3.15.1")), ("date_saved", .string(formatter.string(from: Date()))),
            ("saved_by", .string("tandem")),
        ]).serialized()
        let weights = try weightsFile(store, optimizer: optimizer, accumulator: accumulator)
        let archive: Archive
        do { archive = try Archive(data: Data(), accessMode: .create) } catch {
            throw TandemError.file(path, "cannot create a zip archive in memory (\(error))")
        }
        for (name, bytes) in [
            ("metadata.json", Array(metadata.utf8)), ("config.json", Array(configText.utf8)),
            ("model.weights.h5", weights),
        ] {
            let data = Data(bytes)
            do {
                try archive.addEntry(
                    with: name, type: .file, uncompressedSize: Int64(data.count), compressionMethod: .none
                ) { position, size in
                    data.subdata(in: Int(position)..<(Int(position) + size))
                }
            } catch { throw TandemError.file(path, "cannot add \(name) to the archive (\(error))") }
        }
        guard let zipped = archive.data else { throw TandemError.file(path, "cannot finish the zip archive") }
        try AtomicFileWriter.write(zipped, to: path)
    }
}
