// Missing labels (docs/SPEC.md §10): a NaN target row is no label for that head. With
// `batch` reduction it is Keras's sample weight 0 (divided by the batch size);
// with `labeled` the head's loss is the weighted mean over its labelled
// samples; a batch without a label for a head adds nothing for it; metrics
// count labelled rows only; any rank count gives the one-process gradient.

import Foundation
import TandemTestSupport
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

extension ParameterStore {
    fileprivate func gradientSnapshot() -> [Float] { Array(UnsafeBufferPointer(start: gradients, count: count)) }
}

final class MissingLabelTests: XCTestCase, @unchecked Sendable {
    /// x → tanh trunk → "a" (sigmoid, BCE, every row labelled) and "b" (softmax, sparse CCE,
    /// rows 1, 4 and 5 unlabelled, sample weights). `b.npy` holds NaN where `missing`, else the
    /// class; `stand-in` replaces NaN by class 0 with sample weight 0 (what a Keras user passes).
    private let samples = 7, missingRows: Set<Int> = [1, 4, 5]
    private func makeData(_ dir: String, missing: Bool) throws {
        var rng = SeededGenerator(seed: 21)
        try write((0..<(samples * 3)).map { _ in Float(rng.normal()) }, [samples, 3], dir + "/x.npy")
        try write((0..<samples).map { _ in Float(rng.below(2)) }, [samples, 1], dir + "/a.npy")
        let classes = (0..<samples).map { _ in Float(rng.below(3)) }
        let weights = (0..<samples).map { _ in Float(rng.uniform(0.5, 2)) }
        try write(
            (0..<samples).map { missingRows.contains($0) ? (missing ? .nan : 0) : classes[$0] }, [samples, 1],
            dir + "/b.npy")
        try write(
            (0..<samples).map { missingRows.contains($0) && !missing ? 0 : weights[$0] }, [samples],
            dir + "/b.sample_weight.npy")
    }

    private func step(_ reduction: Head.Reduction, communicator: Communicator = LocalCommunicator(), maxBatch: Int = 7)
        throws -> TrainingStep
    {
        let x = InputLayer(name: "x", kind: .features, width: 3)
        let trunk = Dense(name: "trunk", units: 4, activation: .tanh, input: x)
        let model = Model(
            inputs: [x],
            outputs: [
                Dense(name: "a", units: 1, activation: .sigmoid, input: trunk),
                Dense(name: "b", units: 3, activation: .softmax, input: trunk),
            ], maxBatch: maxBatch)
        model.parameters.initialize(seed: 5)
        var b = Head(
            output: "b", loss: .sparseCategoricalCrossentropy, weight: 0.7,
            accuracy: .init(name: "accuracy", kind: .sparseCategorical))
        b.reduction = reduction
        b.metrics = [Metric(name: "mae", kind: .meanAbsoluteError, keras: "\"mae\"")]
        let heads = [
            Head(output: "a", loss: .binaryCrossentropy, weight: 1, accuracy: .init(name: "accuracy", kind: .binary)),
            b,
        ]
        return try TrainingStep(
            model: model, heads: heads, optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
            communicator: communicator, regularizers: [])
    }

    private func data(_ dir: String, _ step: TrainingStep) throws -> Dataset {
        try Dataset(directory: dir, model: step.model, heads: step.heads)
    }

    private let all: [Int32] = [0, 1, 2, 3, 4, 5, 6]

    func testBatchReductionIsKerasSampleWeightZero() throws {
        let nanDir = temporaryDirectory("nan")
        let zeroDir = temporaryDirectory("zero")
        try makeData(nanDir, missing: true)
        try makeData(zeroDir, missing: false)
        let s = try step(.batch)
        let withNaN = try data(nanDir, s)
        let standIn = try data(zeroDir, s)
        XCTAssertTrue(withNaN.hasMissingLabels)
        XCTAssertFalse(standIn.hasMissingLabels)
        XCTAssertNil(withNaN.validate(rows: 0..<samples), "NaN rows are missing labels, not bad values")
        let f1 = try all.withUnsafeBufferPointer { try s.computeGradient(globalBatch: $0, data: withNaN) }
        let lossNaN = f1.headLossSums
        let labelled = f1.headLabelled
        let g1 = s.model.parameters.gradientSnapshot()
        let f2 = try all.withUnsafeBufferPointer { try s.computeGradient(globalBatch: $0, data: standIn) }
        XCTAssertEqual(lossNaN, f2.headLossSums, "the same loss sums, divided by the batch size")
        XCTAssertEqual(g1, s.model.parameters.gradientSnapshot(), "the same gradient, bit for bit")
        XCTAssertEqual(labelled, [7, 4])
        XCTAssertTrue(lossNaN.allSatisfy(\.isFinite))
        // Metrics: the stand-in's zero-weighted rows still count in Keras's unweighted accuracy; NaN rows do not.
        let e = try s.evaluate(withNaN, rows: 0..<samples)
        var correct = 0.0
        for r in 0..<samples where !missingRows.contains(r) {
            let one = try [Int32(r)].withUnsafeBufferPointer { try s.computeGradient(globalBatch: $0, data: withNaN) }
            correct += one.headCorrect[1]
        }
        XCTAssertEqual(e.headAccuracy[1], correct / 4, accuracy: 1e-15, "accuracy over the 4 labelled rows")
        XCTAssertEqual(e.headLoss[1], lossNaN[1] / 7, accuracy: 1e-12, "evaluate divides by the set size")
    }

    func testLabeledReductionIsTheWeightedMeanOverLabelledSamples() throws {
        let dir = temporaryDirectory()
        try makeData(dir, missing: true)
        let batchStep = try step(.batch)
        let labeledStep = try step(.labeled)
        let d = try data(dir, batchStep)
        // Each labelled row alone, weight w_i: Σ w_i·ℓ_i and Σ w_i by hand.
        var weighted = 0.0
        var weightSum = 0.0
        let weights = try NPYArray(path: dir + "/b.sample_weight.npy")
        for r in 0..<samples where !missingRows.contains(r) {
            let one = try [Int32(r)].withUnsafeBufferPointer { try batchStep.computeGradient(globalBatch: $0, data: d) }
            weighted += one.headLossSums[1]
            weightSum += Double(weights.float(row: r))
        }
        let f = try all.withUnsafeBufferPointer {
            try labeledStep.computeGradient(globalBatch: $0, data: try data(dir, labeledStep))
        }
        XCTAssertEqual(
            f.headLossSums[1] / 7, weighted / weightSum, accuracy: 1e-6, "Σ w·ℓ / Σ w over the labelled rows")
        XCTAssertEqual(
            f.headLossSums[0],
            try all.withUnsafeBufferPointer { try batchStep.computeGradient(globalBatch: $0, data: d) }.headLossSums[0],
            "a fully labelled head is unchanged")
        try checkTotalLossGradient(labeledStep, data: try data(dir, labeledStep), batch: all)
        let e = try labeledStep.evaluate(try data(dir, labeledStep), rows: 0..<samples)
        XCTAssertEqual(
            e.headLoss[1], weighted / weightSum, accuracy: 1e-6, "evaluate: the mean over the set's labelled rows")
    }

    func testABatchWithoutLabelsContributesNothing() throws {
        let dir = temporaryDirectory()
        try makeData(dir, missing: true)
        for reduction in Head.Reduction.allCases {
            let s = try step(reduction)
            let d = try data(dir, s)
            let f = try [Int32(1), 4, 5].withUnsafeBufferPointer { try s.computeGradient(globalBatch: $0, data: d) }
            XCTAssertEqual(f.headLossSums[1], 0, "\(reduction)")
            XCTAssertEqual(f.headCorrect[1], 0)
            XCTAssertEqual(f.headLabelled[1], 0)
            XCTAssertTrue(f.total.isFinite && f.headLossSums[0] > 0, "\(reduction): head a still trains")
            XCTAssertEqual(f.metricSums, [0, 0], "\(reduction): no metric sums for head b")
            let b = s.model.parameters.tensors.filter { $0.name.hasPrefix("b/") }
            XCTAssertFalse(b.isEmpty)
            for view in b {
                XCTAssertTrue(
                    UnsafeBufferPointer(start: s.model.parameters.gradient(view), count: view.count).allSatisfy {
                        $0 == 0
                    }, "\(reduction): \(view.name) gets no gradient")
            }
        }
    }

    func testAnyRankCountGivesTheOneProcessGradient() throws {
        let dir = temporaryDirectory()
        try makeData(dir, missing: true)
        for reduction in Head.Reduction.allCases {
            let one = try step(reduction)
            let reference = try all.withUnsafeBufferPointer {
                try one.computeGradient(globalBatch: $0, data: try data(dir, one))
            }
            let expected = one.model.parameters.gradientSnapshot()
            // 3 ranks: rank 1 holds rows 2, 3 (labelled), rank 2 rows 4–6 (mostly not), rank 0 rows 0, 1.
            let results = LockedArray(3)
            ThreadGroup.run(size: 3) { rank, comm in
                let s = try! self.step(reduction, communicator: comm, maxBatch: 3)
                let f = try! self.all.withUnsafeBufferPointer {
                    try s.computeGradient(globalBatch: $0, data: try self.data(dir, s))
                }
                XCTAssertEqual(f.headLossSums[1], reference.headLossSums[1], accuracy: 1e-12)
                XCTAssertEqual(f.headLabelled, reference.headLabelled)
                results.set(rank, s.model.parameters.gradientSnapshot())
            }
            for r in 0..<3 {
                assertClose(
                    results.values[r], expected.map(Double.init), atol: 1e-7, rtol: 1e-6, "\(reduction) rank \(r)")
            }
        }
    }

    func testAPartlyMissingRowIsRefused() throws {
        let dir = temporaryDirectory()
        try makeData(dir, missing: true)
        try write([0, 1, .nan, 1, 0, 1, 0], [samples, 1], dir + "/a.npy")
        let s = try step(.batch)
        XCTAssertNil(try data(dir, s).validate(rows: 0..<samples), "one column: NaN is a missing label")
        // A one-hot target with NaN in one column only is no label and no value.
        let x = InputLayer(name: "x", kind: .features, width: 3)
        let model = Model(
            inputs: [x], outputs: [Dense(name: "c", units: 2, activation: .softmax, input: x)], maxBatch: 2)
        try write([0, 0, 0, 0, 0, 0], [2, 3], dir + "/x.npy")
        try write([1, 0, .nan, 1], [2, 2], dir + "/c.npy")
        let d = try Dataset(
            directory: dir, model: model, heads: [Head(output: "c", loss: .categoricalCrossentropy, weight: 1)])
        let error = d.validate(rows: 0..<2).map { String(describing: $0) } ?? ""
        XCTAssertTrue(
            error.contains("c.npy") && error.contains("row 1") && error.contains("NaN in every column"), error)
    }
}
