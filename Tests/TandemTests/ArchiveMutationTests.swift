// Part of what NewLayerGradientTests.swift's header describes.

import Foundation
import TandemTestSupport
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class ArchiveMutationTests: XCTestCase {
    /// A few hundred mutated archives (bytes flipped, runs zeroed, truncated; in config.json,
    /// in model.weights.h5 of a directory archive — no CRC to catch it — and in the zip):
    /// each one reads, or fails with a TandemError; none traps.
    func testMutatedArchivesNeverTrap() throws {
        let dir = temporaryDirectory()
        let config = HeadlineConfig.sized(
            vocabulary: 11, sequenceLength: 3, embedding: 4, lstmUnits: 2, auxFeatures: 2, denseUnits: 3, denseLayers: 1
        )
        let d = try ModelDescription.headline(config)
        let model = try d.build(maxBatch: 2)
        model.parameters.initialize(seed: 1)
        let optimizer = Optimizer(OptimizerConfig(kind: .adam), parameterCount: model.parameters.count)
        optimizer.restore(iterations: 3)
        try d.saveArchive(to: dir + "/m.keras", store: model.parameters, optimizer: optimizer, heads: d.heads)
        let original = try KerasArchive(path: dir + "/m.keras")
        // The archive round-trips before any mutation.
        let fresh = try d.build(maxBatch: 2)
        try d.loadWeights(fresh.parameters, from: original)
        XCTAssertEqual(fresh.parameters.snapshot(), model.parameters.snapshot())
        let state = try d.loadOptimizerState(
            Optimizer(OptimizerConfig(kind: .adam), parameterCount: fresh.parameters.count), store: fresh.parameters,
            from: original)
        XCTAssertEqual(state.iterations, 3)

        let zipBytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir + "/m.keras")))
        var rng = SeededGenerator(seed: 77)
        var outcomes = (read: 0, refused: 0)
        func mutate(_ bytes: [UInt8]) -> [UInt8] {
            var b = bytes
            switch rng.below(4) {
            case 0: for _ in 0..<(1 + rng.below(8)) { b[rng.below(b.count)] ^= UInt8(1 << rng.below(8)) }
            case 1:
                let at = rng.below(b.count)
                for i in at..<min(b.count, at + 1 + rng.below(64)) { b[i] = 0 }
            case 2: b = Array(b.prefix(rng.below(b.count)))
            default:
                let at = rng.below(b.count)
                for i in at..<min(b.count, at + 8) { b[i] = 0xFF }
            }
            return b
        }
        func attempt(_ path: String) {
            do {
                let a = try KerasArchive(path: path)
                let description = try a.description()
                let m = try description.build(maxBatch: 2)
                try description.loadWeights(m.parameters, from: a)
                _ = try description.loadOptimizerState(
                    Optimizer(OptimizerConfig(kind: .adam), parameterCount: m.parameters.count), store: m.parameters,
                    from: a)
                outcomes.read += 1
            } catch is TandemError {
                outcomes.refused += 1
            } catch {
                XCTFail("\(path): an error that is not a TandemError: \(error)")
            }
        }
        for k in 0..<300 {
            let folder = dir + "/case\(k)"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            switch k % 3 {
            case 0:
                try Data(mutate(zipBytes)).write(to: URL(fileURLWithPath: folder + "/m.keras"))
                attempt(folder + "/m.keras")
            case 1:
                try Data(mutate(original.configBytes)).write(to: URL(fileURLWithPath: folder + "/config.json"))
                try Data(original.weightsBytes!).write(to: URL(fileURLWithPath: folder + "/model.weights.h5"))
                attempt(folder)
            default:
                try Data(original.configBytes).write(to: URL(fileURLWithPath: folder + "/config.json"))
                try Data(mutate(original.weightsBytes!)).write(to: URL(fileURLWithPath: folder + "/model.weights.h5"))
                attempt(folder)
            }
            try? FileManager.default.removeItem(atPath: folder)
        }
        XCTAssertGreaterThan(outcomes.refused, 100, "most mutations are caught")
        XCTAssertEqual(outcomes.read + outcomes.refused, 300)
    }
}
