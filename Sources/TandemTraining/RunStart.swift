// Where a run's parameters and optimizer state come from, in one documented order of
// precedence, read on rank 0 and sent to every rank:
//   1. a checkpoint (`--resume`): weights, slots, gradient accumulators, the position;
//   2. a weights file (`--init`): the weights only, the optimizer fresh;
//   3. the archive's own weights (as keras.saving.load_model(p).fit(…) continues), and its
//      optimizer state when it is complete for the same optimizer (Keras drops a mismatched
//      state, and so does this);
//   4. the initializers of the model's config, from the run's seed.

import Foundation
import TandemCore
import TandemKeras

/// The source of a run's starting state (see the file header for the precedence).
public enum RunStart {
    case checkpoint(path: String)
    case weights(path: String)
    /// `optimizerState`: whether the archive's optimizer variables are loaded (not after --trainable changed
    /// which weights train: Keras's users compile again then, which starts a fresh optimizer).
    case archive(KerasArchive, ModelDescription, optimizerState: Bool = true)
    case initializers(seed: UInt64, model: String)
}

/// What restoring found: the position to continue from (a checkpoint's), and notes for the
/// start-up report (an archive's optimizer state that was not used, and why).
public struct RestoredRun: Sendable {
    public var position: TrainingPosition?
    /// The optimizer's step count continued from an archive (nil: none, or a checkpoint's).
    public var archiveIterations: Int?
    public var notes: [String] = []
}

extension TrainingStep {
    /// Loads the run's starting state from `start` on rank 0 and gives every rank rank 0's
    /// parameters, optimizer state and position. A collective: every rank calls it.
    public func restore(from start: RunStart) throws -> RestoredRun {
        var restored = RestoredRun()
        var iterations = [0.0]
        try communicator.agreeOn {
            guard communicator.rank == 0 else { return }
            switch start {
            case .checkpoint(let path):
                let meta = try loadCheckpoint(model: model, optimizer: optimizer, from: path)
                restored.position = meta.position
                iterations[0] = Double(meta.optimizerIterations ?? meta.position.step)
            case .weights(let path):
                try loadWeights(model.parameters, from: SafeTensorsFile(path: path))
            case .archive(let archive, let description, let optimizerState):
                try description.loadWeights(model.parameters, from: archive)
                let kind = optimizer.config.kind
                if !optimizerState {
                    if description.optimizer != nil {
                        restored.notes.append(
                            "--trainable changes which weights train: the archive's optimizer state is not used (a fresh optimizer, as compiling again after changing trainable does in Keras)"
                        )
                    }
                } else if description.optimizer?.kind == kind {
                    let state = try description.loadOptimizerState(
                        optimizer, store: model.parameters, from: archive, accumulator: model.parameters.gradients)
                    if let n = state.iterations { iterations[0] = Double(n) }
                    if let note = state.note { restored.notes.append(note) }
                } else if let other = description.optimizer?.kind {
                    restored.notes.append(
                        "--optimizer \(kind.rawValue) replaces the archive's \(other.rawValue): its optimizer state is not used"
                    )
                }
            case .initializers(let seed, let name):
                let missing = model.parameters.unsupportedInitializers
                guard missing.isEmpty else {
                    throw TandemError.usage(
                        "\(name): no weights to start from and Tandem cannot run these initializers: \(missing.joined(separator: ", ")) (save the model after building it, so the archive holds its weights, or give --init)"
                    )
                }
                model.parameters.initialize(seed: seed)
            }
        }
        try broadcastState(model: model, optimizer: optimizer, communicator: communicator)
        try communicator.allReduceMax(&iterations)
        if case .checkpoint = start {
            // Rank 0 read the position; every rank takes it as Codable bytes.
            let bytes = try communicator.broadcastFromRankZero(
                Array(try JSONEncoder().encode(restored.position ?? TrainingPosition())))
            restored.position = try JSONDecoder().decode(TrainingPosition.self, from: Data(bytes))
            optimizer.restore(iterations: Int(iterations[0]))
        } else if iterations[0] > 0 {
            optimizer.restore(iterations: Int(iterations[0]))
            accumulatorLoadedFromKeras()
            restored.archiveIterations = Int(iterations[0])
        }
        return restored
    }
}
