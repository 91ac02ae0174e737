// A watchdog for collectives: if one has not completed within the timeout,
// this rank prints which collective, at which step, and ends itself; mpirun
// then ends the whole job within about a second. A rank that stalls or dies
// can therefore never hold a cluster allocation forever (NOTES-MPI "Faults").

import Foundation

public final class CollectiveWatchdog: @unchecked Sendable {
    private let lock = NSLock()
    /// The collective in progress: static words and a count, formatted only if it
    /// times out, so entering one allocates nothing inside a training step.
    private var current: (name: StaticString, count: Int, unit: StaticString, since: Double)?
    private let timeout: Double
    private let rank: Int
    /// Where training is, for the message ("step 12").
    package var context: String {
        get {
            lock.lock()
            defer { lock.unlock() }
            return contextValue
        }
        set {
            lock.lock()
            contextValue = newValue
            lock.unlock()
        }
    }
    private var contextValue = "start-up"

    /// `timeout` ≤ 0 disables the watchdog.
    public init(timeout: Double, rank: Int) {
        self.timeout = timeout
        self.rank = rank
        guard timeout > 0 else { return }
        let thread = Thread { [weak self] in
            while let self {
                Thread.sleep(forTimeInterval: min(0.25, self.timeout / 4))
                self.check()
            }
        }
        thread.start()
    }

    /// `name` ("MPI_Allreduce of the gradients"), then "(count unit)" when count ≥ 0.
    @inline(__always) public func enter(_ name: StaticString, count: Int = -1, unit: StaticString = "") {
        guard timeout > 0 else { return }
        lock.lock()
        current = (name, count, unit, monotonicSeconds())
        lock.unlock()
    }

    @inline(__always) public func leave() {
        guard timeout > 0 else { return }
        lock.lock()
        current = nil
        lock.unlock()
    }

    private func check() {
        lock.lock()
        let state = current
        let where_ = contextValue
        lock.unlock()
        guard let state, monotonicSeconds() - state.since > timeout else { return }
        let what = "\(state.name)" + (state.count >= 0 ? " (\(state.count) \(state.unit))" : "")
        let message =
            "error: rank \(rank): \(what) at \(where_) has not completed after \(Int(timeout)) s (--collective-timeout): another rank is stalled or gone; ending the job\n"
        FileHandle.standardError.write(Data(message.utf8))
        // Not MPI_Abort: MPI may only be called from the main thread here. Ending
        // this process makes mpirun end every rank.
        kill(getpid(), SIGKILL)
    }
}
