// One data-parallel training step, top to bottom (`run`). The distributed invariants,
// which every line keeps:
//  • every rank sees the same global batch (same permutation, same k) and computes its
//    own rows of it (the accumulator's chunks); a rank may get zero samples and still
//    makes every collective;
//  • losses are scaled by 1/B with B the GLOBAL batch size, so the SUM of the ranks'
//    gradients is the gradient of the whole batch's weighted total loss;
//  • trunk and heads share ONE flat gradient arena, combined by ONE exchange after one
//    small sum of the step's figures (or, in reproducible mode, both in one integer sum);
//  • regularisation (L1/L2) is added after the exchange, identically on every rank;
//  • decisions (stop on non-finite values, stop on request) are taken from reduced
//    figures, so every rank takes the same one;
//  • with gradient accumulation over N steps (Keras's gradient_accumulation_steps) each
//    rank's backward keeps adding into its own arena and only every N-th step exchanges:
//    ONE allreduce per N steps, then the mean ÷ N.
// Every collective of a step is made by the exchange (Exchange/), the accumulator
// (Accumulation/), the per-head pass of PCGrad (HeadDiagnostics.swift) or a
// BatchNormalization layer (its global statistics); none from this file.

import Foundation
import TandemCore
import TandemKeras

/// What one step measured, for the whole global batch.
package struct StepFigures: Sendable {
    public var samples = 0
    /// Per head: Σ_i w_i·ℓ(i) and correct predictions over the global batch.
    package var headLossSums: [Double] = []
    package var headCorrect: [Double] = []
    /// Per head: the samples of the global batch with a label (all, unless targets hold NaN rows).
    package var headLabelled: [Double] = []
    /// Every head's metric sums over the global batch, heads in turn (Metrics.swift).
    package var metricSums: [Double] = []
    /// λ·Σw² over the L2-regularised tensors, before the update, and the activity penalties ÷ B.
    package var regularization = 0.0
    /// Σ over the global batch of the activity penalties' values (ActivityRegularization.swift).
    package var activitySum = 0.0
    /// Σ_h weight_h · loss_h + regularization.
    package var total = 0.0
    /// Some rank received a stop request (SIGUSR1, or SIGINT/SIGTERM locally) before this step.
    package var stopRequested = false
}

/// The choices that pick a step's exchange and accumulator (made once per configuration).
public struct StepConfiguration: Sendable, Equatable {
    /// Reproducible mode: the canonical micro-batch size (nil: the ordinary float step).
    public var microBatch: Int?
    /// Overlap the dense exchange with backward (`--overlap-exchange`). Off by default: on
    /// one node the ranks' own CPUs move the bytes, so there is nothing to overlap with,
    /// and it measured slower there (docs/performance.md).
    public var overlapExchange = false
    /// The smallest bucket the overlapped exchange sends, in floats.
    var exchangeBucketFloats = GradientBuckets.defaultBucketFloats
    /// Use the factored table gradient when the model allows it (tests compare both; same bits).
    var factoredTable = true
    /// How many ranks form the table's dE blocks in the factored step; the others only
    /// receive them. Each former adds one 512 KB block (at D = 512) to every rank's
    /// allgather buffer, so this bounds that buffer on many ranks.
    var tableGradientFormers = 8
    package init() {}
}

/// The model, its objective, the optimizer and the communicator, wired for one step.
public final class TrainingStep {
    /// The model, optimizer, communicator, gradient arena and table the exchanges share.
    let exchangeContext: ExchangeContext
    /// The heads, their losses and the figures' layout (Objective.swift).
    package let objective: Objective
    /// Weight penalties, each tensor once (a shared layer's too), added after the exchange.
    public let regularizers: [(view: TensorView, l1: Double, l2: Double)]
    public var configuration = StepConfiguration() { didSet { if configuration != oldValue { chosen = nil } } }
    /// PCGrad on the shared tensors (GradientSurgery.swift): needs the dense table gradient.
    public var surgery: PCGrad? { didSet { chosen = nil } }
    /// Reproducible mode: the bound on gradient magnitudes that sets the fixed-point scale
    /// (4 × the previous step's largest magnitude; kept in checkpoints).
    public var gradientBound: Double?
    /// Where the global batch starts in the epoch's order (the trainer sets it): with
    /// the model's `dropoutKeys`, it fixes every sample's dropout mask whatever its rank.
    package var epochPosition = 0
    /// Seconds spent per phase over all steps so far (for the summary and the benchmark).
    public internal(set) var timings = StepTimings()
    /// The exchange and the accumulator of this configuration, chosen on first use.
    private var chosen: (exchange: GradientExchange, accumulator: GradientAccumulator)?
    /// A chunk's figures before the accumulator takes them; the last step's reduced figures.
    private var chunkFigures: [Double], lastFigures = StepFigures()

    public var model: Model { exchangeContext.model }
    public var optimizer: Optimizer { exchangeContext.optimizer }
    package var communicator: Communicator { exchangeContext.communicator }
    public var heads: [Head] { objective.heads }
    package var batch: BatchBuffers { objective.batch }

    /// `l2` maps a layer name to λ on its first weight (the kernel; an Embedding's table) — the `--l2` flag.
    public convenience init(
        model: Model, heads: [Head], optimizer: Optimizer, communicator: Communicator,
        l2: [String: Double]
    ) throws {
        try self.init(
            model: model, heads: heads, optimizer: optimizer, communicator: communicator,
            regularizers: try Regularizer.fromLayerFlags(l2, model: model))
    }

    public init(
        model: Model, heads: [Head], optimizer: Optimizer, communicator: Communicator,
        regularizers: [Regularizer]
    ) throws {
        objective = try Objective(model: model, heads: heads)
        let regularizers = try Regularizer.combined(regularizers, in: model.parameters)
        self.regularizers = regularizers
        // Layers with collectives of their own (BatchNormalization's global statistics).
        let collectiveLayers = model.layers.compactMap { $0 as? CollectiveLayer }
        for layer in collectiveLayers { layer.bind(communicator: communicator) }
        model.overlapsCollectives = communicator.size > 1 && !collectiveLayers.isEmpty
        chunkFigures = [Double](repeating: 0, count: objective.layout.count)
        // Deferred rows and the table's exchanges need the one Embedding call that reads the
        // table: with a table read twice (a shared Embedding), or a frozen one, the dense step runs.
        let embeddings = model.layers.compactMap { $0 as? Embedding }
        var table: (embedding: Embedding, view: TensorView)?
        // (A tied output projection reading the same table — ReversibleEmbedding's reverse call — counts as a
        // second reader.)
        if embeddings.count == 1, let embedding = embeddings.first,
            let view = model.parameters.view("\(embedding.weightsName)/embeddings"), view.spec.trainable,
            !model.layers.contains(where: { $0 !== embedding && $0.parameterSpecs.contains { $0.name == view.name } })
        {
            optimizer.enableDeferredRows(offset: view.offset, rows: embedding.vocabulary, width: embedding.dimension)
            table = (embedding, view)
        }
        exchangeContext = ExchangeContext(
            model: model, optimizer: optimizer, communicator: communicator,
            arena: GradientArena(model.parameters), table: table,
            tablePenalty: table.map { t in regularizers.contains { $0.view.name == t.view.name } } ?? false,
            collectiveLayers: collectiveLayers)
    }

    /// Trains on the global batch `indices` (sample numbers in `data`): the combined gradient,
    /// then the identical optimizer step on every rank. `perHeadGradientsReady`: PCGrad's
    /// per-head pass already ran for this batch (the trainer shares it with the diagnostics).
    package func run(
        globalBatch indices: UnsafeBufferPointer<Int32>, data: Dataset,
        perHeadGradientsReady: Bool = false
    ) throws -> StepFigures {
        let (exchange, _) = try strategy()
        if let surgery, !perHeadGradientsReady {
            // Each head's own shared gradient over the global batch, before the combined one.
            _ = try diagnose(surgery.diagnostics, globalBatch: indices, data: data)
        }
        let result = try gradient(indices, data: data)
        var clock = monotonicSeconds()
        if optimizer.isUpdateStep {
            surgery?.apply(to: model.parameters.gradients, step: optimizer.iterations + 1)
            let exchanged = try exchange.update()
            timings.exchange += exchanged
            timings.optimizer -= exchanged
        } else {
            optimizer.skipUpdate()  // gradient accumulation: the window's sum stays in the arena
        }
        timings.optimizer += lap(&clock)
        timings.steps += 1
        return result
    }

    /// Leaves the gradient of the global batch's weighted total loss (L2 included) in
    /// `model.parameters.gradients` on every rank (in the factored layout when the step's
    /// exchange is the factored table's) and returns the step's reduced figures.
    func gradient(_ indices: UnsafeBufferPointer<Int32>, data: Dataset) throws -> StepFigures {
        let (exchange, accumulator) = try strategy()
        let B = indices.count
        let chunks = accumulator.chunks(globalBatch: B)
        // A loss over the whole batch is formed once from every rank's rows (Objective.addBatchLosses).
        try refuseCoupledLosses(
            reproducible: configuration.microBatch != nil, perHeadGradients: false, missingLabels: data.hasMissingLabels
        )
        // The activity penalties' gradient: ÷ the global batch, as Keras's ÷ the batch in one process.
        model.activityPenalties.scale = 1 / Float(max(B, 1))
        var clock = monotonicSeconds()
        objective.countLabelled(indices, data: data)
        try exchange.prepare(indices, chunks: chunks, data: data, keeping: optimizer.accumulatedSteps > 0)
        timings.exchange += lap(&clock)
        try accumulator.begin(indices, chunks: chunks, data: data)
        repeat {
            accumulator.startPass()
            for chunk in chunks {
                load(
                    UnsafeBufferPointer(rebasing: indices[chunk]), data: data, position: chunk.lowerBound,
                    replayRows: exchange.replaysRowsPerChunk)
                try data.checkLoaded()
                try forwardAndLosses(rows: chunk.count, globalBatch: B, position: chunk.lowerBound)
                accumulator.addFigures(chunkFigures)
                timings.forward += lap(&clock)
                try exchange.backward(rows: chunk.count)
                accumulator.addGradient()
                timings.backward += lap(&clock)
            }
        } while try !accumulator.passIsComplete()
        guard optimizer.isUpdateStep else {
            // Accumulating: the step's own figures now; the arena is exchanged on the update step.
            try accumulator.combineFigures()
            var result = reducedFigures(accumulator.figure)
            finishFigures(&result, globalBatch: B, penaltyGradient: false)
            try checkLossIsFinite(result, step: optimizer.iterations + 1)
            timings.exchange += lap(&clock)
            return result
        }
        try accumulator.combine(exchange)
        timings.exchange += lap(&clock)
        if optimizer.stepsPerUpdate > 1 { meanOfTheWindow() }
        var result = reducedFigures(accumulator.figure)
        finishFigures(&result, globalBatch: B)
        try checkLossIsFinite(result, step: optimizer.iterations + 1)
        try exchange.checkFinite(step: optimizer.iterations + 1)
        timings.optimizer += lap(&clock)
        return result
    }

    /// `gradient` with the dense table gradient (the factored layout is for `run`'s update):
    /// the gradient checks and the tests read the arena after it.
    package func computeGradient(globalBatch indices: UnsafeBufferPointer<Int32>, data: Dataset) throws -> StepFigures {
        let factored = configuration.factoredTable
        configuration.factoredTable = false
        defer { configuration.factoredTable = factored }
        return try gradient(indices, data: data)
    }

    /// The coupled heads' losses, for messages.
    var coupledLossNames: String {
        objective.coupledHeads.map { "\(heads[$0].loss.rawValue) (output '\(heads[$0].output)')" }.joined(
            separator: ", ")
    }

    /// Refuses, before a run starts, what a loss over the whole batch (Losses+Batch.swift) does not
    /// combine with; the step checks the same again when it runs.
    package func refuseCoupledLosses(reproducible: Bool, perHeadGradients: Bool, missingLabels: Bool) throws {
        guard !objective.coupledHeads.isEmpty else { return }
        let what = "loss \(coupledLossNames) couples the samples of a batch"
        if reproducible {
            throw TandemError.usage(
                "\(what); --reproducible forms the gradient by micro-batches, which it does not combine with")
        }
        if perHeadGradients {
            throw TandemError.usage(
                "\(what); per-head gradients (--gradient-surgery, --head-diagnostics-every, --loss-weighting gradnorm) do not combine with it"
            )
        }
        if missingLabels {
            throw TandemError.usage("\(what); missing labels (NaN targets) are not supported with it")
        }
    }

    /// The exchange and accumulator of this configuration (see GradientExchange.swift).
    private func strategy() throws -> (exchange: GradientExchange, accumulator: GradientAccumulator) {
        if let chosen { return chosen }
        let c = configuration
        let accumulating = optimizer.stepsPerUpdate > 1
        if accumulating && (c.microBatch != nil || surgery != nil) {
            throw TandemError.usage(
                "gradient accumulation does not combine with \(c.microBatch != nil ? "--reproducible" : "--gradient-surgery")"
            )
        }
        if c.microBatch != nil && surgery != nil {
            throw TandemError.usage(
                "--gradient-surgery is not available with --reproducible (its per-head gradients are combined in floating point)"
            )
        }
        let exchange = chooseExchange(
            exchangeContext, reproducible: c.microBatch != nil, accumulating: accumulating,
            overlap: c.overlapExchange, factored: c.factoredTable && surgery == nil,
            formers: max(1, min(communicator.size, c.tableGradientFormers)),
            bucketFloats: c.exchangeBucketFloats)
        let accumulator: GradientAccumulator =
            c.microBatch.map { FixedPointAccumulator(step: self, exchange: exchange, microBatch: $0) }
            ?? FloatAccumulator(communicator: communicator, layout: objective.layout)
        chosen = (exchange, accumulator)
        return (exchange, accumulator)
    }

    /// The positions of a global batch of `count` rows this rank loads (what the trainer decodes
    /// image files ahead for).
    package func localChunks(globalBatch count: Int) throws -> [Range<Int>] {
        try strategy().1.chunks(globalBatch: count)
    }

    /// Loads the rows `local` (starting at `position` of the global batch) into the model; with
    /// `replayRows` the table rows they read are made current (deferred optimizer steps
    /// replayed), which forward needs unless the exchange's `prepare` did it for the union.
    func load(_ local: UnsafeBufferPointer<Int32>, data: Dataset, position: Int, replayRows: Bool = true) {
        objective.load(local, from: data, model: model)
        if replayRows, let table = exchangeContext.table, let ids = table.embedding.source.tokens {
            for i in 0..<(local.count * table.embedding.source.width) {
                optimizer.catchUp(row: Int(ids[i]), parameters: model.parameters.values)
            }
        }
        model.dropoutKeys.firstPosition = epochPosition + position
    }

    /// Forward on `rows` samples; each head's loss gradient (scaled by the global batch) and
    /// this chunk's figures, its sample count and the stop flag, in `chunkFigures`.
    func forwardAndLosses(rows: Int, globalBatch B: Int, position: Int) throws {
        model.activityPenalties.sum = 0
        model.forward(batch: rows, training: true)
        let layout = objective.layout
        try chunkFigures.withUnsafeMutableBufferPointer { f in
            f.update(repeating: 0)
            objective.addLosses(rows: rows, globalBatch: B, writeGradient: true, into: f.baseAddress!)
            try objective.addBatchLosses(
                rows: rows, position: position, globalBatch: B, communicator: communicator, writeGradient: true,
                into: f.baseAddress!)
        }
        chunkFigures[layout.activity] = model.activityPenalties.takeSum()
        chunkFigures[layout.samples] = Double(rows)
        // A stop request travels with the figures, so every rank sees it at the same step.
        chunkFigures[layout.stopFlag] = stopRequestedLocally ? 1 : 0
    }

    /// Gradient accumulation's update: Keras's (g + Σ accumulated) / N (penalties come after).
    private func meanOfTheWindow() {
        let g = model.parameters.gradients
        let n = Float(optimizer.stepsPerUpdate)
        for i in 0..<model.parameters.count { g[i] /= n }
    }
}

// MARK: The step's parts that are not the skeleton

extension TrainingStep {
    /// Gradient accumulation: the arena carries a local sum across steps (the dense exchange only).
    var accumulates: Bool { optimizer.stepsPerUpdate > 1 }

    /// Reproducible mode's micro-batch size (nil: the ordinary float step).
    public var microBatch: Int? {
        get { configuration.microBatch }
        set { configuration.microBatch = newValue }
    }
    public var overlapExchange: Bool {
        get { configuration.overlapExchange }
        set { configuration.overlapExchange = newValue }
    }
    package var exchangeBucketFloats: Int {
        get { configuration.exchangeBucketFloats }
        set { configuration.exchangeBucketFloats = newValue }
    }
    package var compactTableGradient: Bool {
        get { configuration.factoredTable }
        set { configuration.factoredTable = newValue }
    }
    package var tableGradientFormers: Int {
        get { configuration.tableGradientFormers }
        set { configuration.tableGradientFormers = newValue }
    }
    /// True when `run` keeps the table's gradient factored (FactoredTable.swift).
    package var usesCompactTableGradient: Bool { (try? strategy().exchange) is FactoredTable }
    /// The overlapped exchange's plan, when the step's exchange is overlapped.
    package var gradientBuckets: GradientBuckets? { ((try? strategy().exchange) as? OverlappedBuckets)?.buckets }
    /// Buckets the exchange is overlapped in (0: one allreduce, or another exchange).
    public var exchangeBuckets: Int { gradientBuckets?.bucketCount ?? 0 }

    /// Starts the phase timings afresh (after a warm-up).
    package func resetTimings() { timings = StepTimings() }

    /// The loss weights of the next steps (LossWeighting.swift), one per head.
    package func setLossWeights(_ weights: [Double]) { objective.setLossWeights(weights) }

    /// Brings every parameter up to date (deferred optimizer rows replayed): call before
    /// reading all parameters — hashing, evaluating, saving.
    package func synchronize() {
        optimizer.catchUpAll(parameters: model.parameters.values)
    }

    /// A collective some layer made in forward or backward failed: the step stops.
    func collectiveFailure() throws { try TandemTraining.collectiveFailure(exchangeContext) }

    /// Which path `run` takes and why, in words (`tandem summary`, `tandem bench`).
    public var pathDescription: String {
        var parts: [String] = []
        for case let f as FusedEmbeddingRecurrent in model.schedule {
            parts.append(
                "Embedding '\(f.embedding.name)' fused into \(f.recurrent.kerasClass) '\(f.recurrent.name)' over the batch's distinct tokens (one layer)"
            )
        }
        if microBatch != nil { parts.append("reproducible mode (exact fixed-point sums of canonical micro-batches)") }
        if let exchange = try? strategy().exchange { parts.append(exchange.reason) }
        if exchangeContext.table != nil {
            parts.append(
                optimizer.defersRows
                    ? "Adam defers untouched table rows (replayed bit-identically)"
                    : optimizer.deferralRefusal ?? "no rows deferred")
        }
        return parts.joined(separator: "; ")
    }

    /// The step's figures after their reduction; `figure(i)` reads the i-th reduced value
    /// (laid out as `objective.layout`). The arrays are reused, so once the caller has let
    /// go of the previous step's figures this allocates nothing.
    func reducedFigures(_ figure: (Int) -> Double) -> StepFigures {
        let layout = objective.layout
        let n = layout.heads
        if lastFigures.headLossSums.count != n {
            lastFigures.headLossSums = Array(repeating: 0, count: n)
            lastFigures.headCorrect = Array(repeating: 0, count: n)
        }
        for h in 0..<n {
            lastFigures.headLossSums[h] = figure(layout.loss(h))
            lastFigures.headCorrect[h] = figure(layout.correct(h))
        }
        if lastFigures.metricSums.count != layout.metricSlots {
            lastFigures.metricSums = Array(repeating: 0, count: layout.metricSlots)
        }
        for k in 0..<layout.metricSlots { lastFigures.metricSums[k] = figure(layout.metrics + k) }
        lastFigures.samples = Int(figure(layout.samples))
        if lastFigures.headLabelled.count != n { lastFigures.headLabelled = Array(repeating: 0, count: n) }
        let labels = objective.labels
        for h in 0..<n {
            lastFigures.headLabelled[h] = labels.map { $0.labelled[h] } ?? Double(lastFigures.samples)
        }
        lastFigures.stopRequested = figure(layout.stopFlag) > 0
        lastFigures.activitySum = figure(layout.activity)
        lastFigures.regularization = 0
        lastFigures.total = 0
        return lastFigures
    }

    /// Adds the penalties once to the combined gradient (d(λ₂Σw²)/dw = 2λ₂w,
    /// d(λ₁Σ|w|)/dw = λ₁·sign(w), as Keras) and forms the weighted total.
    /// Without `penaltyGradient` (an accumulating step) only the penalty's value is formed.
    func finishFigures(_ result: inout StepFigures, globalBatch B: Int, penaltyGradient: Bool = true) {
        let params = model.parameters
        if exchangeContext.tablePenalty { synchronize() }
        result.regularization = result.activitySum / Double(max(B, 1))
        for (view, l1, l2) in regularizers {
            let w = params.value(view)
            let g = params.gradient(view)
            let a = Float(l1)
            let b = Float(l2)
            var squares = 0.0
            var magnitudes = 0.0
            if !penaltyGradient {
                for i in 0..<view.count {
                    squares += Double(w[i]) * Double(w[i])
                    magnitudes += Double(abs(w[i]))
                }
            } else if l1 == 0 {
                for i in 0..<view.count {
                    squares += Double(w[i]) * Double(w[i])
                    g[i] += 2 * b * w[i]
                }
            } else {
                for i in 0..<view.count {
                    let x = w[i]
                    squares += Double(x) * Double(x)
                    magnitudes += Double(abs(x))
                    g[i] += 2 * b * x + a * (x > 0 ? 1 : x < 0 ? -1 : 0)
                }
            }
            result.regularization += l2 * squares + l1 * magnitudes
        }
        result.total = result.regularization
        for (h, head) in heads.enumerated() { result.total += head.weight * result.headLossSums[h] / Double(max(B, 1)) }
    }

    func checkLossIsFinite(_ result: StepFigures, step: Int) throws {
        let badHeads = heads.indices.filter { !result.headLossSums[$0].isFinite }.map { heads[$0].output }
        if !badHeads.isEmpty || !result.total.isFinite {
            let which = badHeads.isEmpty ? "regularization" : badHeads.joined(separator: ", ")
            throw AgreedError(
                message:
                    "step \(step): the loss is not finite (head\(badHeads.count == 1 ? "" : "s"): \(which)); stopping before the weights are updated",
                reporter: communicator.rank == 0)
        }
    }
}

/// Where a step's time goes, summed over steps.
public struct StepTimings: Sendable {
    public var steps = 0
    public var forward = 0.0, backward = 0.0, exchange = 0.0, optimizer = 0.0
    package var total: Double { forward + backward + exchange + optimizer }
    /// "forward 4.1 ms, backward …" per step.
    public var perStepDescription: String {
        let n = Double(max(steps, 1))
        func ms(_ x: Double) -> String { String(format: "%.1f ms", 1000 * x / n) }
        return
            "forward \(ms(forward)), backward \(ms(backward)), gradient exchange \(ms(exchange)), optimizer \(ms(optimizer))"
    }
}

@inline(__always) func lap(_ clock: inout Double) -> Double {
    let now = monotonicSeconds()
    defer { clock = now }
    return now - clock
}
