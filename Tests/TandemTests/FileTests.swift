// .npy and .safetensors: round trips, type conversion and every corrupt-file error.

import Foundation
import Tandem
import XCTest

final class NPYTests: XCTestCase {
    func testRoundTripFloatAndInt() throws {
        let dir = temporaryDirectory()
        let f: [Float] = [1.5, -2, 3.25, 4, 5, 6]
        try f.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [3, 2], to: dir + "/f.npy") }
        let a = try NPYArray(path: dir + "/f.npy")
        XCTAssertEqual(a.shape, [3, 2])
        XCTAssertEqual(a.type, .float32)
        var row = [Float](repeating: 0, count: 2)
        a.readFloats(row: 1, into: &row)
        XCTAssertEqual(row, [3.25, 4])
        let i: [Int32] = [7, 8, 9]
        try i.withUnsafeBufferPointer { try NPYArray.write(ints: $0, shape: [3], to: dir + "/i.npy") }
        let b = try NPYArray(path: dir + "/i.npy")
        XCTAssertEqual(b.shape, [3])
        XCTAssertEqual(b.type, .int32)
    }

    /// A hand-made .npy file with any header and payload.
    private func raw(
        _ dir: String, _ name: String, descr: String, shape: String, fortran: Bool = false, payload: [UInt8]
    ) -> String {
        var header = "{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(shape), }"
        header += String(repeating: " ", count: (64 - (10 + header.count + 1) % 64) % 64) + "\n"
        var bytes: [UInt8] = [
            0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8),
        ]
        bytes += Array(header.utf8) + payload
        let path = dir + "/" + name
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    func testInt64AndFloat64AreConverted() throws {
        let dir = temporaryDirectory()
        var payload: [UInt8] = []
        for v: Int64 in [3, 9] { withUnsafeBytes(of: v.littleEndian) { payload += $0 } }
        let a = try NPYArray(path: raw(dir, "a.npy", descr: "<i8", shape: "(1, 2)", payload: payload))
        var tokens = [Int32](repeating: 0, count: 2)
        XCTAssertNil(a.readTokens(row: 0, limit: 10, into: &tokens))
        XCTAssertEqual(tokens, [3, 9])
        XCTAssertNotNil(a.readTokens(row: 0, limit: 9, into: &tokens), "9 is outside [0, 9)")
        payload = []
        for v: Double in [0.25, -8] { withUnsafeBytes(of: v.bitPattern.littleEndian) { payload += $0 } }
        let b = try NPYArray(path: raw(dir, "b.npy", descr: "<f8", shape: "(2,)", payload: payload))
        var x: Float = 0
        b.readFloats(row: 1, into: &x)
        XCTAssertEqual(x, -8)
    }

    func testCorruptFilesNameTheFileAndTheProblem() {
        let dir = temporaryDirectory()
        let cases: [(String, String)] = [
            (
                raw(dir, "big.npy", descr: ">f4", shape: "(2,)", payload: [UInt8](repeating: 0, count: 8)),
                "dtype '>f4' is not supported"
            ),
            (raw(dir, "u8.npy", descr: "|u1", shape: "(2,)", payload: [1, 2]), "is not supported"),
            (
                raw(dir, "short.npy", descr: "<f4", shape: "(4, 2)", payload: [UInt8](repeating: 0, count: 12)),
                "truncated"
            ),
            (
                raw(
                    dir, "fortran.npy", descr: "<f4", shape: "(2, 2)", fortran: true,
                    payload: [UInt8](repeating: 0, count: 16)), "Fortran"
            ),
        ]
        for (path, expected) in cases {
            XCTAssertThrowsError(try NPYArray(path: path)) { error in
                XCTAssertTrue("\(error)".hasPrefix(path), "\(error)")
                XCTAssertTrue("\(error)".contains(expected), "\(error)")
            }
        }
        FileManager.default.createFile(atPath: dir + "/junk.npy", contents: Data("hello world, not numpy".utf8))
        XCTAssertThrowsError(try NPYArray(path: dir + "/junk.npy")) {
            XCTAssertTrue("\($0)".contains("not a .npy file"))
        }
        XCTAssertThrowsError(try NPYArray(path: dir + "/none.npy")) {
            XCTAssertTrue("\($0)".contains("file not found"))
        }
        FileManager.default.createFile(atPath: dir + "/empty.npy", contents: Data())
        XCTAssertThrowsError(try NPYArray(path: dir + "/empty.npy")) { XCTAssertTrue("\($0)".contains("empty")) }
    }
}

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
            FileManager.default.createFile(atPath: path, contents: data)
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
