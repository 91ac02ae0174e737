// Across hosts: network-namespace hosts on this machine joined by a bridge,
// mpirun launching through the project's agent (no ssh), TCP between hosts.
// Needs root and `ip netns` — CI runs as root; elsewhere these tests say so and skip.

import Foundation
import Tandem
import TandemTestSupport
import XCTest

final class ClusterTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        guard getuid() == 0 else { throw XCTSkip("the namespace cluster needs root (CI runs as root)") }
        dir = temporaryDirectory()
        XCTAssertEqual(
            try Harness.tandem(["gen-data", "--out", dir + "/data", "--samples", "40", "--seed", "6"] + Harness.tiny)
                .status, 0)
    }

    private func train(_ out: String, model: [String] = Harness.tiny) -> [String] {
        [
            "train", "--data", dir + "/data", "--out", out, "--optimizer", "adam", "--lr", "0.01", "--epochs", "2",
            "--batch-size", "8", "--l2", "dense=0.01", "--sync-check-every", "1",
        ] + model
    }

    private func cluster(_ hosts: Int, slots: Int, _ args: [String], environment: [String: String] = [:]) throws
        -> RunResult
    {
        try Harness.run(
            "/bin/bash",
            [
                Harness.packageRoot + "/scripts/netns-cluster.sh", "run", "\(hosts)", "--slots", "\(slots)",
                "--timeout", "90", "--",
            ] + args,
            timeout: 120, environment: environment.merging(["TANDEM_BIN": Harness.binary]) { $1 })
    }

    /// Bytes each host's virtual link carried, from the script's report.
    private func linkBytes(_ stderr: String) -> [String: Int] {
        var result: [String: Int] = [:]
        for line in stderr.split(separator: "\n") {
            let words = line.split(separator: " ")
            if words.count == 3, words[0].hasPrefix("tandem-h"), words[2] == "bytes", let n = Int(words[1]) {
                result[String(words[0])] = n
            }
        }
        return result
    }

    /// With `factored`, the model takes the compact step (CompactTableStep.swift): the
    /// table's S rows in the allreduce, its dE blocks allgathered over TCP.
    private func checkAgainstLocal(hosts: Int, slots: Int, factored: Bool = false) throws {
        let model = factored ? Harness.tinyWide : Harness.tiny
        XCTAssertEqual(try Harness.tandem(train(dir + "/local", model: model)).status, 0)
        let out = dir + "/cluster\(hosts)x\(slots)"
        let result = try cluster(hosts, slots: slots, train(out, model: model))
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stderr.contains("\(hosts * slots) ranks on \(hosts) hosts"), result.stderr)
        let reference = try Harness.weights(dir + "/local/weights.safetensors")
        let weights = try Harness.weights(out + "/weights.safetensors")
        for (name, values) in reference {
            // The data-parallel tolerance: another summation order over 10 Adam steps.
            let worst = zip(weights[name]!, values).map { abs($0 - $1) / (1e-3 + abs($1)) }.max()!
            XCTAssertLessThan(worst, 1e-3, name)
        }
        // Every step allreduces every gradient: each host's link must carry at least
        // half the gradient bytes per step (10 steps), far more than control traffic
        // (the factored table's rows are counted out: they travel as S rows and dE blocks).
        let parameters = reference.filter { !factored || $0.key != "embedding/embeddings" }.values.reduce(0) {
            $0 + $1.count
        }
        let bytes = linkBytes(result.stderr)
        XCTAssertEqual(bytes.count, hosts, result.stderr)
        for (host, n) in bytes { XCTAssertGreaterThan(n, 10 * parameters * 4 / 2, "\(host) carried the gradients") }
        XCTAssertTrue(
            ((try? FileManager.default.contentsOfDirectory(atPath: "/var/run/netns")) ?? []).filter {
                $0.hasPrefix("tandem-")
            }.isEmpty,
            "the cluster was removed")
    }

    func testThreeHostsOneSlotEachMatchOneProcess() throws { try checkAgainstLocal(hosts: 3, slots: 1) }

    func testTwoHostsTwoSlotsEachMatchOneProcess() throws { try checkAgainstLocal(hosts: 2, slots: 2) }

    func testFactoredTableStepAcrossThreeHostsMatchesOneProcess() throws {
        try checkAgainstLocal(hosts: 3, slots: 1, factored: true)
    }

    func testRankKilledOnOneHostEndsTheJob() throws {
        // Ranks 2 and 3 live on tandem-h2; rank 3 SIGKILLs itself before step 4.
        let result = try cluster(2, slots: 2, train(dir + "/killed"), environment: ["TANDEM_TEST_KILL": "3:4"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertNotEqual(result.status, 110, "mpirun timeout: the job hung")
        XCTAssertLessThan(result.seconds, 30, "ends within seconds")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/killed/weights.safetensors"))
    }

    func testRefusesWithoutRootAndCleansUpAfterFailure() throws {
        // As an unprivileged user the script refuses before touching anything. (A copy in
        // /tmp: the checkout itself may not be readable by that user.)
        let copy = "/tmp/tandem-netns-cluster-\(getpid()).sh"
        try? FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: Harness.packageRoot + "/scripts/netns-cluster.sh", toPath: copy)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: copy)
        defer { try? FileManager.default.removeItem(atPath: copy) }
        let refused = try Harness.run(
            "/usr/sbin/runuser", ["-u", "nobody", "--", "/bin/bash", copy, "up", "2"], timeout: 30)
        XCTAssertEqual(refused.status, 2, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("must run as root"), refused.stderr)
        // A run that fails (bad data) still removes every namespace it made.
        let failed = try cluster(
            2, slots: 1, ["train", "--data", dir + "/nowhere", "--out", dir + "/x"] + Harness.tiny)
        XCTAssertNotEqual(failed.status, 0)
        XCTAssertTrue(failed.stderr.contains("dataset directory not found"), failed.stderr)
        XCTAssertTrue(
            ((try? FileManager.default.contentsOfDirectory(atPath: "/var/run/netns")) ?? []).filter {
                $0.hasPrefix("tandem-")
            }.isEmpty,
            "nothing left behind")
    }
}
