// The compact, factored table gradient (Exchange/FactoredTable.swift) against the
// dense step, with rows that no sample of a step touches: the same bits for
// every optimizer on one rank; on three and four thread ranks (one with no
// samples) dE = (Σ S)·Wᵀ rounds differently from Σ (S·Wᵀ), so there the two
// agree within float tolerance.

import Foundation
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class CompactTableGradientTests: XCTestCase {
    private let heads = [
        Head(output: "main_output", loss: .binaryCrossentropy, weight: 1.0, classWeights: [0: 1.5]),
        Head(output: "aux_output", loss: .binaryCrossentropy, weight: 0.2),
    ]

    /// Trains 2 epochs of global batch 3 on `size` thread ranks; returns rank 0's
    /// parameters followed by its optimizer slots, every rank's, and whether the step was compact.
    private func train(
        size: Int, optimizer: OptimizerConfig, compact: Bool,
        l2: [String: Double] = ["dense": 0.01, "lstm": 0.002],
        config: HeadlineConfig = wideTinyConfig(), microBatch: Int? = nil,
        formers: Int = 8
    ) -> (state: [Float], ranks: [[Float]], compact: Bool) {
        let results = LockedArray(size)
        let used = LockedArray(1)
        let batch = 3
        ThreadGroup.run(size: size) { [heads] rank, comm in
            let (step, data, _) = try! tinyHeadline(
                heads: heads, l2: l2, batch: (batch + size - 1) / size, samples: 10,
                communicator: comm, optimizer: optimizer, config: config)
            step.compactTableGradient = compact
            step.microBatch = microBatch
            step.tableGradientFormers = formers
            try! trainEpochs(step, data: data, batch: batch, epochs: 2, seed: 4)
            let store = step.model.parameters
            var state = store.snapshot()
            for slot in step.optimizer.slots {
                state += Array(UnsafeBufferPointer(start: slot.values, count: store.count))
            }
            results.set(rank, state)
            if rank == 0 { used.set(0, [step.usesCompactTableGradient ? 1 : 0]) }
        }
        return (results.values[0], results.values, used.values[0] == [1])
    }

    func testCompactTableGradientGivesTheDenseStepsBits() {
        var adam = OptimizerConfig(kind: .adam)
        adam.learningRate = 0.01
        var momentum = OptimizerConfig(kind: .sgd, learningRate: 0.1)
        momentum.momentum = 0.9
        momentum.nesterov = true
        let configs = [
            adam, OptimizerConfig(kind: .sgd, learningRate: 0.2), momentum,
            OptimizerConfig(kind: .rmsprop, learningRate: 0.01),
        ]
        for config in configs {
            for size in [1, 3, 4] {  // 4 ranks on batches of 3: one rank has no samples
                let dense = train(size: size, optimizer: config, compact: false)
                let compact = train(size: size, optimizer: config, compact: true)
                XCTAssertFalse(dense.compact)
                XCTAssertTrue(compact.compact, "the compact step ran")
                if size == 1 {
                    XCTAssertEqual(compact.state, dense.state, "\(config.kind) momentum \(config.momentum): same bits")
                } else {
                    // Float32 rounding of the other summation order, grown a little over 8 steps.
                    assertClose(
                        compact.state, dense.state.map { Double($0) }, atol: 1e-6, rtol: 1e-5,
                        "\(config.kind) momentum \(config.momentum), \(size) ranks")
                    XCTAssertNotEqual(compact.state, dense.state, "the factored sum really is another path")
                }
            }
        }
    }

    func testSeveralBlocksOfRowsGiveTheDenseStepsBits() {
        // ≈ 840 distinct tokens a step: dE is formed in 256-row blocks (4 of them).
        var config = wideTinyConfig()
        config.vocabulary = 2000
        config.sequenceLength = 400
        var adam = OptimizerConfig(kind: .adam)
        adam.learningRate = 0.01
        for optimizer in [adam, OptimizerConfig(kind: .rmsprop, learningRate: 0.01)] {
            let dense = train(size: 1, optimizer: optimizer, compact: false, config: config)
            let compact = train(size: 1, optimizer: optimizer, compact: true, config: config)
            XCTAssertTrue(compact.compact)
            XCTAssertEqual(compact.state, dense.state, "\(optimizer.kind): same bits")
        }
    }

    func testSharedTableGradientBlocksKeepEveryRankIdentical() {
        // ≈ 840 distinct tokens a step, 4 blocks of dE (the last partial), dealt
        // round-robin: on 2 ranks in two rounds; on 4 in one; on 4 with 2 formers
        // in two rounds, ranks 2 and 3 only receiving.
        var config = wideTinyConfig()
        config.vocabulary = 2000
        config.sequenceLength = 400
        var adam = OptimizerConfig(kind: .adam)
        adam.learningRate = 0.01
        for optimizer in [
            adam, OptimizerConfig(kind: .sgd, learningRate: 0.2), OptimizerConfig(kind: .rmsprop, learningRate: 0.01),
        ] {
            let dense = train(size: 1, optimizer: optimizer, compact: false, config: config)
            for (size, formers) in [(2, 8), (4, 8), (4, 2)] {
                let compact = train(size: size, optimizer: optimizer, compact: true, config: config, formers: formers)
                let what = "\(optimizer.kind), \(size) ranks, \(formers) formers"
                XCTAssertTrue(compact.compact)
                for (rank, state) in compact.ranks.enumerated() {
                    XCTAssertEqual(state, compact.state, "\(what): rank \(rank) holds rank 0's bits")
                }
                assertClose(
                    compact.state, dense.state.map { Double($0) }, atol: 1e-6, rtol: 1e-5, "\(what) against 1 rank")
            }
        }
    }

    func testReproducibleModeWithTheFactoredTableGivesTheSameBitsOnAnyRankCount() {
        // The exact sum of S, then dE blocks from it: the same bits on 1, 2 and 3 ranks,
        // with 4 blocks of rows; within tolerance of the float step (another rounding).
        var config = wideTinyConfig()
        config.vocabulary = 2000
        config.sequenceLength = 400
        var adam = OptimizerConfig(kind: .adam)
        adam.learningRate = 0.01
        var momentum = OptimizerConfig(kind: .sgd, learningRate: 0.1)
        momentum.momentum = 0.9
        for optimizer in [adam, momentum] {
            let one = train(size: 1, optimizer: optimizer, compact: true, config: config, microBatch: 1)
            XCTAssertTrue(one.compact, "reproducible mode takes the factored step")
            for size in [2, 3] {
                let run = train(size: size, optimizer: optimizer, compact: true, config: config, microBatch: 1)
                for state in run.ranks {
                    XCTAssertEqual(state, one.state, "\(optimizer.kind), \(size) ranks: one rank's bits")
                }
            }
            let dense = train(size: 1, optimizer: optimizer, compact: false, config: config, microBatch: 1)
            XCTAssertFalse(dense.compact)
            XCTAssertNotEqual(dense.state, one.state, "the factored sum really is another path")
            let float = train(size: 1, optimizer: optimizer, compact: true, config: config)
            assertClose(
                one.state, float.state.map { Double($0) }, atol: 1e-6, rtol: 1e-5,
                "\(optimizer.kind): against the float step")
        }
    }

    func testL2OnTheTableUsesTheDenseStep() {
        // 2λw reaches every row of the table: no compact layout can hold that gradient.
        let run = train(size: 1, optimizer: OptimizerConfig(kind: .adam), compact: true, l2: ["embedding": 0.001])
        XCTAssertFalse(run.compact)
    }

    func testThePathSaysWhyTheTableIsNotFactored() throws {
        let (penalised, _, _) = try tinyHeadline(
            heads: heads, l2: ["embedding": 0.001], batch: 3, samples: 10, config: wideTinyConfig())
        XCTAssertTrue(
            penalised.pathDescription.contains(
                "dense gradient, touched table rows packed for the exchange (a penalty on the table reaches every row)"),
            penalised.pathDescription)
        let (plain, _, _) = try tinyHeadline(heads: heads, l2: [:], batch: 3, samples: 10, config: wideTinyConfig())
        XCTAssertTrue(plain.pathDescription.contains("compact, factored table gradient"), plain.pathDescription)
        plain.compactTableGradient = false
        XCTAssertTrue(plain.pathDescription.contains("(PCGrad and the gradient checks read the dense table gradient)"))
        XCTAssertFalse(penalised.pathDescription.contains("Optional") || plain.pathDescription.contains("Optional"))
    }

    func testNonFiniteFactoredGradientStopsBeforeTheUpdate() throws {
        for microBatch in [nil, 1] {  // the float step and reproducible mode
            try checkNonFiniteFactoredGradientStops(microBatch: microBatch)
        }
    }

    private func checkNonFiniteFactoredGradientStops(microBatch: Int?) throws {
        let config = wideTinyConfig()
        let loud = [
            Head(output: "main_output", loss: .binaryCrossentropy, weight: 1e4),
            Head(output: "aux_output", loss: .binaryCrossentropy, weight: 1e4),
        ]
        let (step, data, _) = try tinyHeadline(
            heads: loud, l2: [:], batch: 3, samples: 10,
            optimizer: OptimizerConfig(kind: .adam), config: config)
        step.microBatch = microBatch
        XCTAssertTrue(step.usesCompactTableGradient)
        // Zero embeddings keep the forward finite whatever the input kernel; a kernel
        // of 3e38 then makes dE = S·Wᵀ overflow although S is finite: the magnitude
        // bound fails, and the blocks are formed and checked before any update.
        let store = step.model.parameters
        store.value(store.view("embedding/embeddings")!).update(
            repeating: 0, count: store.view("embedding/embeddings")!.count)
        let kernel = store.view("lstm/kernel")!
        store.value(kernel).update(repeating: 3e38, count: kernel.count)
        let before = store.snapshot()
        XCTAssertThrowsError(
            try [Int32(0), 1, 2].withUnsafeBufferPointer { try step.run(globalBatch: $0, data: data) }
        ) { error in
            XCTAssertTrue(
                "\(error)".contains("combined gradient is not finite (first in 'embedding/embeddings')"),
                "micro-batch \(microBatch ?? 0): \(error)")
        }
        XCTAssertEqual(store.snapshot(), before, "micro-batch \(microBatch ?? 0): no weight moved")
    }
}
