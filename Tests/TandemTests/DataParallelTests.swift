// Sharding and step equivalence on the in-process (threads) communicator:
// every sample once per epoch, contiguous slices differing by at most one,
// the global-B scaling, and N ranks matching one process.

import Foundation
import Tandem
import XCTest

final class ShardingTests: XCTestCase {
    func testSlicesAreContiguousBalancedAndCoverEverySampleOnce() {
        for count in [0, 1, 2, 5, 7, 32, 33] {
            for size in 1...5 {
                let slices = (0..<size).map { shard(count: count, rank: $0, size: size) }
                XCTAssertEqual(slices.first?.lowerBound, 0)
                XCTAssertEqual(slices.last?.upperBound, count)
                for r in 1..<size {
                    XCTAssertEqual(slices[r - 1].upperBound, slices[r].lowerBound, "contiguous, rank order")
                }
                let sizes = slices.map(\.count)
                XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1, "count \(count) size \(size)")
            }
        }
    }

    func testEveryEpochVisitsEverySampleExactlyOnceAcrossRanks() {
        let n = 23
        let batch = 6
        let size = 4
        let order = epochPermutation(count: n, seed: 9, epoch: 3)
        var seen: [Int32] = []
        for k in 0..<((n + batch - 1) / batch) {
            let global = Array(order[(k * batch)..<min((k + 1) * batch, n)])
            for r in 0..<size { seen += global[shard(count: global.count, rank: r, size: size)] }
        }
        XCTAssertEqual(seen.sorted(), (0..<n).map(Int32.init))
    }
}

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

/// A fixed-size array filled from several threads.
final class LockedArray: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [[Float]]
    init(_ n: Int) { storage = Array(repeating: [], count: n) }
    func set(_ i: Int, _ v: [Float]) {
        lock.lock()
        storage[i] = v
        lock.unlock()
    }
    var values: [[Float]] {
        lock.lock()
        defer { lock.unlock() }
        return storage
    }
}

final class SyncCheckTests: XCTestCase {
    func testHashMismatchNamesTheRanksAndTheFirstTensor() {
        let messages = LockedArray(3)
        let texts = LockedText()
        ThreadGroup.run(size: 3) { rank, comm in
            let heads = [
                Head(output: "main_output", loss: .binaryCrossentropy, weight: 1),
                Head(output: "aux_output", loss: .binaryCrossentropy, weight: 0.2),
            ]
            let (step, data, _) = try! tinyHeadline(heads: heads, l2: [:], batch: 3, communicator: comm)
            let trainer = Trainer(
                step: step, data: data, trainRows: 0..<data.count, validation: nil, options: TrainingOptions())
            do { try trainer.checkParametersAgree(when: "at start") } catch {
                XCTFail("identical parameters pass: \(error)")
            }
            if rank == 1 {  // one flipped bit in lstm/bias on rank 1 only
                let v = step.model.parameters.view("lstm/bias")!
                step.model.parameters.value(v)[2] = step.model.parameters.value(v)[2].nextUp
            }
            do {
                try trainer.checkParametersAgree(when: "after step 3")
                messages.set(rank, [0])
            } catch let e as AgreedError {
                messages.set(rank, [e.reporter ? 1 : 2])
                if e.reporter { texts.set(e.message) }
            } catch { XCTFail("\(error)") }
        }
        XCTAssertEqual(messages.values, [[1], [2], [2]], "every rank stops; rank 0 reports")
        XCTAssertEqual(
            texts.value,
            "parameters are no longer identical across ranks after step 3: rank 1 differs from rank 0, first in 'lstm/bias'"
        )
    }
}

/// One string set from a thread.
final class LockedText: @unchecked Sendable {
    private let lock = NSLock()
    private var text = ""
    func set(_ t: String) {
        lock.lock()
        text = t
        lock.unlock()
    }
    var value: String {
        lock.lock()
        defer { lock.unlock() }
        return text
    }
}
