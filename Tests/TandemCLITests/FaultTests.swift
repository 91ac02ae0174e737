// Faults (issue: checkpoints that survive crashes): stop on request and resume,
// a killed rank, a stalled rank, kills during checkpoint writes. Every run has
// a watchdog (mpirun --timeout and the harness's), so a hang is a failure.
// The model's table is ≥ 4U wide, so training takes the compact, factored step
// (CompactTableStep.swift), as the headline model does.

import Foundation
import Tandem
import TandemTestSupport
import XCTest

final class FaultTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = temporaryDirectory()
        XCTAssertEqual(
            try Harness.tandem(
                ["gen-data", "--out", dir + "/data", "--samples", "120", "--seed", "4"] + Harness.tinyWide
            ).status, 0)
    }

    private func train(_ out: String, epochs: Int = 4, _ extra: [String] = []) -> [String] {
        [
            "train", "--data", dir + "/data", "--out", out, "--optimizer", "adam", "--lr", "0.01", "--epochs",
            "\(epochs)",
            "--batch-size", "8", "--seed", "3", "--quiet",
        ] + Harness.tinyWide + extra
    }

    private func loadableCheckpoint(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws
        -> CheckpointMetadata
    {
        let config = HeadlineConfig.sized(
            vocabulary: 50, sequenceLength: 8, embedding: 24, lstmUnits: 5, denseUnits: 8, denseLayers: 2)
        let model = Model.headline(config, maxBatch: 1)
        let optimizer = Optimizer(OptimizerConfig(kind: .adam), parameterCount: model.parameters.count)
        return try loadCheckpoint(model: model, optimizer: optimizer, from: path)
    }

    func testStopOnRequestThenResumeEqualsUninterrupted() throws {
        for np in [nil, 2] as [Int?] {
            let tag = np.map { "np\($0)" } ?? "local"
            XCTAssertEqual(
                try
                    (np.map { try Harness.mpi($0, train(dir + "/full-\(tag)")) }
                    ?? Harness.tandem(train(dir + "/full-\(tag)"))).status, 0)
            let out = dir + "/stop-\(tag)"
            let running = try Harness.startTandem(train(out), np: np, environment: ["TANDEM_TEST_STEP_DELAY_MS": "15"])
            // Wait until training is under way (the first epoch's checkpoint exists), then ask it to stop.
            let deadline = Date().addingTimeInterval(60)
            while !FileManager.default.fileExists(atPath: out + "/checkpoint.safetensors") && Date() < deadline {
                usleep(20_000)
            }
            usleep(200_000)
            running.signal(SIGUSR1)
            let stopped = running.finish(timeout: 60)
            XCTAssertEqual(stopped.status, 0, "\(tag): \(stopped.stderr)")
            XCTAssertTrue(stopped.stdout.contains("stopped on request after step"), stopped.stdout)
            XCTAssertTrue(
                stopped.stdout.contains("resume with:") && stopped.stdout.contains("--resume \(out)"), stopped.stdout)
            XCTAssertFalse(
                FileManager.default.fileExists(atPath: out + "/weights.safetensors"), "stopped before the end")
            let meta = try loadableCheckpoint(out + "/checkpoint.safetensors")
            XCTAssertGreaterThan(meta.position.step, 0)
            XCTAssertLessThan(meta.position.step, 60, "stopped early")
            let resume = train(out) + ["--resume", out]
            let resumed = try np.map { try Harness.mpi($0, resume) } ?? Harness.tandem(resume)
            XCTAssertEqual(resumed.status, 0, resumed.stderr)
            XCTAssertEqual(
                try Harness.weights(out + "/weights.safetensors"),
                try Harness.weights(dir + "/full-\(tag)/weights.safetensors"),
                "\(tag): stop + resume is bit-identical to the uninterrupted run")
            XCTAssertEqual(try Harness.metrics(out).count, 4, "one metrics line per epoch across the stop")
        }
    }

    func testKilledRankEndsTheJobAndTheCheckpointResumes() throws {
        XCTAssertEqual(try Harness.mpi(2, train(dir + "/full")).status, 0)
        let out = dir + "/killed"
        // Rank 1 SIGKILLs itself before step 37; checkpoints every 5 steps.
        let killed = try Harness.mpi(
            2, train(out, ["--checkpoint-every", "5"]), timeout: 60, environment: ["TANDEM_TEST_KILL": "1:37"])
        XCTAssertNotEqual(killed.status, 0)
        XCTAssertNotEqual(killed.status, 110, "mpirun timeout: the job hung")
        XCTAssertLessThan(killed.seconds, 20, "ends within seconds")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/weights.safetensors"))
        let meta = try loadableCheckpoint(out + "/checkpoint.safetensors")
        XCTAssertEqual(meta.position.step, 35, "the last checkpoint before the kill is intact")
        // Same world size: bit-identical to the uninterrupted run.
        try FileManager.default.copyItem(atPath: out, toPath: out + "-np3")
        XCTAssertEqual(try Harness.mpi(2, train(out, ["--resume", out])).status, 0)
        XCTAssertEqual(
            try Harness.weights(out + "/weights.safetensors"), try Harness.weights(dir + "/full/weights.safetensors"))
        // Another world size: the same global batches, equal within float tolerance.
        let other = try Harness.mpi(3, train(out + "-np3", ["--resume", out + "-np3"]))
        XCTAssertEqual(other.status, 0, other.stderr)
        let a = try Harness.weights(out + "-np3/weights.safetensors")
        let b = try Harness.weights(dir + "/full/weights.safetensors")
        for (name, values) in b {
            // Other partial-sum order over the remaining ~25 Adam steps: Float32 rounding, grown a little.
            let worst = zip(a[name]!, values).map { abs($0 - $1) / (1e-3 + abs($1)) }.max()!
            XCTAssertLessThan(worst, 1e-3, name)
        }
    }

    func testStalledRankIsEndedByTheWatchdog() throws {
        let result = try Harness.mpi(
            2, train(dir + "/stall", ["--collective-timeout", "3"]), timeout: 60,
            environment: ["TANDEM_TEST_STALL": "1:4:120"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertNotEqual(result.status, 110, "mpirun timeout instead of the watchdog")
        XCTAssertLessThan(result.seconds, 20)
        XCTAssertTrue(result.stderr.contains("has not completed after 3 s"), result.stderr)
        XCTAssertTrue(result.stderr.contains("step 4"), result.stderr)
        XCTAssertTrue(result.stderr.contains("rank 0"), "names the rank that waited: \(result.stderr)")
    }

    func testCheckpointSurvivesKillsAtRandomMoments() throws {
        // A larger table makes each checkpoint write take a while (about 6 MB).
        let big = ["--vocab", "20000", "--embed-dim", "24"]
        XCTAssertEqual(
            try Harness.tandem([
                "gen-data", "--out", dir + "/bigdata", "--samples", "64", "--seq-len", "8", "--vocab", "20000",
            ]).status, 0)
        var rng = SeededGenerator(seed: UInt64(Date().timeIntervalSince1970))
        var seen = 0
        for attempt in 0..<8 {
            let out = dir + "/kill\(attempt)"
            let running = try Harness.startTandem(
                [
                    "train", "--data", dir + "/bigdata", "--out", out, "--optimizer", "adam", "--epochs", "50",
                    "--batch-size", "8", "--checkpoint-every", "1", "--quiet", "--seq-len", "8",
                    "--lstm-units", "4", "--dense-units", "4", "--dense-layers", "1",
                ] + big)
            usleep(UInt32(rng.uniform(0.4, 2.0) * 1e6))
            running.signal(SIGKILL)
            _ = running.finish(timeout: 30)
            let path = out + "/checkpoint.safetensors"
            guard FileManager.default.fileExists(atPath: path) else { continue }
            seen += 1
            let file = try SafeTensorsFile(path: path)  // throws if damaged
            XCTAssertNotNil(file.metadata["tandem"], "attempt \(attempt): metadata intact")
            XCTAssertEqual(file.tensors["embedding/embeddings"]?.shape, [20000, 24])
            XCTAssertNotNil(file.tensors["optimizer/v/embedding/embeddings"])
        }
        XCTAssertGreaterThan(seen, 3, "most kills landed after the first checkpoint")
    }
}
