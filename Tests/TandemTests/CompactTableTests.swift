// The compact table gradient (CompactTableStep.swift) against the dense step:
// the same bits for every optimizer, on one rank and on three thread ranks,
// with rows that no sample of a step touches.

import Foundation
import Tandem
import XCTest

final class CompactTableGradientTests: XCTestCase {
    private let heads = [Head(output: "main_output", loss: .binaryCrossentropy, weight: 1.0, classWeights: [0: 1.5]),
                         Head(output: "aux_output", loss: .binaryCrossentropy, weight: 0.2)]

    /// Trains 2 epochs of global batch 3 on `size` thread ranks; returns rank 0's
    /// parameters followed by its optimizer slots, and whether the step was compact.
    private func train(size: Int, optimizer: OptimizerConfig, compact: Bool,
                       l2: [String: Double] = ["dense": 0.01, "lstm": 0.002]) -> (state: [Float], compact: Bool) {
        let results = LockedArray(size)
        let used = LockedArray(1)
        let batch = 3
        ThreadGroup.run(size: size) { [heads] rank, comm in
            let (step, data, _) = try! tinyHeadline(heads: heads, l2: l2, batch: (batch + size - 1) / size, samples: 10,
                                                    communicator: comm, optimizer: optimizer)
            step.compactTableGradient = compact
            for epoch in 0..<2 {
                let order = epochPermutation(count: data.count, seed: 4, epoch: epoch)
                for k in stride(from: 0, to: data.count, by: batch) {
                    _ = try! order.withUnsafeBufferPointer {
                        try step.run(globalBatch: UnsafeBufferPointer(rebasing: $0[k..<min(k + batch, data.count)]), data: data)
                    }
                }
            }
            step.synchronize()
            let store = step.model.parameters
            var state = store.snapshot()
            for slot in step.optimizer.slots { state += Array(UnsafeBufferPointer(start: slot.values, count: store.count)) }
            results.set(rank, state)
            if rank == 0 { used.set(0, [step.usesCompactTableGradient ? 1 : 0]) }
        }
        return (results.values[0], used.values[0] == [1])
    }

    func testCompactTableGradientGivesTheDenseStepsBits() {
        var adam = OptimizerConfig(kind: .adam); adam.learningRate = 0.01
        var momentum = OptimizerConfig(kind: .sgd, learningRate: 0.1); momentum.momentum = 0.9; momentum.nesterov = true
        let configs = [adam, OptimizerConfig(kind: .sgd, learningRate: 0.2), momentum, OptimizerConfig(kind: .rmsprop, learningRate: 0.01)]
        for config in configs {
            for size in [1, 3] {
                let dense = train(size: size, optimizer: config, compact: false)
                let compact = train(size: size, optimizer: config, compact: true)
                XCTAssertFalse(dense.compact); XCTAssertTrue(compact.compact, "the compact step ran")
                XCTAssertEqual(compact.state, dense.state, "\(config.kind) momentum \(config.momentum), \(size) rank(s): same bits")
            }
        }
    }

    func testL2OnTheTableUsesTheDenseStep() {
        // 2λw reaches every row of the table: no compact layout can hold that gradient.
        let run = train(size: 1, optimizer: OptimizerConfig(kind: .adam), compact: true, l2: ["embedding": 0.001])
        XCTAssertFalse(run.compact)
    }
}
