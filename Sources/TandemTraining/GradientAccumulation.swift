// Gradient accumulation's state between update steps (Keras's gradient_accumulation_steps).
// Within a window of N steps each rank's backward keeps adding its share into its own
// gradient arena (TrainingStep.computeGradient); the update step's ONE allreduce sums the
// ranks' windows, divides by N and updates. A checkpoint or archive written mid-window
// needs the whole window's sum, so writing one first folds the ranks' sums into rank 0's
// arena (the others' become zero) — the same total for the coming allreduce. The
// uninterrupted run folds at the same step as the run that wrote the checkpoint, so a
// resumed run continues from the very same arenas: resume stays exact.

import TandemCore
import TandemKeras

extension TrainingStep {
    /// Folds every rank's window sum into rank 0's arena. A collective: every rank calls it.
    package func foldAccumulatedGradient() throws {
        guard accumulates, optimizer.accumulatedSteps > 0, communicator.size > 1 else { return }
        let g = model.parameters.gradients
        let n = model.parameters.count
        try communicator.allReduceSum(g, count: n)
        if communicator.rank != 0 { g.update(repeating: 0, count: n) }
    }

    /// Keras's `gradient_accumulator` values in the arena's layout (meaningful on rank 0 after
    /// `foldAccumulatedGradient`), or nil without accumulation. Keras adds each step's whole
    /// gradient, penalties included; Tandem adds the penalties once at the update (the weights
    /// do not move within a window), so m·∇penalty is added here for the m steps accumulated.
    package func kerasAccumulator() -> [Float]? {
        guard accumulates else { return nil }
        let store = model.parameters
        var values = Array(UnsafeBufferPointer(start: store.gradients, count: store.count))
        addPenaltyGradient(to: &values, times: Float(optimizer.accumulatedSteps))
        return values
    }

    /// After an archive's accumulators were read into rank 0's arena (and the iterations
    /// restored): takes out the m·∇penalty that Keras's sum holds (see `kerasAccumulator`).
    package func accumulatorLoadedFromKeras() {
        guard accumulates, communicator.rank == 0, optimizer.accumulatedSteps > 0 else { return }
        let store = model.parameters
        var values = Array(UnsafeBufferPointer(start: store.gradients, count: store.count))
        addPenaltyGradient(to: &values, times: -Float(optimizer.accumulatedSteps))
        values.withUnsafeBufferPointer { store.gradients.update(from: $0.baseAddress!, count: store.count) }
    }

    /// values += times · (2λ₂w + λ₁·sign(w)) over the penalised tensors.
    private func addPenaltyGradient(to values: inout [Float], times: Float) {
        guard times != 0 else { return }
        let store = model.parameters
        for (view, l1, l2) in regularizers {
            let w = store.value(view)
            let a = Float(l1)
            let b = Float(l2)
            for i in 0..<view.count {
                let x = w[i]
                values[view.offset + i] += times * (2 * b * x + a * (x > 0 ? 1 : x < 0 ? -1 : 0))
            }
        }
    }
}
