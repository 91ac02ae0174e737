// Evaluate and predict with the current weights, sharded across ranks: rank r
// forwards the r-th contiguous share of the rows; outputs are assembled in the
// original row order (evaluate: per chunk, then summed in that order).

import Foundation
import TandemCore
import TandemKeras

/// Loss and accuracy of every head over a set of rows, and the weighted total.
public struct Evaluation: Sendable {
    public var samples = 0
    package var headLoss: [Double] = []
    public var headAccuracy: [Double] = []
    /// Per head, each of its metrics' values over the whole set.
    package var headMetrics: [[Double]] = []
    package var total = 0.0
}

/// The objective's losses and metrics over a dataset with the model's current weights: what
/// validation and `tandem evaluate` run. No optimizer and no training step: the weights must be
/// current (a training step's `evaluate` replays its deferred rows first).
public final class Evaluator {
    let model: Model
    let objective: Objective
    let communicator: Communicator
    let regularizers: [(view: TensorView, l1: Double, l2: Double)]

    /// `tandem evaluate`'s: the heads' losses wired to `model` for forward only.
    public convenience init(model: Model, heads: [Head], communicator: Communicator, regularizers: [Regularizer]) throws
    {
        self.init(
            model: model, objective: try Objective(model: model, heads: heads), communicator: communicator,
            regularizers: try Regularizer.combined(regularizers, in: model.parameters))
    }

    init(
        model: Model, objective: Objective, communicator: Communicator,
        regularizers: [(view: TensorView, l1: Double, l2: Double)]
    ) {
        self.model = model
        self.objective = objective
        self.communicator = communicator
        self.regularizers = regularizers
    }

    var heads: [Head] { objective.heads }
    var batch: BatchBuffers { objective.batch }

    /// Rows forwarded together. It must not depend on the rank count (a row's outputs depend,
    /// in the last bits, on the rows forwarded with it): training builds models of at least
    /// `evaluationRows` (64 unless a row is very large) in ordinary mode, of the micro-batch in
    /// reproducible mode.
    package var evaluationBlock: Int { min(model.maxBatch, model.evaluationRows) }

    /// The loss of the current weights on `rows` of `data` (docs/SPEC.md §3: Keras's evaluate).
    ///
    /// The rows go in blocks of `evaluationBlock`, a size that does not depend on the rank
    /// count, dealt to the ranks in rounds. Each rank forwards its block (so every row is
    /// forwarded in the same company as in one process); the round's outputs, and logits,
    /// are assembled on every rank, and every rank adds the losses and metric sums of the
    /// blocks in row order — the additions one process makes. So every figure, means
    /// included, is the same bits for any rank count.
    ///
    /// A loss that couples a batch's samples (Circle; Dice and Tversky over the batch) is Keras's
    /// evaluate over batches of `couplingBatch` rows in order, each batch's loss weighted by its size.
    public func evaluate(_ data: Dataset, rows: Range<Int>, couplingBatch: Int = 32) throws -> Evaluation {
        let layout = objective.layout
        let lossInputs = objective.lossInputs
        var sums = [Double](repeating: 0, count: layout.count)
        let E = evaluationBlock
        let P = communicator.size
        var indices = [Int32](repeating: 0, count: E)
        // Per head, the buffers its loss reads: the output's values, and z when it reads logits.
        let sources: [[UnsafeMutablePointer<Float>]] = lossInputs.map { input in
            if case .logits(let dense) = input { return [input.layer.output.values!, dense.logits!] }
            return [input.layer.output.values!]
        }
        let widths = heads.indices.map { lossInputs[$0].layer.output.width }
        let blockFloats = E * zip(sources, widths).reduce(0) { $0 + $1.0.count * $1.1 }
        var round = [Float](repeating: 0, count: P > 1 ? P * blockFloats : 0)
        // Divisors and labelled counts over the whole set (ignore_class, `labeled`, NaN targets).
        let labels = data.labels(rows: rows, maskedMetrics: true)
        func block(_ k: Int) -> Range<Int> {
            let lower = rows.lowerBound + k * E
            return lower..<min(lower + E, rows.upperBound)
        }
        func load(_ k: Int) throws {
            let r = block(k)
            for i in r.indices { indices[i - r.lowerBound] = Int32(i) }
            indices.withUnsafeBufferPointer {
                batch.load(
                    UnsafeBufferPointer(rebasing: $0[0..<r.count]), from: data, model: model, heads: heads,
                    labels: labels)
            }
            try data.checkLoaded()
        }
        // Moves block rows between the loss buffers and a block's slot of `round`.
        func copy(_ slot: UnsafeMutablePointer<Float>, count n: Int, out: Bool) {
            var offset = 0
            for (h, buffers) in sources.enumerated() {
                for b in buffers {
                    if out {
                        (slot + offset).update(from: b, count: n * widths[h])
                    } else {
                        b.update(from: slot + offset, count: n * widths[h])
                    }
                    offset += E * widths[h]
                }
            }
        }
        let blocks = (rows.count + E - 1) / E
        // The coupled heads' rows of the whole set, kept as the blocks go by (every rank sees every block).
        let coupled = objective.coupledHeads
        let coupledWidths = coupled.map { h in
            (lossInputs[h].layer.output.width, heads[h].targetWidth(of: lossInputs[h].layer))
        }
        var coupledRows = coupled.indices.map { k in
            (
                outputs: [Float](repeating: 0, count: rows.count * coupledWidths[k].0),
                targets: [Float](repeating: 0, count: rows.count * coupledWidths[k].1),
                weights: [Float](repeating: 0, count: rows.count)
            )
        }
        // Each block's activity penalty, from the rank that forwarded it; summed in block order.
        let penalized = model.hasActivityPenalties
        var activity = [Double](repeating: 0, count: penalized ? blocks : 0)
        for first in stride(from: 0, to: blocks, by: P) {
            let inRound = min(P, blocks - first)
            let mine = first + communicator.rank
            if mine < blocks {
                try load(mine)
                model.activityPenalties.sum = 0
                model.forward(batch: block(mine).count, training: false)
                if penalized { activity[mine] = model.activityPenalties.takeSum() }
            }
            if P > 1 {
                // Slots other ranks filled are zero here; a sum assembles them exactly.
                try round.withUnsafeMutableBufferPointer { r in
                    r.update(repeating: 0)
                    if mine < blocks {
                        copy(r.baseAddress! + communicator.rank * blockFloats, count: block(mine).count, out: true)
                    }
                    try communicator.allReduceSum(r.baseAddress!, count: inRound * blockFloats)
                }
            }
            for k in first..<(first + inRound) {
                let n = block(k).count
                if P > 1 {
                    round.withUnsafeMutableBufferPointer {
                        copy($0.baseAddress! + (k - first) * blockFloats, count: n, out: false)
                    }
                    try load(k)
                }
                sums.withUnsafeMutableBufferPointer {
                    objective.addLosses(
                        rows: n, globalBatch: rows.count, writeGradient: false, maskedMetrics: true,
                        into: $0.baseAddress!)
                }
                let at = k * E
                for (c, h) in coupled.enumerated() {
                    let (width, targetWidth) = coupledWidths[c]
                    coupledRows[c].outputs.withUnsafeMutableBufferPointer {
                        ($0.baseAddress! + at * width).update(
                            from: lossInputs[h].layer.output.values!, count: n * width)
                    }
                    coupledRows[c].targets.withUnsafeMutableBufferPointer {
                        ($0.baseAddress! + at * targetWidth).update(from: batch.targets[h], count: n * targetWidth)
                    }
                    coupledRows[c].weights.withUnsafeMutableBufferPointer {
                        ($0.baseAddress! + at).update(from: batch.weights[h], count: n)
                    }
                }
            }
        }
        if penalized && P > 1 {
            // One rank's value per slot, zeros elsewhere: the sum is exact.
            try activity.withUnsafeMutableBufferPointer {
                try communicator.allReduceSum($0.baseAddress!, count: $0.count)
            }
        }
        var result = Evaluation()
        result.samples = rows.count
        result.headLoss = heads.indices.map { sums[layout.loss($0)] / Double(rows.count) }
        for (c, h) in coupled.enumerated() {
            let (width, targetWidth) = coupledWidths[c]
            result.headLoss[h] = coupledRows[c].outputs.withUnsafeBufferPointer { o in
                coupledRows[c].targets.withUnsafeBufferPointer { t in
                    coupledRows[c].weights.withUnsafeBufferPointer { w in
                        heads[h].batchLossByGroups(
                            GatheredBatch(
                                outputs: o.baseAddress!, targets: t.baseAddress!, weights: w.baseAddress!,
                                rows: rows.count, columns: width, targetColumns: targetWidth),
                            groupSize: max(couplingBatch, 1))
                    }
                }
            }
        }
        result.headAccuracy = heads.indices.map {
            labels.labelled[$0] > 0 ? sums[layout.correct($0)] / labels.labelled[$0] : 0
        }
        result.headMetrics = sums.withUnsafeBufferPointer { objective.metricResults($0.baseAddress! + layout.metrics) }
        // Keras adds each batch's penalty ÷ its size; the mean over batches weighted by their sizes is Σ ÷ N.
        result.total = regularizationLoss() + activity.reduce(0, +) / Double(max(rows.count, 1))
        for (h, head) in heads.enumerated() { result.total += head.weight * result.headLoss[h] }
        return result
    }

    /// Σ λ₂·Σw² + λ₁·Σ|w| of the current weights.
    package func regularizationLoss() -> Double {
        var total = 0.0
        for (view, l1, l2) in regularizers {
            let w = model.parameters.value(view)
            var squares = 0.0
            var magnitudes = 0.0
            for i in 0..<view.count {
                squares += Double(w[i]) * Double(w[i])
                magnitudes += Double(abs(w[i]))
            }
            total += l2 * squares + l1 * magnitudes
        }
        return total
    }
}

extension TrainingStep {
    /// The loss of the current weights on `rows` of `data`, every deferred row replayed first.
    /// With `other` (the same graph built at other input lengths), the weights are copied into it
    /// and `data` goes through it; the heads' current weights make its total.
    public func evaluate(
        _ data: Dataset, rows: Range<Int>, on other: Model? = nil, couplingBatch: Int = 32
    ) throws -> Evaluation {
        synchronize()
        guard let other else {
            return try Evaluator(
                model: model, objective: objective, communicator: communicator, regularizers: regularizers
            )
            .evaluate(data, rows: rows, couplingBatch: couplingBatch)
        }
        precondition(other.parameters.count == model.parameters.count)
        other.parameters.values.update(from: model.parameters.values, count: model.parameters.count)
        return try Evaluator(
            model: other, objective: try Objective(model: other, heads: heads), communicator: communicator,
            regularizers: regularizers
        )
        .evaluate(data, rows: rows, couplingBatch: couplingBatch)
    }
}

extension Evaluation {
    /// The figures by Keras's names (`prefix` "val_" for validation): the loss, then per head
    /// its loss, accuracy and metrics.
    public func fields(heads: [Head], prefix: String = "") -> [(String, Any)] {
        var fields: [(String, Any)] = [("\(prefix)loss", total)]
        for (h, head) in heads.enumerated() {
            fields.append(("\(prefix)\(head.output)_loss", headLoss[h]))
            if let a = head.accuracy { fields.append(("\(prefix)\(head.output)_\(a.name)", headAccuracy[h])) }
            for (m, metric) in head.metrics.enumerated() {
                fields.append(("\(prefix)\(head.output)_\(metric.name)", headMetrics[h][m]))
            }
        }
        return fields
    }
}

/// Every output's predictions for all rows of `data`, in row order, on every rank; `shape` is a
/// sample's ([units], or with the output's spatial or time axes).
public func predict(model: Model, data: Dataset, communicator: Communicator) throws -> [(
    name: String, units: Int, values: [Float], shape: [Int]
)] {
    let n = data.count
    let mine = shard(count: n, rank: communicator.rank, size: communicator.size)
    let batch = BatchBuffers(model: model, heads: [])
    var results = model.outputs.map {
        (
            name: $0.name, units: $0.output.width, values: [Float](repeating: 0, count: n * $0.output.width),
            shape: $0.output.shape
        )
    }
    var indices = [Int32](repeating: 0, count: model.maxBatch)
    var start = mine.lowerBound
    while start < mine.upperBound {
        let count = min(model.maxBatch, mine.upperBound - start)
        for i in 0..<count { indices[i] = Int32(start + i) }
        indices.withUnsafeBufferPointer {
            batch.load(
                UnsafeBufferPointer(rebasing: $0[0..<count]), from: data, model: model, heads: [], withTargets: false)
        }
        try data.checkLoaded()
        model.forward(batch: count, training: false)
        for (o, layer) in model.outputs.enumerated() {
            let units = layer.output.width
            results[o].values.withUnsafeMutableBufferPointer {
                ($0.baseAddress! + start * units).update(from: layer.output.values, count: count * units)
            }
        }
        start += count
    }
    // Rows other ranks computed are zero here; a sum assembles them exactly.
    for o in results.indices {
        try results[o].values.withUnsafeMutableBufferPointer {
            try communicator.allReduceSum($0.baseAddress!, count: $0.count)
        }
    }
    return results
}
