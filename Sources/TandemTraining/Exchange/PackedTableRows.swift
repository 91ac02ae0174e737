// Sending only what is non-zero. An embedding table's gradient is zero except
// in the rows of the tokens a batch holds, so the ranks first agree on the
// union of touched rows (a tiny, exact allreduce of per-row marks), then ONE
// allreduce carries every other parameter's gradient and just those rows.
// Rows outside the union are zero on every rank, so the result is the full
// combined gradient. Used by the ordinary step (Float) and, with integers, by
// reproducible mode's fixed-point accumulator.

import TandemCore
import TandemKeras

/// The dense table gradient, its touched rows packed for the exchange.
final class PackedTableRows: ArenaExchange, GradientExchange {
    let reason: String
    let sparse: SparseGradientExchange
    override var touched: TouchedRows? { sparse.touched }
    var replaysRowsPerChunk: Bool { false }

    init(_ c: ExchangeContext, reason: String) {
        self.reason = reason
        let t = c.table!
        sparse = SparseGradientExchange(
            parameters: c.model.parameters.count, table: t.view,
            vocabulary: t.embedding.vocabulary, width: t.embedding.dimension)
        super.init(c)
    }

    func prepare(_ indices: UnsafeBufferPointer<Int32>, chunks: [Range<Int>], data: Dataset, keeping: Bool) throws {
        c.arena.begin()
        try sparse.touched.agree(
            onRowsOf: c.table!.embedding, read: indices, chunks: chunks, data: data, model: c.model,
            communicator: c.communicator)
        replayTouchedRows()
    }

    func combine() throws {
        if c.communicator.size > 1 { try sparse.allReduceSum(c.model.parameters.gradients, c.communicator) }
    }
}

/// The table rows any rank touches this step, each with a slot in a packed
/// buffer, in ascending row order.
final class TouchedRows {
    let vocabulary: Int, width: Int, tableOffset: Int, tableCount: Int
    /// Pack slot of each row this step, or −1.
    let slot: UnsafeMutablePointer<Int32>
    /// Per-row marks, summed over ranks (small whole numbers: exact in Float).
    let marks: UnsafeMutablePointer<Float>
    private(set) var rows: [Int32] = []

    init(table: TensorView, vocabulary: Int, width: Int) {
        self.vocabulary = vocabulary
        self.width = width
        tableOffset = table.offset
        tableCount = table.count
        slot = .allocate(capacity: vocabulary)
        slot.initialize(repeating: -1, count: vocabulary)
        marks = .allocate(capacity: vocabulary)
        marks.initialize(repeating: 0, count: vocabulary)
    }

    deinit {
        slot.deallocate()
        marks.deallocate()
    }

    /// Every rank holds the union of the table rows `embedding` reads for the rows at `chunks`
    /// of `indices` on any rank (the ids read from the dataset, before any is loaded).
    func agree(
        onRowsOf embedding: Embedding, read indices: UnsafeBufferPointer<Int32>, chunks: [Range<Int>],
        data: Dataset, model: Model, communicator: Communicator
    ) throws {
        guard let input = model.inputs.firstIndex(where: { $0 === embedding.source }) else { return }
        let array = data.inputs[input]
        let width = embedding.source.width
        if ids.count != width { ids = [Int32](repeating: 0, count: width) }
        try agree(communicator) { marks in
            ids.withUnsafeMutableBufferPointer { ids in
                for chunk in chunks {
                    for position in chunk {
                        _ = array.readTokens(row: Int(indices[position]), limit: Int(Int32.max), into: ids.baseAddress!)
                        for id in ids { marks[Int(id)] = 1 }
                    }
                }
            }
        }
    }
    private var ids: [Int32] = []

    /// `mark` sets marks[id] = 1 for each row this rank touches; every rank then holds the union.
    func agree(_ communicator: Communicator, mark: (UnsafeMutablePointer<Float>) -> Void) throws {
        for r in rows { slot[Int(r)] = -1 }
        rows.removeAll(keepingCapacity: true)
        marks.update(repeating: 0, count: vocabulary)
        mark(marks)
        try communicator.allReduceSum(marks, count: vocabulary)
        for r in 0..<vocabulary where marks[r] > 0 {
            slot[r] = Int32(rows.count)
            rows.append(Int32(r))
        }
    }
}

/// The ordinary step's exchange: [non-table gradients | touched rows] in one Float allreduce.
final class SparseGradientExchange {
    let touched: TouchedRows
    private let parameterCount: Int
    /// Sized for the largest pack that is ever sent (under half the table), on first use.
    private lazy var pack: UnsafeMutablePointer<Float> = {
        let n = parameterCount - touched.tableCount + (touched.vocabulary / 2) * touched.width
        let p = UnsafeMutablePointer<Float>.allocate(capacity: n)
        p.initialize(repeating: 0, count: n)
        packAllocated = true
        return p
    }()
    private var packAllocated = false

    init(parameters: Int, table: TensorView, vocabulary: Int, width: Int) {
        touched = TouchedRows(table: table, vocabulary: vocabulary, width: width)
        parameterCount = parameters
    }

    deinit { if packAllocated { pack.deallocate() } }

    /// Allreduces `g` (the whole arena) by packing what may be non-zero. When
    /// most rows are touched the copies cost more than they save (measured:
    /// shared memory moves 20 MB as fast as it copies it), so then it sends the
    /// arena as it is.
    func allReduceSum(_ g: UnsafeMutablePointer<Float>, _ communicator: Communicator) throws {
        let t = touched
        let head = t.tableOffset
        let tail = t.tableOffset + t.tableCount
        guard 2 * t.rows.count < t.vocabulary else {
            try communicator.allReduceSum(g, count: parameterCount)
            return
        }
        let afterTail = parameterCount - tail
        pack.update(from: g, count: head)
        (pack + head).update(from: g + tail, count: afterTail)
        let rows = packRows(of: g + head, into: pack + head + afterTail)
        try communicator.allReduceSum(pack, count: head + afterTail + rows)
        g.update(from: pack, count: head)
        (g + tail).update(from: pack + head, count: afterTail)
        unpackRows(from: pack + head + afterTail, into: g + head)
    }

    /// The table's part alone (the overlapped exchange has sent the rest, GradientBuckets.swift):
    /// its touched rows packed, or the whole table when most rows are touched.
    func allReduceTable(_ g: UnsafeMutablePointer<Float>, _ communicator: Communicator) throws {
        let t = touched
        let table = g + t.tableOffset
        guard 2 * t.rows.count < t.vocabulary else {
            try communicator.allReduceSum(table, count: t.tableCount)
            return
        }
        try communicator.allReduceSum(pack, count: packRows(of: table, into: pack))
        unpackRows(from: pack, into: table)
    }

    /// Copies the touched rows of `table` to `to`, in order; returns the floats copied.
    private func packRows(of table: UnsafePointer<Float>, into to: UnsafeMutablePointer<Float>) -> Int {
        let w = touched.width
        for (k, r) in touched.rows.enumerated() { (to + k * w).update(from: table + Int(r) * w, count: w) }
        return touched.rows.count * w
    }

    private func unpackRows(from packed: UnsafePointer<Float>, into table: UnsafeMutablePointer<Float>) {
        let w = touched.width
        for (k, r) in touched.rows.enumerated() { (table + Int(r) * w).update(from: packed + k * w, count: w) }
    }
}
