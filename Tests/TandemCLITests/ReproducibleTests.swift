// Reproducible mode: the same data, seed and global batch give the SAME BYTES
// for any number of ranks, and across a resume at another rank count.

import Foundation
import Tandem
import TandemTestSupport
import XCTest

final class ReproducibleTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = temporaryDirectory()
        // 33 samples at global batch 8: the last batch has 1 sample, fewer than 2, 3 or 4 ranks.
        try Harness.tinyDataWithSampleWeights(dir + "/data", samples: 33, seed: 8, weightSeed: 3)
    }

    /// The dense table step (L2 on the table, 8 wide) and the compact, factored one
    /// (24 wide ≥ 4 × 5 units, no L2 on the table), as the headline model takes.
    private let models = [
        (name: "dense table", flags: ["--l2", "embedding=0.001"] + Harness.tiny),
        (name: "factored table", flags: Harness.tinyWide),
    ]

    private func args(
        _ out: String, _ optimizer: [String], epochs: Int = 3, reproducible: Bool = true,
        model: [String] = Harness.tiny
    ) -> [String] {
        [
            "train", "--data", dir + "/data", "--out", out, "--epochs", "\(epochs)", "--batch-size", "8", "--seed", "2",
            "--l2", "dense=0.01", "--class-weight", "main_output=0:1.0,1:1.5", "--quiet",
        ]
            + (reproducible ? ["--reproducible", "--micro-batch", "2"] : []) + optimizer + model
    }

    private func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    func testWeightsAreByteIdenticalForAnyRankCount() throws {
        for (modelName, model) in models {
            for optimizer in [
                ["--optimizer", "adam", "--lr", "0.01"], ["--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9"],
            ] {
                let what = "\(modelName), \(optimizer[1])"
                let local = try Harness.tandem(args(dir + "/local", optimizer, model: model))
                XCTAssertEqual(local.status, 0, local.stderr)
                let reference = try bytes(dir + "/local/weights.safetensors")
                for np in [2, 3, 4] {
                    let result = try Harness.mpi(np, args(dir + "/np\(np)", optimizer, model: model))
                    XCTAssertEqual(result.status, 0, result.stderr)
                    XCTAssertEqual(
                        try bytes(dir + "/np\(np)/weights.safetensors"), reference, "\(what) np \(np): same bytes")
                    XCTAssertEqual(
                        try Harness.metrics(dir + "/np\(np)").last!["loss"] as! Double,
                        try Harness.metrics(dir + "/local").last!["loss"] as! Double, "figures are exact too")
                }
                // Still the same training as the ordinary mode: equal within the float tolerance.
                XCTAssertEqual(
                    try Harness.tandem(args(dir + "/ordinary", optimizer, reproducible: false, model: model)).status, 0)
                let a = try Harness.weights(dir + "/local/weights.safetensors")
                let b = try Harness.weights(dir + "/ordinary/weights.safetensors")
                for (name, values) in b {
                    let worst = zip(a[name]!, values).map { abs($0 - $1) / (1e-3 + abs($1)) }.max()!
                    XCTAssertLessThan(worst, 1e-3, "\(what) \(name)")
                }
            }
        }
    }

    func testCheckpointAtFourRanksResumedAtTwoEqualsOneProcess() throws {
        let adam = ["--optimizer", "adam", "--lr", "0.01"]
        for (modelName, model) in models {
            let one = dir + "/one-\(modelName)"
            let out = dir + "/moved-\(modelName)"
            XCTAssertEqual(try Harness.tandem(args(one, adam, model: model)).status, 0)
            // Rank 2 of 4 dies before step 9; the checkpoint of step 6 is mid-epoch 2.
            let killed = try Harness.mpi(
                4, args(out, adam, model: model) + ["--checkpoint-every", "3"], timeout: 60,
                environment: ["TANDEM_TEST_KILL": "2:9"])
            XCTAssertNotEqual(killed.status, 0)
            let resumed = try Harness.mpi(2, args(out, adam, model: model) + ["--resume", out])
            XCTAssertEqual(resumed.status, 0, resumed.stderr)
            XCTAssertTrue(resumed.stderr.isEmpty || !resumed.stderr.contains("error"), resumed.stderr)
            XCTAssertEqual(
                try bytes(out + "/weights.safetensors"), try bytes(one + "/weights.safetensors"),
                "\(modelName): np 4 → checkpoint → np 2 gives the bytes of one uninterrupted process")
        }
    }
}
