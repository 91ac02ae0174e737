// Data parallelism under real mpirun (a watchdog makes a hang a failure):
// 2, 3 and 4 (oversubscribed) ranks against the single-process run, with
// sample weights, class weights and L2, a last global batch smaller than the
// rank count, parameter hashes compared after every step, only rank 0
// writing, and a bad row seen by one rank stopping the whole job.

import Foundation
import Tandem
import TandemTestSupport
import XCTest

final class MultiRankTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = temporaryDirectory()
        // 34 samples at global batch 8: the last batch has 2 samples, fewer than 3 or 4 ranks.
        try Harness.tinyDataWithSampleWeights(dir + "/data", samples: 34, seed: 2, weightSeed: 12)
    }

    private func args(_ out: String, _ optimizer: [String]) -> [String] {
        [
            "train", "--data", dir + "/data", "--out", out, "--epochs", "3", "--batch-size", "8", "--seed", "7",
            "--l2", "dense=0.01", "--l2", "lstm=0.003", "--class-weight", "aux_output=0:1.0,1:2.0",
            "--sync-check-every", "1", "--quiet",
        ] + optimizer + Harness.tiny
    }

    func testRanksMatchTheSingleProcessRun() throws {
        // Harness.tiny's table (embed-dim 8) is narrower than the LSTM's 4U = 24 gate columns,
        // so every run takes the dense step with the table's touched rows packed
        // (Exchange/PackedTableRows.swift); with L2 on the embedding every row is scanned.
        let optimizers = [
            ["--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9"], ["--optimizer", "adam", "--lr", "0.01"],
            ["--optimizer", "rmsprop", "--lr", "0.01", "--l2", "embedding=0.001"],
        ]
        for optimizer in optimizers {
            let local = try Harness.tandem(args(dir + "/local", optimizer))
            XCTAssertEqual(local.status, 0, local.stderr)
            let reference = try Harness.weights(dir + "/local/weights.safetensors")
            for np in [2, 3, 4] {
                let out = dir + "/np\(np)"
                let result = try Harness.mpi(np, args(out, optimizer))
                XCTAssertEqual(result.status, 0, "np \(np): \(result.stderr)")
                let weights = try Harness.weights(out + "/weights.safetensors")
                XCTAssertEqual(Set(weights.keys), Set(reference.keys))
                for (name, values) in reference {
                    // Same global batches, other summation order of the per-rank partial
                    // gradients: Float32 rounding (~1e-7 relative) grown over 15 steps.
                    let got = weights[name]!
                    let worst = zip(got, values).map { abs($0 - $1) / (1e-3 + abs($1)) }.max()!
                    XCTAssertLessThan(worst, 1e-3, "\(optimizer[1]) np \(np) \(name)")
                }
                // Only rank 0 wrote: one metrics line per epoch, no temporary files left behind.
                XCTAssertEqual(try Harness.metrics(out).count, 3, "np \(np): one writer")
                let stray = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.contains(".tmp") }
                XCTAssertEqual(stray, [])
                let localLines = try Harness.metrics(dir + "/local")
                let mpiLines = try Harness.metrics(out)
                XCTAssertEqual(
                    localLines.last!["loss"] as! Double, mpiLines.last!["loss"] as! Double, accuracy: 1e-4,
                    "reported figures are global")
            }
        }
    }

    func testBadRowSeenByOneRankStopsEveryRank() throws {
        // Row 30 is in rank 1's share of the rows it validates (rows 17..<34).
        var v = [Int32](repeating: 1, count: 34 * 8)
        v[30 * 8 + 4] = 999
        try v.withUnsafeBufferPointer {
            try NPYArray.write(ints: $0, shape: [34, 8], to: dir + "/data/main_input.npy")
        }
        let result = try Harness.mpi(2, args(dir + "/bad", ["--optimizer", "adam"]), timeout: 60)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertNotEqual(result.status, 110, "mpirun timeout: a rank hung")
        XCTAssertLessThan(result.seconds, 30)
        XCTAssertTrue(result.stderr.contains("main_input.npy: row 30, column 4: token id 999"), result.stderr)
        XCTAssertEqual(result.stderr.components(separatedBy: "error:").count - 1, 1, "one message: \(result.stderr)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/bad/weights.safetensors"))
    }

    func testEvaluateAndPredictAreShardedAndCombined() throws {
        XCTAssertEqual(try Harness.tandem(args(dir + "/run", ["--optimizer", "adam"])).status, 0)
        let w = dir + "/run/weights.safetensors"
        let local = try Harness.tandem(["evaluate", "--weights", w, "--data", dir + "/data"])
        let three = try Harness.mpi(3, ["evaluate", "--weights", w, "--data", dir + "/data"])
        XCTAssertEqual(three.status, 0, three.stderr)
        let a = try JSONSerialization.jsonObject(with: Data(local.stdout.utf8)) as! [String: Any]
        let b = try JSONSerialization.jsonObject(with: Data(three.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(a["loss"] as! Double, b["loss"] as! Double, accuracy: 1e-6)
        XCTAssertEqual(a["main_output_accuracy"] as! Double, b["main_output_accuracy"] as! Double)
        XCTAssertEqual(
            try Harness.tandem(["predict", "--weights", w, "--data", dir + "/data", "--out", dir + "/p1"]).status, 0)
        XCTAssertEqual(
            try Harness.mpi(3, ["predict", "--weights", w, "--data", dir + "/data", "--out", dir + "/p3"]).status, 0)
        for head in ["main_output", "aux_output"] {
            let x = try NPYArray(path: dir + "/p1/\(head).npy")
            let y = try NPYArray(path: dir + "/p3/\(head).npy")
            XCTAssertEqual(x.shape, [34, 1])
            XCTAssertEqual(y.shape, [34, 1])
            for row in 0..<34 {
                var p: Float = 0
                var q: Float = 0
                x.readFloats(row: row, into: &p)
                y.readFloats(row: row, into: &q)
                // Rows are in input order; OpenBLAS may round differently for another
                // number of rows per product, so equal up to Float32 rounding.
                XCTAssertEqual(p, q, accuracy: 1e-6, "\(head) row \(row)")
            }
        }
    }

    func testNonFiniteLossStopsEveryRankTogether() throws {
        // A learning rate of 1e30 blows the weights up after the first step.
        for (np, mode) in [(1, []), (2, []), (2, ["--reproducible", "--micro-batch", "2"])] {
            let out = dir + "/nan\(np)\(mode.count)"
            let a = args(out, ["--optimizer", "sgd", "--lr", "1e30"] + mode)
            let result = np == 1 ? try Harness.tandem(a) : try Harness.mpi(np, a, timeout: 60)
            XCTAssertEqual(result.status, 1, result.stderr)
            XCTAssertTrue(result.stderr.contains("is not finite"), result.stderr)
            XCTAssertTrue(result.stderr.contains("step 2"), result.stderr)
            XCTAssertEqual(
                result.stderr.components(separatedBy: "error:").count - 1, 1, "one message: \(result.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/weights.safetensors"))
        }
    }

    func testTouchedRowExchangeMatchesTheSingleProcessRun() throws {
        // vocab 3000 and ≤ 64 tokens a batch: few rows are touched, so the ranks
        // exchange only those rows (CompactTableStep.swift) — and must still agree.
        // embed-dim ≥ 4 × lstm-units: the compact, factored step (CompactTableStep.swift).
        let sizes = [
            "--vocab", "3000", "--seq-len", "8", "--embed-dim", "24", "--lstm-units", "5",
            "--dense-units", "8", "--dense-layers", "2",
        ]
        XCTAssertEqual(
            try Harness.tandem(["gen-data", "--out", dir + "/sparse", "--samples", "50", "--seed", "9"] + sizes).status,
            0)
        let run = { (out: String) in
            [
                "train", "--data", self.dir + "/sparse", "--out", out, "--epochs", "3", "--batch-size", "8",
                "--optimizer", "adam", "--lr", "0.01", "--sync-check-every", "1", "--quiet",
            ] + sizes
        }
        XCTAssertEqual(try Harness.tandem(run(dir + "/sparse-local")).status, 0)
        let reference = try Harness.weights(dir + "/sparse-local/weights.safetensors")
        // 9 ranks: more than the 8 that form dE blocks, so the table gradient travels
        // by MPI_Allgatherv with rank 8 only receiving (and one rank has no samples).
        for np in [2, 3, 9] {
            let result = try Harness.mpi(np, run(dir + "/sparse-np\(np)"))
            XCTAssertEqual(result.status, 0, result.stderr)
            let weights = try Harness.weights(dir + "/sparse-np\(np)/weights.safetensors")
            for (name, values) in reference {
                let worst = zip(weights[name]!, values).map { abs($0 - $1) / (1e-3 + abs($1)) }.max()!
                XCTAssertLessThan(worst, 1e-3, "np \(np) \(name)")
            }
        }
    }

    func testOverlappedExchangeMatchesTheOneAllreduce() throws {
        // MPI_Iallreduce per bucket, started during backward (GradientBuckets.swift). L2 on
        // the embedding keeps the dense step, whose exchange overlaps; the table's touched
        // rows follow the buckets. Element-wise sums: at 2 ranks the same bytes, at 3 (and
        // 4, oversubscribed, one rank without samples in the last batch) the single process.
        // Wider Dense layers than the tiny preset's (the last value of a flag wins), so the
        // exchange has several buckets of 64K floats.
        let optimizer = [
            "--optimizer", "adam", "--lr", "0.01", "--l2", "embedding=0.001", "--dense-units", "200", "--dense-layers",
            "4",
        ]
        for np in [2, 3, 4] {
            let plain = try Harness.mpi(np, args(dir + "/plain\(np)", optimizer))
            XCTAssertEqual(plain.status, 0, plain.stderr)
            let overlapped = try Harness.mpi(np, args(dir + "/overlap\(np)", optimizer) + ["--overlap-exchange"])
            XCTAssertEqual(overlapped.status, 0, overlapped.stderr)
            let a = try Harness.weights(dir + "/plain\(np)/weights.safetensors")
            let b = try Harness.weights(dir + "/overlap\(np)/weights.safetensors")
            XCTAssertEqual(Set(a.keys), Set(b.keys))
            for (name, values) in a {
                if np == 2 {
                    XCTAssertEqual(b[name]!, values, "np 2 \(name): the same bytes")
                } else {
                    let worst = zip(b[name]!, values).map { abs($0 - $1) / (1e-3 + abs($1)) }.max()!
                    XCTAssertLessThan(worst, 1e-3, "np \(np) \(name)")
                }
            }
        }
        // The flag reaches the step: the bench reports the buckets it overlapped (the one allreduce: 0).
        let sizes = [
            "--vocab", "50", "--seq-len", "8", "--embed-dim", "8", "--lstm-units", "6", "--dense-units", "200",
            "--dense-layers", "4",
        ]
        for (flags, expectation) in [
            ([String](), { (n: Int) in n == 0 }), (["--overlap-exchange"], { (n: Int) in n >= 2 }),
        ] {
            let bench = try Harness.mpi(
                2,
                ["bench", "--json", "--intervals", "1", "--warmup", "1", "--steps", "2", "--batch-size", "4"] + sizes
                    + flags)
            XCTAssertEqual(bench.status, 0, bench.stderr)
            let json =
                try JSONSerialization.jsonObject(with: Data(bench.stdout.split(separator: "\n").last!.utf8))
                as! [String: Any]
            XCTAssertTrue(
                expectation(json["exchange_buckets"] as! Int), "\(flags): \(json["exchange_buckets"]!) buckets")
        }
    }
}
