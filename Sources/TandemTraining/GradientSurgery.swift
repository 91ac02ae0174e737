// PCGrad (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning") on the
// shared tensors, identical on every rank. Each step first takes every head's
// own gradient of the tensors several heads reach, over the GLOBAL batch
// (HeadDiagnostics' pass: a forward and backward per head, one allreduce),
// then the ordinary combined gradient. On the shared tensors, as one vector:
//
//     for each head i:  g_i' = g_i
//         for each other head j, in an order drawn from (seed, step):
//             if ⟨g_i', g_j⟩ < 0:  g_i' −= ⟨g_i', g_j⟩ / ‖g_j‖² · g_j
//     shared gradient += Σ_i (g_i' − g_i)
//
// so a head's gradient loses its component along any head it conflicts with,
// while what is not a head's loss (L2 penalties) and every head's own tensors
// are left as the ordinary step has them. The ordinary optimizer step follows
// (clipping included). Every rank holds the same combined per-head gradients
// and draws the same order, so the surgery is the same everywhere.

import Foundation
import TandemCore
import TandemKeras

public final class PCGrad {
    public let diagnostics: HeadDiagnostics
    public let seed: UInt64
    /// Steps where some pair conflicted, and projections made (for the run's summary).
    public private(set) var conflictingSteps = 0, projections = 0, steps = 0

    public init(model: Model, heads: [Head], seed: UInt64) {
        diagnostics = HeadDiagnostics(model: model, heads: heads)
        self.seed = seed
    }

    /// Adds Σ_i (g_i' − g_i) to `gradients` at the shared tensors' places, from the per-head
    /// gradients in `diagnostics.packed`; `step` is the optimizer step being taken.
    ///
    /// Every g_i' is a combination Σ_k c_ik g_k of the per-head gradients, so the projections are
    /// made on the coefficients with the Gram matrix ⟨g_a, g_b⟩ (Double), and the correction
    /// Σ_k (Σ_i c_ik − 1)·g_k is then added tensor by tensor.
    func apply(to gradients: UnsafeMutablePointer<Float>, step: Int) {
        let d = diagnostics
        let H = d.headNames.count
        let n = d.packedCount
        guard H > 1, n > 0 else { return }
        var rng = SeededGenerator(seed: seed, stream: 0x7063_6772_6164 &+ UInt64(step))  // "pcgrad"
        var projected = false
        d.packed.withUnsafeBufferPointer { p in
            func g(_ h: Int) -> UnsafePointer<Float> { p.baseAddress! + h * n }
            var gram = [[Double]](repeating: [Double](repeating: 0, count: H), count: H)
            for a in 0..<H {
                for b in a..<H {
                    gram[a][b] = dotInDouble(g(a), g(b), count: n)
                    gram[b][a] = gram[a][b]
                }
            }
            var weight = [Double](repeating: -1, count: H)  // Σ_i c_ik − 1, per k
            for i in 0..<H {
                var c = [Double](repeating: 0, count: H)
                c[i] = 1
                var others = (0..<H).filter { $0 != i }
                others.shuffle(using: &rng)
                for j in others where gram[j][j] > 0 {
                    let dot = (0..<H).reduce(0.0) { $0 + c[$1] * gram[$1][j] }  // ⟨g_i', g_j⟩
                    guard dot < 0 else { continue }
                    c[j] -= dot / gram[j][j]
                    projections += 1
                    projected = true
                }
                for k in 0..<H { weight[k] += c[k] }
            }
            steps += 1
            guard projected else { return }
            conflictingSteps += 1
            var offset = 0
            for s in d.shared {
                for k in 0..<H {
                    addScaled(Float(weight[k]), g(k) + offset, to: gradients + s.view.offset, count: s.view.count)
                }
                offset += s.view.count
            }
        }
    }
}
