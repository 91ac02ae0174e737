// `tandem train`: builds the model, wires data, optimizer and communicator,
// and runs the Trainer. The same command line runs locally or under mpirun.

import ArgumentParser
import Foundation
import Tandem
import TandemMPI

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model on a dataset directory (locally, or under mpirun).",
        discussion: """
            Writes RUN/weights.safetensors (final weights), RUN/model.keras (the trained
            model for keras.saving.load_model: architecture, compile config, weights and
            optimizer state), RUN/checkpoint.safetensors (weights + optimizer state, every
            epoch and every --checkpoint-every steps) and RUN/metrics.jsonl (one JSON line
            per epoch). --batch-size is the GLOBAL batch: under mpirun each rank takes a
            contiguous slice of every batch. With --model m.keras the losses, loss weights,
            metrics, optimizer, weights and optimizer state come from the archive; the
            flags given here override its compile settings.
            """)

    @Option(
        help:
            "The data: a directory of <input>.npy for each model input, <output>.npy for each output with a loss, optional <output>.sample_weight.npy (headline: main_input, aux_input, main_output, aux_output); or one .npz holding those arrays (np.savez); or a .csv/.tsv with a header naming the columns (<name>, or <name>_0 … <name>_{k-1} for a width-k array)."
    )
    var data: String
    @Option(help: "Run directory to write weights, checkpoint, metrics and model.keras to.") var out: String
    @Option(name: .customLong("val-data"), help: "Validation dataset directory.") var valData: String?
    @Option(
        name: .customLong("validation-split"),
        help: "Fraction of the training data (its last rows, as Keras) held out for validation.")
    var validationSplit: Double?
    @OptionGroup var size: ModelSizeOptions

    @Option(
        name: .customLong("trainable"),
        help: ArgumentHelp(
            "Freeze or unfreeze layers of an archive: PATTERN=false or PATTERN=true, a regular expression searched in each layer's name (<model>/<layer> inside a nested model; the model's own name takes all its layers); repeatable, the last rule that finds a layer decides. RUN/model.keras keeps the result.",
            valueName: "PATTERN=true|false"))
    var trainable: [String] = []
    @OptionGroup var headOptions: HeadOptions
    @Option(
        name: .customLong("l2"),
        help: ArgumentHelp("L2 penalty λ·Σkernel² on a layer's kernel, LAYER=λ (repeatable).", valueName: "layer=λ"))
    var l2: [String] = []
    @OptionGroup(title: "Optimizer (each flag overrides the archive's compiled value)") var optimizerOptions:
        OptimizerOptions
    @Option(name: .customLong("batch-size"), help: "Global batch size (all ranks together). Default 32.") var batchSize:
        Int?
    @Option(help: "Number of epochs.") var epochs: Int = 1
    @Option(help: "Seed for initialisation and the epoch permutations. Default 0.") var seed: UInt64?
    @Flag(name: .customLong("no-shuffle"), help: "Keep the file order instead of a permutation per epoch.")
    var noShuffle = false
    @Option(help: "Start from the weights in this .safetensors file.") var `init`: String?
    @Option(
        help: ArgumentHelp(
            "Continue the run in this directory from its checkpoint, exactly where it stopped. May change: --epochs, the number of ranks, --checkpoint-every, --sync-check-every, validation. Must match (or be left out): model sizes, optimizer flags, --batch-size, --seed, --no-shuffle, the data's length."
        )) var resume: String?
    @Option(
        name: .customLong("checkpoint-every"), help: "Also write a checkpoint every N steps (0: only at epoch ends).")
    var checkpointEvery: Int = 0
    @Option(
        name: .customLong("sync-check-every"),
        help: "Compare parameter hashes across ranks every N steps (0: each epoch).")
    var syncCheckEvery: Int = 0
    @Flag(
        help: ArgumentHelp(
            "Bit-identical weights for any number of ranks: canonical micro-batches, gradients summed exactly in 64-bit fixed point.",
            valueName: "reproducible"))
    var reproducible = false
    @Option(
        name: .customLong("micro-batch"),
        help: "Samples per canonical micro-batch in --reproducible mode (part of what must match to get the same bits)."
    )
    var microBatch: Int = 8
    @Option(
        name: .customLong("collective-timeout"),
        help: "Under MPI, end the job when a collective has not completed for this many seconds (0: never).")
    var collectiveTimeout: Double = 300
    @Flag(
        name: .customLong("overlap-exchange"),
        help:
            "Under MPI, start the gradient sums during backward, in buckets, as their layers finish (DDP-style; ordinary mode's dense path). For runs across nodes, where the network moves the bytes; on one node it measured slower."
    )
    var overlapExchange = false
    @Flag(help: "No progress lines on stderr (as --verbose 0, and no start-up report).") var quiet = false
    @Option(
        name: .customLong("log-every"),
        help:
            "Also write TensorBoard scalars (batch_…: running epoch figures, learning rate, loss weights, samples/s) every N steps (0: per epoch only)."
    )
    var logEvery: Int = 0
    @Flag(name: .customLong("no-tensorboard"), help: "Do not write RUN/tensorboard event files.") var noTensorBoard =
        false
    @Option(
        help:
            "As Keras: 0 silent, 1 progress (a bar redrawn in place on a terminal, a line every ~10% of an epoch otherwise), 2 one line per epoch."
    )
    var verbose: Int = 1
    @OptionGroup(title: "Best model and early stopping") var monitorOptions: MonitorFlags
    @OptionGroup(title: "Loss weights over time") var lossWeightFlags: LossWeightFlags
    @Option(
        name: .customLong("head-diagnostics-every"),
        help:
            "Every N steps, each head's gradient norm, share and pairwise cosine on every tensor several heads reach, over the global batch, to RUN/diagnostics.jsonl, summarised by layer at the end (0: off)."
    )
    var headDiagnosticsEvery: Int = 0
    @Option(
        name: .customLong("gradient-surgery"),
        help:
            "pcgrad: project each head's gradient of the shared tensors off the heads it conflicts with (Yu et al. 2020), identically on every rank; costs a forward and backward per head each step."
    )
    var gradientSurgery: String?

    func run() throws {
        try runCommand { comm in try train(comm) }
    }

    private func train(_ comm: Communicator) throws {
        try checkFlags()
        let l2Terms = try parseL2(l2)

        // Resume: the checkpoint fixes the model, optimizer, seed and batch.
        let checkpointPath = resume.map { $0 + "/checkpoint.safetensors" }
        let resumed = try checkpointPath.map { try readCheckpoint($0, comm) }
        let resolved = try resolveModel(resumed: resumed, checkpointPath: checkpointPath, comm)
        if resumed != nil && !trainable.isEmpty {
            throw TandemError.usage(
                "--trainable changes the model, and --resume continues the checkpoint's model as it was; start a new run from RUN/model.keras with --trainable instead"
            )
        }
        var description = try resolved.description.applying(trainable.map(TrainableRule.init))
        let files = try DataFiles.open(data, for: description, communicator: comm)
        let validationFiles = try valData.map { try DataFiles.open($0, for: description, communicator: comm) }
        try description.takeShapes(from: files)  // an Input(shape=(None, …)) takes the data's length
        var heads = try headOptions.heads(description.heads)
        if let meta = resumed {
            // What defines the run is the checkpoint's: a flag may restate it, not change it (ResumeRules.swift).
            try meta.checkResume(try resumeRequest(meta, heads: heads), checkpoint: checkpointPath!)
            for h in heads.indices where (meta.configuration.labeledReduction ?? []).contains(heads[h].output) {
                heads[h].reduction = .labeled
            }
        }
        guard !heads.isEmpty else {
            throw TandemError.usage(
                "\(size.model): the model has no loss (compile it in Keras with loss=... before saving, so Tandem knows what to train)"
            )
        }

        // The optimizer: the checkpoint's; else --optimizer with its flags; else the archive's, with the flags over it.
        let optimizerConfig =
            try resumed?.configuration.optimizer ?? optimizerOptions.config(over: description.optimizer)
        let seed = resumed?.configuration.seed ?? self.seed ?? 0
        let batch = resumed?.configuration.batchSize ?? batchSize ?? 32

        guard microBatch > 0 else { throw TandemError.usage("--micro-batch must be at least 1") }
        let micro: Int? = resumed.map { $0.configuration.microBatch } ?? (reproducible ? microBatch : nil)
        // The model holds one rank's slice of a global batch (or one micro-batch), and at least
        // one evaluation block (Evaluator.evaluationBlock).
        let localBatch = (batch + comm.size - 1) / comm.size
        let rows = try comm.agreeOn { try description.evaluationRows() }
        let model = try comm.agreeOn { try description.build(maxBatch: micro ?? max(localBatch, rows)) }
        let opt = Optimizer(optimizerConfig, parameters: model.parameters, kerasPaths: description.kerasVariablePaths)
        try opt.constrain(description.constraints, in: model.parameters)
        let step = try TrainingStep(
            model: model, heads: heads, optimizer: opt, communicator: comm,
            regularizers: description.regularizers + Regularizer.fromLayerFlags(l2Terms, model: model))
        step.microBatch = micro
        step.gradientBound = resumed?.gradientBound
        step.overlapExchange = overlapExchange

        let source: ValidationSource =
            validationFiles.map { .files($0) } ?? validationSplit.map { .split($0) } ?? .none
        // Validation data of another length for an Input(shape=(None, …)) goes through the
        // same graph built at its length; the weights are copied into it for each validation.
        var validationModel: Model?
        if let validationFiles, !description.variableInputs.isEmpty {
            var atValidationLength = description
            try atValidationLength.takeShapes(from: validationFiles)
            if atValidationLength.dataShapes != description.dataShapes {
                validationModel = try comm.agreeOn {
                    try atValidationLength.build(maxBatch: max(model.maxBatch, try atValidationLength.evaluationRows()))
                }
            }
        }
        let runData = try TrainingData(
            files: files, validation: source, model: model, heads: heads, communicator: comm,
            validationModel: validationModel)
        let (dataset, trainRows, validation) = (runData.data, runData.trainRows, runData.validation)
        try step.refuseCoupledLosses(
            reproducible: micro != nil,
            perHeadGradients: (resumed.map { $0.configuration.gradientSurgery } ?? gradientSurgery) != nil
                || headDiagnosticsEvery > 0
                || (resumed?.learnedWeighting?.kind ?? lossWeightFlags.learned()) == .gradnorm,
            missingLabels: dataset.hasMissingLabels)
        if let meta = resumed, meta.configuration.samples != trainRows.count {
            throw TandemError.usage(
                "--resume: the checkpoint was trained on \(meta.configuration.samples) samples, this data has \(trainRows.count)"
            )
        }

        // Parameters, optimizer state and position, in RunStart's order of precedence.
        let start: RunStart =
            checkpointPath.map { .checkpoint(path: $0) } ?? `init`.map { .weights(path: $0) }
            ?? resolved.archive.flatMap {
                $0.weightsBytes != nil ? .archive($0, description, optimizerState: trainable.isEmpty) : nil
            }
            ?? .initializers(seed: seed, model: size.model)
        let restored = try step.restore(from: start)
        let position = restored.position ?? TrainingPosition()
        let notes =
            restored.notes + [files, validationFiles].compactMap { $0?.conversionNote }
            + [description.trainingFalseNote].compactMap { $0 }

        try comm.agreeOn {
            if comm.rank == 0 { try makeDirectory(out) }
            if comm.rank == 0 && resumed == nil { try? FileManager.default.removeItem(atPath: out + "/metrics.jsonl") }
        }

        let options = try trainingOptions(
            batch: batch, seed: seed, shuffle: resumed?.configuration.shuffle ?? !noShuffle)
        if let gradientSurgery = resumed.map({ $0.configuration.gradientSurgery }) ?? gradientSurgery {
            guard gradientSurgery == "pcgrad" else {
                throw TandemError.usage("--gradient-surgery '\(gradientSurgery)': the supported method is pcgrad")
            }
            guard micro == nil else {
                throw TandemError.usage(
                    "--gradient-surgery pcgrad is not available with --reproducible (its per-head gradients are combined in floating point)"
                )
            }
            step.surgery = PCGrad(model: model, heads: heads, seed: seed)
        }
        let trainer = Trainer(step: step, data: dataset, trainRows: trainRows, validation: validation, options: options)
        trainer.validationModel = validationModel
        if let faults = TestFaults.fromEnvironment() { trainer.beforeStep = faults.beforeStep }
        // Loss weights over time: the flags', else the checkpoint's; a resume may restate them, not change them.
        let schedules =
            try resumed.map { $0.configuration.lossWeightSchedules ?? [:] } ?? lossWeightFlags.schedules(heads)
        try trainer.useLossWeighting(
            schedules: schedules, learned: resumed.map { $0.learnedWeighting?.kind } ?? lossWeightFlags.learned(),
            alpha: resumed?.learnedWeighting?.alpha ?? lossWeightFlags.gradnormAlpha,
            restoring: resumed?.learnedWeighting)
        if let monitor = try monitorOptions.resolve(names: trainer.metricNames(), heads: heads) {
            trainer.options.monitor = monitor
        }

        try trainer.checkGradientAccumulation()
        trainer.removeStaleTemporaryFiles()
        if let mpi = comm as? MPICommunicator {
            mpi.watchdog = CollectiveWatchdog(timeout: collectiveTimeout, rank: comm.rank)
            trainer.watchdog = mpi.watchdog
        }
        // SIGUSR1 stops cleanly everywhere; SIGINT/SIGTERM too when local (under
        // mpirun those end the job, as mpirun does not forward them gracefully).
        installStopHandlers(interrupts: !Launch.underMPI)
        trainer.position = position
        // What defines this run, into every checkpoint (a resumed run's equals its checkpoint's).
        var configuration = RunConfiguration(
            headline: resolved.headline,
            modelConfig: resolved.headline != nil
                ? nil : description.configWithCompile(heads: heads, optimizer: optimizerConfig).serialized(),
            optimizer: optimizerConfig, batchSize: batch, samples: trainRows.count, seed: seed, shuffle: options.shuffle
        )
        configuration.microBatch = micro
        configuration.labeledReduction = heads.filter { $0.reduction == .labeled }.map(\.output)
        configuration.gradientSurgery = step.surgery == nil ? nil : "pcgrad"
        configuration.lossWeightSchedules = schedules.isEmpty ? nil : schedules
        trainer.configuration = configuration
        trainer.modelDescription = description
        if !noTensorBoard {
            // Rank 0 writes the event files; every rank learns whether they could be opened.
            trainer.tensorBoard = try comm.agreeOn {
                comm.rank == 0 ? try TensorBoardLog(runDirectory: out, resumingAt: resumed?.position) : nil
            }
        }
        let hosts = try comm.allGather(hostName())
        if comm.rank == 0 && !quiet {
            let facts = StartFacts(
                model: resolved.headline != nil ? "headline preset" : size.model, micro: micro, resumed: resumed != nil,
                archiveIterations: restored.archiveIterations, notes: notes)
            printStartup(comm: comm, hosts: hosts, trainer: trainer, facts: facts)
        }
        let started = Date()
        let history = try trainer.fit()
        if comm.rank == 0 { printEnd(trainer, history: history, started: started, out: out) }

    }
}

extension Train {
    /// Flags first: every rank parses the same command line, so no agreement is needed.
    fileprivate func checkFlags() throws {
        if let batchSize, batchSize <= 0 {
            throw TandemError.usage("--batch-size must be at least 1, got \(batchSize)")
        }
        guard epochs >= 0 else { throw TandemError.usage("--epochs must not be negative") }
        guard checkpointEvery >= 0, syncCheckEvery >= 0 else {
            throw TandemError.usage("--checkpoint-every and --sync-check-every must not be negative")
        }
        _ = try optimizerOptions.kind()
        if let validationSplit, !(validationSplit > 0 && validationSplit < 1) {
            throw TandemError.usage("--validation-split must be between 0 and 1 (exclusive)")
        }
        if valData != nil && validationSplit != nil {
            throw TandemError.usage("give --val-data or --validation-split, not both")
        }
        if `init` != nil && resume != nil { throw TandemError.usage("give --init or --resume, not both") }
    }

    /// A checkpoint's metadata, read on rank 0 and sent to every rank.
    fileprivate func readCheckpoint(_ path: String, _ comm: Communicator) throws -> CheckpointMetadata {
        let json = try rankZeroBroadcast(comm) {
            let file = try SafeTensorsFile(path: path)
            guard let json = file.metadata["tandem"] else { throw TandemError.file(path, "not a Tandem checkpoint") }
            return json
        }
        guard let meta = try? JSONDecoder().decode(CheckpointMetadata.self, from: Data(json.utf8)) else {
            throw AgreedError(
                message: "\(path): not a Tandem checkpoint (unreadable metadata)", reporter: comm.rank == 0)
        }
        return meta
    }

    /// The model: from the checkpoint on resume (no model flags needed), else --model.
    fileprivate func resolveModel(resumed: CheckpointMetadata?, checkpointPath: String?, _ comm: Communicator) throws
        -> ResolvedModel
    {
        guard let meta = resumed, let checkpointPath else {
            var preset = HeadlineConfig()
            if size.seqLen == nil, let t = sequenceLength(inData: data, comm) { preset.sequenceLength = t }
            return try size.resolve(comm, preset: preset)
        }
        if !size.isPreset {
            throw TandemError.usage("--resume: the model comes from the checkpoint; leave out --model")
        }
        guard let text = meta.configuration.modelConfig else {
            let saved = meta.configuration.headline ?? HeadlineConfig()
            return ResolvedModel(description: try ModelDescription.headline(saved), archive: nil, headline: saved)
        }
        if !size.given.isEmpty {
            throw TandemError.usage("--resume: the checkpoint holds an archive model; the size flags do not apply")
        }
        let description = try comm.agreeOn {
            try KerasConfig.description(fromJSON: Array(text.utf8), source: checkpointPath)
        }
        return ResolvedModel(description: description, archive: nil, headline: nil)
    }

    /// The epoch loop's settings from the flags (the batch, seed and order the run's configuration fixed).
    fileprivate func trainingOptions(batch: Int, seed: UInt64, shuffle: Bool) throws -> TrainingOptions {
        var options = TrainingOptions()
        options.epochs = epochs
        options.batchSize = batch
        options.seed = seed
        options.shuffle = shuffle
        options.checkpointEvery = checkpointEvery
        options.syncCheckEvery = syncCheckEvery
        options.runDirectory = out
        options.progress = !quiet
        guard (0...2).contains(verbose) else { throw TandemError.usage("--verbose must be 0, 1 or 2, got \(verbose)") }
        options.verbosity = verbose
        guard logEvery >= 0 else { throw TandemError.usage("--log-every must be at least 0, got \(logEvery)") }
        options.logEvery = logEvery
        guard headDiagnosticsEvery >= 0 else {
            throw TandemError.usage("--head-diagnostics-every must be at least 0, got \(headDiagnosticsEvery)")
        }
        options.diagnosticsEvery = headDiagnosticsEvery
        return options
    }

    /// What this command line gives for the settings a checkpoint fixes (Tandem's ResumeRules.swift).
    fileprivate func resumeRequest(_ meta: CheckpointMetadata, heads: [Head]) throws -> ResumeRequest {
        var r = ResumeRequest()
        if meta.configuration.modelConfig == nil {
            var sizes = meta.configuration.headline ?? HeadlineConfig()
            try size.apply(to: &sizes)
            r.sizes = sizes
        }
        r.optimizerFlags = optimizerOptions.given
        if !r.optimizerFlags.isEmpty { r.optimizer = try optimizerOptions.config(over: meta.configuration.optimizer) }
        r.batchSize = batchSize
        r.seed = seed
        r.noShuffle = noShuffle
        r.reproducibleMicroBatch = reproducible ? microBatch : nil
        r.headReductions = try headOptions.givenReductions(heads).sorted { $0.key < $1.key }
            .map { (output: $0.key, labeled: $0.value == .labeled) }
        r.gradientSurgery = gradientSurgery
        if !lossWeightFlags.schedules.isEmpty { r.lossWeightSchedules = try lossWeightFlags.schedules(heads) }
        r.lossWeighting = try lossWeightFlags.learned()
        r.gradnormAlpha = lossWeightFlags.alphaGiven
        r.monitor = try monitorOptions.monitor.map { try MonitorExpression.parse($0).text }
        return r
    }
}

/// --monitor, --mode, --patience, --restore-best.
struct MonitorFlags: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Keep RUN/best.keras (and best.safetensors) from the epoch where this is best: a metrics.jsonl name such as val_loss, or a weighted sum such as 0.7*val_main_output_accuracy+0.3*val_aux_output_accuracy.",
            valueName: "expr"))
    var monitor: String?
    @Option(
        help: ArgumentHelp(
            "min or max: whether a lower or a higher --monitor value is better. Default: inferred as Keras does (losses and errors min; accuracy, AUC, precision, recall max).",
            valueName: "min|max"))
    var mode: String?
    @Option(
        help:
            "Stop after this many epochs without improvement of --monitor (Keras's EarlyStopping patience). Default: never stop early."
    )
    var patience: Int?
    @Flag(
        name: .customLong("restore-best"),
        help: "End with the best epoch's weights in weights.safetensors and model.keras (Keras's restore_best_weights)."
    )
    var restoreBest = false

    func resolve(names: [String], heads: [Head]) throws -> MonitorOptions? {
        guard let monitor else {
            for (given, flag) in [
                (mode != nil, "--mode"), (patience != nil, "--patience"), (restoreBest, "--restore-best"),
            ] where given {
                throw TandemError.usage("\(flag) needs --monitor (the figure to watch, e.g. --monitor val_loss)")
            }
            return nil
        }
        let expression = try MonitorExpression.parse(monitor)
        for t in expression.terms where !names.contains(t.name) {
            let hint =
                t.name.hasPrefix("val_") && !names.contains(where: { $0.hasPrefix("val_") })
                ? "; val_ figures need --validation-split or --val-data" : ""
            throw TandemError.usage(
                "--monitor: '\(t.name)' is not a figure of this run (they are: \(names.filter { !["epoch", "step", "seconds", "samples_per_second"].contains($0) }.joined(separator: ", "))\(hint))"
            )
        }
        let chosen: MonitorOptions.Mode
        if let mode {
            guard let m = MonitorOptions.Mode(rawValue: mode) else {
                throw TandemError.usage("--mode '\(mode)': expected min or max")
            }
            chosen = m
        } else {
            guard let m = MonitorOptions.inferredMode(expression, heads: heads) else {
                throw TandemError.usage(
                    "--monitor '\(monitor)': cannot tell whether higher or lower is better; give --mode min or --mode max"
                )
            }
            chosen = m
        }
        if let patience, patience < 0 { throw TandemError.usage("--patience must be at least 0, got \(patience)") }
        return MonitorOptions(expression: expression, mode: chosen, patience: patience, restoreBest: restoreBest)
    }
}

/// --loss-weight-schedule, --loss-weighting.
struct LossWeightFlags: ParsableArguments {
    @Option(
        name: .customLong("loss-weight-schedule"),
        help: ArgumentHelp(
            "An output's loss weight over time, OUTPUT=SCHEDULE (repeatable): constant:W, linear:W0:W1:START:END (W0 until START, then linearly to W1 at END) or step:W0:W1:AT; points are optimizer steps, or epochs written like 2e.",
            valueName: "output=schedule"))
    var schedules: [String] = []
    @Option(
        name: .customLong("loss-weighting"),
        help: ArgumentHelp(
            "Learned loss weights: uncertainty (Kendall et al. 2018: a trainable log-variance s per head, objective Σ w·exp(−s)·loss + s) or gradnorm (Chen et al. 2018: weights that balance the heads' gradient norms at the last shared layer).",
            valueName: "method"))
    var weighting: String?
    @Option(
        name: .customLong("gradnorm-alpha"),
        help: "GradNorm's α: how strongly heads that train slower get larger gradients. Default 1.5.")
    var alphaGiven: Double?
    var gradnormAlpha: Double { alphaGiven ?? 1.5 }

    func schedules(_ heads: [Head]) throws -> [String: LossWeightSchedule] {
        var result: [String: LossWeightSchedule] = [:]
        for item in schedules {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else {
                throw TandemError.usage("--loss-weight-schedule '\(item)': expected OUTPUT=SCHEDULE")
            }
            guard heads.contains(where: { $0.output == parts[0] }) else {
                throw TandemError.usage(
                    "--loss-weight-schedule: unknown output '\(parts[0])' (outputs with a loss: \(heads.map(\.output).joined(separator: ", ")))"
                )
            }
            result[parts[0]] = try LossWeightSchedule.parse(parts[1])
        }
        return result
    }

    func learned() throws -> LearnedWeighting? {
        guard let weighting else { return nil }
        guard let kind = LearnedWeighting(rawValue: weighting) else {
            throw TandemError.usage(
                "--loss-weighting '\(weighting)': the supported methods are uncertainty and gradnorm")
        }
        if let a = alphaGiven, !(a.isFinite && a >= 0) {
            throw TandemError.usage("--gradnorm-alpha must be a non-negative number, got \(a)")
        }
        if alphaGiven != nil && kind != .gradnorm {
            throw TandemError.usage("--gradnorm-alpha applies to --loss-weighting gradnorm")
        }
        return kind
    }
}
