// The safetensors format (Hugging Face): 8-byte little-endian header length,
// a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {…}},
// then raw little-endian tensor bytes. Tandem writes F32; it reads F32 and F64.

import Foundation
import TandemCore
import TandemKeras

/// A tensor to write: its name, shape and Float32 values.
public struct SafeTensorsEntry {
    public let name: String
    public let shape: [Int]
    package let values: UnsafePointer<Float>
    package init(name: String, shape: [Int], values: UnsafePointer<Float>) {
        self.name = name
        self.shape = shape
        self.values = values
    }
}

/// A memory-mapped, validated safetensors file.
public final class SafeTensorsFile {
    package struct Info {
        package let dtype: String
        package let shape: [Int]
        let begin: Int
        let end: Int
    }
    package let file: MappedFile
    package let tensors: [String: Info]
    public let metadata: [String: String]
    private let dataStart: Int
    package var path: String { file.path }

    public init(path: String) throws {
        file = try MappedFile(path: path)
        guard file.size >= 8 else { throw TandemError.file(path, "truncated: no safetensors header") }
        // Compare as UInt64: a corrupt length may not even fit an Int.
        let rawLength = file.bytes.loadUnaligned(as: UInt64.self).littleEndian
        guard rawLength > 0, rawLength <= UInt64(file.size - 8), rawLength < 100_000_000 else {
            throw TandemError.file(
                path, "not a safetensors file (header length \(rawLength) does not fit the file of \(file.size) bytes)")
        }
        let headerLength = Int(rawLength)
        dataStart = 8 + headerLength
        let json = Data(bytes: file.bytes + 8, count: headerLength)
        guard let header = try? JSONSerialization.jsonObject(with: json) as? [String: Any] else {
            throw TandemError.file(path, "corrupt safetensors header (not a JSON object)")
        }
        var infos: [String: Info] = [:]
        var meta: [String: String] = [:]
        let dataSize = file.size - dataStart
        for (name, value) in header {
            if name == "__metadata__" {
                guard let m = value as? [String: String] else {
                    throw TandemError.file(path, "__metadata__ must map strings to strings")
                }
                meta = m
                continue
            }
            guard let entry = value as? [String: Any], let dtype = entry["dtype"] as? String,
                let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int],
                offsets.count == 2
            else {
                throw TandemError.file(path, "corrupt header entry for tensor '\(name)'")
            }
            let itemSize: Int
            switch dtype {
            case "F32": itemSize = 4
            case "F64": itemSize = 8
            default: throw TandemError.file(path, "tensor '\(name)' has dtype \(dtype); Tandem reads F32 and F64")
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard let elements = checkedProduct(shape), elements <= dataSize, begin >= 0, end >= begin, end <= dataSize,
                end - begin == elements * itemSize
            else {
                throw TandemError.file(
                    path,
                    "tensor '\(name)' has data offsets \(offsets) that do not fit its shape \(shape) or the file (truncated?)"
                )
            }
            infos[name] = Info(dtype: dtype, shape: shape, begin: begin, end: end)
        }
        tensors = infos
        metadata = meta
    }

    /// Copies tensor `name` as Float32 into `out` after checking its shape.
    package func read(_ name: String, shape: [Int], into out: UnsafeMutablePointer<Float>) throws {
        guard let info = tensors[name] else { throw TandemError.file(path, "has no tensor '\(name)'") }
        guard info.shape == shape else {
            throw TandemError.file(path, "tensor '\(name)' has shape \(info.shape), the model needs \(shape)")
        }
        let src = file.bytes + dataStart + info.begin
        let n = shape.reduce(1, *)
        if info.dtype == "F32" {
            UnsafeMutableRawPointer(out).copyMemory(from: src, byteCount: n * 4)
        } else {
            for i in 0..<n { out[i] = Float(src.loadUnaligned(fromByteOffset: i * 8, as: Double.self)) }
        }
    }

    /// Writes `entries` (F32) and `metadata` to `path` atomically.
    public static func write(_ entries: [SafeTensorsEntry], metadata: [String: String], to path: String) throws {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for entry in entries {
            let bytes = entry.shape.reduce(1, *) * 4
            header[entry.name] =
                ["dtype": "F32", "shape": entry.shape, "data_offsets": [offset, offset + bytes]] as [String: Any]
            offset += bytes
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad with spaces so tensor data starts 8-byte aligned (as the reference writer does).
        json.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8))
        var prefix = Data(count: 8)
        prefix.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(json.count).littleEndian, as: UInt64.self) }
        let writer = try AtomicFileWriter(path: path)
        try writer.write(prefix + json)
        for entry in entries {
            try writer.write(UnsafeRawBufferPointer(start: entry.values, count: entry.shape.reduce(1, *) * 4))
        }
        try writer.commit()
    }
}
