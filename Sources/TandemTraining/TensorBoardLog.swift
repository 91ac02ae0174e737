// RUN/tensorboard/{train,validation}, laid out as Keras's TensorBoard callback
// writes them: after each epoch `epoch_<name>` for every metrics.jsonl figure
// (train figures in train/, `val_` figures without the prefix in validation/),
// at the epoch's 0-based index; every `--log-every` steps `batch_<name>` of the
// running epoch figures at the global step; on diagnostic steps the per-layer
// figures as `diagnostics/<layer>/<head>_norm`, `…_share` and
// `…/cosine_<a>~<b>`. Rank 0 writes; files are flushed after every epoch. On a
// resume, what the old files hold past the checkpoint is dropped first, so the
// resumed run appends without duplicating steps.

import Foundation
import TandemCore
import TandemKeras
import TandemTensorBoard

public final class TensorBoardLog {
    package let train: EventFileWriter
    public let validation: EventFileWriter
    package let directory: String

    /// Opens RUN/tensorboard; with `resumingAt`, first drops events after that position.
    public init(runDirectory: String, resumingAt position: TrainingPosition?) throws {
        directory = URL(fileURLWithPath: runDirectory).appendingPathComponent("tensorboard").path
        let trainDir = directory + "/train"
        let validationDir = directory + "/validation"
        if let p = position {
            for dir in [trainDir, validationDir] {
                try pruneEventFiles(in: dir) { e in
                    e.tag.hasPrefix("epoch_") ? e.step < p.epoch : e.step <= p.step
                }
            }
        }
        train = try EventFileWriter(directory: trainDir)
        validation = try EventFileWriter(directory: validationDir)
    }

    /// An epoch's figures (metrics.jsonl names and values), `epoch` 1-based.
    func epoch(_ fields: [(String, Any)], epoch: Int) throws {
        var trainValues: [(tag: String, value: Double)] = []
        var validationValues: [(tag: String, value: Double)] = []
        for (key, value) in fields where !["epoch", "step", "seconds"].contains(key) {
            guard let v = value as? Double, v.isFinite else { continue }
            if key.hasPrefix("val_") {
                validationValues.append(("epoch_" + key.dropFirst(4), v))
            } else {
                trainValues.append(("epoch_" + key, v))
            }
        }
        try train.scalars(trainValues, step: epoch - 1)
        try validation.scalars(validationValues, step: epoch - 1)
    }

    /// Running figures at global step `step`.
    func step(_ fields: [(String, Any)], step: Int) throws {
        var values: [(tag: String, value: Double)] = []
        for (key, value) in fields where !["epoch", "step", "seconds"].contains(key) {
            if let v = value as? Double, v.isFinite { values.append(("batch_" + key, v)) }
        }
        try train.scalars(values, step: step)
    }

    /// A diagnostic step's per-layer figures.
    func diagnostics(
        _ layers: [(layer: String, figures: HeadDiagnostics.TensorFigures, heads: [Int])], names: [String], step: Int
    ) throws {
        var values: [(tag: String, value: Double)] = []
        for (layer, f, heads) in layers {
            for h in heads {
                if let n = f.norm[h] { values.append(("diagnostics/\(layer)/\(names[h])_norm", n)) }
                if let s = f.share[h] { values.append(("diagnostics/\(layer)/\(names[h])_share", s)) }
            }
            for c in f.cosine {
                if let v = c.value { values.append(("diagnostics/\(layer)/cosine_\(names[c.a])~\(names[c.b])", v)) }
            }
        }
        try train.scalars(values, step: step)
    }

    package func flush() throws {
        try train.flush()
        try validation.flush()
    }
}
