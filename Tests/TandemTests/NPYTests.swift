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

    /// Every integer and bool type NumPy writes is read as Keras casts it: to float32 values, or to
    /// token ids; float ids are read when whole and refused (column and value) when not.
    func testEveryIntegerTypeAndFloatIdsAreConverted() throws {
        let dir = temporaryDirectory()
        func bytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
            values.flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        }
        let cases: [(String, [UInt8])] = [
            ("|b1", [1, 0, 1]), ("|i1", bytes([Int8(-3), 4, 5])), ("|u1", [200, 4, 5]),
            ("<i2", bytes([Int16(-300), 4, 5])), ("<u2", bytes([UInt16(60000), 4, 5])),
            ("<u4", bytes([UInt32(4_000_000), 4, 5])), ("<u8", bytes([UInt64(7), 4, 5])),
        ]
        let expected: [[Float]] = [
            [1, 0, 1], [-3, 4, 5], [200, 4, 5], [-300, 4, 5], [60000, 4, 5], [4_000_000, 4, 5], [7, 4, 5],
        ]
        for ((descr, payload), want) in zip(cases, expected) {
            let a = try NPYArray(
                path: raw(dir, "t\(descr.dropFirst()).npy", descr: descr, shape: "(1, 3)", payload: payload))
            var x = [Float](repeating: 0, count: 3)
            a.readFloats(row: 0, into: &x)
            XCTAssertEqual(x, want, descr)
            XCTAssertEqual(a.float(row: 0, column: 2), want[2], descr)
        }
        var tokens = [Int32](repeating: 0, count: 3)
        let u8 = try NPYArray(path: raw(dir, "ids.npy", descr: "|u1", shape: "(1, 3)", payload: [7, 0, 2]))
        XCTAssertNil(u8.readTokens(row: 0, limit: 8, into: &tokens))
        XCTAssertEqual(tokens, [7, 0, 2])
        let floats = [Float(3), 0, 2.5].flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
        let f = try NPYArray(path: raw(dir, "fids.npy", descr: "<f4", shape: "(1, 3)", payload: floats))
        let bad = f.readTokens(row: 0, limit: 10, into: &tokens)
        XCTAssertEqual(bad?.column, 2)
        XCTAssertEqual(bad?.value, 2.5)
        XCTAssertEqual(Array(tokens.prefix(2)), [3, 0])
    }

    func testCorruptFilesNameTheFileAndTheProblem() {
        let dir = temporaryDirectory()
        let cases: [(String, String)] = [
            (
                raw(dir, "big.npy", descr: ">f4", shape: "(2,)", payload: [UInt8](repeating: 0, count: 8)),
                "dtype '>f4' is not supported"
            ),
            (
                raw(dir, "c8.npy", descr: "<c8", shape: "(1,)", payload: [UInt8](repeating: 0, count: 8)),
                "is not supported"
            ),
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
