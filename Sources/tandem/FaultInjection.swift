// Test-only fault injection for the end-to-end fault tests (FaultTests, ClusterTests,
// ReproducibleTests, ProgressTests), from the environment — never set in normal use. It lives
// in the CLI, not the library: the library offers only the general `Trainer.beforeStep` hook.

import Foundation

/// The faults the environment asks for:
///   TANDEM_TEST_STALL=RANK:STEP:SECONDS   that rank sleeps before that step
///   TANDEM_TEST_KILL=RANK:STEP            that rank SIGKILLs itself before that step
///   TANDEM_TEST_STEP_DELAY_MS=N           every rank sleeps N ms before each step
struct TestFaults {
    var stall: (rank: Int, step: Int, seconds: Double)?
    var kill: (rank: Int, step: Int)?
    var delay = 0.0

    static func fromEnvironment() -> TestFaults? {
        let env = ProcessInfo.processInfo.environment
        var f = TestFaults()
        func numbers(_ key: String) -> [Double]? { env[key].map { $0.split(separator: ":").compactMap { Double($0) } } }
        if let s = numbers("TANDEM_TEST_STALL"), s.count == 3 { f.stall = (Int(s[0]), Int(s[1]), s[2]) }
        if let k = numbers("TANDEM_TEST_KILL"), k.count == 2 { f.kill = (Int(k[0]), Int(k[1])) }
        if let d = env["TANDEM_TEST_STEP_DELAY_MS"].flatMap(Double.init) { f.delay = d / 1000 }
        return f.stall == nil && f.kill == nil && f.delay == 0 ? nil : f
    }

    func beforeStep(_ step: Int, rank: Int) {
        if delay > 0 { Thread.sleep(forTimeInterval: delay) }
        if let kill, kill.rank == rank, kill.step == step { Foundation.kill(getpid(), SIGKILL) }
        if let stall, stall.rank == rank, stall.step == step { Thread.sleep(forTimeInterval: stall.seconds) }
    }
}
