// `tandem evaluate` and `tandem predict`: the current weights on a dataset,
// sharded across ranks when run under mpirun.

import ArgumentParser
import Foundation
import Tandem

/// The model --model names with its weights: `weights` (safetensors) when given,
/// else the archive's own. For the preset, sizes come from the flags, else the weights and the data.
func modelWithWeights(
    _ weights: String?, data: String, size: ModelSizeOptions, maxBatch: Int,
    communicator comm: Communicator
) throws -> (model: Model, description: ModelDescription, files: DataFiles) {
    let file = try weights.map { w in try comm.agreeOn { try SafeTensorsFile(path: w) } }
    var preset = HeadlineConfig()
    if size.isPreset {
        guard let file else {
            throw TandemError.usage("--weights is required with --model headline (an archive carries its own weights)")
        }
        if size.seqLen == nil, let t = sequenceLength(inData: data, comm) { preset.sequenceLength = t }
        inferHeadlineConfig(from: file, into: &preset, given: size.given)
    }
    var resolved = try size.resolve(comm, preset: preset)
    let files = try DataFiles.open(data, for: resolved.description, communicator: comm)
    try resolved.description.takeShapes(from: files)  // an Input(shape=(None, …)) takes the data's length
    // A model whose rows are very large forwards fewer at a time (ModelDescription.evaluationRows).
    let rows = try comm.agreeOn { try resolved.description.evaluationRows() }
    let model = try comm.agreeOn {
        try resolved.description.build(maxBatch: rows < 64 ? min(maxBatch, rows) : maxBatch)
    }
    try comm.agreeOn {
        if let file {
            try loadWeights(model.parameters, from: file)
            return
        }
        guard comm.rank == 0, let archive = resolved.archive else { return }
        try resolved.description.loadWeights(model.parameters, from: archive)
    }
    try broadcastState(model: model, optimizer: nil, communicator: comm)
    return (model, resolved.description, files)
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Loss and metrics of each head and the weighted total, as JSON on stdout.")

    @Option(help: "Weights (.safetensors) to evaluate. Default with --model m.keras: the archive's.") var weights:
        String?
    @Option(help: "The data with inputs and targets: a directory of .npy files, an .npz, or a .csv/.tsv.") var data:
        String
    @Option(
        name: .customLong("batch-size"),
        help:
            "Samples per forward pass; for a loss that couples a batch's samples (Circle, Dice or Tversky over the batch), the batch it is formed over, as Keras's evaluate(batch_size)."
    ) var batchSize: Int = 256
    @Option(name: .customLong("l2"), help: "L2 terms to include in the total, LAYER=λ.") var l2: [String] = []
    @OptionGroup var size: ModelSizeOptions
    @OptionGroup var headOptions: HeadOptions

    func run() throws {
        try runCommand { comm in
            guard batchSize > 0 else { throw TandemError.usage("--batch-size must be at least 1, got \(batchSize)") }
            let (model, description, files) = try modelWithWeights(
                weights, data: data, size: size, maxBatch: batchSize, communicator: comm)
            let heads = try headOptions.heads(description.heads)
            let evaluator = try Evaluator(
                model: model, heads: heads, communicator: comm,
                regularizers: description.regularizers + Regularizer.fromLayerFlags(try parseL2(l2), model: model))
            let dataset = try comm.agreeOn { try Dataset(files: files, model: model, heads: heads) }
            try comm.agree(dataset.validate(rows: shard(count: dataset.count, rank: comm.rank, size: comm.size)))
            let result = try evaluator.evaluate(dataset, rows: 0..<dataset.count, couplingBatch: batchSize)
            var fields = result.fields(heads: heads)
            fields.append(("samples", result.samples))
            if comm.rank == 0 { print(jsonObject(fields)) }
        }
    }
}

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write each head's predictions as OUT/<output>.npy (float32 [N, units]), rows in input order.")

    @Option(help: "Weights (.safetensors). Default with --model m.keras: the archive's.") var weights: String?
    @Option(
        help:
            "The data with the model's inputs (targets are not needed): a directory of .npy files, an .npz, or a .csv/.tsv."
    ) var data: String
    @Option(help: "Directory to write the predictions to.") var out: String
    @Option(name: .customLong("batch-size"), help: "Samples per forward pass.") var batchSize: Int = 256
    @OptionGroup var size: ModelSizeOptions

    func run() throws {
        try runCommand { comm in
            guard batchSize > 0 else { throw TandemError.usage("--batch-size must be at least 1, got \(batchSize)") }
            let (model, _, files) = try modelWithWeights(
                weights, data: data, size: size, maxBatch: batchSize, communicator: comm)
            let dataset = try comm.agreeOn {
                try Dataset(files: files, model: model, heads: [], requireTargets: false)
            }
            try comm.agree(dataset.validate(rows: shard(count: dataset.count, rank: comm.rank, size: comm.size)))
            let outputs = try predict(model: model, data: dataset, communicator: comm)
            try comm.agreeOn {
                guard comm.rank == 0 else { return }
                try makeDirectory(out)
                for o in outputs {
                    let path = URL(fileURLWithPath: out).appendingPathComponent("\(o.name).npy").path
                    try o.values.withUnsafeBufferPointer {
                        try NPYArray.write(floats: $0, shape: [dataset.count] + o.shape, to: path)
                    }
                    print(path)
                }
            }
        }
    }
}

/// Packs the `names` arrays of `directory` that exist into one .npz or CSV at `path`.
func packDataset(directory: String, names: [String], format: String, to path: String) throws {
    let arrays = try names.compactMap { name -> (name: String, npy: String)? in
        let npy = directory + "/\(name).npy"
        return FileManager.default.fileExists(atPath: npy) ? (name, npy) : nil
    }
    if format == "npz" {
        try NPZArchive.write(members: arrays, to: path)
    } else {
        try CSVDataset.write(arrays: arrays.map { ($0.name, try NPYArray(path: $0.npy)) }, to: path)
    }
}

struct GenData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gen-data",
        abstract:
            "Write a learnable synthetic dataset (.npy files named after the model's inputs and outputs) to a directory.",
        discussion: """
            --model headline: the aux label depends on the tokens only; the main label on the tokens and aux_input.
            --model m.keras: random inputs with the model's names, shapes and dtypes; targets are what the same
            architecture with random weights predicts (binary labels balanced at the median, class ids or one-hot
            rows from its argmax, regression values), so the model can learn them.
            """)

    @Option(help: "Where to write: a directory (npy), a .npz file, or a .csv/.tsv file.") var out: String
    @Option(
        help:
            "npy (a directory of .npy files), npz (one archive, as np.savez writes), or csv (one file with a header; .tsv: tab-separated). Default: from --out's extension, else npy."
    )
    var format: String?
    @Option(help: "Number of samples.") var samples: Int
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(
        name: .customLong("missing"),
        help: ArgumentHelp(
            "Leave about this fraction of an output's samples unlabelled (NaN rows), OUTPUT=FRACTION (repeatable).",
            valueName: "output=fraction"))
    var missing: [String] = []
    @OptionGroup var size: ModelSizeOptions

    /// --format, else from --out's extension; the two must agree.
    func dataFormat() throws -> String {
        let l = out.lowercased()
        let implied = l.hasSuffix(".npz") ? "npz" : l.hasSuffix(".csv") || l.hasSuffix(".tsv") ? "csv" : "npy"
        guard let format else { return implied }
        guard ["npy", "npz", "csv"].contains(format) else {
            throw TandemError.usage("--format '\(format)': the formats are npy, npz and csv")
        }
        guard format == implied else {
            throw TandemError.usage(
                "--format \(format) with --out \(out): name \(format == "npy" ? "a directory" : "a .\(format) file") for \(format)"
            )
        }
        return format
    }

    func run() throws {
        try runCommand { comm in
            let resolved = try size.resolve(comm)
            let outputs =
                resolved.headline != nil
                ? Head.headlineDefaults.map(\.output) : resolved.description.heads.map(\.output)
            let marks: [(String, Double)] = try missing.map { item in
                let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, let f = Double(parts[1]), f >= 0, f <= 1 else {
                    throw TandemError.usage("--missing '\(item)': expected OUTPUT=FRACTION with a fraction in [0, 1]")
                }
                guard outputs.contains(parts[0]) else {
                    throw TandemError.usage(
                        "--missing: unknown output '\(parts[0])' (outputs with a loss: \(outputs.joined(separator: ", ")))"
                    )
                }
                return (parts[0], f)
            }
            let format = try dataFormat()
            // npz and csv: generated as .npy files beside the target, then packed into one file.
            let out = format == "npy" ? self.out : self.out + ".npy-\(getpid())"
            try comm.agreeOn {
                guard comm.rank == 0 else { return }
                defer { if format != "npy" { try? FileManager.default.removeItem(atPath: out) } }
                if let config = resolved.headline {
                    try generateHeadlineData(directory: out, samples: samples, config: config, seed: seed)
                    print(
                        "wrote \(samples) samples to \(out) (seq_len \(config.sequenceLength), vocab \(config.vocabulary), \(config.auxFeatures) aux features)"
                    )
                } else {
                    try generateData(directory: out, samples: samples, description: resolved.description, seed: seed)
                    let d = resolved.description
                    print(
                        "wrote \(samples) samples to \(out): inputs \(d.inputNames.joined(separator: ", ")); targets \(d.heads.map(\.output).joined(separator: ", "))"
                    )
                }
                for (output, fraction) in marks {
                    let n = try markMissingLabels(directory: out, output: output, fraction: fraction, seed: seed)
                    print("\(output): \(n) of \(samples) samples left unlabelled (NaN)")
                }
                if format != "npy" {
                    let names = resolved.description.inputNames + outputs.flatMap { [$0, $0 + ".sample_weight"] }
                    try packDataset(directory: out, names: names, format: format, to: self.out)
                    print("packed into \(self.out)")
                }
            }
        }
    }
}
