// Shared test helpers: the tolerance rule, seeded fills, temporary folders.
// Tolerance rule (as swift-numerics): pass when |a − e| ≤ atol + rtol·max(|a|, |e|).

import Foundation
import Tandem
import XCTest

func assertClose(
    _ actual: Double, _ expected: Double, atol: Double, rtol: Double, _ message: @autoclosure () -> String = "",
    file: StaticString = #filePath, line: UInt = #line
) {
    let ok = abs(actual - expected) <= atol + rtol * max(abs(actual), abs(expected))
    XCTAssertTrue(ok, "\(actual) vs \(expected) (atol \(atol), rtol \(rtol)) \(message())", file: file, line: line)
}

func assertClose(
    _ actual: [Float], _ expected: [Double], atol: Double, rtol: Double, _ message: String = "",
    file: StaticString = #filePath, line: UInt = #line
) {
    XCTAssertEqual(actual.count, expected.count, file: file, line: line)
    for (i, (a, e)) in zip(actual, expected).enumerated() {
        assertClose(Double(a), e, atol: atol, rtol: rtol, "\(message) [\(i)]", file: file, line: line)
    }
}

func temporaryDirectory(_ name: String = #function) -> String {
    let safe = name.filter { $0.isLetter || $0.isNumber }
    let path = NSTemporaryDirectory() + "tandem-tests-\(safe)-\(UUID().uuidString.prefix(8))"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func fillUniform(
    _ p: UnsafeMutablePointer<Float>, _ n: Int, _ rng: inout SeededGenerator, _ low: Double = -1, _ high: Double = 1
) {
    for i in 0..<n { p[i] = Float(rng.uniform(low, high)) }
}

/// A tiny headline configuration with odd, non-square sizes.
func tinyConfig() -> HeadlineConfig {
    var c = HeadlineConfig()
    c.vocabulary = 13
    c.sequenceLength = 5
    c.embeddingDimension = 4
    c.lstmUnits = 3
    c.auxFeatures = 2
    c.denseUnits = 6
    c.denseLayers = 2
    return c
}

/// Writes a small headline dataset with optional sample weights for `main_output`.
func writeTinyData(_ dir: String, samples: Int, config: HeadlineConfig, seed: UInt64, sampleWeights: Bool = false)
    throws
{
    try generateHeadlineData(directory: dir, samples: samples, config: config, seed: seed)
    if sampleWeights {
        var rng = SeededGenerator(seed: seed, stream: 77)
        let w = (0..<samples).map { _ in Float(rng.uniform(0.5, 2.0)) }
        try w.withUnsafeBufferPointer {
            try NPYArray.write(floats: $0, shape: [samples], to: dir + "/main_output.sample_weight.npy")
        }
    }
}

/// `epochs` epochs of global batches of `batch` samples (shuffled by `seed`), then
/// every deferred row brought up to date.
func trainEpochs(_ step: TrainingStep, data: Dataset, batch: Int, epochs: Int, seed: UInt64) throws {
    for epoch in 0..<epochs {
        let order = epochPermutation(count: data.count, seed: seed, epoch: epoch)
        for k in stride(from: 0, to: data.count, by: batch) {
            _ = try order.withUnsafeBufferPointer {
                try step.run(globalBatch: UnsafeBufferPointer(rebasing: $0[k..<min(k + batch, data.count)]), data: data)
            }
        }
    }
    step.synchronize()
}

/// Central differences of the step's total loss against `computeGradient`, every
/// parameter, each tensor getting some gradient (the GradientCheckTests tolerances).
func checkTotalLossGradient(
    _ step: TrainingStep, data: Dataset, batch: [Int32], eps: Float = 1e-3, atol: Double = 5e-4, rtol: Double = 1e-2,
    file: StaticString = #filePath, line: UInt = #line
) throws {
    func total() throws -> Double {
        try batch.withUnsafeBufferPointer { try step.computeGradient(globalBatch: $0, data: data).total }
    }
    _ = try total()
    let store = step.model.parameters
    let analytic = (0..<store.count).map { store.gradients[$0] }
    for view in store.tensors where view.spec.trainable {
        for j in 0..<view.count {
            let p = store.values + view.offset + j
            let saved = p.pointee
            p.pointee = saved + eps
            let up = try total()
            p.pointee = saved - eps
            let down = try total()
            p.pointee = saved
            assertClose(
                Double(analytic[view.offset + j]), (up - down) / Double(2 * eps), atol: atol, rtol: rtol,
                "\(view.name)[\(j)]", file: file, line: line)
        }
        XCTAssertTrue(
            (0..<view.count).contains { analytic[view.offset + $0] != 0 }, "\(view.name) gets gradient", file: file,
            line: line)
    }
}
