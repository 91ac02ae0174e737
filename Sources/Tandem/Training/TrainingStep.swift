// One data-parallel training step, top to bottom. The distributed invariants
// (SPEC §4), which every line below keeps:
//  • every rank sees the same global batch (same permutation, same k) and
//    takes the r-th contiguous slice of it; a rank may get zero samples and
//    still makes every collective;
//  • losses are scaled by 1/B with B the GLOBAL batch size, so the SUM of the
//    ranks' gradients is the gradient of the whole batch's weighted total loss;
//  • trunk and heads share ONE flat gradient arena: ONE allreduce combines it,
//    after one small allreduce of the step's figures. `run` keeps the embedding
//    table's part compact and factored when the model allows it (the union of
//    touched rows, 4U wide each, in place before the other parameters —
//    CompactTableStep.swift; the table rows' dE formed from it is shared out,
//    each block formed by one rank, by an allgather per round); otherwise the
//    dense arena is sent, packed to the touched rows when those are under half
//    the table (GradientExchange.swift), or — overlapped — in buckets whose sums
//    start during backward as their layers finish (GradientBuckets.swift), the
//    table's rows after them: the same sums, element by element;
//  • regularisation (L1/L2) is added after the allreduce, identically on every rank (never once per rank);
//  • decisions (stop on non-finite values, stop on request) are taken from
//    reduced figures, so every rank takes the same one;
//  • the optimizer runs no collective: the step hands it the combined gradient
//    (the table's by blocks it forms and gathers itself);
//  • with gradient accumulation over N steps (Keras's gradient_accumulation_steps),
//    each rank's backward keeps adding into its own arena and only every N-th step
//    (the update step) combines it: ONE allreduce per N steps, then the mean ÷ N.
// Reproducible mode replaces the middle of this step (ReproducibleStep.swift).
// `computeGradient` always leaves the dense gradient (the gradient checks read it).

import Foundation

/// What one step measured, for the whole global batch.
public struct StepFigures: Sendable {
    public var samples = 0
    /// Per head: Σ_i w_i·ℓ(i) and correct predictions over the global batch.
    public var headLossSums: [Double] = []
    public var headCorrect: [Double] = []
    /// Per head: the samples of the global batch with a label (all, unless targets hold NaN rows).
    public var headLabelled: [Double] = []
    /// Every head's metric sums over the global batch, heads in turn (Metrics.swift).
    public var metricSums: [Double] = []
    /// λ·Σw² over the L2-regularised tensors, before the update.
    public var regularization = 0.0
    /// Σ_h weight_h · loss_h + regularization.
    public var total = 0.0
    /// Some rank received a stop request (SIGUSR1, or SIGINT/SIGTERM locally) before this step.
    public var stopRequested = false
}

/// The model, its heads, the optimizer and the communicator, wired for one step.
public final class TrainingStep {
    public let model: Model
    /// The heads, their losses and the figures' layout (Objective.swift).
    public let objective: Objective
    public let optimizer: Optimizer
    public let communicator: Communicator
    /// Weight penalties, each tensor once (a shared layer's too), added after the allreduce.
    public let regularizers: [(view: TensorView, l1: Double, l2: Double)]
    /// This rank's figures before their allreduce, laid out as `objective.layout`.
    var figures: [Double]
    public var heads: [Head] { objective.heads }
    public var batch: BatchBuffers { objective.batch }
    /// Seconds spent per phase over all steps so far (for the summary and the benchmark).
    public internal(set) var timings = StepTimings()
    /// True when the gradient arena is all zero (it starts so; the optimizer pass leaves it so).
    var gradientsCleared = true
    /// Otherwise only [dirtyFrom, count) may hold values (a compact step writes no lower).
    var dirtyFrom = 0
    /// The ranks that form dE blocks: the requested number, at least 1, at most every rank.
    private static func formerCount(ranks: Int, requested: Int) -> Int { max(1, min(ranks, requested)) }
    public static let defaultTableGradientFormers = 8
    /// The last step's figures, whose arrays `reducedFigures` reuses.
    private var lastFigures = StepFigures()
    /// The compact table-gradient layout, when the model allows it (CompactTableStep.swift).
    let compact: CompactTable?
    /// Use the compact table gradient when the model allows it (tests compare both; same bits).
    public var compactTableGradient = true
    /// How many ranks form the table's dE blocks in the compact step; the others
    /// only receive them. Each former adds one 512 KB block (at D = 512) to every
    /// rank's allgather buffer, so this bounds that buffer on many ranks.
    public var tableGradientFormers = TrainingStep.defaultTableGradientFormers {
        didSet { compact?.formers = Self.formerCount(ranks: communicator.size, requested: tableGradientFormers) }
    }
    /// True when `run` keeps the table's gradient compact (CompactTableStep.swift).
    public var usesCompactTableGradient: Bool {
        compactTableGradient && compact != nil && surgery == nil && !accumulates
    }
    /// Gradient accumulation: the arena carries a local sum across steps (the dense exchange only).
    var accumulates: Bool { optimizer.stepsPerUpdate > 1 }
    /// PCGrad on the shared tensors (GradientSurgery.swift): needs the dense table gradient.
    public var surgery: PCGrad?
    /// The embedding whose zero-gradient rows Adam may defer (see Optimizer).
    let deferredTable: (embedding: Embedding, view: TensorView)?
    /// Reproducible mode: the canonical micro-batch size (nil: the ordinary float step).
    public var microBatch: Int?
    /// Reproducible mode: the bound on gradient magnitudes that sets the fixed-point scale
    /// (4 × the previous step's largest magnitude; kept in checkpoints).
    public var gradientBound: Double?
    let collectiveLayers: [CollectiveLayer]
    /// Where the global batch starts in the epoch's order (the trainer sets it): with
    /// the model's `dropoutKeys`, it fixes every sample's dropout mask whatever its rank.
    public var epochPosition = 0
    /// Rows `evaluate` forwards together. It must not depend on the rank count (a row's
    /// outputs depend, in the last bits, on the rows forwarded with it): training builds
    /// models of at least 64 rows in ordinary mode, of the micro-batch in reproducible mode.
    public var evaluationBlock: Int { min(model.maxBatch, 64) }
    var exchange: FixedPointExchange?
    /// Reproducible mode: one micro-batch's figures before they go to fixed point.
    lazy var figureScratch = [Double](repeating: 0, count: objective.layout.count)
    var sparseExchange: SparseGradientExchange?
    /// Overlap the dense path's exchange with backward (GradientBuckets.swift; `--overlap-exchange`).
    /// Off by default: on one node the ranks' own CPUs move the bytes, so there is nothing
    /// to overlap with, and it measured slower there (README "Performance").
    public var overlapExchange = false {
        didSet { buckets = nil }
    }
    /// The smallest bucket the overlapped exchange sends, in floats.
    public var exchangeBucketFloats = GradientBuckets.defaultBucketFloats {
        didSet { buckets = nil }
    }
    private var buckets: GradientBuckets?
    /// Buckets the last step's exchange was overlapped in (0: one allreduce, or another step).
    public private(set) var exchangeBuckets = 0
    /// The overlapped exchange's plan (built on first use), or nil when the exchange is one allreduce.
    var gradientBuckets: GradientBuckets? {
        guard overlapExchange, communicator.size > 1, !accumulates else { return nil }
        if buckets == nil {
            // The table the sparse exchange sends by touched rows (computeGradient) stays out of the buckets.
            let sparse = deferredTable.flatMap { t in t.embedding.source.tokens.map { _ in t.view.offset..<(t.view.offset + t.view.count) } }
            buckets = GradientBuckets(model: model, excluding: sparse, bucketFloats: exchangeBucketFloats)
        }
        return buckets
    }

    /// Starts the phase timings afresh (after a warm-up).
    public func resetTimings() { timings = StepTimings() }

    /// `l2` maps a layer name to λ on its first weight (the kernel; an Embedding's table) — the `--l2` flag.
    public convenience init(model: Model, heads: [Head], optimizer: Optimizer, communicator: Communicator,
                            l2: [String: Double]) throws {
        try self.init(model: model, heads: heads, optimizer: optimizer, communicator: communicator,
                      regularizers: try Regularizer.fromLayerFlags(l2, model: model))
    }

    public init(model: Model, heads: [Head], optimizer: Optimizer, communicator: Communicator,
                regularizers: [Regularizer]) throws {
        self.model = model; self.optimizer = optimizer; self.communicator = communicator
        objective = try Objective(model: model, heads: heads)
        self.regularizers = try Regularizer.combined(regularizers, in: model.parameters)
        // Layers with collectives of their own (BatchNormalization's global statistics).
        collectiveLayers = model.layers.compactMap { $0 as? CollectiveLayer }
        for layer in collectiveLayers { layer.bind(communicator: communicator) }
        figures = [Double](repeating: 0, count: objective.layout.count)
        // Deferred rows and the compact table need the one Embedding call that reads the table:
        // with a table read twice (a shared Embedding) the dense step runs.
        let embeddings = model.layers.compactMap { $0 as? Embedding }
        if embeddings.count == 1, let embedding = embeddings.first,
           let view = model.parameters.view("\(embedding.weightsName)/embeddings") {
            optimizer.enableDeferredRows(offset: view.offset, rows: embedding.vocabulary, width: embedding.dimension)
            deferredTable = (embedding, view)
        } else {
            deferredTable = nil
        }
        compact = TrainingStep.compactTable(model: model, table: deferredTable, optimizer: optimizer, regularizers: self.regularizers,
                                            formers: Self.formerCount(ranks: communicator.size, requested: Self.defaultTableGradientFormers))
    }

    /// The loss weights of the next steps (LossWeighting.swift), one per head.
    public func setLossWeights(_ weights: [Double]) { objective.setLossWeights(weights) }

    /// Brings every parameter up to date (deferred optimizer rows replayed):
    /// call before reading all parameters — hashing, evaluating, saving.
    public func synchronize() {
        optimizer.catchUpAll(parameters: model.parameters.values)
    }

    /// Trains on the global batch `indices` (sample numbers in `data`): the
    /// combined gradient, then the identical optimizer step on every rank.
    public func run(globalBatch indices: UnsafeBufferPointer<Int32>, data: Dataset) throws -> StepFigures {
        let params = model.parameters, g = params.gradients
        let compactStep = usesCompactTableGradient ? compact : nil
        let result: StepFigures
        exchangeBuckets = 0
        if let surgery {
            // Each head's own shared gradient over the global batch, before the combined one.
            guard microBatch == nil else { throw TandemError.usage("--gradient-surgery is not available with --reproducible (its per-head gradients are combined in floating point)") }
            _ = try diagnose(surgery.diagnostics, globalBatch: indices, data: data)
        }
        if accumulates && (microBatch != nil || surgery != nil) {
            throw TandemError.usage("gradient accumulation does not combine with \(microBatch != nil ? "--reproducible" : "--gradient-surgery")")
        }
        if accumulates && !optimizer.isUpdateStep {
            // Only this rank's gradient, added to the window's sum; no exchange, no update.
            result = try computeGradient(globalBatch: indices, data: data)
            optimizer.skipUpdate()
            timings.steps += 1
            return result
        }
        if let m = microBatch {
            result = try computeGradientReproducibly(globalBatch: indices, data: data, microBatch: m, compact: compactStep)
        } else if let c = compactStep {
            result = try computeGradientCompactly(globalBatch: indices, data: data, c)
        } else {
            result = try computeGradient(globalBatch: indices, data: data)
        }
        let started = monotonicSeconds()
        surgery?.apply(to: g, step: optimizer.iterations + 1)
        if let c = compactStep {
            // The table first, block by block: each block's dE is formed here (and shared
            // out across ranks, CompactTableStep.swift) while the LSTM kernel is still the
            // pre-step one; then every other parameter.
            c.round = -1; c.gatherSeconds = 0
            var table = optimizer.beginTableStep(table: c.optimizerTable)
            let rows = c.touched.rows.count
            try c.touched.rows.withUnsafeBufferPointer { touched in
                for first in stride(from: 0, to: rows, by: tableBlockRows) {
                    let count = min(tableBlockRows, rows - first)
                    let dE = try c.sharedTableGradient(g, first: first, count: count, communicator)
                    optimizer.applyTableRows(&table, rows: UnsafeBufferPointer(rebasing: touched[first..<(first + count)]),
                                             gradients: dE, parameters: params.values)
                }
            }
            optimizer.finishTableStep(&table, parameters: params.values, gradients: g, clear: true)
            (g + c.start).update(repeating: 0, count: c.end - c.start)  // the S rows, for the next step
            timings.exchange += c.gatherSeconds
            timings.optimizer -= c.gatherSeconds
        } else {
            optimizer.step(parameters: params.values, gradients: g, clear: true)
        }
        gradientsCleared = true
        timings.optimizer += monotonicSeconds() - started
        timings.steps += 1
        return result
    }

    /// Leaves the gradient of the global batch's weighted total loss (L2
    /// included) in `model.parameters.gradients` on every rank.
    public func computeGradient(globalBatch indices: UnsafeBufferPointer<Int32>, data: Dataset) throws -> StepFigures {
        if let m = microBatch { return try computeGradientReproducibly(globalBatch: indices, data: data, microBatch: m) }
        let B = indices.count
        let mine = shard(count: B, rank: communicator.rank, size: communicator.size)
        let local = UnsafeBufferPointer(rebasing: indices[mine])
        let params = model.parameters
        objective.countLabelled(indices, data: data)

        // 1. Forward and backward on this rank's slice, gradients into the flat arena.
        var clock = monotonicSeconds()
        beginGradient()
        loadBatch(local, data: data)
        model.dropoutKeys.firstPosition = epochPosition + mine.lowerBound
        forwardAndLosses(rows: local.count, globalBatch: B)
        timings.forward += lap(&clock)
        let overlap = gradientBuckets, g = params.gradients
        exchangeBuckets = overlap?.bucketCount ?? 0
        if let overlap {
            // Each bucket's sum starts as soon as the layers that write it are done.
            try model.backward(batch: local.count) { k in try overlap.layerFinished(k, gradients: g, communicator) }
        } else {
            model.backward(batch: local.count)
        }
        do { try collectiveFailure() } catch {
            if overlap != nil { try? communicator.waitForSums() }
            throw error
        }
        timings.backward += lap(&clock)

        // 2. Combine: the figures (small, Double), then the ONE gradient allreduce (or, overlapped,
        // the buckets' sums started in backward, with the table's touched rows after them).
        try figures.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0.baseAddress!, count: $0.count) }
        if accumulates {
            // Accumulating: the step's own figures now; the arena is combined on the update step only.
            var result = reducedFigures { figures[$0] }
            guard optimizer.isUpdateStep else {
                finishFigures(&result, globalBatch: B, penaltyGradient: false)
                try checkLossIsFinite(result, step: optimizer.iterations + 1)
                timings.exchange += lap(&clock)
                return result
            }
            try communicator.allReduceSum(g, count: params.count)
            // Keras's update: (g + Σ accumulated) / N, then the penalties (constant over the window).
            let n = Float(optimizer.stepsPerUpdate)
            for i in 0..<params.count { g[i] /= n }
            timings.exchange += lap(&clock)
            finishFigures(&result, globalBatch: B)
            try checkFinite(result, step: optimizer.iterations + 1)
            timings.optimizer += lap(&clock)
            return result
        }
        var touchedRows: TouchedRows?
        if let table = deferredTable, let ids = table.embedding.source.tokens {
            // The union of the table rows some rank touched: the exchange sends only those
            // (plus everything else, GradientExchange.swift), and the finiteness scan reads only them.
            if sparseExchange == nil {
                sparseExchange = SparseGradientExchange(parameters: params.count, table: table.view,
                                                        vocabulary: table.embedding.vocabulary, width: table.embedding.dimension)
            }
            let occurrences = local.count * table.embedding.source.width
            try sparseExchange!.touched.agree(communicator) { marks in for i in 0..<occurrences { marks[Int(ids[i])] = 1 } }
            if overlap != nil {
                try sparseExchange!.allReduceTable(g, communicator)
            } else if communicator.size > 1 {
                try sparseExchange!.allReduceSum(g, communicator)
            }
            touchedRows = sparseExchange!.touched
        } else if overlap == nil {
            try communicator.allReduceSum(g, count: params.count)
        }
        try communicator.waitForSums()
        timings.exchange += lap(&clock)

        var result = reducedFigures { figures[$0] }

        // 3. L2 once, on the combined gradient; the weighted total.
        finishFigures(&result, globalBatch: B)

        // 4. Stop on non-finite values before they reach the weights (same decision everywhere).
        // A penalty on the table reaches every row: then every row is read.
        let tablePenalty = deferredTable.map { t in regularizers.contains { $0.view.name == t.view.name } } ?? false
        try checkFinite(result, step: optimizer.iterations + 1, tableRows: tablePenalty ? nil : touchedRows)
        timings.optimizer += lap(&clock)
        return result
    }

    /// Forward on this rank's `rows` samples; each head's loss gradient (scaled by
    /// the global batch) and its figures, the sample count and the stop flag.
    func forwardAndLosses(rows: Int, globalBatch B: Int) {
        model.forward(batch: rows, training: true)
        let layout = objective.layout
        figures.withUnsafeMutableBufferPointer { f in
            f.update(repeating: 0)
            objective.addLosses(rows: rows, globalBatch: B, writeGradient: true, into: f.baseAddress!)
        }
        figures[layout.samples] = Double(rows)
        // A stop request travels with the figures, so every rank sees it at the same step.
        figures[layout.stopFlag] = stopRequestedLocally ? 1 : 0
    }

    /// A collective some layer made in forward or backward failed: the step stops.
    func collectiveFailure() throws {
        for layer in collectiveLayers { if let error = layer.takeError() { throw error } }
    }

    /// Zeroes what the previous step may have left in the arena (nothing after an optimizer pass).
    /// Mid-accumulation the arena holds the window's gradient sum, which backward adds to.
    func beginGradient() {
        if optimizer.accumulatedSteps > 0 { gradientsCleared = false; dirtyFrom = 0; return }
        if !gradientsCleared {
            (model.parameters.gradients + dirtyFrom).update(repeating: 0, count: model.parameters.count - dirtyFrom)
        }
        gradientsCleared = false
        dirtyFrom = 0
    }

    /// The step's figures after their allreduce; `figure(i)` reads the i-th reduced value
    /// (laid out as `objective.layout`). The arrays are reused, so once the caller has let
    /// go of the previous step's figures this allocates nothing.
    func reducedFigures(_ figure: (Int) -> Double) -> StepFigures {
        let layout = objective.layout, n = layout.heads
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
        for h in 0..<n { lastFigures.headLabelled[h] = labels.map { Double($0.labelled[h]) } ?? Double(lastFigures.samples) }
        lastFigures.stopRequested = figure(layout.stopFlag) > 0
        lastFigures.regularization = 0
        lastFigures.total = 0
        return lastFigures
    }

    /// Loads samples `local` into the model and makes the table rows they read current.
    func loadBatch(_ local: UnsafeBufferPointer<Int32>, data: Dataset, catchUp: Bool = true) {
        objective.load(local, from: data, model: model)
        if catchUp, let table = deferredTable, let ids = table.embedding.source.tokens {
            // The rows this batch reads must be current before forward.
            for i in 0..<(local.count * table.embedding.source.width) {
                optimizer.catchUp(row: Int(ids[i]), parameters: model.parameters.values)
            }
        }
    }

    /// Adds the penalties once to the combined gradient (d(λ₂Σw²)/dw = 2λ₂w,
    /// d(λ₁Σ|w|)/dw = λ₁·sign(w), as Keras) and forms the weighted total.
    /// Without `penaltyGradient` (an accumulating step) only the penalty's value is formed.
    func finishFigures(_ result: inout StepFigures, globalBatch B: Int, penaltyGradient: Bool = true) {
        let params = model.parameters
        if let table = deferredTable, regularizers.contains(where: { $0.view.name == table.view.name }) { synchronize() }
        for (view, l1, l2) in regularizers {
            let w = params.value(view), g = params.gradient(view), a = Float(l1), b = Float(l2)
            var squares = 0.0, magnitudes = 0.0
            if !penaltyGradient {
                for i in 0..<view.count { squares += Double(w[i]) * Double(w[i]); magnitudes += Double(abs(w[i])) }
            } else if l1 == 0 {
                for i in 0..<view.count { squares += Double(w[i]) * Double(w[i]); g[i] += 2 * b * w[i] }
            } else {
                for i in 0..<view.count {
                    let x = w[i]
                    squares += Double(x) * Double(x); magnitudes += Double(abs(x))
                    g[i] += 2 * b * x + a * (x > 0 ? 1 : x < 0 ? -1 : 0)
                }
            }
            result.regularization += l2 * squares + l1 * magnitudes
        }
        result.total = result.regularization
        for (h, head) in heads.enumerated() { result.total += head.weight * result.headLossSums[h] / Double(max(B, 1)) }
    }

    /// `tableRows`: the only table rows that can hold gradient (nil: any row may).
    func checkFinite(_ result: StepFigures, step: Int, tableRows: TouchedRows? = nil) throws {
        try checkLossIsFinite(result, step: step)
        // The optimizer's pre-step scan reads every gradient once (and, for
        // deferred rows, notes which rows it must update).
        let finite = tableRows.map { t in
            t.rows.withUnsafeBufferPointer { optimizer.gradientsAreFinite(model.parameters.gradients, tableRows: $0) }
        } ?? optimizer.gradientsAreFinite(model.parameters.gradients)
        if !finite { try stopOnNonFiniteGradient(step: step, from: 0) }
    }

    func checkLossIsFinite(_ result: StepFigures, step: Int) throws {
        let badHeads = heads.indices.filter { !result.headLossSums[$0].isFinite }.map { heads[$0].output }
        if !badHeads.isEmpty || !result.total.isFinite {
            throw AgreedError(message: "step \(step): the loss is not finite (head\(badHeads.count == 1 ? "" : "s"): \(badHeads.isEmpty ? "regularization" : badHeads.joined(separator: ", "))); stopping before the weights are updated",
                              reporter: communicator.rank == 0)
        }
    }

    /// Names the tensor of the first non-finite gradient at or after `from` and stops every rank.
    func stopOnNonFiniteGradient(step: Int, from: Int) throws -> Never {
        let g = model.parameters.gradients
        let first = (from..<model.parameters.count).first { !g[$0].isFinite } ?? from
        // In the compact layout the table's rows sit at the end of its own window.
        let tensor = model.parameters.tensors.first { $0.offset <= first && first < $0.offset + $0.count }
        throw AgreedError(message: "step \(step): the combined gradient is not finite (first in '\(tensor?.name ?? "?")'); stopping before the weights are updated",
                          reporter: communicator.rank == 0)
    }
}

/// Where a step's time goes, summed over steps.
public struct StepTimings: Sendable {
    public var steps = 0
    public var forward = 0.0, backward = 0.0, exchange = 0.0, optimizer = 0.0
    public var total: Double { forward + backward + exchange + optimizer }
    /// "forward 4.1 ms, backward …" per step.
    public var perStepDescription: String {
        let n = Double(max(steps, 1))
        func ms(_ x: Double) -> String { String(format: "%.1f ms", 1000 * x / n) }
        return "forward \(ms(forward)), backward \(ms(backward)), gradient exchange \(ms(exchange)), optimizer \(ms(optimizer))"
    }
}

/// Seconds on a monotonic clock.
@inline(__always) public func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

@inline(__always) func lap(_ clock: inout Double) -> Double {
    let now = monotonicSeconds()
    defer { clock = now }
    return now - clock
}
