// The ordinary step with the embedding table's gradient kept compact and
// factored. Only the rows of the tokens in the global batch can have
// gradient, and each such row's gradient is S_row · Wᵀ, where S_row (G wide:
// 4U = 128 for the headline LSTM, 3U for a GRU, U for a SimpleRNN) is the
// input-projection gradient summed over the row's occurrences and W the
// recurrent layer's input kernel (D = 512 wide). So the ranks first agree on the
// union of touched rows (a tiny exact allreduce of per-row marks), the fused
// backward adds each S_row at its slot at the END of the table's window of the
// arena, directly before every other parameter's gradient,
//
//     arena  [ unused table window | union S rows × G | lstm, dense, heads … ]
//                                  ^ start
//
// and ONE in-place allreduce over [start, count) combines the whole gradient
// set: 4× fewer bytes than the table rows themselves, no packing, no copies.
// The step forms dE = S·Wᵀ 256 rows at a time and the optimizer updates those rows
// while they are in cache; on P ranks each rank forms every P-th block and an
// allgather per P blocks shares them (forming a row costs ~6× receiving it),
// so every rank still applies the whole, identical step. The [union, D] table
// gradient never exists, and the table's window of the arena is never
// written beyond the S rows (its pages stay non-resident). On one rank the
// bits equal the dense step's (tested);
// across ranks dE = (Σ S)·Wᵀ rounds differently from Σ (S·Wᵀ), within float
// tolerance. Used when the table is fused into a recurrent layer, leads the arena, is
// at least G wide (else S is no smaller than the rows; the headline model's
// 512 ≥ 128) and has no penalty (whose gradient 2λw reaches every row); otherwise
// the dense step runs. Reproducible mode sums the same S rows exactly
// (ReproducibleStep.swift) and then takes the same optimizer step.

/// What the compact step needs, found once.
final class CompactTable {
    let recurrent: TokenFusable
    let offset: Int, vocabulary: Int, width: Int, sumWidth: Int
    let touched: TouchedRows
    /// Gradient offset of the first union row's S this step.
    var start: Int
    /// One block of dE rows [tableBlockRows, width] per forming rank: a round's blocks.
    private(set) var blocks: UnsafeMutablePointer<Float>
    /// How many ranks form dE blocks (the rest only receive); bounds `blocks`
    /// at `formers` × 512 KB however many ranks there are.
    var formers: Int {
        didSet {
            guard formers != oldValue else { return }
            blocks.deallocate(); blocks = .allocate(capacity: formers * tableBlockRows * width)
        }
    }
    /// The round whose blocks `blocks` holds (-1: none yet this step).
    var round = -1
    /// Seconds spent in the allgathers (exchange, not optimizer, in the timings).
    var gatherSeconds = 0.0

    init(recurrent: TokenFusable, view: TensorView, vocabulary: Int, width: Int, formers: Int) {
        self.recurrent = recurrent
        offset = view.offset; self.vocabulary = vocabulary; self.width = width
        sumWidth = recurrent.gateColumns
        touched = TouchedRows(table: view, vocabulary: vocabulary, width: width)
        start = view.offset + view.count
        self.formers = formers
        blocks = .allocate(capacity: formers * tableBlockRows * width)
    }

    deinit { blocks.deallocate() }

    var end: Int { offset + vocabulary * width }
    var optimizerTable: (offset: Int, rows: Int, width: Int) { (offset, vocabulary, width) }

    /// dE rows first..<first+count of the union, from their S rows at `g + start`,
    /// formed here.
    func tableGradient(_ g: UnsafeMutablePointer<Float>, first: Int, count: Int) -> UnsafeMutablePointer<Float> {
        recurrent.tableGradientRows(g + start + first * sumWidth, count: count, into: blocks)
        return blocks
    }

    /// The same rows, with the GEMMs shared out: every rank holds the same
    /// combined S, so blocks are dealt round-robin to the F = min(P, formers)
    /// lowest ranks, rank r forming block k·F + r of round k, and one allgather
    /// per round hands every rank the round's F blocks. Receiving a 512 KB
    /// block takes ~60 µs, forming it ~330 µs, so each forming rank forms 1/F
    /// of dE instead of all of it. A block is formed by exactly one rank, so
    /// every rank applies identical bits. Blocks must be asked for in ascending
    /// order (as `TrainingStep.run` does), starting each step with `round = -1`.
    func sharedTableGradient(_ g: UnsafeMutablePointer<Float>, first: Int, count: Int,
                             _ communicator: Communicator) throws -> UnsafeMutablePointer<Float> {
        let F = min(communicator.size, formers), B = tableBlockRows, block = first / B
        guard F > 1 else { return tableGradient(g, first: first, count: count) }
        if block / F != round {
            round = block / F
            let me = communicator.rank, mine = round * F + me, rows = touched.rows.count
            if me < F && mine * B < rows {
                recurrent.tableGradientRows(g + start + mine * B * sumWidth, count: min(B, rows - mine * B),
                                       into: blocks + me * B * width)
            }
            let clock = monotonicSeconds()
            try communicator.allGather(blocks, count: B * width, senders: F)
            gatherSeconds += monotonicSeconds() - clock
        }
        return blocks + (block % F) * B * width
    }
}

extension TrainingStep {
    /// The compact layout when this model and its L2 allow it (see the file header).
    static func compactTable(model: Model, table: (embedding: Embedding, view: TensorView)?, optimizer: Optimizer,
                             regularizers: [(view: TensorView, l1: Double, l2: Double)], formers: Int) -> CompactTable? {
        guard let table, table.embedding.fused, table.view.offset == 0, optimizer.takesRowStreamedGradient,
              !regularizers.contains(where: { $0.view.name == table.view.name }),
              case let readers = model.layers.compactMap({ $0 as? TokenFusable }).filter({ $0.embedding === table.embedding }),
              readers.count == 1, let recurrent = readers.first,  // one S per row: one fused reader
              recurrent.gateColumns <= table.embedding.dimension  // S rows no wider than table rows
        else { return nil }
        return CompactTable(recurrent: recurrent, view: table.view, vocabulary: table.embedding.vocabulary, width: table.embedding.dimension,
                            formers: formers)
    }

    /// `computeGradient` with the factored table gradient: leaves the union's
    /// combined S rows and every other parameter's combined gradient in
    /// [c.start, count) of the arena.
    func computeGradientCompactly(globalBatch indices: UnsafeBufferPointer<Int32>, data: Dataset,
                                  _ c: CompactTable) throws -> StepFigures {
        let B = indices.count
        let mine = shard(count: B, rank: communicator.rank, size: communicator.size)
        let local = UnsafeBufferPointer(rebasing: indices[mine])
        let params = model.parameters, g = params.gradients
        objective.countLabelled(indices, data: data)

        // 1. This rank's samples; the union of the table rows the whole global batch reads.
        var clock = monotonicSeconds()
        beginGradient()
        loadBatch(local, data: data, catchUp: false)
        let ids = c.recurrent.embedding!.source.tokens!, occurrences = local.count * c.recurrent.steps
        try c.touched.agree(communicator) { marks in for i in 0..<occurrences { marks[Int(ids[i])] = 1 } }
        c.start = c.end - c.touched.rows.count * c.sumWidth
        dirtyFrom = c.start
        timings.exchange += lap(&clock)
        // Every union row current now (deferred Adam steps replayed): the same work on
        // every rank, so no rank waits at the next collective for another's replays.
        let w = params.values
        for r in c.touched.rows { optimizer.catchUp(row: Int(r), parameters: w) }
        timings.forward += lap(&clock)

        // 2. Forward and backward; the table's S rows go to their slots from `start`.
        forwardAndLosses(rows: local.count, globalBatch: B)
        timings.forward += lap(&clock)
        c.recurrent.tokens!.tableRowSums = (g + c.start, UnsafePointer(c.touched.slot))
        defer { c.recurrent.tokens!.tableRowSums = nil }
        model.backward(batch: local.count)
        timings.backward += lap(&clock)

        // 3. The figures, then the ONE gradient allreduce, in place over [start, count).
        try figures.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0.baseAddress!, count: $0.count) }
        if communicator.size > 1 { try communicator.allReduceSum(g + c.start, count: params.count - c.start) }
        timings.exchange += lap(&clock)

        var result = reducedFigures { figures[$0] }
        finishFigures(&result, globalBatch: B)
        try checkLossIsFinite(result, step: optimizer.iterations + 1)
        try checkFactoredGradientIsFinite(c, step: optimizer.iterations + 1)
        timings.optimizer += lap(&clock)
        return result
    }

    /// Every gradient finite before any weight moves: S and the other parameters
    /// are read; dE = S·Wᵀ is finite when G·max|S|·max|W| stays far below
    /// Float's range, and is formed and checked block by block only otherwise.
    func checkFactoredGradientIsFinite(_ c: CompactTable, step: Int) throws {
        let g = model.parameters.gradients, n = model.parameters.count
        guard let sumBound = optimizer.magnitudeBound(g + c.start, count: c.end - c.start),
              optimizer.allFinite(g + c.end, count: n - c.end) else {
            try stopOnNonFiniteGradient(step: step, from: c.start)
        }
        if Double(c.sumWidth) * sumBound * Double(c.recurrent.largestKernelMagnitude()) < 1e37 { return }
        let rows = c.touched.rows.count
        for first in stride(from: 0, to: rows, by: tableBlockRows) {
            let count = min(tableBlockRows, rows - first)
            if !optimizer.allFinite(c.tableGradient(g, first: first, count: count), count: count * c.width) {
                throw AgreedError(message: "step \(step): the combined gradient is not finite (first in '\(deferredTable!.view.name)'); stopping before the weights are updated",
                                  reporter: communicator.rank == 0)
            }
        }
    }
}

extension TrainingStep {
    /// Which gradient path `run` takes and why, in words (`tandem summary`, `tandem bench`).
    public var pathDescription: String {
        var parts: [String] = []
        let embeddings = model.layers.compactMap { $0 as? Embedding }
        for case let f as FusedEmbeddingRecurrent in model.schedule {
            parts.append("Embedding '\(f.embedding.name)' fused into \(f.recurrent.kerasClass) '\(f.recurrent.name)' over the batch's distinct tokens (one layer)")
        }
        if microBatch != nil { parts.append("reproducible mode (exact fixed-point sums of canonical micro-batches)") }
        if usesCompactTableGradient {
            parts.append("compact, factored table gradient (touched rows' \(compact!.sumWidth)-wide S in one allreduce, dE formed in blocks)")
        } else if let table = deferredTable {
            let why: String
            if !table.embedding.fused { why = "the table is not fused into a recurrent layer" }
            else if !optimizer.takesRowStreamedGradient { why = "clipping by norm needs the whole gradient before any row is updated" }
            else if model.layers.filter({ ($0 as? TokenFusable)?.embedding === table.embedding }).count > 1 { why = "the table is fused into several recurrent layers" }
            else if regularizers.contains(where: { $0.view.name == table.view.name }) { why = "a penalty on the table reaches every row" }
            else if table.view.offset != 0 { why = "the table does not lead the parameter arena" }
            else { why = "the table is narrower than the recurrent layer's gate columns" }
            parts.append("dense gradient, touched table rows packed for the exchange (\(why))")
        } else if embeddings.count > 1 {
            parts.append("dense gradient (the embedding table is read by \(embeddings.count) calls)")
        } else {
            parts.append("dense gradient in one allreduce")
        }
        if deferredTable != nil {
            parts.append(optimizer.defersRows ? "Adam defers untouched table rows (replayed bit-identically)" : optimizer.deferralRefusal ?? "no rows deferred")
        }
        return parts.joined(separator: "; ")
    }
}
