// TensorBoard event files (docs/SPEC.md §11): one `events.out.tfevents.<time>.<host>.<pid>.tandem`
// per directory and session, each record an `Event` protobuf (encoded and decoded by
// swift-protobuf from Protos/tensorboard_event.proto) in TFRecord framing:
//
//     uint64 length | uint32 masked_crc32c(length) | bytes event | uint32 masked_crc32c(event)
//
// (little-endian; masked = rotate-right-15 + 0xa282ead8, CRC-32C as TensorFlow's
// tensorflow/tsl/lib/hash/crc32c). The first event names the file version. Rank 0
// alone writes; `flush` writes the buffered records out so a running TensorBoard
// shows them.

import Foundation
import SwiftProtobuf
import TandemCore

/// CRC-32C (Castagnoli), reflected, table-driven.
enum CRC32C {
    private static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0x82F6_3B78 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    /// TFRecord's masked form.
    static func masked<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        let c = checksum(bytes)
        return ((c >> 15) | (c << 17)) &+ 0xA282_EAD8
    }
}

/// One scalar as TensorBoard stores it.
package struct ScalarEvent: Sendable, Equatable {
    package var tag: String
    public var step: Int
    package var value: Float
    package var wallTime: Double
}

public final class EventFileWriter {
    package let path: String
    private var pending = Data()

    /// A new event file in `directory` (created when missing), starting with the version event.
    package init(directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let now = Date().timeIntervalSince1970
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, 255)
        let name = "events.out.tfevents.\(Int(now)).\(String(cString: host)).\(getpid()).tandem"
        path = URL(fileURLWithPath: directory).appendingPathComponent(name).path
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
            throw TandemError.file(path, "cannot create the TensorBoard event file")
        }
        var version = Tensorboard_Event()
        version.wallTime = now
        version.fileVersion = "brain.Event:2"
        try append(version)
        try flush()
    }

    /// Buffers scalars of one step (TensorBoard's scalar plugin reads simple values).
    package func scalars(
        _ values: [(tag: String, value: Double)], step: Int, wallTime: Double = Date().timeIntervalSince1970
    ) throws {
        guard !values.isEmpty else { return }
        try append(
            EventFileWriter.scalarEvent(values.map { ($0.tag, Float($0.value)) }, step: step, wallTime: wallTime))
    }

    /// One Event holding `values` as scalar summaries at `step`.
    static func scalarEvent(_ values: [(tag: String, value: Float)], step: Int, wallTime: Double) -> Tensorboard_Event {
        var event = Tensorboard_Event()
        event.wallTime = wallTime
        event.step = Int64(step)
        event.summary.value = values.map { tag, value in
            var v = Tensorboard_Summary.Value()
            v.tag = tag
            v.simpleValue = value
            v.metadata.pluginData.pluginName = "scalars"
            return v
        }
        return event
    }

    private func append(_ event: Tensorboard_Event) throws {
        pending.append(EventFileWriter.record(try event.serializedBytes()))
    }

    /// The buffered records, appended to the file.
    package func flush() throws {
        guard !pending.isEmpty else { return }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw TandemError.file(path, "cannot open for writing")
        }
        defer { try? handle.close() }
        do {
            try handle.seekToEnd()
            try handle.write(contentsOf: pending)
        } catch { throw TandemError.file(path, "cannot write TensorBoard events (\(error))") }
        pending.removeAll(keepingCapacity: true)
    }

    /// One TFRecord around `payload`.
    static func record(_ payload: [UInt8]) -> Data {
        var out = Data()
        var length = UInt64(payload.count).littleEndian
        let lengthBytes = withUnsafeBytes(of: &length) { Array($0) }
        out.append(contentsOf: lengthBytes)
        var c1 = CRC32C.masked(lengthBytes).littleEndian
        withUnsafeBytes(of: &c1) { out.append(contentsOf: $0) }
        out.append(contentsOf: payload)
        var c2 = CRC32C.masked(payload).littleEndian
        withUnsafeBytes(of: &c2) { out.append(contentsOf: $0) }
        return out
    }
}

/// Reads the scalar events of a file (checks every record's checksums).
package func readScalarEvents(_ path: String) throws -> [ScalarEvent] {
    let data = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
    var events: [ScalarEvent] = []
    var offset = 0
    func word<T: FixedWidthInteger>(_ type: T.Type, at i: Int) -> T {
        var v: T = 0
        for k in 0..<MemoryLayout<T>.size { v |= T(data[i + k]) << (8 * k) }
        return v
    }
    while offset < data.count {
        guard offset + 12 <= data.count else {
            throw TandemError.file(path, "truncated record header at byte \(offset)")
        }
        let length = Int(word(UInt64.self, at: offset))
        guard word(UInt32.self, at: offset + 8) == CRC32C.masked(data[offset..<(offset + 8)]),
            offset + 16 + length <= data.count
        else { throw TandemError.file(path, "bad record length at byte \(offset)") }
        let payload = data[(offset + 12)..<(offset + 12 + length)]
        guard word(UInt32.self, at: offset + 12 + length) == CRC32C.masked(payload) else {
            throw TandemError.file(path, "bad record checksum at byte \(offset)")
        }
        let event = try Tensorboard_Event(serializedBytes: Array(payload))
        for v in event.summary.value {
            if case .simpleValue(let x)? = v.value {
                events.append(ScalarEvent(tag: v.tag, step: Int(event.step), value: x, wallTime: event.wallTime))
            }
        }
        offset += 16 + length
    }
    return events
}

/// Rewrites every event file in `directory` without the scalars `keep` rejects (a resumed run
/// then appends without duplicating steps written after its checkpoint).
package func pruneEventFiles(in directory: String, keep: (ScalarEvent) -> Bool) throws {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
    for name in names.sorted() where name.hasPrefix("events.out.tfevents.") {
        let path = URL(fileURLWithPath: directory).appendingPathComponent(name).path
        let events = try readScalarEvents(path)
        guard events.contains(where: { !keep($0) }) else { continue }
        var out = Data()
        var version = Tensorboard_Event()
        version.wallTime = events.first?.wallTime ?? Date().timeIntervalSince1970
        version.fileVersion = "brain.Event:2"
        out.append(EventFileWriter.record(try version.serializedBytes()))
        for e in events where keep(e) {
            out.append(
                EventFileWriter.record(
                    try EventFileWriter.scalarEvent([(e.tag, e.value)], step: e.step, wallTime: e.wallTime)
                        .serializedBytes()))
        }
        try AtomicFileWriter.write(out, to: path)
    }
}
