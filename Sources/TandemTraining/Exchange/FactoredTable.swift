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
// while they are in cache; on P ranks the blocks are dealt to F = min(P, formers)
// ranks, and an allgather per F blocks shares them (forming a row costs ~6×
// receiving it), so every rank still applies the whole, identical step. The [union, D] table
// gradient never exists, and the table's window of the arena is never
// written beyond the S rows (its pages stay non-resident). On one rank the
// bits equal the dense step's (tested);
// across ranks dE = (Σ S)·Wᵀ rounds differently from Σ (S·Wᵀ), within float
// tolerance. Used when the table is fused into a recurrent layer, leads the arena, is
// at least G wide (else S is no smaller than the rows; the headline model's
// 512 ≥ 128) and has no penalty (whose gradient 2λw reaches every row); otherwise
// the dense step runs. Reproducible mode sums the same S rows exactly
// (FixedPointAccumulator.swift) and then takes the same optimizer step.

import TandemCore
import TandemKeras

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
            blocks.deallocate()
            blocks = .allocate(capacity: formers * tableBlockRows * width)
        }
    }
    /// The round whose blocks `blocks` holds (-1: none yet this step).
    var round = -1
    /// Seconds spent in the allgathers (exchange, not optimizer, in the timings).
    var gatherSeconds = 0.0

    init(recurrent: TokenFusable, view: TensorView, vocabulary: Int, width: Int, formers: Int) {
        self.recurrent = recurrent
        offset = view.offset
        self.vocabulary = vocabulary
        self.width = width
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
    /// order (as `FactoredTable.update` does), starting each step with `round = -1`.
    func sharedTableGradient(
        _ g: UnsafeMutablePointer<Float>, first: Int, count: Int,
        _ communicator: Communicator
    ) throws -> UnsafeMutablePointer<Float> {
        let F = min(communicator.size, formers)
        let B = tableBlockRows
        let block = first / B
        guard F > 1 else { return tableGradient(g, first: first, count: count) }
        if block / F != round {
            round = block / F
            let me = communicator.rank
            let mine = round * F + me
            let rows = touched.rows.count
            if me < F && mine * B < rows {
                recurrent.tableGradientRows(
                    g + start + mine * B * sumWidth, count: min(B, rows - mine * B),
                    into: blocks + me * B * width)
            }
            let clock = monotonicSeconds()
            try communicator.allGather(blocks, count: B * width, senders: F)
            gatherSeconds += monotonicSeconds() - clock
        }
        return blocks + (block % F) * B * width
    }
}

/// The exchange of the factored layout: the union's S rows and every other gradient in one
/// allreduce over [start, count); the table's rows formed and applied block by block.
final class FactoredTable: GradientExchange {
    let c: ExchangeContext
    let table: CompactTable
    var touched: TouchedRows? { table.touched }
    var replaysRowsPerChunk: Bool { false }
    var reason: String {
        "compact, factored table gradient (touched rows' \(table.sumWidth)-wide S in one allreduce, dE formed in blocks)"
    }

    /// Nil when this model, optimizer and penalties do not allow the layout (`refusal` says why).
    init?(_ c: ExchangeContext, formers: Int) {
        guard Self.refusal(c) == nil, let t = c.table,
            let recurrent = c.model.layers.compactMap({ $0 as? TokenFusable }).first(where: {
                $0.embedding === t.embedding
            })
        else { return nil }
        self.c = c
        table = CompactTable(
            recurrent: recurrent, view: t.view, vocabulary: t.embedding.vocabulary, width: t.embedding.dimension,
            formers: formers)
    }

    /// Why the factored layout cannot be used (nil: it can; see the file header).
    static func refusal(_ c: ExchangeContext) -> String? {
        guard let t = c.table else { return "no embedding table read by one call" }
        let readers = c.model.layers.compactMap { $0 as? TokenFusable }.filter { $0.embedding === t.embedding }
        if !t.embedding.fused || readers.isEmpty { return "the table is not fused into a recurrent layer" }
        if let why = c.optimizer.rowStreamRefusal { return why }
        if readers.count > 1 { return "the table is fused into several recurrent layers" }  // one S per row: one reader
        if c.tablePenalty { return "a penalty on the table reaches every row" }
        if t.view.offset != 0 { return "the table does not lead the parameter arena" }
        if readers[0].gateColumns > t.embedding.dimension {
            return "the table is narrower than the recurrent layer's gate columns"
        }
        return nil
    }

    func prepare(_ indices: UnsafeBufferPointer<Int32>, chunks: [Range<Int>], data: Dataset, keeping: Bool) throws {
        c.arena.begin()
        try table.touched.agree(
            onRowsOf: c.table!.embedding, read: indices, chunks: chunks, data: data, model: c.model,
            communicator: c.communicator)
        table.start = table.end - table.touched.rows.count * table.sumWidth
        c.arena.dirtyFrom = table.start
        // Every union row current now (deferred Adam steps replayed): the same work on
        // every rank, so no rank waits at the next collective for another's replays.
        let w = c.model.parameters.values
        for r in table.touched.rows { c.optimizer.catchUp(row: Int(r), parameters: w) }
    }

    /// Backward with the table's S rows going to their slots from `start`.
    func backward(rows: Int) throws {
        let tokens = table.recurrent.tokens!
        tokens.tableRowSums = (c.model.parameters.gradients + table.start, UnsafePointer(table.touched.slot))
        defer { tokens.tableRowSums = nil }
        c.model.backward(batch: rows)
        try collectiveFailure(c)
    }

    /// The ONE gradient allreduce, in place over [start, count).
    func combine() throws {
        let store = c.model.parameters
        if c.communicator.size > 1 {
            try c.communicator.allReduceSum(store.gradients + table.start, count: store.count - table.start)
        }
    }

    /// Every gradient finite before any weight moves: S and the other parameters are read;
    /// dE = S·Wᵀ is finite when G·max|S|·max|W| stays far below Float's range, and is formed
    /// and checked block by block only otherwise.
    func checkFinite(step: Int) throws {
        let store = c.model.parameters
        let g = store.gradients
        let n = store.count
        let t = table
        guard let sumBound = c.optimizer.magnitudeBound(g + t.start, count: t.end - t.start),
            c.optimizer.allFinite(g + t.end, count: n - t.end)
        else {
            try stopOnNonFiniteGradient(c, step: step, from: t.start)
        }
        if Double(t.sumWidth) * sumBound * Double(t.recurrent.largestKernelMagnitude()) < 1e37 { return }
        let rows = t.touched.rows.count
        for first in stride(from: 0, to: rows, by: tableBlockRows) {
            let count = min(tableBlockRows, rows - first)
            if !c.optimizer.allFinite(t.tableGradient(g, first: first, count: count), count: count * t.width) {
                throw AgreedError(
                    message:
                        "step \(step): the combined gradient is not finite (first in '\(c.table!.view.name)'); stopping before the weights are updated",
                    reporter: c.communicator.rank == 0)
            }
        }
    }

    /// The table first, block by block: each block's dE is formed here (and shared out across
    /// ranks) while the recurrent kernel is still the pre-step one; then every other parameter.
    func update() throws -> Double {
        let store = c.model.parameters
        let g = store.gradients
        let t = table
        t.round = -1
        t.gatherSeconds = 0
        var step = c.optimizer.beginTableStep(table: t.optimizerTable)
        let rows = t.touched.rows.count
        try t.touched.rows.withUnsafeBufferPointer { touched in
            for first in stride(from: 0, to: rows, by: tableBlockRows) {
                let count = min(tableBlockRows, rows - first)
                let dE = try t.sharedTableGradient(g, first: first, count: count, c.communicator)
                c.optimizer.applyTableRows(
                    &step, rows: UnsafeBufferPointer(rebasing: touched[first..<(first + count)]),
                    gradients: dE, parameters: store.values)
            }
        }
        c.optimizer.finishTableStep(&step, parameters: store.values, gradients: g, clear: true)
        (g + t.start).update(repeating: 0, count: t.end - t.start)  // the S rows, for the next step
        c.arena.cleared = true
        return t.gatherSeconds
    }
}
