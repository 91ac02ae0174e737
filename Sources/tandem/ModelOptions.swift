// The --model flag and the headline preset's size flags, shared by every
// subcommand: they resolve to one ModelDescription (and, for an archive, the
// archive itself on rank 0, whose config.json every rank receives).

import ArgumentParser
import Foundation
import Tandem

/// What --model names, resolved.
struct ResolvedModel {
    var description: ModelDescription
    /// The archive (rank 0 only; nil for the preset and on other ranks).
    var archive: KerasArchive?
    /// The preset's sizes (nil for an archive).
    var headline: HeadlineConfig?
}

/// --model and the preset's size flags (docs/SPEC.md §6). Omitted sizes come from a
/// weights file or the data when there is one, else from the headline defaults.
struct ModelSizeOptions: ParsableArguments {
    @Option(
        help:
            "headline (the preset, sized by the flags below), or your Keras model: a .keras archive or a directory with config.json and model.weights.h5."
    )
    var model: String = "headline"
    @Option(help: "Vocabulary size (token ids are 0..<vocab). Default 10000.") var vocab: Int?
    @Option(
        name: .customLong("seq-len"),
        help: "Tokens per sample. Default 100. With an archive: the length of its None axes in generated data.")
    var seqLen: Int?
    @Option(name: .customLong("embed-dim"), help: "Embedding width. Default 512.") var embedDim: Int?
    @Option(name: .customLong("lstm-units"), help: "LSTM units. Default 32.") var lstmUnits: Int?
    @Option(name: .customLong("aux-features"), help: "Width of aux_input. Default 5.") var auxFeatures: Int?
    @Option(name: .customLong("dense-units"), help: "Units of each relu Dense layer. Default 64.") var denseUnits: Int?
    @Option(name: .customLong("dense-layers"), help: "Number of relu Dense layers. Default 3.") var denseLayers: Int?

    var isPreset: Bool { model == "headline" }

    private var sizeFlagsWithArchive: TandemError {
        .usage(
            "the size flags (--\(given.sorted().joined(separator: ", --"))) apply to --model headline only; an archive's sizes are in its config"
        )
    }

    /// The flags the user gave, by their long names.
    var given: Set<String> {
        var s = Set<String>()
        if vocab != nil { s.insert("vocab") }
        if seqLen != nil { s.insert("seq-len") }
        if embedDim != nil { s.insert("embed-dim") }
        if lstmUnits != nil { s.insert("lstm-units") }
        if auxFeatures != nil { s.insert("aux-features") }
        if denseUnits != nil { s.insert("dense-units") }
        if denseLayers != nil { s.insert("dense-layers") }
        return s
    }

    /// Applies the given flags over `config` and checks every size.
    func apply(to config: inout HeadlineConfig) throws {
        guard isPreset else { throw sizeFlagsWithArchive }
        if let vocab { config.vocabulary = vocab }
        if let seqLen { config.sequenceLength = seqLen }
        if let embedDim { config.embeddingDimension = embedDim }
        if let lstmUnits { config.lstmUnits = lstmUnits }
        if let auxFeatures { config.auxFeatures = auxFeatures }
        if let denseUnits { config.denseUnits = denseUnits }
        if let denseLayers { config.denseLayers = denseLayers }
        let sizes: [(String, Int, Int)] = [
            ("--vocab", config.vocabulary, 1), ("--seq-len", config.sequenceLength, 1),
            ("--embed-dim", config.embeddingDimension, 1), ("--lstm-units", config.lstmUnits, 1),
            ("--aux-features", config.auxFeatures, 1), ("--dense-units", config.denseUnits, 1),
            ("--dense-layers", config.denseLayers, 0),
        ]
        for (flag, value, low) in sizes where value < low {
            throw TandemError.usage("\(flag) must be at least \(low), got \(value)")
        }
        if config.lstmUnits > LSTM.maxUnits {
            throw TandemError.usage("--lstm-units must be at most \(LSTM.maxUnits), got \(config.lstmUnits)")
        }
    }

    /// The model: the preset sized by `config` and the flags, or the archive
    /// (read by rank 0; every rank parses the same config.json).
    func resolve(_ comm: Communicator, preset config: HeadlineConfig = HeadlineConfig()) throws -> ResolvedModel {
        if isPreset {
            var c = config
            try apply(to: &c)
            return ResolvedModel(description: try ModelDescription.headline(c), archive: nil, headline: c)
        }
        // --seq-len is the length of an archive's None axes (generated data: gen-data, bench).
        if !given.subtracting(["seq-len"]).isEmpty { throw sizeFlagsWithArchive }
        var archive: KerasArchive?
        let text = try rankZeroBroadcast(comm) {
            let a = try KerasArchive(path: model)
            archive = a
            return String(decoding: a.configBytes, as: UTF8.self)
        }
        // Every rank parses the same text, so a bad config stops every rank with the same message.
        var description = try comm.agreeOn {
            try KerasConfig.description(fromJSON: Array(text.utf8), source: model + " (config.json)")
        }
        if let seqLen {
            guard !description.variableInputs.isEmpty else { throw sizeFlagsWithArchive }
            guard seqLen > 0 else { throw TandemError.usage("--seq-len must be at least 1") }
            description.takeLength(seqLen)
        }
        return ResolvedModel(description: description, archive: archive, headline: nil)
    }
}

/// Loss-weight and class-weight flags, applied over the model's heads.
struct HeadOptions: ParsableArguments {
    @Option(
        name: .customLong("loss-weight"),
        help: ArgumentHelp(
            "Weight of an output's loss in the total, OUTPUT=W (repeatable); overrides the archive's loss_weights. Headline defaults: main_output=1.0, aux_output=0.2.",
            valueName: "output=w"))
    var lossWeights: [String] = []
    @Option(
        name: .customLong("loss"),
        help: ArgumentHelp(
            "Replace an output's compiled loss, OUTPUT=NAME with Keras's defaults for its arguments (repeatable): \(LossKind.allCases.map(\.rawValue).joined(separator: ", ")).",
            valueName: "output=loss"))
    var losses: [String] = []
    @Option(
        name: .customLong("class-weight"),
        help: ArgumentHelp(
            "Per-class sample-weight multipliers, OUTPUT=CLASS:W,CLASS:W (repeatable).", valueName: "output=c:w,..."))
    var classWeights: [String] = []
    @Option(
        name: .customLong("head-reduction"),
        help: ArgumentHelp(
            "What an output's loss over a batch is divided by, OUTPUT=batch|labeled (repeatable): batch (Keras's default) divides by the global batch size, a missing label (a NaN target row) counting as weight 0; labeled divides by the global sum of weights of the samples labelled for that output (the true mean over labelled samples).",
            valueName: "output=mode"))
    var reductions: [String] = []

    /// The outputs --head-reduction names, with their modes.
    func givenReductions(_ heads: [Head]) throws -> [String: Head.Reduction] {
        var result: [String: Head.Reduction] = [:]
        for item in reductions {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            // `sum` comes only from an archive's compile config (Keras's reduction="sum").
            guard parts.count == 2, let mode = Head.Reduction(rawValue: parts[1]), mode != .sum else {
                throw TandemError.usage("--head-reduction '\(item)': expected OUTPUT=batch or OUTPUT=labeled")
            }
            guard heads.contains(where: { $0.output == parts[0] }) else {
                throw TandemError.usage(
                    "--head-reduction: unknown output '\(parts[0])' (outputs with a loss: \(heads.map(\.output).joined(separator: ", ")))"
                )
            }
            result[parts[0]] = mode
        }
        return result
    }

    func heads(_ base: [Head] = Head.headlineDefaults) throws -> [Head] {
        var heads = base
        let names = heads.map(\.output).joined(separator: ", ")
        for item in losses {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let kind = LossKind.named(parts[1]) else {
                throw TandemError.usage(
                    "--loss '\(item)': expected OUTPUT=LOSS with LOSS one of \(LossKind.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
            guard let h = heads.firstIndex(where: { $0.output == parts[0] }) else {
                throw TandemError.usage("--loss: unknown output '\(parts[0])' (outputs with a loss: \(names))")
            }
            heads[h].loss = kind
            heads[h].options = LossOptions()
            heads[h].fromLogits = false
            // Class-id targets and one-hot targets take the matching accuracy.
            if let a = heads[h].accuracy, a.kind != .binary {
                heads[h].accuracy!.kind = kind == .sparseCategoricalCrossentropy ? .sparseCategorical : .categorical
            }
        }
        for item in lossWeights {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let w = Double(parts[1]), w.isFinite, w >= 0 else {
                throw TandemError.usage("--loss-weight '\(item)': expected OUTPUT=WEIGHT with a non-negative number")
            }
            guard let h = heads.firstIndex(where: { $0.output == parts[0] }) else {
                throw TandemError.usage("--loss-weight: unknown output '\(parts[0])' (outputs with a loss: \(names))")
            }
            heads[h].weight = w
        }
        for item in classWeights {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let h = heads.firstIndex(where: { $0.output == parts[0] }) else {
                throw TandemError.usage(
                    "--class-weight '\(item)': expected OUTPUT=CLASS:W,... with OUTPUT one of \(names)")
            }
            for pair in parts[1].split(separator: ",") {
                let cw = pair.split(separator: ":").map(String.init)
                guard cw.count == 2, let c = Int(cw[0]), c >= 0, let w = Double(cw[1]), w.isFinite, w >= 0 else {
                    throw TandemError.usage("--class-weight '\(item)': '\(pair)' is not CLASS:WEIGHT")
                }
                heads[h].classWeights[c] = w
            }
        }
        for (output, mode) in try givenReductions(heads) {
            heads[heads.firstIndex { $0.output == output }!].reduction = mode
        }
        return heads
    }
}
