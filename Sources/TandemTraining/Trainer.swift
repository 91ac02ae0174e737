// The epoch loop around `TrainingStep`: the epoch permutation from (seed,
// epoch), global batches, progress on stderr (rank 0), metrics.jsonl lines,
// checkpoints, parameter-hash checks across ranks, validation. Rank 0 alone
// writes files; every write is agreed on so no rank is left waiting.

import Foundation
import TandemCore
import TandemKeras

/// How to train: the global batch, epochs, order and bookkeeping intervals.
public struct TrainingOptions: Sendable {
    public var epochs = 1
    public var batchSize = 32
    public var seed: UInt64 = 0
    public var shuffle = true
    /// Steps between checkpoints (0: only at epoch ends).
    public var checkpointEvery = 0
    /// Steps between parameter-hash checks (0: at each epoch end).
    public var syncCheckEvery = 0
    /// Run directory for weights, checkpoint and metrics (nil: write nothing).
    public var runDirectory: String?
    public var progress = true
    /// Keras's verbose: 0 silent, 1 progress (a bar on a terminal), 2 one line per epoch.
    public var verbosity = 1
    /// Steps between per-step TensorBoard scalars (0: per epoch only, as Keras's update_freq="epoch").
    public var logEvery = 0
    /// Steps between per-head diagnostics (HeadDiagnostics.swift; 0: none).
    public var diagnosticsEvery = 0
    /// Best model and early stopping (Monitor.swift); needs `runDirectory`.
    public var monitor: MonitorOptions?
    public init() {}
}

/// One epoch's figures as Keras's `fit` shows them.
public struct EpochFigures: Sendable {
    public var epoch = 0, step = 0, samples = 0
    public var loss = 0.0
    public var headLoss: [Double] = [], headAccuracy: [Double] = []
    /// Per head, each of its metrics' values (Head.metrics order).
    package var headMetrics: [[Double]] = []
    public var validation: Evaluation?
    package var seconds = 0.0
    /// The optimizer's learning rate after the epoch (the next step's; Keras's `optimizer.learning_rate`).
    public var learningRate: Float = 0
    /// Per head, the loss weight of the epoch's last step (with loss weights over time).
    package var headWeights: [Double]?
    /// The --monitor expression's value this epoch, and whether it was the best so far.
    package var monitored: Double?
    package var improved = false
    public var samplesPerSecond: Double { seconds > 0 ? Double(samples) / seconds : 0 }
}

public final class Trainer {
    public let step: TrainingStep
    public var options: TrainingOptions
    public let data: Dataset
    public let trainRows: Range<Int>
    public let validation: (data: Dataset, rows: Range<Int>)?
    /// The model the validation rows go through when their inputs have other lengths than the
    /// training data's (nil: the training model).
    public var validationModel: Model?
    public var position = TrainingPosition()
    /// What defines the run, written into every checkpoint (nil: no checkpoints).
    public var configuration: RunConfiguration?
    /// The model as Keras describes it: RUN/model.keras is written from it at the end.
    public var modelDescription: ModelDescription?
    private var communicator: Communicator { step.communicator }
    private let log: Progress
    /// Told the step in progress, so a hung collective can be named.
    public var watchdog: CollectiveWatchdog?
    /// True when `fit` returned early on a stop request (a checkpoint was written).
    public private(set) var stoppedOnRequest = false
    /// Loss weights over time (schedules, learned weighting); nil: the heads' constant weights.
    public var lossWeighting: LossWeighting?
    /// TensorBoard event files (rank 0 only; nil elsewhere and when off).
    public var tensorBoard: TensorBoardLog?
    /// GradNorm's W: the last shared layer's tensors (built when the weighting is gradnorm).
    package private(set) lazy var gradNormLayer = HeadDiagnostics(
        model: step.model, heads: step.heads, lastSharedLayerOnly: true)
    /// The per-head diagnostics of this run (with `diagnosticsEvery` > 0).
    public private(set) var diagnostics: HeadDiagnostics?
    /// The epoch after which --patience stopped training (nil: it did not).
    public private(set) var stoppedEarlyAfter: Int?
    /// Called before each step with (step, rank), the step 1-based — where a caller hooks in
    /// (the CLI's test-only fault injection, FaultInjection.swift).
    public var beforeStep: ((_ step: Int, _ rank: Int) -> Void)?

    public init(
        step: TrainingStep, data: Dataset, trainRows: Range<Int>,
        validation: (data: Dataset, rows: Range<Int>)?, options: TrainingOptions
    ) {
        self.step = step
        self.data = data
        self.trainRows = trainRows
        self.validation = validation
        self.options = options
        log = Progress(enabled: options.progress && step.communicator.rank == 0, verbosity: options.verbosity)
    }

    package var stepsPerEpoch: Int { (trainRows.count + options.batchSize - 1) / options.batchSize }

    /// This rank's rows of batch k and k + 1 of the epoch's `order`: their image files are decoded in
    /// the background while batch k computes (ImageColumn.swift).
    private func prefetchImages(_ order: [Int32], batch k: Int) throws {
        var rows: [Int] = []
        for b in [k, k + 1] where b < stepsPerEpoch {
            let start = b * options.batchSize
            let count = min(options.batchSize, trainRows.count - start)
            for chunk in try step.localChunks(globalBatch: count) { rows += chunk.map { Int(order[start + $0]) } }
        }
        data.prefetch(rows)
    }

    /// Trains from `position` to the last epoch; returns each epoch's figures.
    @discardableResult
    public func fit() throws -> [EpochFigures] {
        let heads = step.heads
        var history: [EpochFigures] = []
        try checkParametersAgree(when: "at start")
        while position.epoch < options.epochs {
            let epoch = position.epoch
            let order =
                options.shuffle
                ? epochPermutation(count: trainRows.count, seed: options.seed, epoch: epoch)
                : (0..<trainRows.count).map(Int32.init)
            let base = Int32(trainRows.lowerBound)
            let globalOrder = order.map { $0 + base }
            let layout = step.objective.layout
            if let legacy = position.legacyEpochSums {
                position.epochSums = EpochSums(legacy: legacy, heads: layout.heads, metricSlots: layout.metricSlots)
                position.legacyEpochSums = nil
            }
            if position.epochSums?.headLoss.count != layout.heads
                || position.epochSums?.metricSums.count != layout.metricSlots
            {
                position.epochSums = EpochSums(heads: layout.heads, metricSlots: layout.metricSlots)
            }
            let started = Date()
            var samplesThisRun = 0
            while position.batchInEpoch < stepsPerEpoch {
                let k = position.batchInEpoch
                watchdog?.context = "step \(position.step + 1) (epoch \(epoch + 1))"
                beforeStep?(position.step + 1, communicator.rank)
                let range = (k * options.batchSize)..<min((k + 1) * options.batchSize, trainRows.count)
                step.model.dropoutKeys.seed = options.seed
                step.model.dropoutKeys.epoch = epoch
                step.epochPosition = range.lowerBound
                let scheduled = lossWeighting?.scheduled(afterSteps: position.step, stepsPerEpoch: stepsPerEpoch)
                if let w = lossWeighting, w.isActive {
                    step.setLossWeights(w.weights(afterSteps: position.step, stepsPerEpoch: stepsPerEpoch))
                }
                // Each head's own gradient of the shared tensors, at most one pass a step: PCGrad,
                // GradNorm (with the weights this step uses) and the diagnostics all read it.
                let diagnosticsDue = options.diagnosticsEvery > 0 && (position.step + 1) % options.diagnosticsEvery == 0
                let gradNormDue = lossWeighting?.learned == .gradnorm
                var perHead: (diagnostics: HeadDiagnostics, figures: [HeadDiagnostics.TensorFigures])?
                if step.surgery != nil || diagnosticsDue || gradNormDue {
                    let d = step.surgery != nil || diagnosticsDue ? allSharedTensors : gradNormLayer
                    perHead = (
                        d,
                        try globalOrder.withUnsafeBufferPointer {
                            try step.diagnose(d, globalBatch: UnsafeBufferPointer(rebasing: $0[range]), data: data)
                        }
                    )
                }
                var gradNorms: [Double]?
                if gradNormDue, let (d, f) = perHead {
                    // G_h over GradNorm's W, the last shared layer's tensors.
                    let w = gradNormLayer.shared.first?.layer
                    let inW = zip(d.shared, f).filter { $0.0.layer == w }.map(\.1)
                    gradNorms = heads.indices.map { h in
                        inW.reduce(0.0) { $0 + ($1.norm[h] ?? 0) * ($1.norm[h] ?? 0) }.squareRoot()
                    }
                }
                if diagnosticsDue, let (d, f) = perHead { try recordDiagnostics(d, f, epoch: epoch + 1) }
                if !data.imageColumns.isEmpty { try prefetchImages(globalOrder, batch: k) }
                let figures = try globalOrder.withUnsafeBufferPointer {
                    try step.run(
                        globalBatch: UnsafeBufferPointer(rebasing: $0[range]), data: data,
                        perHeadGradientsReady: perHead?.diagnostics === step.surgery?.diagnostics)
                }
                if let w = lossWeighting, let scheduled {
                    let losses = figures.headLossSums.map { $0 / Double(max(figures.samples, 1)) }
                    w.update(losses: losses, scheduled: scheduled)
                    if let gradNorms { w.updateGradNorm(norms: gradNorms, losses: losses) }
                }
                position.epochSums!.add(figures)
                position.batchInEpoch += 1
                position.step += 1
                samplesThisRun += figures.samples
                if log.due(batch: position.batchInEpoch, batches: stepsPerEpoch) {
                    let elapsed = Date().timeIntervalSince(started)
                    var running = epochFigures(epoch: epoch + 1)
                    if lossWeighting?.isActive == true { running.headWeights = step.heads.map(\.weight) }
                    log.step(
                        running, epochs: options.epochs, batch: position.batchInEpoch, batches: stepsPerEpoch,
                        heads: heads,
                        learningRate: step.optimizer.currentLearningRate,
                        samplesPerSecond: elapsed > 0 ? Double(samplesThisRun) / elapsed : 0,
                        remaining: elapsed / Double(max(samplesThisRun, 1))
                            * Double(trainRows.count - Int(position.epochSums!.samples)))
                }
                if let tb = tensorBoard, options.logEvery > 0, position.step % options.logEvery == 0 {
                    var running = epochFigures(epoch: epoch + 1)
                    if lossWeighting?.isActive == true { running.headWeights = step.heads.map(\.weight) }
                    running.learningRate = step.optimizer.currentLearningRate
                    running.samples = samplesThisRun
                    running.seconds = Date().timeIntervalSince(started)
                    try tb.step(metricFields(running), step: position.step)
                }
                if options.syncCheckEvery > 0 && position.step % options.syncCheckEvery == 0 {
                    try checkParametersAgree(when: "after step \(position.step)")
                }
                if figures.stopRequested {
                    // Every rank saw the request in the same step's figures: stop together.
                    try writeCheckpoint()
                    try rankZeroWrites { try tensorBoard?.flush() }
                    stoppedOnRequest = true
                    return history
                }
                if options.checkpointEvery > 0 && position.step % options.checkpointEvery == 0
                    && position.batchInEpoch < stepsPerEpoch
                {
                    try writeCheckpoint()
                }
            }
            var figures = epochFigures(epoch: epoch + 1)
            figures.samples = samplesThisRun
            figures.seconds = Date().timeIntervalSince(started)
            figures.learningRate = step.optimizer.currentLearningRate
            if lossWeighting?.isActive == true { figures.headWeights = step.heads.map(\.weight) }
            if let validation {
                // Keras validates in batches of the training batch size (a coupled loss is formed per batch).
                figures.validation = try step.evaluate(
                    validation.data, rows: validation.rows, on: validationModel, couplingBatch: options.batchSize)
            }
            var stopEarly = false
            if let monitor = options.monitor {
                // From reduced figures: every rank takes the same decision.
                var state = position.monitor ?? MonitorState()
                state.expression = monitor.expression.text
                figures.monitored = monitor.expression.value(metricValues(figures))
                figures.improved = state.update(figures.monitored, epoch: epoch + 1, mode: monitor.mode)
                if figures.improved { try writeBest() }
                position.monitor = state
                stopEarly = state.shouldStop(patience: monitor.patience, epoch: epoch + 1)
            }
            log.epochDone(
                figures, epochs: options.epochs, heads: heads, monitor: options.monitor.map { ($0, position.monitor!) })
            history.append(figures)
            position.epoch += 1
            position.batchInEpoch = 0
            position.epochSums = nil
            if options.syncCheckEvery == 0 { try checkParametersAgree(when: "after epoch \(epoch + 1)") }
            try writeEpochFiles(figures)
            if stopEarly {
                stoppedEarlyAfter = epoch + 1
                break
            }
        }
        step.synchronize()
        // Keras's finalize_variable_values (use_ema: the weights become their moving average), then
        // its on_train_end, where restore_best_weights acts.
        if options.epochs > 0 { step.optimizer.finalizeWeights(step.model.parameters.values) }
        if let monitor = options.monitor, monitor.restoreBest, let best = position.monitor, best.bestEpoch > 0,
            best.bestEpoch != position.epoch, let run = options.runDirectory
        {
            // Keras's restore_best_weights: the model's weights (the optimizer state stays the last).
            let store = step.model.parameters
            try communicator.agreeOn {
                if communicator.rank == 0 {
                    try loadWeights(store, from: SafeTensorsFile(path: run + "/best.safetensors"))
                }
            }
            try communicator.broadcast(store.values, bytes: store.count * 4, from: 0)
        }
        try checkParametersAgree(when: "at the end")
        if let run = options.runDirectory {
            try step.foldAccumulatedGradient()
            let accumulator = communicator.rank == 0 ? step.kerasAccumulator() : nil
            try rankZeroWrites {
                try saveWeights(step.model.parameters, to: run + "/weights.safetensors")
                // The trained model for Keras: architecture, compile config, weights, optimizer state.
                try modelDescription?.saveArchive(
                    to: run + "/model.keras", store: step.model.parameters,
                    optimizer: step.optimizer, heads: step.heads, accumulator: accumulator)
            }
        }
        return history
    }

    /// Removes temporary files a killed writer left in the run directory.
    public func removeStaleTemporaryFiles() {
        guard communicator.rank == 0, let run = options.runDirectory,
            let names = try? FileManager.default.contentsOfDirectory(atPath: run)
        else { return }
        for name in names where name.hasPrefix(".") && name.contains(".safetensors.tmp-") {
            try? FileManager.default.removeItem(atPath: run + "/" + name)
        }
    }

    /// Rank 0 runs `body`; every rank learns whether it worked.
    private func rankZeroWrites(_ body: () throws -> Void) throws {
        try communicator.agreeOn { if communicator.rank == 0 { try body() } }
    }

    package func writeCheckpoint() throws {
        guard let run = options.runDirectory, let configuration else { return }
        var metadata = CheckpointMetadata(
            configuration: configuration, position: position, worldSize: communicator.size)
        metadata.optimizerIterations = step.optimizer.microSteps
        if step.optimizer.config.kind == .nadam { metadata.nadamProduct = step.optimizer.nadamProduct }
        if step.optimizer.config.lossScale != nil {
            metadata.lossScale = step.optimizer.lossScale
            metadata.lossScaleCounter = step.optimizer.lossScaleCounter
        }
        metadata.gradientBound = step.gradientBound
        metadata.learnedWeighting = lossWeighting?.state
        step.synchronize()
        try step.foldAccumulatedGradient()
        try rankZeroWrites {
            try saveCheckpoint(
                model: step.model, optimizer: step.optimizer, metadata: metadata,
                to: run + "/checkpoint.safetensors")
        }
    }

    /// The epoch's figures from its running sums (the whole epoch at its end).
    private func epochFigures(epoch: Int) -> EpochFigures {
        let sums = position.epochSums!
        let samples = sums.samples
        var f = EpochFigures()
        f.epoch = epoch
        f.step = position.step
        f.loss = sums.totalTimesSamples / max(samples, 1)
        f.headLoss = sums.headLoss.map { $0 / max(samples, 1) }
        f.headAccuracy = zip(sums.headCorrect, sums.headLabelled).map { $1 > 0 ? $0 / $1 : 0 }
        f.headMetrics = sums.metricSums.withUnsafeBufferPointer { step.objective.metricResults($0.baseAddress!) }
        return f
    }

    /// Every tensor several heads reach (PCGrad's, when it is on: one pass serves both).
    private var allSharedTensors: HeadDiagnostics {
        if sharedTensors == nil {
            sharedTensors = step.surgery?.diagnostics ?? HeadDiagnostics(model: step.model, heads: step.heads)
        }
        return sharedTensors!
    }
    private var sharedTensors: HeadDiagnostics?

    /// Each head's gradient of the shared tensors for this global batch (before its step),
    /// one line of RUN/diagnostics.jsonl.
    private func recordDiagnostics(_ d: HeadDiagnostics, _ figures: [HeadDiagnostics.TensorFigures], epoch: Int) throws
    {
        diagnostics = d
        guard !d.shared.isEmpty else { return }
        let line = d.record(figures, step: position.step + 1, epoch: epoch)
        try tensorBoard?.diagnostics(d.lastLayers, names: d.headNames, step: position.step + 1)
        guard let run = options.runDirectory else { return }
        try rankZeroWrites { try appendLine(line, to: run + "/diagnostics.jsonl") }
    }

    /// RUN/best.keras and RUN/best.safetensors: the weights of the best epoch so far (atomically).
    private func writeBest() throws {
        guard let run = options.runDirectory else { return }
        step.synchronize()
        try step.foldAccumulatedGradient()
        let accumulator = communicator.rank == 0 ? step.kerasAccumulator() : nil
        try rankZeroWrites {
            try saveWeights(step.model.parameters, to: run + "/best.safetensors")
            try modelDescription?.saveArchive(
                to: run + "/best.keras", store: step.model.parameters,
                optimizer: step.optimizer, heads: step.heads, accumulator: accumulator)
        }
    }

    /// The names an epoch's metrics.jsonl line will hold (for checking --monitor before training).
    public func metricNames() -> [String] {
        var f = EpochFigures()
        let n = step.heads.count
        f.headLoss = Array(repeating: 0, count: n)
        f.headAccuracy = f.headLoss
        f.headMetrics = step.heads.map { Array(repeating: 0, count: $0.metrics.count) }
        if lossWeighting?.isActive == true { f.headWeights = f.headLoss }
        if validation != nil {
            var v = Evaluation()
            v.headLoss = f.headLoss
            v.headAccuracy = f.headLoss
            v.headMetrics = f.headMetrics
            f.validation = v
        }
        return metricFields(f).map(\.0)
    }

    /// An epoch's figures by their metrics.jsonl names.
    func metricValues(_ f: EpochFigures) -> [String: Double] {
        var values: [String: Double] = [:]
        for (key, value) in metricFields(f) { if let d = value as? Double { values[key] = d } }
        return values
    }

    private func writeEpochFiles(_ figures: EpochFigures) throws {
        guard let run = options.runDirectory else { return }
        try writeCheckpoint()
        try rankZeroWrites {
            try appendLine(metricsLine(figures), to: run + "/metrics.jsonl")
            if let tb = tensorBoard {
                try tb.epoch(metricFields(figures), epoch: figures.epoch)
                try tb.flush()
            }
        }
    }

    private func appendLine(_ line: String, to path: String) throws {
        guard
            let handle = FileHandle(forWritingAtPath: path)
                ?? {
                    _ = FileManager.default.createFile(atPath: path, contents: nil)
                    return FileHandle(forWritingAtPath: path)
                }()
        else { throw TandemError.file(path, "cannot open for writing") }
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data((line + "\n").utf8))
    }

    /// One JSON object with Keras's metric names.
    package func metricsLine(_ f: EpochFigures) -> String { jsonObject(metricFields(f)) }

    func metricFields(_ f: EpochFigures) -> [(String, Any)] {
        var fields: [(String, Any)] = [("epoch", f.epoch), ("step", f.step), ("loss", f.loss)]
        for (h, head) in step.heads.enumerated() {
            fields.append(("\(head.output)_loss", f.headLoss[h]))
            if let a = head.accuracy { fields.append(("\(head.output)_\(a.name)", f.headAccuracy[h])) }
            for (m, metric) in head.metrics.enumerated() {
                fields.append(("\(head.output)_\(metric.name)", f.headMetrics[h][m]))
            }
            if let w = f.headWeights { fields.append(("\(head.output)_loss_weight", w[h])) }
        }
        if let v = f.validation { fields += v.fields(heads: step.heads, prefix: "val_") }
        fields.append(("learning_rate", Double(f.learningRate)))
        fields.append(("samples_per_second", f.samplesPerSecond))
        fields.append(("seconds", f.seconds))
        return fields
    }

    /// docs/SPEC.md §4 consistency check: rank 0's per-tensor hashes against every rank's.
    package func checkParametersAgree(when: String) throws {
        let store = step.model.parameters
        guard communicator.size > 1 else { return }
        step.synchronize()
        var mine = store.tensors.map { store.hash(of: $0) }
        var root = mine
        try root.withUnsafeMutableBytes { try communicator.broadcast($0.baseAddress!, bytes: $0.count, from: 0) }
        var firstDiff = [Double](repeating: 0, count: communicator.size)
        if let i = mine.indices.first(where: { mine[$0] != root[$0] }) { firstDiff[communicator.rank] = Double(i + 1) }
        try communicator.allReduceSum(&firstDiff)
        let differing = firstDiff.indices.filter { firstDiff[$0] > 0 }
        mine.removeAll()
        guard differing.isEmpty else {
            let details = differing.map {
                "rank \($0) differs from rank 0, first in '\(store.tensors[Int(firstDiff[$0]) - 1].name)'"
            }
            throw AgreedError(
                message: "parameters are no longer identical across ranks \(when): " + details.joined(separator: "; "),
                reporter: communicator.rank == 0)
        }
    }
}

/// A JSON object from ordered fields (numbers, strings); non-finite numbers become null.
public func jsonObject(_ fields: [(String, Any)]) -> String {
    let parts = fields.map { key, value -> String in
        let v: String
        switch value {
        case let d as Double: v = d.isFinite ? "\(d)" : "null"
        case let i as Int: v = "\(i)"
        case let s as String:
            v = "\"\(s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\""))\""
        default: v = "\"\(value)\""
        }
        return "\"\(key)\": \(v)"
    }
    return "{" + parts.joined(separator: ", ") + "}"
}
