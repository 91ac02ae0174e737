// `tandem evaluate` and `tandem predict`: the current weights on a dataset,
// sharded across ranks when run under mpirun.

import ArgumentParser
import Foundation
import Tandem

/// Builds the headline model for `weights`, sizes from flags, then the weights, then the data.
func modelForWeights(_ weights: String, data: String, size: ModelSizeOptions, maxBatch: Int,
                     communicator comm: Communicator) throws -> Model {
    let file = try comm.agreeOn { try SafeTensorsFile(path: weights) }
    var config = HeadlineConfig()
    if size.seqLen == nil, let t = sequenceLength(inData: data) { config.sequenceLength = t }
    inferHeadlineConfig(from: file, into: &config, given: size.given)
    try size.apply(to: &config)
    let model = Model.headline(config, maxBatch: maxBatch)
    try comm.agreeOn { try loadWeights(model.parameters, from: file) }
    return model
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Loss and accuracy of each head and the weighted total, as JSON on stdout.")

    @Option(help: "Weights (.safetensors) to evaluate.") var weights: String
    @Option(help: "Dataset directory with inputs and targets.") var data: String
    @Option(name: .customLong("batch-size"), help: "Samples per forward pass.") var batchSize: Int = 256
    @Option(name: .customLong("l2"), help: "L2 terms to include in the total, LAYER=λ.") var l2: [String] = []
    @OptionGroup var size: ModelSizeOptions
    @OptionGroup var headOptions: HeadOptions

    func run() throws {
        try runCommand { comm in
            guard batchSize > 0 else { throw TandemError.usage("--batch-size must be at least 1, got \(batchSize)") }
            let heads = try headOptions.heads()
            let model = try modelForWeights(weights, data: data, size: size, maxBatch: batchSize, communicator: comm)
            let step = try TrainingStep(model: model, heads: heads, optimizer: Optimizer(OptimizerConfig(), parameterCount: 0),
                                        communicator: comm, l2: try parseL2(l2))
            let dataset = try comm.agreeOn { try Dataset(directory: data, model: model, heads: heads) }
            try comm.agree(dataset.validate(rows: shard(count: dataset.count, rank: comm.rank, size: comm.size)))
            let result = try step.evaluate(dataset, rows: 0..<dataset.count)
            var fields: [(String, Any)] = [("loss", result.total)]
            for (h, head) in heads.enumerated() {
                fields.append(("\(head.output)_loss", result.headLoss[h]))
                fields.append(("\(head.output)_accuracy", result.headAccuracy[h]))
            }
            fields.append(("samples", result.samples))
            if comm.rank == 0 { print(jsonObject(fields)) }
        }
    }
}

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write each head's predictions as OUT/<output>.npy (float32 [N, units]), rows in input order.")

    @Option(help: "Weights (.safetensors).") var weights: String
    @Option(help: "Dataset directory with the model's inputs (targets are not needed).") var data: String
    @Option(help: "Directory to write the predictions to.") var out: String
    @Option(name: .customLong("batch-size"), help: "Samples per forward pass.") var batchSize: Int = 256
    @OptionGroup var size: ModelSizeOptions

    func run() throws {
        try runCommand { comm in
            guard batchSize > 0 else { throw TandemError.usage("--batch-size must be at least 1, got \(batchSize)") }
            let model = try modelForWeights(weights, data: data, size: size, maxBatch: batchSize, communicator: comm)
            let dataset = try comm.agreeOn { try Dataset(directory: data, model: model, heads: [], requireTargets: false) }
            try comm.agree(dataset.validate(rows: shard(count: dataset.count, rank: comm.rank, size: comm.size)))
            let outputs = try predict(model: model, data: dataset, communicator: comm)
            try comm.agreeOn {
                guard comm.rank == 0 else { return }
                try makeDirectory(out)
                for o in outputs {
                    let path = URL(fileURLWithPath: out).appendingPathComponent("\(o.name).npy").path
                    try o.values.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [dataset.count, o.units], to: path) }
                    print(path)
                }
            }
        }
    }
}

struct GenData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gen-data",
        abstract: "Write a learnable synthetic headline dataset (.npy files) to a directory.",
        discussion: "The aux label depends on the tokens only; the main label on the tokens and aux_input.")

    @Option(help: "Directory to write to.") var out: String
    @Option(help: "Number of samples.") var samples: Int
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @OptionGroup var size: ModelSizeOptions

    func run() throws {
        do {
            var config = HeadlineConfig()
            try size.apply(to: &config)
            try generateHeadlineData(directory: out, samples: samples, config: config, seed: seed)
            print("wrote \(samples) samples to \(out) (seq_len \(config.sequenceLength), vocab \(config.vocabulary), \(config.auxFeatures) aux features)")
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
    }
}
