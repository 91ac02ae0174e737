// The gradient exchange overlapped with the backward pass, DDP-style; the plain
// exchange it must equal is the one allreduce after backward (TrainingStep).
// Backward walks the schedule from the last layer, so a parameter tensor's gradient
// is final once every layer that reads it has run (for a shared layer: its first
// call). Tensors are grouped, in the order they become final, into buckets of at
// least `bucketFloats`; a bucket's sum is started, without waiting, right after the
// layer that completes it, and MPI is given a chance to move it after every later
// layer. Every rank builds the same plan from the same model, so every rank starts
// the same sums in the same order (the Communicator invariant). Sums are element-
// wise, so buckets change no value: at 2 ranks a + b is a + b, and the thread
// communicator sums in rank order at any rank count (tested bit for bit).

import TandemCore
import TandemKeras

/// The dense exchange overlapped with backward: the buckets' sums, then the table's touched
/// rows (packed, when the table reads token ids) after them.
package final class OverlappedBuckets: ArenaExchange, GradientExchange {
    let buckets: GradientBuckets
    let sparse: SparseGradientExchange?
    override var touched: TouchedRows? { sparse?.touched }
    var replaysRowsPerChunk: Bool { sparse == nil }
    var reason: String {
        "dense gradient, its exchange overlapped with backward in \(buckets.bucketCount) buckets (--overlap-exchange)"
    }

    init(_ c: ExchangeContext, bucketFloats: Int, packTable: Bool) {
        // The table the packed exchange sends by touched rows stays out of the buckets.
        let table = packTable ? c.table : nil
        sparse = table.map {
            SparseGradientExchange(
                parameters: c.model.parameters.count, table: $0.view,
                vocabulary: $0.embedding.vocabulary, width: $0.embedding.dimension)
        }
        buckets = GradientBuckets(
            model: c.model, excluding: table.map { $0.view.offset..<($0.view.offset + $0.view.count) },
            bucketFloats: bucketFloats)
        super.init(c)
    }

    func prepare(_ indices: UnsafeBufferPointer<Int32>, chunks: [Range<Int>], data: Dataset, keeping: Bool) throws {
        c.arena.begin()
        if let sparse {
            try sparse.touched.agree(
                onRowsOf: c.table!.embedding, read: indices, chunks: chunks, data: data, model: c.model,
                communicator: c.communicator)
            replayTouchedRows()
        }
    }

    /// Each bucket's sum starts as soon as the layers that write it are done.
    override func backward(rows: Int) throws {
        let g = c.model.parameters.gradients
        do {
            try c.model.backward(batch: rows) { k in try buckets.layerFinished(k, gradients: g, c.communicator) }
            try collectiveFailure(c)
        } catch {
            try? c.communicator.waitForSums()
            throw error
        }
    }

    func combine() throws {
        try sparse?.allReduceTable(c.model.parameters.gradients, c.communicator)
        try c.communicator.waitForSums()
    }
}

package final class GradientBuckets {
    /// DDP starts with a 1 MB bucket; these models' layers are 0.1–3 MB of gradient.
    package static let defaultBucketFloats = 1 << 16
    /// Arena ranges whose sums start after `schedule[k]`'s backward, by k.
    package let starts: [[Range<Int>]]
    /// How many buckets the plan has (for the start-up report and tests).
    package let bucketCount: Int

    /// `excluding`: the arena range another exchange sends (the dense table's, by touched rows).
    package init(model: Model, excluding: Range<Int>?, bucketFloats: Int) {
        let schedule = model.schedule
        var finalAt: [String: Int] = [:]
        for (k, layer) in schedule.enumerated() {
            for spec in layer.parameterSpecs { finalAt[spec.name] = min(finalAt[spec.name] ?? k, k) }
        }
        var byLayer = [[Range<Int>]](repeating: [], count: schedule.count)
        for t in model.parameters.tensors where t.count > 0 {
            let range = t.offset..<(t.offset + t.count)
            if let excluding, excluding.overlaps(range) { continue }
            // A tensor no scheduled layer names is sent with the last bucket.
            byLayer[finalAt[t.name] ?? 0].append(range)
        }
        var starts = [[Range<Int>]](repeating: [], count: schedule.count)
        var pending: [Range<Int>] = []
        var floats = 0
        var buckets = 0
        for k in schedule.indices.reversed() {
            pending += byLayer[k]
            floats += byLayer[k].reduce(0) { $0 + $1.count }
            guard floats > 0, floats >= bucketFloats || k == 0 else { continue }
            starts[k] = GradientBuckets.coalesced(pending)
            pending = []
            floats = 0
            buckets += 1
        }
        self.starts = starts
        bucketCount = buckets
    }

    /// Adjacent tensors as one range: one sum each.
    private static func coalesced(_ ranges: [Range<Int>]) -> [Range<Int>] {
        var merged: [Range<Int>] = []
        for r in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = merged.last, last.upperBound == r.lowerBound {
                merged[merged.count - 1] = last.lowerBound..<r.upperBound
            } else {
                merged.append(r)
            }
        }
        return merged
    }

    /// After `schedule[k]`'s backward: starts the buckets it completed, moves the others on.
    func layerFinished(_ k: Int, gradients g: UnsafeMutablePointer<Float>, _ communicator: Communicator) throws {
        for r in starts[k] { try communicator.startAllReduceSum(g + r.lowerBound, count: r.count) }
        try communicator.progressSums()
    }
}
