// The collective operations training needs, behind one small protocol.
// Invariant (as Horovod / DDP): every rank makes the same collectives, on
// buffers of the same size, in the same order. The trainer never branches on
// "distributed or not": LocalCommunicator makes every call trivial.

import Foundation

/// Collectives over a fixed group of ranks. Every call is collective.
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Every rank holds the element-wise sum of all ranks' buffers afterwards.
    func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws
    /// Starts the sum `allReduceSum` makes without waiting for it (the overlapped
    /// gradient exchange, GradientBuckets.swift). Collective and ordered like every
    /// other call; `buffer` must not be read or written until `waitForSums` returns.
    func startAllReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws
    /// Lets the started sums advance (MPI moves them only inside its calls); never waits.
    func progressSums() throws
    /// Returns once every started sum is complete.
    func waitForSums() throws
    /// The same for Double (metrics, counts, flags).
    func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws
    /// Starts a Double sum apart from the gradient sums (a normalisation's global sums in backward,
    /// which travel while the convolutions' weight gradients are made). One at a time, finished by
    /// `finishDoubleSum` before the next collective; `buffer` untouched until then.
    func startAllReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws
    /// Returns once the started Double sum is complete (at once when none is).
    func finishDoubleSum() throws
    /// The same for Int64: exact, so the result does not depend on the order of the sum.
    func allReduceSum(_ buffer: UnsafeMutablePointer<Int64>, count: Int) throws
    /// Every rank holds the element-wise maximum afterwards.
    func allReduceMax(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws
    /// In place: the `count` values of each rank r < `senders` at `buffer + r·count`
    /// reach every rank, so afterwards every rank holds all `senders·count` values,
    /// in rank order (ranks from `senders` on only receive).
    func allGather(_ buffer: UnsafeMutablePointer<Float>, count: Int, senders: Int) throws
    /// Every rank holds rank `root`'s bytes afterwards.
    func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, from root: Int) throws
    func barrier() throws
    /// Ends every rank of the job at once (the last resort when ranks cannot agree).
    func abort(message: String, code: Int32) -> Never
    /// A one-line description for the start-up report.
    var description: String { get }
}

/// An error every rank has agreed on. `reporter` is true on the one rank
/// that prints it (the lowest rank that saw it); the others exit quietly.
public struct AgreedError: Error, CustomStringConvertible {
    public let message: String
    public let reporter: Bool
    public var description: String { message }
    public init(message: String, reporter: Bool) {
        self.message = message
        self.reporter = reporter
    }
}

extension Communicator {
    /// Collective: rank 0's `bytes` on every rank (what the others pass is replaced).
    public func broadcastFromRankZero(_ bytes: [UInt8]) throws -> [UInt8] {
        var length = [Double(rank == 0 ? bytes.count : 0)]
        try allReduceMax(&length)
        var out = rank == 0 ? bytes : [UInt8](repeating: 0, count: Int(length[0]))
        if !out.isEmpty { try out.withUnsafeMutableBytes { try broadcast($0.baseAddress!, bytes: $0.count, from: 0) } }
        return out
    }

    /// Collective: if any rank passes an error, every rank throws `AgreedError`
    /// carrying the lowest failing rank's message. Costs two small collectives.
    public func agree(_ error: Error?) throws {
        var failing = [Double(error == nil ? Double(size) : Double(rank))]
        // MIN via MAX of the negation keeps the protocol to SUM and MAX.
        failing[0] = -failing[0]
        try failing.withUnsafeMutableBufferPointer { try allReduceMax($0.baseAddress!, count: 1) }
        let first = Int(-failing[0])
        guard first < size else { return }
        // Ship the message so the reporter's words reach rank 0's log too.
        var bytes = [UInt8](repeating: 0, count: 2048)
        if rank == first {
            let text = Array(String(describing: error!).utf8.prefix(2047))
            bytes.replaceSubrange(0..<text.count, with: text)
        }
        try bytes.withUnsafeMutableBytes { try broadcast($0.baseAddress!, bytes: 2048, from: first) }
        let message = String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        throw AgreedError(message: size > 1 && first != 0 ? "rank \(first): \(message)" : message, reporter: rank == 0)
    }

    /// Runs `body` and agrees on its outcome across ranks.
    public func agreeOn<T>(_ body: () throws -> T) throws -> T {
        var result: T?
        var failure: Error?
        do { result = try body() } catch { failure = error }
        try agree(failure)
        return result!
    }

    /// Every rank's `text` (up to 255 bytes), in rank order, on every rank.
    public func allGather(_ text: String) throws -> [String] {
        var result: [String] = []
        for root in 0..<size {
            var bytes = [UInt8](repeating: 0, count: 256)
            if rank == root {
                let t = Array(text.utf8.prefix(255))
                bytes.replaceSubrange(0..<t.count, with: t)
            }
            try bytes.withUnsafeMutableBytes { try broadcast($0.baseAddress!, bytes: 256, from: root) }
            result.append(String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self))
        }
        return result
    }

    public func allReduceSum(_ values: inout [Double]) throws {
        try values.withUnsafeMutableBufferPointer { try allReduceSum($0.baseAddress!, count: $0.count) }
    }

    /// Without non-blocking collectives a started sum is simply made at once: the same
    /// values, no overlap (the local and thread communicators).
    public func startAllReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        try allReduceSum(buffer, count: count)
    }
    public func progressSums() throws {}
    public func waitForSums() throws {}
    public func startAllReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
        try allReduceSum(buffer, count: count)
    }
    public func finishDoubleSum() throws {}

    public func allReduceMax(_ values: inout [Double]) throws {
        try values.withUnsafeMutableBufferPointer { try allReduceMax($0.baseAddress!, count: $0.count) }
    }
}

/// One process, no MPI: every collective is the identity.
public final class LocalCommunicator: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {}
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {}
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Int64>, count: Int) throws {}
    public func allReduceMax(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {}
    public func allGather(_ buffer: UnsafeMutablePointer<Float>, count: Int, senders: Int) throws {}
    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, from root: Int) throws {}
    public func barrier() throws {}
    public func abort(message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data("error: \(message)\n".utf8))
        exit(code)
    }
    public var description: String { "local (1 process, no MPI)" }
}

/// The contiguous slice of `count` items rank `rank` of `size` takes:
/// slices are in rank order and their sizes differ by at most one (docs/SPEC.md §4).
public func shard(count: Int, rank: Int, size: Int) -> Range<Int> {
    (count * rank / size)..<(count * (rank + 1) / size)
}
