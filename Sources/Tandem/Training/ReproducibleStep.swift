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
//    packed (their union is agreed first, also exactly), plus every other
//    parameter and the step's figures: ONE integer allreduce per step.
//  • With the compact table (CompactTableStep.swift) the packed rows are the
//    factored S rows (4U wide, not D): the exact sum of S is the same on every
//    rank count, so the dE = S·Wᵀ blocks formed from it are the same bits too,
//    and the fixed-point pass, the exchange and the accumulator are 4× smaller.

import CKernels
import Foundation

/// Scratch of the fixed-point exchange, allocated once.
final class FixedPointExchange {
    let tableOffset: Int, tableCount: Int, width: Int, restCount: Int, figureCount: Int
    /// The union of touched table rows (nil without an embedding table).
    let touched: TouchedRows?
    /// Per-row stamps: each row is converted once per micro-batch.
    let stamp: UnsafeMutablePointer<Int32>
    var stampValue: Int32 = 0
    /// [rest of the parameters | union rows × width | figures], or with the
    /// compact table the arena's [compactStart, parameters) then the figures.
    let accumulator: UnsafeMutablePointer<Int64>
    /// The compact table's first S row this step (nil: the dense table layout).
    var compactStart: Int?

    init(parameters: Int, table: TensorView?, vocabulary: Int, width: Int, figures: Int) {
        self.width = width
        tableOffset = table?.offset ?? 0
        tableCount = table?.count ?? 0
        restCount = parameters - tableCount
        figureCount = figures
        touched = table.map { TouchedRows(table: $0, vocabulary: vocabulary, width: width) }
        stamp = .allocate(capacity: max(vocabulary, 1)); stamp.initialize(repeating: 0, count: max(vocabulary, 1))
        // Sized for every row, but only the packed prefix is ever written: calloc's
        // zero pages make the rest cost no memory until a step touches that many rows.
        accumulator = calloc(restCount + tableCount + figures, MemoryLayout<Int64>.stride)!
            .bindMemory(to: Int64.self, capacity: restCount + tableCount + figures)
    }

    deinit { stamp.deallocate(); free(accumulator) }

    var rows: [Int32] { touched?.rows ?? [] }
    var packedCount: Int {
        if let start = compactStart { return restCount + tableCount - start + figureCount }
        return restCount + rows.count * width + figureCount
    }
}

/// Fixed-point scale for the metric sums (losses): 2^24, resolution 6e-8 per micro-batch.
private let figureScale = 16_777_216.0

extension TrainingStep {
    /// With `compact`, leaves the factored gradient as `computeGradientCompactly` does.
    /// Reproducible mode with BatchNormalization: its statistics span the global batch,
    /// which the canonical micro-batches split. Before the step's own pass, for each
    /// BatchNormalization layer in forward order, every rank runs its micro-batches up to
    /// that layer and takes each one's Σx, Σx²; for each in backward order, the full
    /// forward and the backward down to it give each micro-batch's Σdy, Σdy·x̂. Each sum
    /// is gathered by micro-batch (a zero-padded allreduce: exact) and added in micro-batch
    /// order on every rank, so the statistics are the same bits for any rank count. The
    /// layers then use them without collectives of their own; parameter gradients of these
    /// passes are discarded.
    func batchNormalizationStatistics(_ indices: UnsafeBufferPointer<Int32>, data: Dataset, microBatch m: Int,
                                      micro: Int, mine: Range<Int>) throws {
        let layers = model.schedule.enumerated().compactMap { entry in (entry.element as? BatchNormalization).map { (index: entry.offset, bn: $0) } }
        guard !layers.isEmpty else { return }
        let B = indices.count
        func load(_ k: Int) -> Int {
            let range = (k * m)..<min((k + 1) * m, B)
            loadBatch(UnsafeBufferPointer(rebasing: indices[range]), data: data)
            model.dropoutKeys.firstPosition = epochPosition + range.lowerBound
            return range.count
        }
        /// `width` sums of every micro-batch, gathered, then added in micro-batch order.
        func gathered(_ width: Int, _ fill: (Int, UnsafeMutablePointer<Double>) -> Void) throws -> [Double] {
            var partial = [Double](repeating: 0, count: micro * width)
            partial.withUnsafeMutableBufferPointer { p in for k in mine { fill(k, p.baseAddress! + k * width) } }
            try partial.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0.baseAddress!, count: $0.count) }
            var total = [Double](repeating: 0, count: width)
            for k in 0..<micro { for j in 0..<width { total[j] += partial[k * width + j] } }
            return total
        }
        for (_, bn) in layers { bn.givenStatistics = true }
        for (index, bn) in layers {
            let totals = try gathered(2 * bn.output.features) { k, out in
                let n = load(k)
                model.forward(batch: n, training: true, through: index - 1)
                bn.inputSums(batch: n, into: out)
            }
            bn.setStatistics(totals, count: Double(B * bn.rowsPerSample))
        }
        for (index, bn) in layers.reversed() {
            let totals = try gathered(2 * bn.output.features) { k, out in
                let n = load(k)
                model.forward(batch: n, training: true)
                figureScratch.withUnsafeMutableBufferPointer { f in
                    f.update(repeating: 0)
                    objective.addLosses(rows: n, globalBatch: B, writeGradient: true, into: f.baseAddress!)
                }
                model.backward(batch: n, downTo: index + 1)
                bn.gradientSums(batch: n, into: out)
            }
            totals.withUnsafeBufferPointer { bn.setGradientSums($0.baseAddress!) }
        }
        model.parameters.zeroGradients()
    }

    func computeGradientReproducibly(globalBatch indices: UnsafeBufferPointer<Int32>, data: Dataset,
                                     microBatch m: Int, compact c: CompactTable? = nil) throws -> StepFigures {
        let B = indices.count, micro = (B + m - 1) / m
        let mine = shard(count: micro, rank: communicator.rank, size: communicator.size)
        let params = model.parameters
        objective.countLabelled(indices, data: data)
        let layout = objective.layout, figureCount = layout.count
        if exchange == nil {
            exchange = FixedPointExchange(parameters: params.count, table: deferredTable?.view,
                                          vocabulary: deferredTable?.embedding.vocabulary ?? 0,
                                          width: deferredTable?.embedding.dimension ?? 0, figures: figureCount)
        }
        let x = exchange!
        var clock = monotonicSeconds()
        beginGradient()

        // 1. The union of table rows touched anywhere this step (counts are small integers: exact).
        x.compactStart = nil
        if let c {
            try agreeOnTouchedRows(c.touched, indices: indices, micro: mine, microBatch: m, data: data)
            c.start = c.end - c.touched.rows.count * c.sumWidth
            dirtyFrom = c.start
            x.compactStart = c.start
            timings.exchange += lap(&clock)
            for r in c.touched.rows { optimizer.catchUp(row: Int(r), parameters: params.values) }
            timings.forward += lap(&clock)
        } else if let touched = x.touched {
            try agreeOnTouchedRows(touched, indices: indices, micro: mine, microBatch: m, data: data)
            timings.exchange += lap(&clock)
        }

        // BatchNormalization's statistics over the global batch, the same bits for any rank count.
        try batchNormalizationStatistics(indices, data: data, microBatch: m, micro: micro, mine: mine)
        timings.forward += lap(&clock)

        // 2. Every local micro-batch into the fixed-point accumulator; redo with a larger bound if needed.
        var attempt = 0, scale = 1.0
        while true {
            attempt += 1
            let bound = max(gradientBound ?? 1.0, 1e-30)
            // scale = 2^s with micro · bound · scale ≤ 2^62: no sum can overflow Int64.
            let s = min(200, Int((62 - log2(Double(max(micro, 1))) - log2(bound)).rounded(.down)))
            scale = pow(2.0, Double(s))
            x.accumulator.update(repeating: 0, count: x.packedCount)
            var largest = 0.0, exceeded = false, nonFinite = false
            for k in mine {
                let range = (k * m)..<min((k + 1) * m, B)
                let local = UnsafeBufferPointer(rebasing: indices[range])
                loadBatch(local, data: data)
                model.dropoutKeys.firstPosition = epochPosition + range.lowerBound
                model.forward(batch: local.count, training: true)
                let tail = x.accumulator + x.packedCount - figureCount
                figureScratch.withUnsafeMutableBufferPointer { f in
                    f.update(repeating: 0)
                    objective.addLosses(rows: local.count, globalBatch: B, writeGradient: true, into: f.baseAddress!)
                }
                for h in 0..<layout.heads {
                    let loss = figureScratch[layout.loss(h)]
                    if loss.isFinite && abs(loss) < 1e11 {
                        tail[layout.loss(h)] &+= Int64((loss * figureScale).rounded())
                    } else { nonFinite = true }
                    // Accuracy can be fractional.
                    tail[layout.correct(h)] &+= Int64((figureScratch[layout.correct(h)] * figureScale).rounded())
                }
                tail[layout.samples] &+= Int64(local.count)
                // Metric sums in the same fixed point: counts are exact, means to 2^-24 per micro-batch.
                for k in layout.metrics..<layout.count { tail[k] &+= Int64((figureScratch[k] * figureScale).rounded()) }
                timings.forward += lap(&clock)
                if let c { c.recurrent.tokens!.tableRowSums = (params.gradients + c.start, UnsafePointer(c.touched.slot)) }
                model.backward(batch: local.count)
                if let c { c.recurrent.tokens!.tableRowSums = nil }
                let (big, bad, over) = accumulate(x, compact: c, scale: scale, bound: bound)
                largest = max(largest, big); nonFinite = nonFinite || bad; exceeded = exceeded || over
                timings.backward += lap(&clock)
            }
            var verdict = [largest, exceeded ? 1 : 0, nonFinite ? 1 : 0]
            try communicator.allReduceMax(&verdict)
            timings.exchange += lap(&clock)
            if verdict[2] > 0 {
                throw AgreedError(message: "step \(optimizer.iterations + 1): the loss or the gradient is not finite; stopping before the weights are updated",
                                  reporter: communicator.rank == 0)
            }
            // The next step's bound: 4 × this step's largest |g| (the same on every rank count).
            gradientBound = max(4 * verdict[0], 1e-30)
            if verdict[1] == 0 { break }
            precondition(attempt < 4, "fixed-point bound did not converge")
        }

        // 3. The ONE exchange: parameters, touched rows and figures, as exact integers.
        let figureBase = x.packedCount - figureCount
        x.accumulator[figureBase + layout.stopFlag] = stopRequestedLocally ? 1 : 0
        try communicator.allReduceSum(x.accumulator, count: x.packedCount)
        timings.exchange += lap(&clock)
        unpack(x, scale: scale)

        let f = x.accumulator + figureBase
        var result = reducedFigures { i in Double(f[i]) / (layout.isCount(i) ? 1 : figureScale) }
        finishFigures(&result, globalBatch: B)
        if let c {
            try checkLossIsFinite(result, step: optimizer.iterations + 1)
            try checkFactoredGradientIsFinite(c, step: optimizer.iterations + 1)
        } else {
            try checkFinite(result, step: optimizer.iterations + 1)
        }
        timings.optimizer += lap(&clock)
        return result
    }

    /// Agrees on the table rows any micro-batch of any rank touches this step.
    private func agreeOnTouchedRows(_ touched: TouchedRows, indices: UnsafeBufferPointer<Int32>, micro: Range<Int>,
                                    microBatch m: Int, data: Dataset) throws {
        guard let table = deferredTable,
              let inputIndex = model.inputs.firstIndex(where: { $0 === table.embedding.source }) else { return }
        let array = data.inputs[inputIndex], width = table.embedding.source.width
        var ids = [Int32](repeating: 0, count: width)
        try touched.agree(communicator) { marks in
            for k in micro {
                for position in (k * m)..<min((k + 1) * m, indices.count) {
                    _ = ids.withUnsafeMutableBufferPointer { array.readTokens(row: Int(indices[position]), limit: Int(Int32.max), into: $0.baseAddress!) }
                    for id in ids { marks[Int(id)] = 1 }
                }
            }
        }
    }

    /// Adds the micro-batch gradient now in the arena to the accumulator as
    /// round(g · scale), and zeroes the arena for the next micro-batch.
    /// Returns the largest |g|, whether any g was not finite, and whether any exceeded `bound`.
    private func accumulate(_ x: FixedPointExchange, compact c: CompactTable?, scale: Double, bound: Double) -> (Double, Bool, Bool) {
        let g = model.parameters.gradients
        var largest: Float = 0, flags: Int32 = 0
        func convert(_ src: UnsafeMutablePointer<Float>, _ n: Int, into dst: UnsafeMutablePointer<Int64>) {
            // round-half-even (rint) to the fixed-point grid; the C kernel also zeroes src.
            dst.withMemoryRebound(to: CLongLong.self, capacity: n) {
                tandem_fixed_accumulate(src, $0, n, scale, bound, &largest, &flags)
            }
        }
        if let c, let ids = c.recurrent.embedding!.source.tokens {
            // [start, count) of the arena: the S rows this micro-batch touched, each once, and the rest.
            convert(g + c.end, model.parameters.count - c.end, into: x.accumulator + (c.end - c.start))
            x.stampValue &+= 1
            for i in 0..<(batch.rows * c.recurrent.steps) {
                let id = Int(ids[i])
                guard x.stamp[id] != x.stampValue else { continue }
                x.stamp[id] = x.stampValue
                let slot = Int(c.touched.slot[id])
                convert(g + c.start + slot * c.sumWidth, c.sumWidth, into: x.accumulator + slot * c.sumWidth)
            }
            return (Double(largest), flags & 2 != 0, flags & 1 != 0)
        }
        let tableEnd = x.tableOffset + x.tableCount
        convert(g, x.tableOffset, into: x.accumulator)
        convert(g + tableEnd, model.parameters.count - tableEnd, into: x.accumulator + x.tableOffset)
        if let table = deferredTable, let ids = table.embedding.source.tokens {
            // Only rows this micro-batch touched can hold gradient; each once.
            x.stampValue &+= 1
            let rows = batch.rows * table.embedding.source.width
            for i in 0..<rows {
                let id = Int(ids[i])
                guard x.stamp[id] != x.stampValue else { continue }
                x.stamp[id] = x.stampValue
                let slot = Int(x.touched!.slot[id])
                convert(g + x.tableOffset + id * x.width, x.width, into: x.accumulator + x.restCount + slot * x.width)
            }
        }
        return (Double(largest), flags & 2 != 0, flags & 1 != 0)
    }

    /// The summed integers back into the gradient arena as Float32, once.
    private func unpack(_ x: FixedPointExchange, scale: Double) {
        let g = model.parameters.gradients, a = x.accumulator
        if let start = x.compactStart {
            for i in 0..<(model.parameters.count - start) { g[start + i] = Float(Double(a[i]) / scale) }
            return
        }
        for i in 0..<x.tableOffset { g[i] = Float(Double(a[i]) / scale) }
        let tableEnd = x.tableOffset + x.tableCount
        for i in tableEnd..<model.parameters.count { g[i] = Float(Double(a[i - x.tableCount]) / scale) }
        for (slot, row) in x.rows.enumerated() {
            let to = g + x.tableOffset + Int(row) * x.width, from = a + x.restCount + slot * x.width
            for j in 0..<x.width { to[j] = Float(Double(from[j]) / scale) }
        }
    }
}
