// A run's data: the training dataset, the rows it trains on, and the validation rows — a
// second dataset, or Keras's validation_split (the LAST rows of the training data, before any
// shuffling, as Keras holds them out). A validation directory may hold another length for an
// `Input(shape=(None, …))`: its rows then go through a model built at that length. Every rank opens the files (headers only) and checks
// its own share of the rows; the ranks agree on any error.

import Foundation
import TandemCore
import TandemKeras

/// Where a run's validation figures come from.
public enum ValidationSource: Sendable {
    case none
    /// A second dataset (a directory, an .npz or a CSV).
    case files(DataFiles)
    case split(Double)
}

public struct TrainingData {
    public let data: Dataset
    public let trainRows: Range<Int>
    public let validation: (data: Dataset, rows: Range<Int>)?

    /// `validationModel`: the model built at a validation directory's own lengths (an
    /// `Input(shape=(None, …))` whose validation data is longer or shorter than the training data).
    public init(
        files: DataFiles, validation source: ValidationSource, model: Model, heads: [Head],
        communicator comm: Communicator, validationModel: Model? = nil
    ) throws {
        let dataset = try comm.agreeOn { try Dataset(files: files, model: model, heads: heads) }
        try comm.agree(dataset.validate(rows: shard(count: dataset.count, rank: comm.rank, size: comm.size)))
        data = dataset
        switch source {
        case .none:
            trainRows = 0..<dataset.count
            validation = nil
        case .files(let other):
            let v = try comm.agreeOn { try Dataset(files: other, model: validationModel ?? model, heads: heads) }
            try comm.agree(v.validate(rows: shard(count: v.count, rank: comm.rank, size: comm.size)))
            trainRows = 0..<dataset.count
            validation = (v, 0..<v.count)
        case .split(let fraction):
            let held = Int((Double(dataset.count) * fraction).rounded(.down))
            guard held > 0, held < dataset.count else {
                throw TandemError.usage(
                    "--validation-split \(fraction) of \(dataset.count) samples leaves no validation or no training rows"
                )
            }
            trainRows = 0..<(dataset.count - held)
            validation = (dataset, (dataset.count - held)..<dataset.count)
        }
    }
}
