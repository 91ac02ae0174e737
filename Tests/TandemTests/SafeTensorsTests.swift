// Part of what NPYTests.swift's header describes.

import Foundation
import TandemTestSupport
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class SafeTensorsTests: XCTestCase {
    func testWeightsRoundTripWithKerasNames() throws {
        let dir = temporaryDirectory()
        let model = Model.headline(tinyConfig(), maxBatch: 2)
        model.parameters.initialize(seed: 3)
        try saveWeights(model.parameters, to: dir + "/w.safetensors")
        let file = try SafeTensorsFile(path: dir + "/w.safetensors")
        XCTAssertEqual(file.tensors["embedding/embeddings"]?.shape, [13, 4])
        XCTAssertEqual(file.tensors["lstm/kernel"]?.shape, [4, 12])
        XCTAssertEqual(file.tensors["lstm/recurrent_kernel"]?.shape, [3, 12])
        XCTAssertEqual(file.tensors["dense_1/kernel"]?.shape, [6, 6])
        XCTAssertEqual(file.tensors["main_output/bias"]?.shape, [1])
        let other = Model.headline(tinyConfig(), maxBatch: 2)
        try loadWeights(other.parameters, from: file)
        XCTAssertEqual(other.parameters.snapshot(), model.parameters.snapshot())
        // The header is plain JSON after an 8-byte little-endian length, as the format says.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: dir + "/w.safetensors"))
        let n = Int(bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        XCTAssertEqual(n % 8, 0)
        XCTAssertNotNil(try JSONSerialization.jsonObject(with: bytes.subdata(in: 8..<(8 + n))))
    }

    func testCheckpointRoundTripIncludesOptimizerSlots() throws {
        let dir = temporaryDirectory()
        let model = Model.headline(tinyConfig(), maxBatch: 2)
        model.parameters.initialize(seed: 3)
        let opt = Optimizer(OptimizerConfig(kind: .adam), parameterCount: model.parameters.count)
        for i in 0..<model.parameters.count {
            opt.slot("m")![i] = Float(i)
            opt.slot("v")![i] = 0.5
        }
        var position = TrainingPosition()
        position.step = 7
        position.epoch = 1
        position.batchInEpoch = 2
        let meta = CheckpointMetadata(
            position: position, seed: 4, model: tinyConfig(), optimizer: OptimizerConfig(kind: .adam),
            batchSize: 3, samples: 9, worldSize: 2, shuffle: true)
        try saveCheckpoint(model: model, optimizer: opt, metadata: meta, to: dir + "/c.safetensors")
        let model2 = Model.headline(tinyConfig(), maxBatch: 2)
        let opt2 = Optimizer(OptimizerConfig(kind: .adam), parameterCount: model2.parameters.count)
        let back = try loadCheckpoint(model: model2, optimizer: opt2, from: dir + "/c.safetensors")
        XCTAssertEqual(back.position, position)
        XCTAssertEqual(opt2.iterations, 7)
        XCTAssertEqual(model2.parameters.snapshot(), model.parameters.snapshot())
        XCTAssertEqual(opt2.slot("m")![100], 100)
        XCTAssertNil(
            FileManager.default.enumerator(atPath: dir)!.allObjects.first { "\($0)".contains(".tmp") },
            "no temporary file left")
    }

    func testCorruptSafetensorsErrors() throws {
        let dir = temporaryDirectory()
        let model = Model.headline(tinyConfig(), maxBatch: 2)
        try saveWeights(model.parameters, to: dir + "/w.safetensors")
        let good = try Data(contentsOf: URL(fileURLWithPath: dir + "/w.safetensors"))
        let cases: [(Data, String)] = [
            (good.prefix(good.count - 10), "truncated"),
            (good.prefix(5), "truncated"),
            (Data([0xFF, 0xFF, 0, 0, 0, 0, 0, 0]) + good.dropFirst(8), "header length"),
            (Data([0, 0, 0, 0, 0, 0, 0, 0xF3]) + good.dropFirst(8), "header length"),  // does not fit an Int
            (good.prefix(8) + Data(repeating: 0x41, count: good.count - 8), "corrupt safetensors header"),
        ]
        for (k, (data, expected)) in cases.enumerated() {
            let path = dir + "/bad\(k).safetensors"
            _ = FileManager.default.createFile(atPath: path, contents: data)
            XCTAssertThrowsError(try loadWeights(model.parameters, from: SafeTensorsFile(path: path))) { error in
                XCTAssertTrue("\(error)".hasPrefix(path) && "\(error)".contains(expected), "case \(k): \(error)")
            }
        }
        // Right file, wrong model: the shape mismatch is named.
        var bigger = tinyConfig()
        bigger.lstmUnits = 4
        XCTAssertThrowsError(
            try loadWeights(
                Model.headline(bigger, maxBatch: 1).parameters, from: SafeTensorsFile(path: dir + "/w.safetensors"))
        ) {
            XCTAssertTrue("\($0)".contains("has shape"), "\($0)")
        }
    }
}
