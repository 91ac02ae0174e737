// An in-process group of ranks on threads, for fast unit tests of sharding,
// averaging and step equivalence. Sums in rank order, so every rank holds the
// same bits. Not for production: no timeouts, one process.

import Foundation

/// Shared state of a thread group: a reusable barrier and a pointer exchange.
package final class ThreadGroup: @unchecked Sendable {
    package let size: Int
    private let condition = NSCondition()
    private var arrived = 0, generation = 0
    fileprivate var slots: [UnsafeMutableRawPointer?]

    package init(size: Int) {
        self.size = size
        slots = Array(repeating: nil, count: size)
    }

    fileprivate func wait() {
        condition.lock()
        let current = generation
        arrived += 1
        if arrived == size {
            arrived = 0
            generation += 1
            condition.broadcast()
        } else {
            while generation == current { condition.wait() }
        }
        condition.unlock()
    }

    /// Communicators for every rank of the group.
    package func communicators() -> [ThreadCommunicator] {
        (0..<size).map { ThreadCommunicator(group: self, rank: $0) }
    }

    /// Runs `body(rank, communicator)` on `size` threads and waits for all.
    package static func run(size: Int, _ body: @escaping @Sendable (Int, Communicator) -> Void) {
        let group = ThreadGroup(size: size)
        let comms = group.communicators()
        let done = DispatchGroup()
        for r in 0..<size {
            let comm = comms[r]
            let thread = Thread {
                body(r, comm)
                done.leave()
            }
            thread.stackSize = 8 << 20
            done.enter()
            thread.start()
        }
        done.wait()
    }
}

/// One rank of a `ThreadGroup`.
package final class ThreadCommunicator: Communicator, @unchecked Sendable {
    package let rank: Int
    private let group: ThreadGroup
    package var size: Int { group.size }
    public var description: String { "threads (\(group.size) ranks in one process)" }

    init(group: ThreadGroup, rank: Int) {
        self.group = group
        self.rank = rank
    }

    private func reduce<T>(_ buffer: UnsafeMutablePointer<T>, count: Int, _ combine: (T, T) -> T) {
        group.slots[rank] = UnsafeMutableRawPointer(buffer)
        group.wait()
        if rank == 0 {  // rank 0 combines in rank order, then everyone copies
            for r in 1..<size {
                let other = group.slots[r]!.assumingMemoryBound(to: T.self)
                for i in 0..<count { buffer[i] = combine(buffer[i], other[i]) }
            }
        }
        group.wait()
        if rank != 0 { buffer.update(from: group.slots[0]!.assumingMemoryBound(to: T.self), count: count) }
        group.wait()
    }

    package func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        reduce(buffer, count: count, +)
    }
    package func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
        reduce(buffer, count: count, +)
    }
    /// A started Double sum is made when it is finished, so a layer that read its buffer before then
    /// would read its own rank's values only (the tests' check of the split backward).
    private var startedDouble: (buffer: UnsafeMutablePointer<Double>, count: Int)?
    package func startAllReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
        precondition(startedDouble == nil, "one started Double sum at a time")
        startedDouble = (buffer, count)
    }
    package func finishDoubleSum() throws {
        guard let started = startedDouble else { return }
        startedDouble = nil
        reduce(started.buffer, count: started.count, +)
    }
    package func allReduceSum(_ buffer: UnsafeMutablePointer<Int64>, count: Int) throws {
        reduce(buffer, count: count, &+)
    }
    package func allReduceMax(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
        reduce(buffer, count: count) { max($0, $1) }
    }

    package func allGather(_ buffer: UnsafeMutablePointer<Float>, count: Int, senders: Int) throws {
        group.slots[rank] = UnsafeMutableRawPointer(buffer)
        group.wait()
        for r in 0..<min(senders, size) where r != rank {
            (buffer + r * count).update(
                from: group.slots[r]!.assumingMemoryBound(to: Float.self) + r * count, count: count)
        }
        group.wait()
    }

    package func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, from root: Int) throws {
        group.slots[rank] = buffer
        group.wait()
        if rank != root { buffer.copyMemory(from: group.slots[root]!, byteCount: bytes) }
        group.wait()
    }

    package func barrier() throws { group.wait() }

    package func abort(message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data("error: rank \(rank): \(message)\n".utf8))
        exit(code)
    }
}
