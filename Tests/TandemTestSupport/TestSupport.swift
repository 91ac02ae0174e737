// What both test targets use: a fresh temporary directory per test, a headline model of given
// sizes, and one .npy writer. The in-process tests' own helpers (gradient checks, tolerances)
// are in TandemTests/Support.swift; the CLI tests' process launching is in
// TandemCLITests/Harness.swift.

import Foundation
import Tandem

/// A new empty directory named after the test (`#function`).
public func temporaryDirectory(_ name: String = #function) -> String {
    let safe = name.filter { $0.isLetter || $0.isNumber }
    let path = NSTemporaryDirectory() + "tandem-tests-\(safe)-\(UUID().uuidString.prefix(8))"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

extension HeadlineConfig {
    /// The headline model at these sizes (tests use small, odd, non-square ones).
    public static func sized(
        vocabulary: Int, sequenceLength: Int, embedding: Int, lstmUnits: Int, auxFeatures: Int = 5, denseUnits: Int,
        denseLayers: Int
    ) -> HeadlineConfig {
        var c = HeadlineConfig()
        c.vocabulary = vocabulary
        c.sequenceLength = sequenceLength
        c.embeddingDimension = embedding
        c.lstmUnits = lstmUnits
        c.auxFeatures = auxFeatures
        c.denseUnits = denseUnits
        c.denseLayers = denseLayers
        return c
    }
}

/// Writes float32 `values` of `shape` as a .npy file.
public func write(_ values: [Float], _ shape: [Int], _ path: String) throws {
    try values.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: shape, to: path) }
}
