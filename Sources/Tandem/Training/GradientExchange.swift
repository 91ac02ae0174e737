// Sending only what is non-zero. An embedding table's gradient is zero except
// in the rows of the tokens a batch holds, so the ranks first agree on the
// union of touched rows (a tiny, exact allreduce of per-row marks), then ONE
// allreduce carries every other parameter's gradient and just those rows.
// Rows outside the union are zero on every rank, so the result is the full
// combined gradient. Used by the ordinary step (Float) and, with integers, by
// the reproducible step.

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
        self.vocabulary = vocabulary; self.width = width
        tableOffset = table.offset; tableCount = table.count
        slot = .allocate(capacity: vocabulary); slot.initialize(repeating: -1, count: vocabulary)
        marks = .allocate(capacity: vocabulary); marks.initialize(repeating: 0, count: vocabulary)
    }

    deinit { slot.deallocate(); marks.deallocate() }

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
        let t = touched, head = t.tableOffset, tail = t.tableOffset + t.tableCount, w = t.width
        guard 2 * t.rows.count < t.vocabulary else {
            try communicator.allReduceSum(g, count: parameterCount)
            return
        }
        let afterTail = parameterCount - tail
        pack.update(from: g, count: head)
        (pack + head).update(from: g + tail, count: afterTail)
        let rowBase = pack + head + afterTail
        for (k, r) in t.rows.enumerated() { (rowBase + k * w).update(from: g + head + Int(r) * w, count: w) }
        try communicator.allReduceSum(pack, count: head + afterTail + t.rows.count * w)
        g.update(from: pack, count: head)
        (g + tail).update(from: pack + head, count: afterTail)
        for (k, r) in t.rows.enumerated() { (g + head + Int(r) * w).update(from: rowBase + k * w, count: w) }
    }

    /// The table's part alone (the overlapped exchange has sent the rest, GradientBuckets.swift):
    /// its touched rows packed, or the whole table when most rows are touched.
    func allReduceTable(_ g: UnsafeMutablePointer<Float>, _ communicator: Communicator) throws {
        let t = touched, table = g + t.tableOffset, w = t.width
        guard 2 * t.rows.count < t.vocabulary else {
            try communicator.allReduceSum(table, count: t.tableCount)
            return
        }
        for (k, r) in t.rows.enumerated() { (pack + k * w).update(from: table + Int(r) * w, count: w) }
        try communicator.allReduceSum(pack, count: t.rows.count * w)
        for (k, r) in t.rows.enumerated() { (table + Int(r) * w).update(from: pack + k * w, count: w) }
    }
}
