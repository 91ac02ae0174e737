// A Keras 3 `.keras` archive (KERAS-FORMAT.md): a zip (or a directory) with
// config.json and model.weights.h5. Reading takes the two members by name —
// member names are never used as paths, and an archive that holds a name with
// `..` or an absolute path is refused — with sizes checked before anything is
// unpacked. Weights go into the model's parameter store through the HDF5
// paths Keras uses (named after the layer CLASS, numbered in model.layers
// order); the optimizer state into Tandem's optimizer in Keras's variable
// order. Writing produces the same layout, zipped through ZIPFoundation.

import Foundation
import ZIPFoundation

/// The members of a `.keras` archive, read into memory.
public final class KerasArchive {
    public let path: String
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
        var config: [UInt8]?, weights: [UInt8]?
        for entry in archive {
            let name = entry.path
            if name.hasPrefix("/") || name.hasPrefix("\\") || name.split(whereSeparator: { $0 == "/" || $0 == "\\" }).contains("..") {
                throw TandemError.file(path, "the archive holds a member named '\(name)' (an absolute path or '..'); refusing it")
            }
            guard name == "config.json" || name == "model.weights.h5" else { continue }
            let size = entry.uncompressedSize
            guard size <= KerasArchive.memberLimit, size <= max(fileSize, 1) * KerasArchive.expansionLimit || size < 1 << 20 else {
                throw TandemError.file(path, "member \(name) claims \(size) bytes from a \(fileSize)-byte archive; refusing to unpack it")
            }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(Int(min(size, 1 << 30)))
            do {
                _ = try archive.extract(entry) { chunk in
                    guard UInt64(bytes.count + chunk.count) <= size else { throw TandemError.file(path, "member \(name) is longer than its header says") }
                    bytes.append(contentsOf: chunk)
                }
            } catch let e as TandemError { throw e } catch {
                throw TandemError.file(path, "member \(name) is corrupt (\(error))")
            }
            guard UInt64(bytes.count) == size else { throw TandemError.file(path, "member \(name) is shorter than its header says") }
            if name == "config.json" { config = bytes } else { weights = bytes }
        }
        guard let config else { throw TandemError.file(path, "the archive has no config.json (is it a .keras file saved by Keras 3?)") }
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
        if opened == nil, let bytes = weightsBytes { opened = try HDF5Reader(bytes: bytes, source: path + " (model.weights.h5)") }
        return opened
    }
    private var opened: HDF5Reader?
}

extension ModelDescription {
    /// Reads every weight of `store` from `file` (names and shapes checked) —
    /// what Keras's load_model reads into the same model.
    public func loadWeights(_ store: ParameterStore, from archive: KerasArchive) throws {
        guard let file = try archive.weights() else { throw TandemError.file(archive.path, "the archive has no model.weights.h5") }
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
                    throw TandemError.file(file.source, "layer '\(layer)' (layers/\(group)/\(v.path)) holds \(count < 0 ? "no" : String(count)) variable\(count == 1 ? "" : "s"), \(className) needs \(v.names.count)")
                }
            }
        }
    }

    /// The Keras names of an optimizer's slots, in the order its variables are saved
    /// (KERAS-FORMAT §3), each with Tandem's slot name; `interleaved` for Adam.
    static func kerasSlots(_ config: OptimizerConfig) -> (slots: [(keras: String, tandem: String)], interleaved: Bool) {
        switch config.kind {
        case .adam: return ([("momentum", "m"), ("velocity", "v")], true)
        case .sgd: return (config.momentum != 0 ? [("momentum", "momentum")] : [], false)
        case .rmsprop: return ([("velocity", "velocity")], false)
        }
    }

    /// Reads the archive's optimizer state into `optimizer` when it is complete
    /// for this optimizer; returns the iterations read, or nil (with the reason)
    /// when there is none to continue from — as Keras drops a mismatched state.
    public func loadOptimizerState(_ optimizer: Optimizer, store: ParameterStore, from archive: KerasArchive) throws -> (iterations: Int?, note: String?) {
        guard let file = try archive.weights(), let count = try file.childCount("optimizer/vars") else { return (nil, nil) }
        let variables = trainableVariables
        let (slots, interleaved) = ModelDescription.kerasSlots(optimizer.config)
        let expected = 2 + slots.count * variables.count
        if count == 2 || count == 0 {
            // Compiled but never trained: iterations (0) and the learning rate only.
            return (count == 2 ? Int(try file.readInteger("optimizer/vars/0")) : nil, nil)
        }
        guard count == expected else {
            return (nil, "the archive's optimizer state has \(count) variables, \(optimizer.config.kind.rawValue) on this model needs \(expected); starting the optimizer afresh (as Keras does)")
        }
        let iterations = try file.readInteger("optimizer/vars/0")
        guard iterations >= 0 && iterations < Int64(Int32.max) else { throw TandemError.file(file.source, "optimizer iterations \(iterations) out of range") }
        var index = 2
        func path() -> String { defer { index += 1 }; return "optimizer/vars/\(index)" }
        if interleaved {
            for name in variables {
                let view = store.view(name)!
                for s in slots { try file.readFloats(path(), shape: view.shape, into: optimizer.slot(s.tandem)! + view.offset) }
            }
        } else {
            for s in slots {
                for name in variables {
                    let view = store.view(name)!
                    try file.readFloats(path(), shape: view.shape, into: optimizer.slot(s.tandem)! + view.offset)
                }
            }
        }
        return (Int(iterations), nil)
    }

    /// config.json with `heads` and `optimizer` written into the compile config
    /// (so the saved model compiles as it was trained).
    public func configWithCompile(heads: [Head], optimizer: OptimizerConfig?) -> JSONValue {
        var compile = config["compile_config"] ?? .object([])
        if compile.object == nil || compile.object!.isEmpty {
            compile = .object([("optimizer", .null), ("loss", .null), ("loss_weights", .null), ("metrics", .null),
                               ("weighted_metrics", .null), ("run_eagerly", .bool(false)), ("steps_per_execution", .int(1)),
                               ("jit_compile", .bool(false))])
        }
        let names = outputNames
        // A dict by output name; a single-output model (Sequential too) takes plain values,
        // as Keras's compile cannot match a dict to an unnamed output.
        let single = outputs.count == 1 && heads.count == 1
        func byOutput(_ value: (Head) -> JSONValue) -> JSONValue {
            if single { return value(heads[0]) }
            return .object(heads.map { h in (names[outputs.firstIndex(of: h.output)!], value(h)) })
        }
        compile = compile.setting("loss", to: byOutput { h in
            h.fromLogits
                ? KerasJSON.serialized("keras.losses", lossClassName(h.loss), [("name", .string(h.loss.rawValue)), ("reduction", .string("sum_over_batch_size")), ("from_logits", .bool(true))])
                : .string(h.loss.rawValue)
        })
        compile = compile.setting("loss_weights", to: single ? .array([.double(heads[0].weight)]) : byOutput { .double($0.weight) })
        compile = compile.setting("metrics", to: byOutput { h in .array(h.accuracy.map { [.string($0.name)] } ?? []) })
        if let optimizer { compile = compile.setting("optimizer", to: kerasOptimizer(optimizer)) }
        return config.setting("compile_config", to: compile)
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
        }
    }

    /// The optimizer as Keras serialises it (its arguments; learning rate widened from float32, as Keras writes it).
    func kerasOptimizer(_ o: OptimizerConfig) -> JSONValue {
        var fields: [(String, JSONValue)] = [
            ("name", .string(["sgd": "SGD", "adam": "adam", "rmsprop": "rm_sprop"][o.kind.rawValue]!)), ("learning_rate", .double(Double(Float(o.learningRate)))),
            ("weight_decay", .null), ("clipnorm", .null), ("global_clipnorm", .null), ("clipvalue", .null),
            ("use_ema", .bool(false)), ("ema_momentum", .double(0.99)), ("ema_overwrite_frequency", .null),
            ("loss_scale_factor", .null), ("gradient_accumulation_steps", .null)]
        let className: String
        switch o.kind {
        case .sgd:
            className = "SGD"
            fields += [("momentum", .double(o.momentum)), ("nesterov", .bool(o.nesterov))]
        case .adam:
            className = "Adam"
            fields += [("beta_1", .double(o.beta1)), ("beta_2", .double(o.beta2)), ("epsilon", .double(o.epsilon)), ("amsgrad", .bool(false))]
        case .rmsprop:
            className = "RMSprop"
            fields += [("rho", .double(o.rho)), ("momentum", .double(0)), ("epsilon", .double(o.epsilon)), ("centered", .bool(false))]
        }
        return KerasJSON.serialized("keras.optimizers", className, fields)
    }

    /// model.weights.h5 for the current weights and optimizer state, in Keras's layout.
    public func weightsFile(_ store: ParameterStore, optimizer: Optimizer?) throws -> [UInt8] {
        let h5 = try HDF5Writer()
        try h5.group("layers")
        for (layer, className, group) in weightGroups {
            let config = nodes.first { $0.layer == layer }?.config ?? .null
            for v in ModelDescription.kerasVariables(className: className, layer: layer, config: config) {
                try h5.group("layers/\(group)/\(v.path)", name: v.label)
                for (i, name) in v.names.enumerated() {
                    let view = store.view("\(layer)/\(name)")!
                    try h5.floats("layers/\(group)/\(v.path)/\(i)", shape: view.shape, values: store.value(view))
                }
            }
        }
        try h5.group("vars", name: isSequential ? "sequential" : "functional")
        if let optimizer {
            try h5.group("optimizer/vars", name: optimizer.config.kind.rawValue)
            try h5.integer("optimizer/vars/0", Int64(optimizer.iterations))
            var lr = Float(optimizer.config.learningRate)
            try h5.floats("optimizer/vars/1", shape: [], values: &lr)
            let (slots, interleaved) = ModelDescription.kerasSlots(optimizer.config)
            var index = 2
            func put(_ slot: String, _ name: String) throws {
                let view = store.view(name)!
                try h5.floats("optimizer/vars/\(index)", shape: view.shape, values: optimizer.slot(slot)! + view.offset)
                index += 1
            }
            if interleaved {
                for name in trainableVariables { for s in slots { try put(s.tandem, name) } }
            } else {
                for s in slots { for name in trainableVariables { try put(s.tandem, name) } }
            }
        }
        return try h5.bytes()
    }

    /// Writes RUN/model.keras: config.json (with `heads` and `optimizer` compiled in),
    /// metadata.json and model.weights.h5, stored uncompressed as Keras does, atomically.
    public func saveArchive(to path: String, store: ParameterStore, optimizer: Optimizer?, heads: [Head]) throws {
        let configText = configWithCompile(heads: heads, optimizer: optimizer?.config).serialized()
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM-dd@HH:mm:ss"
        formatter.locale = Locale(identifier: "en_US_POSIX")
        let metadata = JSONValue.object([("keras_version", .string("3.15.1")), ("date_saved", .string(formatter.string(from: Date()))),
                                         ("saved_by", .string("tandem"))]).serialized()
        let weights = try weightsFile(store, optimizer: optimizer)
        let archive: Archive
        do { archive = try Archive(data: Data(), accessMode: .create) } catch {
            throw TandemError.file(path, "cannot create a zip archive in memory (\(error))")
        }
        for (name, bytes) in [("metadata.json", Array(metadata.utf8)), ("config.json", Array(configText.utf8)), ("model.weights.h5", weights)] {
            let data = Data(bytes)
            do {
                try archive.addEntry(with: name, type: .file, uncompressedSize: Int64(data.count), compressionMethod: .none) { position, size in
                    data.subdata(in: Int(position)..<(Int(position) + size))
                }
            } catch { throw TandemError.file(path, "cannot add \(name) to the archive (\(error))") }
        }
        guard let zipped = archive.data else { throw TandemError.file(path, "cannot finish the zip archive") }
        try AtomicFileWriter.write(zipped, to: path)
    }
}
