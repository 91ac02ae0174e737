// .npy and .safetensors: round trips, type conversion and every corrupt-file error.

import Foundation
import TandemTestSupport
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

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
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
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
        _ = FileManager.default.createFile(atPath: dir + "/junk.npy", contents: Data("hello world, not numpy".utf8))
        XCTAssertThrowsError(try NPYArray(path: dir + "/junk.npy")) {
            XCTAssertTrue("\($0)".contains("not a .npy file"))
        }
        XCTAssertThrowsError(try NPYArray(path: dir + "/none.npy")) {
            XCTAssertTrue("\($0)".contains("file not found"))
        }
        _ = FileManager.default.createFile(atPath: dir + "/empty.npy", contents: Data())
        XCTAssertThrowsError(try NPYArray(path: dir + "/empty.npy")) { XCTAssertTrue("\($0)".contains("empty")) }
    }
}
