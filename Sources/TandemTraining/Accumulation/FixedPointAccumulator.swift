// Reproducible mode: the same bits for any number of ranks.
//  • A global batch is cut into canonical micro-batches of m samples by global
//    position; rank r takes the r-th contiguous run of whole micro-batches. A
//    micro-batch's float gradient is computed with the same code and shapes
//    wherever it runs, so it is the same bits on every rank count.
//  • Micro-batch gradients are summed EXACTLY: each value is rounded once to
//    64-bit fixed point with a scale every rank agrees on, added as integers,
//    and the integers are allreduced with SUM (integer addition is associative,
//    so MPI's order does not matter), then converted back to Float32 once.
//  • The scale comes from a bound on |g|: 4 × the previous step's largest
//    magnitude (an order-free MAX). A step whose gradient exceeds the bound is
//    redone with a larger one — a decision every rank count takes alike.
//  • Only the rows of the embedding table that some micro-batch touched are
//    packed (their union is agreed first by the exchange, also exactly), plus every
//    other parameter and the step's figures: ONE integer allreduce per step.
//  • With the factored table (FactoredTable.swift) the packed rows are the S rows
//    (G wide, not D): the exact sum of S is the same on every rank count, so the
//    dE = S·Wᵀ blocks formed from it are the same bits too, and the fixed-point
//    pass, the exchange and the accumulator are smaller.

import CKernels
import Foundation
import TandemCore
import TandemKeras

/// Fixed-point scale for the figures (losses, metric sums): 2^24, resolution 6e-8 per micro-batch.
private let figureScale = 16_777_216.0

final class FixedPointAccumulator: GradientAccumulator {
    /// Where the table's gradient sits in the arena, which decides what is packed.
    private enum Layout {
        /// No tracked table: the whole arena.
        case whole
        /// Dense table rows, the exchange's touched union packed after every other parameter.
        case rows(TouchedRows, table: Embedding)
        /// The factored table's S rows, [start, count) of the arena.
        case factored(CompactTable)
    }

    private unowned let step: TrainingStep
    let microBatch: Int
    private let layout: Layout
    private let tableOffset: Int, tableCount: Int, width: Int, restCount: Int, figureCount: Int
    /// Per-row stamps: each row is converted once per micro-batch.
    private let stamp: UnsafeMutablePointer<Int32>
    private var stampValue: Int32 = 0
    /// [rest of the parameters | union rows × width | figures], or with the factored table
    /// the arena's [start, parameters) then the figures.
    private let accumulator: UnsafeMutablePointer<Int64>
    /// This step's scale and bound, and the pass's verdicts.
    private var scale = 1.0, bound = 1.0, attempt = 0
    private var largest: Float = 0, flags: Int32 = 0, nonFiniteLoss = false

    init(step: TrainingStep, exchange: GradientExchange, microBatch: Int) {
        self.step = step
        self.microBatch = microBatch
        let store = step.model.parameters
        if let f = exchange as? FactoredTable {
            layout = .factored(f.table)
        } else if let touched = exchange.touched, let table = step.exchangeContext.table {
            layout = .rows(touched, table: table.embedding)
        } else {
            layout = .whole
        }
        if case .rows(let t, _) = layout {
            tableOffset = t.tableOffset
            tableCount = t.tableCount
            width = t.width
        } else {
            tableOffset = 0
            tableCount = 0
            width = 0
        }
        restCount = store.count - tableCount
        figureCount = step.objective.layout.count
        let vocabulary = step.exchangeContext.table?.embedding.vocabulary ?? 0
        stamp = .allocate(capacity: max(vocabulary, 1))
        stamp.initialize(repeating: 0, count: max(vocabulary, 1))
        // Sized for every row, but only the packed prefix is ever written: calloc's
        // zero pages make the rest cost no memory until a step touches that many rows.
        accumulator = calloc(restCount + tableCount + figureCount, MemoryLayout<Int64>.stride)!
            .bindMemory(to: Int64.self, capacity: restCount + tableCount + figureCount)
    }

    deinit {
        stamp.deallocate()
        free(accumulator)
    }

    private var packedCount: Int {
        switch layout {
        case .whole: return restCount + figureCount
        case .rows(let t, _): return restCount + t.rows.count * width + figureCount
        case .factored(let c): return c.end - c.start + (step.model.parameters.count - c.end) + figureCount
        }
    }
    private var figures: UnsafeMutablePointer<Int64> { accumulator + packedCount - figureCount }

    /// The global batch's micro-batch count this step.
    private var microBatches = 0

    func chunks(globalBatch B: Int) -> [Range<Int>] {
        let m = microBatch
        microBatches = (B + m - 1) / m
        let mine = shard(count: microBatches, rank: step.communicator.rank, size: step.communicator.size)
        return mine.map { k in (k * m)..<min((k + 1) * m, B) }
    }

    func begin(_ indices: UnsafeBufferPointer<Int32>, chunks: [Range<Int>], data: Dataset) throws {
        attempt = 0
        try batchNormalizationStatistics(indices, chunks: chunks, data: data)
    }

    func startPass() {
        attempt += 1
        precondition(attempt <= 4, "fixed-point bound did not converge")
        bound = max(step.gradientBound ?? 1.0, 1e-30)
        // scale = 2^s with micro · bound · scale ≤ 2^62: no sum can overflow Int64.
        let micro = Double(max(microBatches, 1))
        let s = min(200, Int((62 - log2(micro) - log2(bound)).rounded(.down)))
        scale = pow(2.0, Double(s))
        accumulator.update(repeating: 0, count: packedCount)
        largest = 0
        flags = 0
        nonFiniteLoss = false
    }
    func addFigures(_ f: UnsafePointer<Double>) {
        let l = step.objective.layout
        let tail = figures
        for h in 0..<l.heads {
            let loss = f[l.loss(h)]
            if loss.isFinite && abs(loss) < 1e11 {
                tail[l.loss(h)] &+= Int64((loss * figureScale).rounded())
            } else {
                nonFiniteLoss = true
            }
            tail[l.correct(h)] &+= Int64((f[l.correct(h)] * figureScale).rounded())  // accuracy can be fractional
        }
        tail[l.samples] &+= Int64(f[l.samples])
        // Metric sums in the same fixed point: counts are exact, means to 2^-24 per micro-batch.
        for k in l.metrics..<l.count { tail[k] &+= Int64((f[k] * figureScale).rounded()) }
    }

    /// Adds the micro-batch gradient now in the arena to the accumulator as round(g · scale),
    /// and zeroes the arena for the next micro-batch (the C kernel does both).
    func addGradient() {
        let store = step.model.parameters
        let g = store.gradients
        let a = accumulator
        func convert(_ src: UnsafeMutablePointer<Float>, _ n: Int, into dst: UnsafeMutablePointer<Int64>) {
            // round-half-even (rint) to the fixed-point grid.
            dst.withMemoryRebound(to: CLongLong.self, capacity: n) {
                tandem_fixed_accumulate(src, $0, n, scale, bound, &largest, &flags)
            }
        }
        /// Each table row this micro-batch read, once: `body(id)`.
        func eachRowRead(_ embedding: Embedding, _ body: (Int) -> Void) {
            guard let ids = embedding.source.tokens else { return }
            stampValue &+= 1
            for i in 0..<(step.batch.rows * embedding.source.width) {
                let id = Int(ids[i])
                guard stamp[id] != stampValue else { continue }
                stamp[id] = stampValue
                body(id)
            }
        }
        switch layout {
        case .whole:
            convert(g, store.count, into: a)
        case .rows(let t, let embedding):
            let tableEnd = tableOffset + tableCount
            convert(g, tableOffset, into: a)
            convert(g + tableEnd, store.count - tableEnd, into: a + tableOffset)
            // Only rows this micro-batch touched can hold gradient.
            eachRowRead(embedding) { id in
                convert(g + tableOffset + id * width, width, into: a + restCount + Int(t.slot[id]) * width)
            }
        case .factored(let c):
            // [start, count) of the arena: the S rows this micro-batch touched, and the rest.
            convert(g + c.end, store.count - c.end, into: a + (c.end - c.start))
            eachRowRead(c.recurrent.embedding!) { id in
                let slot = Int(c.touched.slot[id])
                convert(g + c.start + slot * c.sumWidth, c.sumWidth, into: a + slot * c.sumWidth)
            }
        }
    }

    func passIsComplete() throws -> Bool {
        var verdict = [Double(largest), flags & 1 != 0 ? 1 : 0, (flags & 2 != 0 || nonFiniteLoss) ? 1 : 0]
        try step.communicator.allReduceMax(&verdict)
        if verdict[2] > 0 {
            throw AgreedError(
                message:
                    "step \(step.optimizer.iterations + 1): the loss or the gradient is not finite; stopping before the weights are updated",
                reporter: step.communicator.rank == 0)
        }
        // The next step's bound: 4 × this step's largest |g| (the same on every rank count).
        step.gradientBound = max(4 * verdict[0], 1e-30)
        return verdict[1] == 0
    }

    func combineFigures() throws {
        throw TandemError.usage(
            "reproducible mode sums figures and gradient together (gradient accumulation is not available)")
    }

    /// The ONE exchange: parameters, touched rows and figures, as exact integers; then the
    /// sums back into the arena as Float32, once.
    func combine(_ exchange: GradientExchange) throws {
        figures[step.objective.layout.stopFlag] = stopRequestedLocally ? 1 : 0
        try step.communicator.allReduceSum(accumulator, count: packedCount)
        let store = step.model.parameters
        let g = store.gradients
        let a = accumulator
        switch layout {
        case .whole:
            for i in 0..<store.count { g[i] = Float(Double(a[i]) / scale) }
        case .rows(let t, _):
            for i in 0..<tableOffset { g[i] = Float(Double(a[i]) / scale) }
            let tableEnd = tableOffset + tableCount
            for i in tableEnd..<store.count { g[i] = Float(Double(a[i - tableCount]) / scale) }
            for (slot, row) in t.rows.enumerated() {
                let to = g + tableOffset + Int(row) * width
                let from = a + restCount + slot * width
                for j in 0..<width { to[j] = Float(Double(from[j]) / scale) }
            }
        case .factored(let c):
            for i in 0..<(store.count - c.start) { g[c.start + i] = Float(Double(a[i]) / scale) }
        }
    }

    func figure(_ i: Int) -> Double {
        Double(figures[i]) / (step.objective.layout.isCount(i) ? 1 : figureScale)
    }

    /// Reproducible mode with BatchNormalization: its statistics span the global batch,
    /// which the canonical micro-batches split. Before the step's own pass, for each
    /// BatchNormalization layer in forward order, every rank runs its micro-batches up to
    /// that layer and takes each one's Σx, Σx²; for each in backward order, the full
    /// forward and the backward down to it give each micro-batch's Σdy, Σdy·x̂. Each sum
    /// is gathered by micro-batch (a zero-padded allreduce: exact) and added in micro-batch
    /// order on every rank, so the statistics are the same bits for any rank count. The
    /// layers then use them without collectives of their own; parameter gradients of these
    /// passes are discarded.
    private func batchNormalizationStatistics(
        _ indices: UnsafeBufferPointer<Int32>, chunks: [Range<Int>],
        data: Dataset
    ) throws {
        let model = step.model
        let layers = model.schedule.enumerated().compactMap { entry in
            (entry.element as? BatchNormalization).flatMap { $0.frozen ? nil : (index: entry.offset, bn: $0) }
        }
        guard !layers.isEmpty else { return }
        let B = indices.count
        let m = microBatch
        let first = (chunks.first?.lowerBound ?? 0) / m
        var scratch = [Double](repeating: 0, count: figureCount)
        func load(_ chunk: Range<Int>) -> Int {
            step.load(UnsafeBufferPointer(rebasing: indices[chunk]), data: data, position: chunk.lowerBound)
            return chunk.count
        }
        /// `width` sums of every micro-batch, gathered, then added in micro-batch order.
        func gathered(_ width: Int, _ fill: (Range<Int>, UnsafeMutablePointer<Double>) -> Void) throws -> [Double] {
            var partial = [Double](repeating: 0, count: microBatches * width)
            partial.withUnsafeMutableBufferPointer { p in
                for (k, chunk) in chunks.enumerated() { fill(chunk, p.baseAddress! + (first + k) * width) }
            }
            try partial.withUnsafeMutableBufferPointer {
                try step.communicator.allReduceSum($0.baseAddress!, count: $0.count)
            }
            var total = [Double](repeating: 0, count: width)
            for k in 0..<microBatches { for j in 0..<width { total[j] += partial[k * width + j] } }
            return total
        }
        for (_, bn) in layers { bn.givenStatistics = true }
        for (index, bn) in layers {
            let totals = try gathered(2 * bn.output.features) { chunk, out in
                let n = load(chunk)
                model.forward(batch: n, training: true, through: index - 1)
                bn.inputSums(batch: n, into: out)
            }
            bn.setStatistics(totals, count: Double(B * bn.rowsPerSample))
        }
        for (index, bn) in layers.reversed() {
            let totals = try gathered(2 * bn.output.features) { chunk, out in
                let n = load(chunk)
                model.forward(batch: n, training: true)
                scratch.withUnsafeMutableBufferPointer { f in
                    f.update(repeating: 0)
                    step.objective.addLosses(rows: n, globalBatch: B, writeGradient: true, into: f.baseAddress!)
                }
                model.backward(batch: n, downTo: index + 1)
                bn.gradientSums(batch: n, into: out)
            }
            totals.withUnsafeBufferPointer { bn.setGradientSums($0.baseAddress!) }
        }
        model.parameters.zeroGradients()
    }
}
