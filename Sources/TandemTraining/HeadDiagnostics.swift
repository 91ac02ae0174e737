// Per-head diagnostics (docs/SPEC.md §10): "how much does the auxiliary head move the
// shared layers?". On a diagnostic step, before the ordinary step, each head's
// own gradient — of weight_h·loss_h over the GLOBAL batch — is taken for every
// tensor that more than one head reaches: per head, a fresh forward on this
// rank's rows with only that head's loss gradient, and a backward. The per-head
// gradients of the shared tensors are packed and combined across ranks in one
// allreduce, then every rank reads from them, per tensor:
//   norm_h   = ‖g_h‖
//   cos(a,b) = ⟨g_a, g_b⟩ / (‖g_a‖ ‖g_b‖)
//   share_h  = ⟨g_h, g⟩ / ‖g‖²  with g = Σ_h g_h, the combined gradient (Σ share = 1)
// The pass leaves the weights, the optimizer and the BatchNormalization
// statistics as they were, so a run trains to the same numbers with and without
// diagnostics; it costs H extra forward and backward passes and an allreduce of
// H × (shared parameters) floats on those steps only.

import Foundation
import TandemCore
import TandemKeras

/// Which tensors several heads reach, and the per-head figures of diagnostic steps.
public final class HeadDiagnostics {
    public struct Shared {
        package let view: TensorView
        /// The layer that owns the tensor, and the heads whose loss reaches it.
        package let layer: String
        package let heads: [Int]
    }
    public let shared: [Shared]
    package let headNames: [String]
    /// Floats of all shared tensors together.
    public let packedCount: Int
    /// [head][packed shared gradients].
    var packed: [Float]

    /// One tensor on one diagnostic step: per head its norm (nil when the head does not reach
    /// it), its share, and the cosine of each pair of reaching heads.
    package struct TensorFigures: Sendable {
        package var norm: [Double?]
        package var share: [Double?]
        package var cosine: [(a: Int, b: Int, value: Double?)]
        /// ⟨g_a, g_b⟩ for every pair of heads (0 where a head does not reach the tensor).
        var gram: [[Double]]

        init(gram: [[Double]], heads: [Int]) {
            let H = gram.count
            self.gram = gram
            norm = Array(repeating: nil, count: H)
            share = norm
            cosine = []
            // ‖Σ g_h‖² and ⟨g_h, Σ g⟩ from the Gram matrix.
            let total = heads.reduce(0.0) { acc, a in acc + heads.reduce(0.0) { $0 + gram[a][$1] } }
            for a in heads {
                norm[a] = gram[a][a].squareRoot()
                share[a] = total > 0 ? heads.reduce(0.0) { $0 + gram[a][$1] } / total : nil
            }
            for (i, a) in heads.enumerated() {
                for b in heads[(i + 1)...] {
                    let d = (gram[a][a] * gram[b][b]).squareRoot()
                    cosine.append((a, b, d > 0 ? gram[a][b] / d : nil))
                }
            }
        }
    }

    /// Per layer (in order of first appearance): its heads and, summed over diagnostic steps,
    /// the figures of the layer's whole gradient (its tensors' Gram matrices added).
    private var layerOrder: [String] = []
    private var layerHeads: [String: [Int]] = [:]
    private var layerSums: [String: (norm: [Double], share: [Double], cosine: [Double])] = [:]
    package private(set) var steps = 0
    /// The last recorded step's figures per layer (its tensors together).
    package private(set) var lastLayers: [(layer: String, figures: TensorFigures, heads: [Int])] = []
    /// Seconds the diagnostic passes took (forward, backward and the allreduce).
    package private(set) var seconds = 0.0

    /// With `lastSharedLayerOnly`, only the tensors of the shared layer nearest the heads (the
    /// last in graph order): GradNorm's W.
    public init(model: Model, heads: [Head], lastSharedLayerOnly: Bool = false) {
        headNames = heads.map(\.output)
        // The tensors upstream of each head's output.
        var reached: [String: Set<Int>] = [:]
        var owner: [String: String] = [:]
        for (h, head) in heads.enumerated() {
            guard let output = model.output(named: head.output) else { continue }
            var stack: [Layer] = [output]
            var seen = Set<ObjectIdentifier>()
            while let layer = stack.popLast() {
                guard seen.insert(ObjectIdentifier(layer)).inserted else { continue }
                for spec in layer.parameterSpecs where spec.trainable {
                    reached[spec.name, default: []].insert(h)
                    if owner[spec.name] == nil { owner[spec.name] = layer.name }
                }
                stack.append(contentsOf: layer.inputs)
            }
        }
        var all: [Shared] = model.parameters.tensors.compactMap { view in
            guard let hs = reached[view.name], hs.count > 1 else { return nil }
            return Shared(view: view, layer: owner[view.name] ?? view.name, heads: hs.sorted())
        }
        if lastSharedLayerOnly {
            let order = model.layers.map(\.name)
            if let last = all.map(\.layer).max(by: {
                (order.firstIndex(of: $0) ?? -1) < (order.firstIndex(of: $1) ?? -1)
            }) {
                all = all.filter { $0.layer == last }
            }
        }
        shared = all
        packedCount = shared.reduce(0) { $0 + $1.view.count }
        packed = []
    }

    /// Figures of the packed, combined per-head gradients (`packed`).
    func figures() -> [TensorFigures] {
        let H = headNames.count
        var result: [TensorFigures] = []
        packed.withUnsafeBufferPointer { p in
            var offset = 0
            for s in shared {
                let n = s.view.count
                func g(_ h: Int) -> UnsafePointer<Float> { p.baseAddress! + h * packedCount + offset }
                func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>) -> Double { dotInDouble(a, b, count: n) }
                var gram = [[Double]](repeating: [Double](repeating: 0, count: H), count: H)
                for a in s.heads {
                    for b in s.heads where b >= a {
                        gram[a][b] = dot(g(a), g(b))
                        gram[b][a] = gram[a][b]
                    }
                }
                let f = TensorFigures(gram: gram, heads: s.heads)
                result.append(f)
                offset += n
            }
        }
        return result
    }

    /// One diagnostics.jsonl line, and the step's figures added to the summary.
    func record(_ figures: [TensorFigures], step: Int, epoch: Int) -> String {
        steps += 1
        let H = headNames.count
        func number(_ x: Double?) -> JSONValue { x.map { $0.isFinite ? .double($0) : .null } ?? .null }
        var tensors: [JSONValue] = []
        var layerGram: [String: [[Double]]] = [:]
        for (s, f) in zip(shared, figures) {
            tensors.append(
                .object([
                    ("tensor", .string(s.view.name)), ("layer", .string(s.layer)),
                    ("norm", .object(s.heads.map { (headNames[$0], number(f.norm[$0])) })),
                    ("share", .object(s.heads.map { (headNames[$0], number(f.share[$0])) })),
                    ("cosine", .object(f.cosine.map { ("\(headNames[$0.a])~\(headNames[$0.b])", number($0.value)) })),
                ]))
            if layerHeads[s.layer] == nil {
                layerOrder.append(s.layer)
                layerHeads[s.layer] = s.heads
            }
            var g = layerGram[s.layer] ?? Array(repeating: Array(repeating: 0, count: H), count: H)
            for a in 0..<H { for b in 0..<H { g[a][b] += f.gram[a][b] } }
            layerGram[s.layer] = g
        }
        lastLayers = []
        for layer in layerOrder {
            guard let gram = layerGram[layer] else { continue }
            let f = TensorFigures(gram: gram, heads: layerHeads[layer]!)
            lastLayers.append((layer, f, layerHeads[layer]!))
            var e =
                layerSums[layer] ?? (
                    Array(repeating: 0, count: H), Array(repeating: 0, count: H),
                    Array(repeating: 0, count: f.cosine.count)
                )
            for h in 0..<H {
                e.norm[h] += f.norm[h] ?? 0
                e.share[h] += f.share[h] ?? 0
            }
            for (k, c) in f.cosine.enumerated() { e.cosine[k] += c.value ?? 0 }
            layerSums[layer] = e
        }
        return JSONValue.object([
            ("step", .int(Int64(step))), ("epoch", .int(Int64(epoch))), ("tensors", .array(tensors)),
        ]).serialized()
    }

    func addTime(_ s: Double) { seconds += s }

    /// Per layer with shared tensors, means over the diagnostic steps of its whole gradient's
    /// figures: each head's norm and share, and each pair's cosine.
    public func summary() -> String {
        guard steps > 0 else { return "" }
        let n = Double(steps)
        var lines = [
            "per-head diagnostics over \(steps) step\(steps == 1 ? "" : "s") (means; share = ⟨g_head, g⟩/‖g‖², g the combined gradient):"
        ]
        for layer in layerOrder {
            let e = layerSums[layer]!
            let hs = layerHeads[layer]!
            var line = "  \(layer):"
            for h in hs {
                line += "  \(headNames[h]) norm " + String(format: "%.4g share %.3f", e.norm[h] / n, e.share[h] / n)
            }
            var k = 0
            for (i, a) in hs.enumerated() {
                for b in hs[(i + 1)...] {
                    line += "  cos(\(headNames[a]), \(headNames[b])) " + String(format: "%.3f", e.cosine[k] / n)
                    k += 1
                }
            }
            lines.append(line)
        }
        lines.append(String(format: "  cost: %.1f ms per diagnostic step", seconds / n * 1000))
        return lines.joined(separator: "\n")
    }
}

extension TrainingStep {
    /// Each head's gradient of the shared tensors over `indices` (the global batch), combined across
    /// ranks into `d.packed`; the weights, optimizer and layer statistics are left as they were.
    package func diagnose(_ d: HeadDiagnostics, globalBatch indices: UnsafeBufferPointer<Int32>, data: Dataset) throws
        -> [HeadDiagnostics.TensorFigures]
    {
        let started = monotonicSeconds()
        let store = model.parameters
        if d.packed.count != heads.count * d.packedCount {
            d.packed = Array(repeating: 0, count: heads.count * d.packedCount)
        }
        // BatchNormalization's moving statistics change in a training forward: keep them.
        let statistics = store.tensors.filter { !$0.spec.trainable }.map {
            ($0, Array(UnsafeBufferPointer(start: store.value($0), count: $0.count)))
        }
        defer {
            for (view, values) in statistics {
                values.withUnsafeBufferPointer { store.value(view).update(from: $0.baseAddress!, count: view.count) }
            }
        }
        let B = indices.count
        let mine = shard(count: B, rank: communicator.rank, size: communicator.size)
        objective.countLabelled(indices, data: data)
        try refuseCoupledLosses(reproducible: false, perHeadGradients: true, missingLabels: false)
        // A head's own gradient carries no activity penalty (like the weights' penalties, it is no head's).
        let penaltyScale = model.activityPenalties.scale
        model.activityPenalties.scale = 0
        defer { model.activityPenalties.scale = penaltyScale }
        for h in heads.indices {
            store.gradients.update(repeating: 0, count: store.count)
            var start = mine.lowerBound
            while start < mine.upperBound {
                let n = min(model.maxBatch, mine.upperBound - start)
                load(UnsafeBufferPointer(rebasing: indices[start..<(start + n)]), data: data, position: start)
                model.forward(batch: n, training: true)
                objective.writeGradient(ofHead: h, rows: n, globalBatch: B)
                model.backward(batch: n)
                try collectiveFailure()
                start += n
            }
            d.packed.withUnsafeMutableBufferPointer { p in
                var offset = h * d.packedCount
                for s in d.shared {
                    (p.baseAddress! + offset).update(from: store.gradient(s.view), count: s.view.count)
                    offset += s.view.count
                }
            }
        }
        // The arena holds a head's gradient now: the next step clears all of it.
        store.gradients.update(repeating: 0, count: store.count)
        try d.packed.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0.baseAddress!, count: $0.count) }
        let figures = d.figures()
        d.addTime(monotonicSeconds() - started)
        return figures
    }
}
