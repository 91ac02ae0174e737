// How a step's gradient crosses ranks and reaches the optimizer, chosen once per step
// configuration (`chooseExchange`, which also says why). Four strategies, one invariant:
// after `combine` every rank holds the gradient of the GLOBAL batch's weighted total loss,
// element for element the sum of the ranks' arenas, and `update` applies the identical
// optimizer step everywhere.
//   • DenseAllReduce   the whole arena in one allreduce;
//   • PackedTableRows  an embedding table's gradient is zero outside the rows the batch
//                      reads: the ranks agree on that union, and one allreduce carries every
//                      other gradient plus just those rows (PackedTableRows.swift);
//   • OverlappedBuckets the arena in buckets whose sums start during backward as their
//                      layers finish, DDP-style (GradientBuckets.swift);
//   • FactoredTable    the table's gradient kept as G-wide S rows and formed as S·Wᵀ in
//                      blocks at update time (FactoredTable.swift).
// The optimizer runs no collective: each exchange hands it the combined gradient.

import TandemCore
import TandemKeras

/// The flat gradient arena's state between steps: what a step must clear before backward.
final class GradientArena {
    let store: ParameterStore
    /// True when the arena is all zero (it starts so; the optimizer pass leaves it so).
    var cleared = true
    /// Otherwise only [dirtyFrom, count) may hold values (a factored step writes no lower).
    var dirtyFrom = 0

    init(_ store: ParameterStore) { self.store = store }

    /// Zeroes what the previous step may have left. With `keeping` (gradient accumulation
    /// mid-window) the arena holds the window's sum, which backward adds to.
    func begin(keeping: Bool = false) {
        if !cleared && !keeping { (store.gradients + dirtyFrom).update(repeating: 0, count: store.count - dirtyFrom) }
        cleared = false
        dirtyFrom = 0
    }
}

/// What every exchange is handed at set-up: the model, the optimizer, the ranks.
struct ExchangeContext {
    let model: Model
    let optimizer: Optimizer
    let communicator: Communicator
    let arena: GradientArena
    /// The one Embedding call that reads the table, and its tensor (nil: none, or a table
    /// read by several calls, whose rows cannot be tracked per call).
    let table: (embedding: Embedding, view: TensorView)?
    /// True when an L1/L2 penalty reaches the table (its gradient then reaches every row).
    let tablePenalty: Bool
    /// Layers with collectives of their own (BatchNormalization's global statistics).
    let collectiveLayers: [CollectiveLayer]
}

/// A collective some layer made in forward or backward failed: the step stops.
func collectiveFailure(_ c: ExchangeContext) throws {
    for layer in c.collectiveLayers { if let error = layer.takeError() { throw error } }
}

protocol GradientExchange: AnyObject {
    /// Why this exchange runs, in words (`tandem summary`, `tandem bench`).
    var reason: String { get }
    /// The table rows any rank reads this step, agreed in `prepare` (nil: not tracked).
    var touched: TouchedRows? { get }
    /// Whether the rows a chunk reads must be made current when it loads (else `prepare` did it).
    var replaysRowsPerChunk: Bool { get }
    /// Before forward: clears the arena; agrees on the table rows the chunks at `chunks` of
    /// `indices` read, and makes them current.
    func prepare(_ indices: UnsafeBufferPointer<Int32>, chunks: [Range<Int>], data: Dataset, keeping: Bool) throws
    /// One chunk's backward into the arena.
    func backward(rows: Int) throws
    /// Sums the arena across ranks (in Float; reproducible mode's integers are the accumulator's).
    func combine() throws
    /// Stops every rank before any weight moves when a combined gradient is not finite.
    func checkFinite(step: Int) throws
    /// The optimizer's update from the combined gradient; leaves the arena cleared. Returns the
    /// seconds it spent exchanging (the factored table's allgathers).
    func update() throws -> Double
}

/// The exchange this configuration takes, with its reason.
func chooseExchange(
    _ c: ExchangeContext, reproducible: Bool, accumulating: Bool, overlap: Bool,
    factored: Bool, formers: Int, bucketFloats: Int
) -> GradientExchange {
    if accumulating {
        return DenseAllReduce(c, reason: "dense gradient accumulated on each rank, one allreduce per update")
    }
    if factored, let f = FactoredTable(c, formers: formers) { return f }
    let readsIDs = c.table.map { $0.embedding.source.tokens != nil } ?? false
    if overlap && !reproducible && c.communicator.size > 1 {
        return OverlappedBuckets(c, bucketFloats: bucketFloats, packTable: readsIDs)
    }
    if readsIDs {
        let why =
            factored
            ? FactoredTable.refusal(c) ?? "the factored table is off"
            : "PCGrad and the gradient checks read the dense table gradient"
        return PackedTableRows(c, reason: "dense gradient, touched table rows packed for the exchange (\(why))")
    }
    let embeddings = c.model.layers.compactMap { $0 as? Embedding }
    if embeddings.count > 1 {
        return DenseAllReduce(c, reason: "dense gradient (the embedding table is read by \(embeddings.count) calls)")
    }
    return DenseAllReduce(c, reason: "dense gradient in one allreduce")
}

/// What the dense exchanges share: a finiteness scan of the arena (of the touched table rows
/// only, when they are tracked), and the optimizer's one pass.
package class ArenaExchange {
    let c: ExchangeContext
    var touched: TouchedRows? { nil }

    init(_ c: ExchangeContext) { self.c = c }

    func backward(rows: Int) throws {
        c.model.backward(batch: rows)
        try collectiveFailure(c)
    }

    func checkFinite(step: Int) throws {
        // The optimizer's pre-step scan reads every gradient once (and, for deferred rows,
        // notes which rows it must update). A penalty on the table reaches every row.
        let g = c.model.parameters.gradients
        let rows = c.tablePenalty ? nil : touched
        let finite =
            rows.map { t in t.rows.withUnsafeBufferPointer { c.optimizer.gradientsAreFinite(g, tableRows: $0) } }
            ?? c.optimizer.gradientsAreFinite(g)
        if !finite { try stopOnNonFiniteGradient(c, step: step, from: 0) }
    }

    func update() throws -> Double {
        c.optimizer.step(parameters: c.model.parameters.values, gradients: c.model.parameters.gradients, clear: true)
        c.arena.cleared = true
        return 0
    }

    /// Makes the rows of `touched` current (deferred optimizer steps replayed): the same work
    /// on every rank, so no rank waits at the next collective for another's replays.
    func replayTouchedRows() {
        guard let touched else { return }
        let w = c.model.parameters.values
        for r in touched.rows { c.optimizer.catchUp(row: Int(r), parameters: w) }
    }
}

/// The whole arena in one allreduce.
final class DenseAllReduce: ArenaExchange, GradientExchange {
    let reason: String
    var replaysRowsPerChunk: Bool { true }

    init(_ c: ExchangeContext, reason: String) {
        self.reason = reason
        super.init(c)
    }

    func prepare(_ indices: UnsafeBufferPointer<Int32>, chunks: [Range<Int>], data: Dataset, keeping: Bool) throws {
        c.arena.begin(keeping: keeping)
    }

    func combine() throws {
        try c.communicator.allReduceSum(c.model.parameters.gradients, count: c.model.parameters.count)
    }
}

/// Names the tensor of the first non-finite gradient at or after `from` and stops every rank.
func stopOnNonFiniteGradient(_ c: ExchangeContext, step: Int, from: Int) throws -> Never {
    let store = c.model.parameters
    let g = store.gradients
    let first = (from..<store.count).first { !g[$0].isFinite } ?? from
    // In the factored layout the table's rows sit at the end of its own window.
    let tensor = store.tensors.first { $0.offset <= first && first < $0.offset + $0.count }
    throw AgreedError(
        message:
            "step \(step): the combined gradient is not finite (first in '\(tensor?.name ?? "?")'); stopping before the weights are updated",
        reporter: c.communicator.rank == 0)
}
