// Part of what ShardingTests.swift's header describes.

import Foundation
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class ThreadRankTests: XCTestCase {
    /// Trains `steps` global batches on `size` thread ranks; returns each rank's final parameters.
    private func train(size: Int, optimizer: OptimizerConfig, batch: Int, samples: Int) -> [[Float]] {
        let results = LockedArray(size)
        ThreadGroup.run(size: size) { rank, comm in
            let heads = [
                Head(output: "main_output", loss: .binaryCrossentropy, weight: 1.0, classWeights: [0: 1.5]),
                Head(output: "aux_output", loss: .binaryCrossentropy, weight: 0.2),
            ]
            let (step, data, _) = try! tinyHeadline(
                heads: heads, l2: ["dense": 0.01, "embedding": 0.001],
                batch: (batch + size - 1) / size, samples: samples,
                communicator: comm, optimizer: optimizer)
            try! trainEpochs(step, data: data, batch: batch, epochs: 2, seed: 1)
            results.set(rank, step.model.parameters.snapshot())
        }
        return results.values
    }

    func testThreeRanksMatchOneProcess() {
        var adam = OptimizerConfig(kind: .adam)
        adam.learningRate = 0.01
        var sgd = OptimizerConfig(kind: .sgd, learningRate: 0.1)
        sgd.momentum = 0.9
        for config in [adam, sgd] {
            let one = train(size: 1, optimizer: config, batch: 4, samples: 11)[0]
            let three = train(size: 3, optimizer: config, batch: 4, samples: 11)  // last batch: 3 samples over 3 ranks
            for r in 1..<3 { XCTAssertEqual(three[r], three[0], "rank \(r) holds rank 0's bits") }
            // Summation order differs (3 partial sums): Float32 rounding, amplified a little over 6 steps.
            assertClose(three[0], one.map { Double($0) }, atol: 2e-5, rtol: 1e-4, "\(config.kind)")
            XCTAssertNotEqual(
                one, Model.headline(tinyConfig(), maxBatch: 1).parameters.snapshot(), "training moved the weights")
        }
    }

    func testRankWithNoSamplesStillTakesPart() {
        // 2 samples on 4 ranks: ranks 0 and 2 get none of the first batch but must join the allreduce.
        let four = train(size: 4, optimizer: OptimizerConfig(kind: .sgd, learningRate: 0.5), batch: 2, samples: 3)
        let one = train(size: 1, optimizer: OptimizerConfig(kind: .sgd, learningRate: 0.5), batch: 2, samples: 3)
        assertClose(four[3], one[0].map { Double($0) }, atol: 1e-6, rtol: 1e-5)
    }

    func testAgreedErrorReachesEveryRank() {
        let outcomes = LockedArray(3)
        ThreadGroup.run(size: 3) { rank, comm in
            do {
                try comm.agree(rank == 2 ? TandemError.file("x.npy", "bad row") : nil)
                outcomes.set(rank, [0])
            } catch let e as AgreedError {
                outcomes.set(rank, [e.reporter ? 1 : 2])
                XCTAssertEqual(e.message, "rank 2: x.npy: bad row")
            } catch { XCTFail("\(error)") }
        }
        XCTAssertEqual(outcomes.values, [[1], [2], [2]], "rank 0 reports, the others stop quietly")
    }
}
