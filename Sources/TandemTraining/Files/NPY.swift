// NumPy .npy files: reader (memory-mapped, or from an .npz's bytes; bool, signed and unsigned integers of 8 to 64 bits,
// float32 / float64; little-endian, C order) and writer (float32 / int32, format 1.0). Every
// input type is converted as Keras converts a model input: to float32 features, or to token ids
// (whole numbers only; a float id with a fraction is refused, never truncated).
// Everything else is a clear error naming the file.

import Foundation
import TandemCore
import TandemKeras

/// Element types Tandem reads from .npy files.
package enum NPYType: String, Sendable {
    case bool = "<b1"
    case int8 = "<i1"
    case uint8 = "<u1"
    case int16 = "<i2"
    case uint16 = "<u2"
    case int32 = "<i4"
    case uint32 = "<u4"
    case int64 = "<i8"
    case uint64 = "<u8"
    case float32 = "<f4"
    case float64 = "<f8"
    var size: Int { Int(rawValue.dropFirst(2))! }
    var isInteger: Bool { self != .float32 && self != .float64 }
    /// NumPy's name for the type.
    var name: String {
        switch self {
        case .bool: "bool"
        case .int8: "int8"
        case .uint8: "uint8"
        case .int16: "int16"
        case .uint16: "uint16"
        case .int32: "int32"
        case .uint32: "uint32"
        case .int64: "int64"
        case .uint64: "uint64"
        case .float32: "float32"
        case .float64: "float64"
        }
    }
}

/// A .npy array: a memory-mapped file, a stored member of a memory-mapped .npz, or an
/// inflated (compressed) .npz member.
public final class NPYArray: @unchecked Sendable {
    /// What holds the bytes (a MappedFile, or the buffer a compressed member was inflated into).
    private let storage: AnyObject
    package let type: NPYType
    public let shape: [Int]
    private let data: UnsafeRawPointer
    /// The file (or `archive.npz[member]`) errors name.
    package let path: String
    /// Bytes of the whole .npy, header included.
    package let byteCount: Int
    // `rows` and `rowWidth` (the product of the trailing dimensions): SampleArray's.

    /// `label`: how errors name the array (default: the path).
    public convenience init(path: String, label: String? = nil) throws {
        let file = try MappedFile(path: path)
        try self.init(bytes: file.bytes, size: file.size, path: label ?? path, storage: file)
    }

    /// The .npy held in `bytes[0..<size]`, which `storage` keeps alive.
    package init(bytes: UnsafeRawPointer, size: Int, path: String, storage: AnyObject) throws {
        self.storage = storage
        self.path = path
        byteCount = size
        let (type, shape, headerEnd) = try NPYArray.parseHeader(bytes, size, path)
        self.type = type
        self.shape = shape
        data = bytes + headerEnd
        let available = size - headerEnd
        guard let elements = checkedProduct(shape), elements <= available else {
            throw TandemError.file(path, "truncated: shape \(shape) needs more data than the file's \(available) bytes")
        }
        let expected = elements * type.size
        if available < expected {
            throw TandemError.file(
                path, "truncated: shape \(shape) needs \(expected) bytes of data, the file has \(available)")
        }
    }

    private static func parseHeader(_ bytes: UnsafeRawPointer, _ size: Int, _ path: String) throws -> (
        NPYType, [Int], Int
    ) {
        let p = bytes.assumingMemoryBound(to: UInt8.self)
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY
        guard size >= 10, (0..<6).allSatisfy({ p[$0] == magic[$0] }) else {
            throw TandemError.file(path, "not a .npy file (bad magic)")
        }
        let major = p[6]
        let headerLength: Int
        let start: Int
        switch major {
        case 1:
            headerLength = Int(p[8]) | Int(p[9]) << 8
            start = 10
        case 2, 3:
            guard size >= 12 else { throw TandemError.file(path, "truncated header") }
            headerLength = Int(p[8]) | Int(p[9]) << 8 | Int(p[10]) << 16 | Int(p[11]) << 24
            start = 12
        default: throw TandemError.file(path, "unsupported .npy version \(major)")
        }
        guard start + headerLength <= size else { throw TandemError.file(path, "truncated header") }
        let header = String(decoding: UnsafeBufferPointer(start: p + start, count: headerLength), as: UTF8.self)

        func field(_ key: String) throws -> String {
            guard let keyRange = header.range(of: "'\(key)':") else {
                throw TandemError.file(path, "header has no '\(key)'")
            }
            return String(header[keyRange.upperBound...]).trimmingCharacters(in: .whitespaces)
        }
        let descrField = try field("descr")
        guard descrField.hasPrefix("'"), let close = descrField.dropFirst().firstIndex(of: "'") else {
            throw TandemError.file(path, "cannot read the dtype in the header")
        }
        var descr = String(descrField[descrField.index(after: descrField.startIndex)..<close])
        if descr.hasPrefix("=") || descr.hasPrefix("|") { descr = "<" + descr.dropFirst() }  // native = little here
        guard let type = NPYType(rawValue: descr) else {
            throw TandemError.file(
                path,
                "dtype '\(descr)' is not supported (need little-endian bool, int8 to int64, uint8 to uint64, float32 or float64)"
            )
        }
        let fortran = try field("fortran_order")
        let shapeField = try field("shape")
        guard shapeField.hasPrefix("("), let shapeEnd = shapeField.firstIndex(of: ")") else {
            throw TandemError.file(path, "cannot read the shape in the header")
        }
        let shapeText = shapeField[shapeField.index(after: shapeField.startIndex)..<shapeEnd]
        var shape: [Int] = []
        for part in shapeText.split(separator: ",") {
            let s = part.trimmingCharacters(in: .whitespaces)
            if s.isEmpty { continue }
            guard let d = Int(s), d >= 0 else { throw TandemError.file(path, "bad shape (\(shapeText))") }
            shape.append(d)
        }
        if fortran.hasPrefix("True") && shape.filter({ $0 > 1 }).count > 1 {
            throw TandemError.file(path, "Fortran-order arrays are not supported (save with C order)")
        }
        return (type, shape, start + headerLength)
    }

    /// Row `row` as Float32 (converted from any accepted type) into `out[0..<rowWidth]`.
    @inline(__always)
    /// One element of a row, as Float.
    package func float(row: Int, column: Int = 0) -> Float { Float(element(row * rowWidth + column)) }

    /// One element of a row, as Double (exact for every type but 64-bit integers beyond 2⁵³).
    package func double(row: Int, column: Int = 0) -> Double { element(row * rowWidth + column) }

    /// Element `i` of the array as Double (exact for every type but 64-bit integers beyond 2⁵³).
    @inline(__always)
    private func element(_ i: Int) -> Double {
        switch type {
        case .bool: return (data + i).load(as: UInt8.self) == 0 ? 0 : 1
        case .int8: return Double((data + i).load(as: Int8.self))
        case .uint8: return Double((data + i).load(as: UInt8.self))
        case .int16: return Double((data + i * 2).loadUnaligned(as: Int16.self))
        case .uint16: return Double((data + i * 2).loadUnaligned(as: UInt16.self))
        case .int32: return Double((data + i * 4).loadUnaligned(as: Int32.self))
        case .uint32: return Double((data + i * 4).loadUnaligned(as: UInt32.self))
        case .int64: return Double((data + i * 8).loadUnaligned(as: Int64.self))
        case .uint64: return Double((data + i * 8).loadUnaligned(as: UInt64.self))
        case .float32: return Double((data + i * 4).loadUnaligned(as: Float.self))
        case .float64: return (data + i * 8).loadUnaligned(as: Double.self)
        }
    }

    package func readFloats(row: Int, into out: UnsafeMutablePointer<Float>) {
        let w = rowWidth
        let base = row * w
        switch type {
        case .float32: out.update(from: (data + base * 4).assumingMemoryBound(to: Float.self), count: w)
        case .int32:
            let s = (data + base * 4).assumingMemoryBound(to: Int32.self)
            for j in 0..<w { out[j] = Float(s[j]) }
        default:
            for j in 0..<w { out[j] = Float(element(base + j)) }
        }
    }

    /// Row `row` as Int32 into `out[0..<rowWidth]`. Returns the first column
    /// whose value is not a whole number in [0, limit), or nil when all are.
    @inline(__always)
    package func readTokens(row: Int, limit: Int, into out: UnsafeMutablePointer<Int32>) -> (
        column: Int, value: Double
    )? {
        let w = rowWidth
        let base = row * w
        var bad: (Int, Double)?
        func check(_ j: Int, _ v: Double) {
            if bad == nil && !(v >= 0 && v < Double(limit) && v.rounded() == v) { bad = (j, v) }
        }
        switch type {
        case .int32:
            let s = (data + base * 4).assumingMemoryBound(to: Int32.self)
            for j in 0..<w {
                let v = s[j]
                out[j] = v
                if v < 0 || Int(v) >= limit { check(j, Double(v)) }
            }
        case .int64:  // NumPy's default integer: its own loop, as int32's
            let s = (data + base * 8).assumingMemoryBound(to: Int64.self)
            for j in 0..<w {
                let v = s[j]
                if v < 0 || v >= Int64(limit) { check(j, Double(v)) }
                out[j] = bad == nil ? Int32(truncatingIfNeeded: v) : 0
            }
        default:
            for j in 0..<w {
                let v = element(base + j)
                check(j, v)
                out[j] = bad == nil ? Int32(v) : 0
            }
        }
        return bad
    }

    /// Writes a float32 array of `shape` to `path` atomically.
    public static func write(floats: UnsafeBufferPointer<Float>, shape: [Int], to path: String) throws {
        try write(raw: UnsafeRawBufferPointer(floats), descr: "<f4", shape: shape, to: path)
    }

    /// Writes an int32 array of `shape` to `path` atomically.
    public static func write(ints: UnsafeBufferPointer<Int32>, shape: [Int], to path: String) throws {
        try write(raw: UnsafeRawBufferPointer(ints), descr: "<i4", shape: shape, to: path)
    }

    private static func write(raw: UnsafeRawBufferPointer, descr: String, shape: [Int], to path: String) throws {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
        // Pad so the data starts on a 64-byte boundary; the header ends with '\n'.
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var prefix = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0])
        let length = UInt16(header.utf8.count)
        prefix.append(contentsOf: [UInt8(length & 0xFF), UInt8(length >> 8)])
        prefix.append(contentsOf: Array(header.utf8))
        let writer = try AtomicFileWriter(path: path)
        try writer.write(prefix)
        try writer.write(raw)
        try writer.commit()
    }
}
