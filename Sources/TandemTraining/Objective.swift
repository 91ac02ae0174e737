// What training minimises and every pass measures: the heads, how each head's loss reads its
// output layer, the batch buffers those losses read, and the layout of the per-head figures.
// The training step, `evaluate`, the per-head diagnostics and reproducible mode's
// BatchNormalization statistics all run the heads' losses through `addLosses`: the one
// per-head loss loop.

import TandemCore
import TandemKeras

/// Where each figure sits in the flat Double buffer one allreduce combines:
/// per head its Σ_i w_i·ℓ(i) and correct count, the sample count, the stop flag, every head's
/// metric sums in turn (Metrics.swift), then the activity penalties' sum. The only place that
/// knows the positions.
package struct FigureLayout: Sendable, Equatable {
    public let heads: Int
    package let metricSlots: Int
    /// Where each head's metric sums start among the metric sums.
    package let metricOffsets: [Int]
    public func loss(_ h: Int) -> Int { 2 * h }
    package func correct(_ h: Int) -> Int { 2 * h + 1 }
    public var samples: Int { 2 * heads }
    package var stopFlag: Int { 2 * heads + 1 }
    /// The first metric sum; head h's start at `metrics + metricOffsets[h]`.
    public var metrics: Int { 2 * heads + 2 }
    /// Σ of the activity penalties' values (ActivityRegularization.swift) over the rows forwarded.
    package var activity: Int { metrics + metricSlots }
    public var count: Int { metrics + metricSlots + 1 }
    /// Losses and metric sums are real-valued; the sample count and the stop flag are counts
    /// (reproducible mode scales the former to fixed point, not the latter).
    package func isCount(_ i: Int) -> Bool { i == samples || i == stopFlag }

    init(heads: [Head]) {
        self.heads = heads.count
        var starts = heads.reduce(into: [0]) { $0.append($0.last! + $1.metricSlotCount) }
        metricSlots = starts.removeLast()
        metricOffsets = starts
    }
}

/// The heads and their losses, wired to a model once.
package final class Objective {
    package private(set) var heads: [Head]
    /// How each head's loss reads its output layer (Losses.swift).
    let lossInputs: [LossInput]
    package let batch: BatchBuffers
    package let layout: FigureLayout
    /// Per head, this batch's labelled count and weight factor (see `countLabelled`); nil: every
    /// row labelled, factor 1.
    var labels: Labels?

    init(model: Model, heads: [Head]) throws {
        self.heads = heads
        var consumers: [ObjectIdentifier: Int] = [:]
        for layer in model.layers { for input in layer.inputs { consumers[ObjectIdentifier(input), default: 0] += 1 } }
        lossInputs = try heads.map { head in
            guard let layer = model.output(named: head.output) else {
                let names = model.outputs.map(\.name).joined(separator: ", ")
                throw TandemError.usage("unknown output '\(head.output)' (the model's outputs are \(names))")
            }
            return try head.attach(to: layer, consumers: consumers[ObjectIdentifier(layer)] ?? 0)
        }
        batch = BatchBuffers(model: model, heads: heads)
        layout = FigureLayout(heads: heads)
    }

    /// The loss weights of the next steps, one per head.
    func setLossWeights(_ weights: [Double]) {
        for h in heads.indices { heads[h].weight = weights[h] }
    }

    /// The labels of the GLOBAL batch (Dataset.labels): each rank reads every row's target, so
    /// the divisors of ignore_class and `labeled` reduction, and the labelled counts, are the
    /// global ones for any rank count without a collective. Skipped when every row is labelled
    /// and no head divides by a labelled count.
    func countLabelled(_ indices: UnsafeBufferPointer<Int32>, data: Dataset) {
        guard
            data.hasMissingLabels
                || heads.contains(where: {
                    $0.options.ignoreClass != nil || $0.reduction != .batch || $0.elementMask != nil
                })
        else {
            labels = nil
            return
        }
        labels = data.labels(rows: indices.lazy.map { Int($0) })
    }

    /// Loads rows `local` of `data` into the batch buffers (inputs into the model).
    func load(_ local: UnsafeBufferPointer<Int32>, from data: Dataset, model: Model) {
        batch.load(local, from: data, model: model, heads: heads, labels: labels)
    }

    /// The per-head loss loop, after a forward of `rows` rows: adds each head's Σ w·ℓ and correct
    /// count, and its metric sums, into `figures` (laid out as `layout`); with `writeGradient`,
    /// each head's loss gradient, scaled by weight / `globalBatch`, goes into its output layer.
    /// `maskedMetrics`: the metrics skip the elements an output's Keras mask hides, as Keras's
    /// evaluate does; its fit does not (on JAX the mask does not survive the train step's
    /// value_and_grad, so fit's metrics count every element: measured, Keras 3.15), and training
    /// reports what Keras's fit reports. The loss is masked in both.
    func addLosses(
        rows: Int, globalBatch: Int, writeGradient: Bool, maskedMetrics: Bool = false,
        into figures: UnsafeMutablePointer<Double>
    ) {
        for (h, head) in heads.enumerated() {
            let sums = head.evaluate(
                lossInputs[h], targets: batch.targets[h], weights: batch.weights[h],
                labelled: batch.labelled[h], masked: maskedMetrics ? batch.masked[h] : nil, rows: rows,
                globalBatch: globalBatch, writeGradient: writeGradient,
                metricSums: figures + layout.metrics + layout.metricOffsets[h])
            figures[layout.loss(h)] += sums.weightedLoss
            figures[layout.correct(h)] += sums.correct
        }
    }

    /// The heads whose loss couples a batch's samples (Losses+Batch.swift).
    var coupledHeads: [Int] { heads.indices.filter { heads[$0].couplesBatch } }

    /// The coupled heads' losses over the GLOBAL batch: each rank's `rows` rows (at `position` of the
    /// batch of `globalBatch`) are gathered on every rank — outputs, targets, effective weights, in the
    /// batch's order, so the same bits for any rank count — then each head's figure share for these
    /// rows goes into `figures` and, with `writeGradient`, its gradient into the output. Every rank
    /// calls it (a collective), with or without rows.
    func addBatchLosses(
        rows: Int, position: Int, globalBatch B: Int, communicator: Communicator, writeGradient: Bool,
        into figures: UnsafeMutablePointer<Double>
    ) throws {
        let coupled = coupledHeads
        guard !coupled.isEmpty else { return }
        let widths = coupled.map { h in
            (lossInputs[h].layer.output.width, heads[h].targetWidth(of: lossInputs[h].layer))
        }
        let perRow = widths.reduce(0) { $0 + $1.0 + $1.1 + 1 }
        if gathered.count < B * perRow { gathered = [Float](repeating: 0, count: B * perRow) }
        try gathered.withUnsafeMutableBufferPointer { all in
            let g = all.baseAddress!
            g.update(repeating: 0, count: B * perRow)
            var offset = 0
            // Per head: outputs [B, C], then targets [B, T], then weights [B]; this rank's rows filled in.
            for (k, h) in coupled.enumerated() {
                let (c, t) = widths[k]
                (g + offset + position * c).update(from: lossInputs[h].layer.output.values!, count: rows * c)
                offset += B * c
                (g + offset + position * t).update(from: batch.targets[h], count: rows * t)
                offset += B * t
                (g + offset + position).update(from: batch.weights[h], count: rows)
                offset += B
            }
            try communicator.allReduceSum(g, count: B * perRow)
            offset = 0
            for (k, h) in coupled.enumerated() {
                let (c, t) = widths[k]
                let gatheredBatch = GatheredBatch(
                    outputs: g + offset, targets: g + offset + B * c, weights: g + offset + B * (c + t), rows: B,
                    columns: c, targetColumns: t)
                offset += B * (c + t + 1)
                let result = heads[h].batchLoss(
                    gatheredBatch, own: position..<(position + rows),
                    gradient: writeGradient ? lossInputs[h].layer.output.gradients! : nil)
                figures[layout.loss(h)] += result.figure
            }
        }
    }
    private var gathered: [Float] = []

    /// Head h's loss gradient alone (the per-head diagnostics): a head that writes its logits'
    /// gradient keeps it outside the arena forward clears, so the others' are zeroed here.
    func writeGradient(ofHead h: Int, rows: Int, globalBatch: Int) {
        for (k, input) in lossInputs.enumerated() where k != h {
            if case .logits(let dense) = input { dense.dLogits!.update(repeating: 0, count: rows * dense.output.width) }
        }
        _ = heads[h].evaluate(
            lossInputs[h], targets: batch.targets[h], weights: batch.weights[h],
            labelled: batch.labelled[h], masked: batch.masked[h], rows: rows, globalBatch: globalBatch,
            writeGradient: true)
    }

    /// Per head, its metrics' values from every head's sums laid out in turn at `s`.
    package func metricResults(_ s: UnsafePointer<Double>) -> [[Double]] {
        heads.indices.map { heads[$0].metricResults(s + layout.metricOffsets[$0]) }
    }
}

/// An epoch's running sums, kept in checkpoints so a resumed epoch reports what an
/// uninterrupted one does.
package struct EpochSums: Codable, Sendable, Equatable {
    public var samples = 0.0
    /// Σ over steps of B·total (the epoch's loss is this ÷ samples).
    package var totalTimesSamples = 0.0
    /// Per head: Σ w·ℓ, correct predictions, labelled samples.
    package var headLoss: [Double]
    package var headCorrect: [Double]
    package var headLabelled: [Double]
    /// Every head's metric sums in turn (FigureLayout's metric region).
    package var metricSums: [Double]

    package init(heads: Int, metricSlots: Int) {
        headLoss = Array(repeating: 0, count: heads)
        headCorrect = headLoss
        headLabelled = headLoss
        metricSums = Array(repeating: 0, count: metricSlots)
    }

    /// The positional array checkpoints held before this type (format tandem-checkpoint-1):
    /// per head loss and correct, samples, Σ B·total, the metric sums, per head labelled.
    init?(legacy s: [Double], heads: Int, metricSlots: Int) {
        guard s.count == 3 * heads + 2 + metricSlots else { return nil }
        self.init(heads: heads, metricSlots: metricSlots)
        for h in 0..<heads {
            headLoss[h] = s[2 * h]
            headCorrect[h] = s[2 * h + 1]
            headLabelled[h] = s[2 * heads + 2 + metricSlots + h]
        }
        samples = s[2 * heads]
        totalTimesSamples = s[2 * heads + 1]
        metricSums = Array(s[(2 * heads + 2)..<(2 * heads + 2 + metricSlots)])
    }

    package mutating func add(_ f: StepFigures) {
        for h in headLoss.indices {
            headLoss[h] += f.headLossSums[h]
            headCorrect[h] += f.headCorrect[h]
            headLabelled[h] += f.headLabelled[h]
        }
        samples += Double(f.samples)
        totalTimesSamples += f.total * Double(f.samples)
        for k in metricSums.indices { metricSums[k] += f.metricSums[k] }
    }
}
