// The ordinary step with the embedding table's gradient kept compact. Only
// the rows of the tokens in the global batch can have gradient, so the ranks
// first agree on that union (a tiny exact allreduce of per-row marks), and the
// fused Embedding→LSTM backward writes each row's gradient into its slot at
// the END of the table's window of the arena, directly before every other
// parameter's gradient:
//
//     arena  [ unused table window | union rows × D | lstm, dense, heads … ]
//                                  ^ start
//
// so ONE in-place allreduce over [start, count) combines the whole gradient
// set — no packing, no copies — and the finiteness check and the optimizer
// read just that range. The rest of the table window is never written, so its
// pages never become resident. Bit-identical to the dense step (tested).
// Used when the table is fused into an LSTM, leads the arena and has no L2
// (whose gradient 2λw reaches every row); otherwise the dense step runs.

/// What the compact step needs, found once.
final class CompactTable {
    let lstm: LSTM
    let offset: Int, vocabulary: Int, width: Int
    let touched: TouchedRows
    /// Gradient offset of the first union row this step.
    var start: Int

    init(lstm: LSTM, view: TensorView, vocabulary: Int, width: Int) {
        self.lstm = lstm
        offset = view.offset; self.vocabulary = vocabulary; self.width = width
        touched = TouchedRows(table: view, vocabulary: vocabulary, width: width)
        start = view.offset + view.count
    }

    var end: Int { offset + vocabulary * width }
    var optimizerTable: (offset: Int, rows: Int, width: Int) { (offset, vocabulary, width) }
}

extension TrainingStep {
    /// The compact layout when this model and its L2 allow it (see the file header).
    static func compactTable(model: Model, table: (embedding: Embedding, view: TensorView)?,
                             l2: [(view: TensorView, lambda: Double)]) -> CompactTable? {
        guard let table, table.embedding.fused, table.view.offset == 0,
              !l2.contains(where: { $0.view.name == table.view.name }),
              let lstm = model.layers.compactMap({ $0 as? LSTM }).first(where: { $0.embedding === table.embedding })
        else { return nil }
        return CompactTable(lstm: lstm, view: table.view, vocabulary: table.embedding.vocabulary, width: table.embedding.dimension)
    }

    /// `computeGradient` with the compact table gradient: leaves every
    /// parameter's combined gradient in [c.start, count) of the arena.
    func computeGradientCompactly(globalBatch indices: UnsafeBufferPointer<Int32>, data: Dataset,
                                  _ c: CompactTable) throws -> StepFigures {
        let B = indices.count
        let mine = shard(count: B, rank: communicator.rank, size: communicator.size)
        let local = UnsafeBufferPointer(rebasing: indices[mine])
        let params = model.parameters, g = params.gradients

        // 1. This rank's samples; the union of the table rows the whole global batch reads.
        var clock = monotonicSeconds()
        beginGradient()
        loadBatch(local, data: data, catchUp: false)
        let ids = c.lstm.embedding!.source.tokens!, occurrences = local.count * c.lstm.steps
        try c.touched.agree(communicator) { marks in for i in 0..<occurrences { marks[Int(ids[i])] = 1 } }
        c.start = c.end - c.touched.rows.count * c.width
        dirtyFrom = c.start
        timings.exchange += lap(&clock)
        // Every union row current now (deferred Adam steps replayed): the same work on
        // every rank, so no rank waits at the next collective for another's replays.
        let w = params.values
        for r in c.touched.rows { optimizer.catchUp(row: Int(r), parameters: w) }
        timings.forward += lap(&clock)

        // 2. Forward and backward; the table's rows go to their slots from `start`.
        model.forward(batch: local.count)
        for (h, head) in heads.enumerated() {
            let sums = head.evaluate(layer: outputs[h], targets: batch.targets[h], weights: batch.weights[h],
                                     rows: local.count, globalBatch: B, writeGradient: true)
            figures[2 * h] = sums.weightedLoss
            figures[2 * h + 1] = sums.correct
        }
        figures[2 * heads.count] = Double(local.count)
        figures[2 * heads.count + 1] = stopRequestedLocally ? 1 : 0
        timings.forward += lap(&clock)
        c.lstm.tableRowGradients = (g + c.start, UnsafePointer(c.touched.slot))
        defer { c.lstm.tableRowGradients = nil }
        model.backward(batch: local.count)
        timings.backward += lap(&clock)

        // 3. The figures, then the ONE gradient allreduce, in place over [start, count).
        try figures.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0.baseAddress!, count: $0.count) }
        if communicator.size > 1 { try communicator.allReduceSum(g + c.start, count: params.count - c.start) }
        timings.exchange += lap(&clock)

        var result = reducedFigures()
        finishFigures(&result, globalBatch: B)
        try checkLossIsFinite(result, step: optimizer.iterations + 1)
        if !optimizer.allFinite(g + c.start, count: params.count - c.start) {
            try stopOnNonFiniteGradient(step: optimizer.iterations + 1, from: c.start)
        }
        timings.optimizer += lap(&clock)
        return result
    }
}
