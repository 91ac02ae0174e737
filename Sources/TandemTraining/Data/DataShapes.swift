// The lengths of an `Input(shape=(None, …))`'s None axes, read from the data: the model is built
// at the length its data has (array headers only; nothing is read beyond them).

import Foundation
import TandemCore
import TandemKeras

extension ModelDescription {
    /// Fills `dataShapes` for every input declared with a None axis, from `files`.
    public mutating func takeShapes(from files: DataFiles) throws {
        for id in variableInputs {
            let name = node(id)!.layer
            guard let array = try files.array(name) else { throw files.missing(name, what: "input '\(name)'") }
            dataShapes[id] = Array(array.shape.dropFirst())
        }
        if !variableInputs.isEmpty { dataSource = files.location }
    }
}
