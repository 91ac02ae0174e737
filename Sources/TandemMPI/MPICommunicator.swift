// The only file that touches MPI. Every communication call's return code is
// checked, and a failure names the rank and the call (set-up queries of the
// rank and size, and MPI_Finalize at exit, have nothing to report). MPI is initialised only when this type is
// created, which happens only under mpirun (see `Launch`).

import CMPI
import Foundation
import Tandem

/// Collectives over MPI_COMM_WORLD.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    private let world = tandem_mpi_comm_world()
    private var finalized = false
    /// Ends the job when a collective hangs (set by the command from --collective-timeout).
    public var watchdog: CollectiveWatchdog?

    /// MPI_Init (once per process) and the world's rank and size.
    public init() throws {
        tandem_line_buffer_stdio()
        var provided: Int32 = 0
        let rc = MPI_Init_thread(nil, nil, Int32(MPI_THREAD_FUNNELED), &provided)
        guard rc == MPI_SUCCESS else { throw TandemError.training("MPI_Init_thread failed (code \(rc))") }
        // Return errors to us instead of aborting inside MPI, so we can name them.
        MPI_Comm_set_errhandler(world, tandem_mpi_errors_return())
        var r: Int32 = 0
        var s: Int32 = 0
        MPI_Comm_rank(world, &r)
        MPI_Comm_size(world, &s)
        rank = Int(r)
        size = Int(s)
    }

    private func check(_ rc: Int32, _ call: @autoclosure () -> String) throws {
        watchdog?.leave()
        guard rc != MPI_SUCCESS else { return }
        var length: Int32 = 0
        var text = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
        MPI_Error_string(rc, &text, &length)
        throw TandemError.training("rank \(rank): \(call()) failed: \(cString(text))")
    }

    /// Elements per MPI_Allreduce of a large buffer. Open MPI's algorithms take a
    /// temporary buffer as large as the message (measured: +10 MB resident for 20.8 MB
    /// on 2 ranks); 2 MB pieces bound that at no cost in speed (2.8 MB of floats:
    /// 452 µs in one call, 463 µs in 2 MB pieces; 10 MB of int64: 1.77 vs 1.82 ms).
    static let piece = 1 << 19

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        var offset = 0
        repeat {
            watchdog?.enter("MPI_Allreduce", count: count, unit: "floats")
            let n = min(count - offset, Self.piece)
            try check(
                MPI_Allreduce(
                    tandem_mpi_in_place(), buffer + offset, Int32(n), tandem_mpi_float(), tandem_mpi_sum(), world),
                "MPI_Allreduce(SUM, \(count) floats)")
            offset += n
        } while offset < count
    }

    /// The started sums' requests (grown, rarely, only when a plan has more pieces).
    private var requests = UnsafeMutablePointer<MPI_Request?>.allocate(capacity: 64)
    private var requestCapacity = 64, pendingRequests = 0

    public func startAllReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        var offset = 0
        repeat {
            let n = min(count - offset, Self.piece)
            if pendingRequests == requestCapacity {
                let grown = UnsafeMutablePointer<MPI_Request?>.allocate(capacity: 2 * requestCapacity)
                grown.update(from: requests, count: pendingRequests)
                requests.deallocate()
                requests = grown
                requestCapacity *= 2
            }
            try check(
                MPI_Iallreduce(
                    tandem_mpi_in_place(), buffer + offset, Int32(n), tandem_mpi_float(), tandem_mpi_sum(), world,
                    requests + pendingRequests),
                "MPI_Iallreduce(SUM, \(n) floats)")
            pendingRequests += 1
            offset += n
        } while offset < count
    }

    public func progressSums() throws {
        guard pendingRequests > 0 else { return }
        var done: Int32 = 0
        try check(MPI_Testall(Int32(pendingRequests), requests, &done, nil), "MPI_Testall")
        if done != 0 { pendingRequests = 0 }
    }

    public func waitForSums() throws {
        guard pendingRequests > 0 else { return }
        watchdog?.enter("MPI_Waitall of the gradient buckets", count: pendingRequests, unit: "sums")
        let n = pendingRequests
        pendingRequests = 0
        try check(MPI_Waitall(Int32(n), requests, nil), "MPI_Waitall(\(n) gradient sums)")
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
        watchdog?.enter("MPI_Allreduce of the figures", count: count, unit: "doubles")
        try check(
            MPI_Allreduce(tandem_mpi_in_place(), buffer, Int32(count), tandem_mpi_double(), tandem_mpi_sum(), world),
            "MPI_Allreduce(SUM, \(count) doubles)")
    }

    /// The started Double sum's request (nil when none is under way).
    private var doubleRequest: MPI_Request?, doubleStarted = false

    public func startAllReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
        try check(
            MPI_Iallreduce(
                tandem_mpi_in_place(), buffer, Int32(count), tandem_mpi_double(), tandem_mpi_sum(), world,
                &doubleRequest),
            "MPI_Iallreduce(SUM, \(count) doubles)")
        doubleStarted = true
    }

    public func finishDoubleSum() throws {
        guard doubleStarted else { return }
        doubleStarted = false
        watchdog?.enter("MPI_Wait of a layer's global sums")
        try check(MPI_Wait(&doubleRequest, nil), "MPI_Wait(a layer's global sums)")
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Int64>, count: Int) throws {
        var offset = 0
        repeat {
            watchdog?.enter("MPI_Allreduce of the fixed-point gradients", count: count, unit: "int64")
            let n = min(count - offset, Self.piece / 2)
            try check(
                MPI_Allreduce(
                    tandem_mpi_in_place(), buffer + offset, Int32(n), tandem_mpi_int64(), tandem_mpi_sum(), world),
                "MPI_Allreduce(SUM, \(count) int64)")
            offset += n
        } while offset < count
    }

    public func allReduceMax(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
        watchdog?.enter("MPI_Allreduce(MAX)")
        try check(
            MPI_Allreduce(tandem_mpi_in_place(), buffer, Int32(count), tandem_mpi_double(), tandem_mpi_max(), world),
            "MPI_Allreduce(MAX, \(count) doubles)")
    }

    public func allGather(_ buffer: UnsafeMutablePointer<Float>, count: Int, senders: Int) throws {
        watchdog?.enter("MPI_Allgather of the table gradient", count: count, unit: "floats per sending rank")
        if senders >= size {
            try check(
                MPI_Allgather(
                    tandem_mpi_in_place(), 0, tandem_mpi_float(), buffer, Int32(count), tandem_mpi_float(), world),
                "MPI_Allgather(\(count) floats per rank)")
            return
        }
        if gatherLayout.count != count || gatherLayout.senders != senders {  // once: no allocation per call
            gatherLayout = (
                count, senders, (0..<size).map { $0 < senders ? Int32(count) : 0 },
                (0..<size).map { Int32(min($0, senders) * count) }
            )
        }
        try check(
            MPI_Allgatherv(
                tandem_mpi_in_place(), 0, tandem_mpi_float(), buffer, gatherLayout.counts,
                gatherLayout.displacements, tandem_mpi_float(), world),
            "MPI_Allgatherv(\(count) floats from each of \(senders) ranks)")
    }
    private var gatherLayout: (count: Int, senders: Int, counts: [Int32], displacements: [Int32]) = (0, 0, [], [])

    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, from root: Int) throws {
        // MPI counts are Int32: send large buffers in chunks.
        var offset = 0
        while offset < bytes {
            let n = min(bytes - offset, 1 << 30)
            watchdog?.enter("MPI_Bcast")
            try check(
                MPI_Bcast(buffer + offset, Int32(n), tandem_mpi_uint8(), Int32(root), world),
                "MPI_Bcast(\(bytes) bytes from rank \(root))")
            offset += n
        }
    }

    public func barrier() throws {
        watchdog?.enter("MPI_Barrier")
        try check(MPI_Barrier(world), "MPI_Barrier")
    }

    public func abort(message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data("error: rank \(rank): \(message)\n".utf8))
        MPI_Abort(world, code)
        exit(code)
    }

    /// The MPI library's version string (for the start-up report).
    public var libraryVersion: String {
        var text = [CChar](repeating: 0, count: Int(MPI_MAX_LIBRARY_VERSION_STRING) + 1)
        var length: Int32 = 0
        MPI_Get_library_version(&text, &length)
        return cString(text).split(separator: ",").first.map(String.init) ?? "MPI"
    }

    public var description: String { "MPI (\(size) ranks, \(libraryVersion))" }

    /// MPI_Finalize, once (every rank calls it at exit, after the run's last collective).
    public func finalize() {
        guard !finalized else { return }
        finalized = true
        MPI_Finalize()
    }
}

/// Chooses the communicator from how the process was started (docs/SPEC.md §4).
public enum Launch {
    /// True when started by mpirun / a PMIx launcher.
    public static var underMPI: Bool {
        let env = ProcessInfo.processInfo.environment
        return env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMIX_RANK"] != nil || env["PMI_RANK"] != nil
    }

    /// MPI under mpirun, otherwise a local communicator that never touches MPI.
    public static func communicator() throws -> Communicator {
        underMPI ? try MPICommunicator() : LocalCommunicator()
    }
}

/// A NUL-terminated C buffer as a Swift string.
private func cString(_ chars: [CChar]) -> String {
    String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
