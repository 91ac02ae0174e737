// The lengths of an `Input(shape=(None, …))`'s None axes, read from the data: the model is built
// at the length its data has (the .npy headers only; nothing is read beyond them).

import Foundation
import TandemCore
import TandemKeras

extension ModelDescription {
    /// Fills `dataShapes` for every input declared with a None axis, from `directory/<input>.npy`.
    public mutating func takeShapes(fromData directory: String) throws {
        for id in variableInputs {
            let name = node(id)!.layer
            let path = URL(fileURLWithPath: directory).appendingPathComponent("\(name).npy").path
            guard FileManager.default.fileExists(atPath: path) else {
                throw TandemError.file(path, "file not found (the model's input '\(name)' needs it)")
            }
            dataShapes[id] = Array(try NPYArray(path: path).shape.dropFirst())
        }
        if !variableInputs.isEmpty { dataSource = directory }
    }
}
