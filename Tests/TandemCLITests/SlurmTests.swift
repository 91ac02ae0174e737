// scripts/slurm/tandem.sbatch on a real Slurm: Debian's slurm-wlm and munge
// (installed by scripts/test.sh through scripts/slurm/local-cluster.sh install, before
// the tests), a one-node cluster configured in
// a temporary folder and torn down after. A 2-task job is preempted with USR1 (the
// signal --signal=B:USR1@… sends before a time limit), checkpoints, requeues,
// resumes, and ends with the bytes of an uninterrupted run (reproducible mode).

import Foundation
import TandemTestSupport
import XCTest

final class SlurmTests: XCTestCase {
    private let script = Harness.packageRoot + "/scripts/slurm/local-cluster.sh"

    func testPreemptedJobRequeuesAndResumesExactly() throws {
        guard getuid() == 0 else { throw XCTSkip("the local Slurm cluster needs root (CI runs as root)") }
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/slurmctld"),
            FileManager.default.isExecutableFile(atPath: "/usr/sbin/munged")
        else {
            return XCTFail(
                "slurm-wlm and munge are not installed: run `scripts/slurm/local-cluster.sh install` (scripts/test.sh does)"
            )
        }
        let dir = temporaryDirectory()
        let cluster = dir + "/cluster"
        let started = Date()
        let up = try Harness.run("/bin/bash", [script, "up", cluster], timeout: 120)
        defer { _ = try? Harness.run("/bin/bash", [script, "down", cluster], timeout: 60) }
        XCTAssertEqual(up.status, 0, up.stderr + up.stdout)
        let env = ["SLURM_CONF": cluster + "/slurm.conf"]
        func slurm(_ tool: String, _ args: [String]) throws -> RunResult {
            try Harness.run("/usr/bin/" + tool, args, timeout: 60, environment: env)
        }
        func field(_ job: String, _ name: String) throws -> String {
            let show = try slurm("scontrol", ["show", "job", job]).stdout
            return show.split(whereSeparator: { $0 == " " || $0 == "\n" }).first { $0.hasPrefix(name + "=") }.map {
                String($0.dropFirst(name.count + 1))
            } ?? ""
        }
        func waitFor(_ what: String, timeout: Double, _ done: () throws -> Bool) throws {
            let end = Date().addingTimeInterval(timeout)
            while Date() < end {
                if try done() { return }
                Thread.sleep(forTimeInterval: 0.5)
            }
            XCTFail("timed out waiting for \(what)")
        }

        XCTAssertEqual(
            try Harness.tandem(["gen-data", "--out", dir + "/data", "--samples", "96"] + Harness.tiny).status, 0)
        let args =
            [
                "--data", dir + "/data", "--epochs", "4", "--batch-size", "8", "--reproducible", "--micro-batch", "2",
                "--quiet",
            ] + Harness.tiny
        let reference = try Harness.mpi(2, ["train", "--out", dir + "/reference"] + args)
        XCTAssertEqual(reference.status, 0, reference.stderr)

        // 150 ms per step (the test hook) so the signal lands mid-run.
        let submitted = try Harness.run(
            "/usr/bin/sbatch",
            [
                "--parsable", "--output", dir + "/job.out", "--chdir", dir,
                Harness.packageRoot + "/scripts/slurm/tandem.sbatch", dir + "/run", "--",
            ] + args,
            timeout: 60,
            environment: env.merging(["TANDEM_BIN": Harness.binary, "TANDEM_TEST_STEP_DELAY_MS": "150"]) { $1 })
        XCTAssertEqual(submitted.status, 0, submitted.stderr)
        let job = submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try waitFor("the job to run", timeout: 60) { try field(job, "JobState") == "RUNNING" }
        Thread.sleep(forTimeInterval: 3)
        let preempted = Date()
        XCTAssertEqual(try slurm("scancel", ["--signal=USR1", "--batch", job]).status, 0)
        try waitFor("the requeue", timeout: 60) { try field(job, "Restarts") == "1" }
        let requeued = Date()
        // Slurm holds the requeued job for cred_expire (10 s on the local cluster) and then
        // starts it again by itself. Lifting the hold sooner is not safe: the old job
        // credential is still revoked, and a job started in that second is killed.
        let ended = ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"]
        try waitFor("the job to finish", timeout: 120) { ended.contains(try field(job, "JobState")) }
        let shown = try slurm("scontrol", ["show", "job", job]).stdout
        XCTAssertEqual(try field(job, "JobState"), "COMPLETED", shown)
        let finished = Date()
        let log = (try? String(contentsOfFile: dir + "/job.out", encoding: .utf8)) ?? ""
        XCTAssertTrue(log.contains("stopped on request after step"), log)
        XCTAssertTrue(log.contains("resumes from \(dir)/run/checkpoint.safetensors"), log)
        XCTAssertEqual(
            try Data(contentsOf: URL(fileURLWithPath: dir + "/run/weights.safetensors")),
            try Data(contentsOf: URL(fileURLWithPath: dir + "/reference/weights.safetensors")),
            "preempted, requeued and resumed: the bytes of the uninterrupted run")
        print(
            String(
                format:
                    "slurm timings: cluster up %.1f s; signal → requeued %.1f s; requeued → completed %.1f s; total %.1f s",
                preempted.timeIntervalSince(started) - 3, requeued.timeIntervalSince(preempted),
                finished.timeIntervalSince(requeued),
                finished.timeIntervalSince(started)))
    }
}
