// Gradient accumulation (Keras's gradient_accumulation_steps) in the step itself: N steps of
// B samples move the weights as one step on their 3B samples would (the mean of the means,
// penalties once), the weights stand still in between, N thread ranks equal one, and the
// gradient crosses ranks once per update. The Keras side (its exact rule, schedules read per
// step, archives and resume mid-window) is KerasOptimizerTests' opt_*_accumulate models.

import Foundation
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

/// Counts the Float allreduces (the gradient exchange) of the communicator it wraps.
private final class CountingCommunicator: Communicator {
    let inner: Communicator
    var floatSums = 0
    init(_ inner: Communicator) { self.inner = inner }
    var rank: Int { inner.rank }
    var size: Int { inner.size }
    func allReduceSum(_ b: UnsafeMutablePointer<Float>, count: Int) throws {
        floatSums += 1
        try inner.allReduceSum(b, count: count)
    }
    func startAllReduceSum(_ b: UnsafeMutablePointer<Float>, count: Int) throws {
        floatSums += 1
        try inner.startAllReduceSum(b, count: count)
    }
    func progressSums() throws { try inner.progressSums() }
    func waitForSums() throws { try inner.waitForSums() }
    func allReduceSum(_ b: UnsafeMutablePointer<Double>, count: Int) throws { try inner.allReduceSum(b, count: count) }
    func allReduceSum(_ b: UnsafeMutablePointer<Int64>, count: Int) throws { try inner.allReduceSum(b, count: count) }
    func allReduceMax(_ b: UnsafeMutablePointer<Double>, count: Int) throws { try inner.allReduceMax(b, count: count) }
    func allGather(_ b: UnsafeMutablePointer<Float>, count: Int, senders: Int) throws {
        try inner.allGather(b, count: count, senders: senders)
    }
    func broadcast(_ b: UnsafeMutableRawPointer, bytes: Int, from root: Int) throws {
        try inner.broadcast(b, bytes: bytes, from: root)
    }
    func barrier() throws { try inner.barrier() }
    func abort(message: String, code: Int32) -> Never { inner.abort(message: message, code: code) }
    var description: String { inner.description }
}

private let heads = [
    Head(output: "main_output", loss: .binaryCrossentropy, weight: 1.0),
    Head(output: "aux_output", loss: .binaryCrossentropy, weight: 0.2),
]
private let l2 = ["dense": 0.01, "embedding": 0.001]

private func adam(accumulating n: Int?) -> OptimizerConfig {
    var c = OptimizerConfig(kind: .adam, learningRate: 0.01)
    c.gradientAccumulationSteps = n
    return c
}

private func runStep(_ step: TrainingStep, _ rows: [Int32], data: Dataset) throws {
    _ = try rows.withUnsafeBufferPointer { try step.run(globalBatch: $0, data: data) }
}

final class GradientAccumulationTests: XCTestCase {

    func testThreeAccumulatedStepsEqualOneStepOnTheirUnion() throws {
        let rows: [Int32] = [3, 0, 7, 11, 2, 9, 5, 1, 10, 4, 8, 6]
        let (one, data1, _) = try tinyHeadline(
            heads: heads, l2: l2, batch: 12, samples: 12, optimizer: adam(accumulating: nil))
        try runStep(one, rows, data: data1)
        one.synchronize()
        let expected = one.model.parameters.snapshot().map(Double.init)

        let (three, data3, _) = try tinyHeadline(
            heads: heads, l2: l2, batch: 12, samples: 12, optimizer: adam(accumulating: 3))
        let start = three.model.parameters.snapshot()
        for k in 0..<3 {
            try runStep(three, Array(rows[(4 * k)..<(4 * k + 4)]), data: data3)
            XCTAssertEqual(three.optimizer.microSteps, k + 1)
            if k < 2 {
                three.synchronize()
                XCTAssertEqual(
                    three.model.parameters.snapshot(), start,
                    "the weights stand still within the window (step \(k + 1))")
                XCTAssertEqual(three.optimizer.iterations, 0)
            }
        }
        XCTAssertEqual(three.optimizer.iterations, 1, "one update after three steps")
        three.synchronize()
        let moved = zip(three.model.parameters.snapshot(), start).map { abs($0 - $1) }.max()!
        XCTAssertGreaterThan(moved, 1e-3, "the update moved the weights")
        // Equal batches: the mean of the three means is the mean over the union; L2 counted once.
        assertClose(three.model.parameters.snapshot(), expected, atol: 2e-6, rtol: 1e-5, "accumulated vs union")
    }

    func testThreeThreadRanksMatchOneAndExchangeOncePerUpdate() throws {
        func train(size: Int) -> (parameters: [[Float]], exchanges: [Int]) {
            let results = LockedArray(size)
            let counts = LockedArray(size)
            ThreadGroup.run(size: size) { rank, comm in
                let counting = CountingCommunicator(comm)
                let (step, data, _) = try! tinyHeadline(
                    heads: heads, l2: l2, batch: 6, samples: 20,
                    communicator: counting, optimizer: adam(accumulating: 3))
                // 20 samples at batch 6: 4 steps an epoch, the last of 2; 3 epochs = 12 steps, 4 updates.
                try! trainEpochs(step, data: data, batch: 6, epochs: 3, seed: 4)
                XCTAssertEqual(step.optimizer.iterations, 4)
                results.set(rank, step.model.parameters.snapshot())
                counts.set(rank, [Float(counting.floatSums)])
            }
            return (results.values, counts.values.map { Int($0[0]) })
        }
        let one = train(size: 1)
        let three = train(size: 3)
        for r in 1..<3 { XCTAssertEqual(three.parameters[r], three.parameters[0], "rank \(r) holds rank 0's bits") }
        assertClose(three.parameters[0], one.parameters[0].map(Double.init), atol: 2e-5, rtol: 1e-4, "3 ranks vs 1")
        XCTAssertEqual(three.exchanges, [4, 4, 4], "one gradient allreduce per update, none in between")
    }

    func testAFoldedWindowContinuesToTheSameUpdate() throws {
        // A checkpoint mid-window folds the ranks' sums into rank 0; the update sums the same total.
        func train(fold: Bool) -> [Float] {
            let results = LockedArray(2)
            ThreadGroup.run(size: 2) { rank, comm in
                let (step, data, _) = try! tinyHeadline(
                    heads: heads, l2: l2, batch: 3, samples: 12,
                    communicator: comm, optimizer: adam(accumulating: 2))
                let order = epochPermutation(count: 12, seed: 2, epoch: 0)
                for k in stride(from: 0, to: 12, by: 6) {
                    try! runStep(step, Array(order[k..<(k + 6)]), data: data)
                    if fold && k == 0 { try! step.foldAccumulatedGradient() }
                }
                step.synchronize()
                results.set(rank, step.model.parameters.snapshot())
            }
            return results.values[0]
        }
        assertClose(train(fold: true), train(fold: false).map(Double.init), atol: 1e-6, rtol: 1e-6, "folded vs not")
    }

    func testTheTrainerRefusesWhatWouldRewriteTheWindow() throws {
        let (step, data, _) = try tinyHeadline(
            heads: heads, l2: [:], batch: 4, samples: 8, optimizer: adam(accumulating: 2))
        var options = TrainingOptions()
        options.diagnosticsEvery = 3
        let trainer = Trainer(step: step, data: data, trainRows: 0..<8, validation: nil, options: options)
        XCTAssertThrowsError(try trainer.checkGradientAccumulation()) { error in
            XCTAssertTrue("\(error)".contains("does not combine with --head-diagnostics-every"), "\(error)")
        }
        trainer.options.diagnosticsEvery = 0
        XCTAssertNoThrow(try trainer.checkGradientAccumulation())
        try trainer.useLossWeighting(schedules: [:], learned: .uncertainty, alpha: 1.5, restoring: nil)
        XCTAssertThrowsError(try trainer.checkGradientAccumulation()) { error in
            XCTAssertTrue("\(error)".contains("--loss-weighting uncertainty"), "\(error)")
        }
    }

    func testAnArchivesAccumulationStepsAreReadAndBadOnesRefusedByName() throws {
        func optimizer(_ steps: String) throws -> OptimizerConfig {
            let text =
                #"{"module": "keras.optimizers", "class_name": "Adam", "config": {"learning_rate": 0.01, "gradient_accumulation_steps": "#
                + steps + #"}, "registered_name": null}"#
            return try KerasCompile.optimizer(try JSONValue.parse(Array(text.utf8)))
        }
        XCTAssertEqual(try optimizer("3").gradientAccumulationSteps, 3)
        XCTAssertNil(try optimizer("null").gradientAccumulationSteps)
        for bad in ["1", "0", "2.5", "\"two\""] {
            XCTAssertThrowsError(try optimizer(bad), bad) { error in
                XCTAssertTrue("\(error)".contains("'gradient_accumulation_steps' = "), "\(bad): \(error)")
            }
        }
        var config = adam(accumulating: 1)
        XCTAssertThrowsError(try config.validate())
        config.gradientAccumulationSteps = 2
        XCTAssertNoThrow(try config.validate())
    }

    func testRefusesAccumulationWithReproducibleMode() throws {
        let (step, data, _) = try tinyHeadline(
            heads: heads, l2: [:], batch: 4, samples: 8, optimizer: adam(accumulating: 2))
        step.microBatch = 2
        XCTAssertThrowsError(try runStep(step, [0, 1, 2, 3], data: data)) { error in
            XCTAssertTrue("\(error)".contains("--reproducible"), "\(error)")
        }
    }
}
