// Central-difference gradient checks: every layer on its own (L = Σ out ⊙ R
// with a fixed random R), then the whole headline model's weighted total loss
// with loss weights ≠ 1, sample weights, class weights and L2.
// Tolerances: ε = 1e-3 on Float32 values of order 1 gives a numerical
// derivative good to ~1e-4 absolute (Float32 rounding of L / 2ε) and O(ε²)
// truncation, so atol 5e-4 plus rtol 1e-2 separates real bugs (errors of
// order the gradient itself) from rounding.

import Foundation
import Tandem
import XCTest

private let eps: Float = 1e-3
private let atol = 5e-4
private let rtol = 1e-2

/// Analytic vs numerical gradients of L = Σ terminal ⊙ R for one layer graph.
private func checkLayer(
    _ model: Model, terminal: Layer, batch: Int, seed: UInt64,
    prepare: ((Model) -> Void)? = nil, file: StaticString = #filePath, line: UInt = #line
) {
    var rng = SeededGenerator(seed: seed)
    let store = model.parameters
    for input in model.inputs { input.wantsGradient = true }  // every layer's dx is checked
    fillUniform(store.values, store.count, &rng, -0.6, 0.6)
    for input in model.inputs where input.kind == .features {
        fillUniform(input.output.values, batch * input.width, &rng)
    }
    prepare?(model)
    let width = terminal.output.width
    let r = (0..<(batch * width)).map { _ in Float(rng.uniform(-1, 1)) }
    func loss() -> Double {
        model.forward(batch: batch)
        var total = 0.0
        for i in 0..<(batch * width) { total += Double(terminal.output.values[i]) * Double(r[i]) }
        return total
    }
    store.zeroGradients()
    model.forward(batch: batch)
    for i in 0..<(batch * width) { terminal.output.gradients[i] = r[i] }
    model.backward(batch: batch)
    let analytic = store.snapshot().indices.map { store.gradients[$0] }
    let inputGradients = model.inputs.filter { $0.kind == .features }.map { input in
        (0..<(batch * input.width)).map { input.output.gradients[$0] }
    }
    for view in store.tensors {
        for j in 0..<view.count {
            let p = store.values + view.offset + j
            let saved = p.pointee
            p.pointee = saved + eps
            let up = loss()
            p.pointee = saved - eps
            let down = loss()
            p.pointee = saved
            assertClose(
                Double(analytic[view.offset + j]), (up - down) / Double(2 * eps), atol: atol, rtol: rtol,
                "\(view.name)[\(j)]", file: file, line: line)
        }
    }
    for (k, input) in model.inputs.filter({ $0.kind == .features }).enumerated() {
        for j in 0..<(batch * input.width) {
            let p = input.output.values + j
            let saved = p.pointee
            p.pointee = saved + eps
            let up = loss()
            p.pointee = saved - eps
            let down = loss()
            p.pointee = saved
            assertClose(
                Double(inputGradients[k][j]), (up - down) / Double(2 * eps), atol: atol, rtol: rtol,
                "d\(input.name)[\(j)]", file: file, line: line)
        }
    }
}

final class LayerGradientTests: XCTestCase {
    func testDenseEveryActivation() {
        for activation in Activation.allCases {
            let x = InputLayer(name: "x", kind: .features, width: 4)
            let dense = Dense(name: "d", units: 5, activation: activation, input: x)
            let model = Model(inputs: [x], outputs: [dense], maxBatch: 3)
            checkLayer(
                model, terminal: dense, batch: 3, seed: 11,
                prepare: { m in
                    guard [.relu, .relu6, .leakyRelu, .selu].contains(activation) else { return }
                    // Keep relu inputs away from the kink: shift the bias until every |z| > 10ε.
                    m.forward(batch: 3)
                    let bias = m.parameters.value(m.parameters.view("d/bias")!)
                    for j in 0..<5 {
                        let near = (0..<3).contains { abs(dense.logits[$0 * 5 + j]) < 10 * eps }
                        if near { bias[j] += 0.05 }
                    }
                })
        }
    }

    func testConcatenate() {
        let a = InputLayer(name: "a", kind: .features, width: 2)
        let b = InputLayer(name: "b", kind: .features, width: 3)
        let cat = Concatenate(name: "c", inputs: [a, b])
        let model = Model(inputs: [a, b], outputs: [cat], maxBatch: 4)
        checkLayer(model, terminal: cat, batch: 4, seed: 12)
    }

    func testEmbeddingSumsRepeatedTokens() {
        let ids = InputLayer(name: "ids", kind: .tokens, width: 4)
        let emb = Embedding(name: "e", vocabulary: 7, dimension: 3, input: ids)
        let model = Model(inputs: [ids], outputs: [emb], maxBatch: 3)
        let tokens: [Int32] = [1, 1, 6, 0, 3, 1, 6, 6, 2, 0, 0, 1]  // repeats within and across samples
        checkLayer(
            model, terminal: emb, batch: 3, seed: 13,
            prepare: { _ in
                for i in 0..<12 { ids.tokens![i] = tokens[i] }
            })
        // Row 5 never occurs: its gradient is exactly zero.
        let g = model.parameters.gradient(model.parameters.view("e/embeddings")!)
        XCTAssertEqual((15..<18).map { g[$0] }, [0, 0, 0])
    }

    func testLSTMFullBackpropagationThroughTime() {
        let x = InputLayer(name: "x", kind: .features, width: 4 * 3)  // T = 4 steps of D = 3
        let lstm = LSTM(name: "lstm", units: 5, input: x, steps: 4)
        let model = Model(inputs: [x], outputs: [lstm], maxBatch: 3)
        checkLayer(model, terminal: lstm, batch: 3, seed: 14)
    }

    func testDenseOnAnInputFormsItsGradientOnlyWhenWanted() {
        // Training never reads a model input's gradient, so the dx product is skipped there.
        let x = InputLayer(name: "x", kind: .features, width: 3)
        let dense = Dense(name: "d", units: 2, input: x)
        let model = Model(inputs: [x], outputs: [dense], maxBatch: 2)
        var rng = SeededGenerator(seed: 2)
        fillUniform(model.parameters.values, model.parameters.count, &rng)
        fillUniform(x.output.values, 6, &rng)
        func inputGradient() -> [Float] {
            model.forward(batch: 2)
            for i in 0..<4 { dense.output.gradients[i] = 1 }
            model.backward(batch: 2)
            return (0..<6).map { x.output.gradients[$0] }
        }
        XCTAssertEqual(inputGradient(), [Float](repeating: 0, count: 6))
        x.wantsGradient = true
        XCTAssertTrue(inputGradient().contains { $0 != 0 })
    }

    func testLSTMSingleStep() {
        let x = InputLayer(name: "x", kind: .features, width: 2)
        let lstm = LSTM(name: "lstm", units: 3, input: x, steps: 1)
        let model = Model(inputs: [x], outputs: [lstm], maxBatch: 2)
        checkLayer(model, terminal: lstm, batch: 2, seed: 15)
    }
}

/// A headline model and TrainingStep on tiny data.
func tinyHeadline(
    heads: [Head], l2: [String: Double], batch: Int, samples: Int = 9,
    sampleWeights: Bool = true, communicator: Communicator = LocalCommunicator(),
    optimizer: OptimizerConfig = OptimizerConfig(), config: HeadlineConfig = tinyConfig()
) throws -> (TrainingStep, Dataset, String) {
    let dir = temporaryDirectory()
    try writeTinyData(dir, samples: samples, config: config, seed: 5, sampleWeights: sampleWeights)
    let model = Model.headline(config, maxBatch: batch)
    model.parameters.initialize(seed: 21)
    let step = try TrainingStep(
        model: model, heads: heads, optimizer: Optimizer(optimizer, parameterCount: model.parameters.count),
        communicator: communicator, l2: l2)
    return (step, try Dataset(directory: dir, model: model, heads: heads), dir)
}

final class ModelGradientTests: XCTestCase {
    let heads = [
        Head(output: "main_output", loss: .binaryCrossentropy, weight: 0.7, classWeights: [1: 2.5]),
        Head(output: "aux_output", loss: .binaryCrossentropy, weight: 0.3),
    ]

    func testHeadlineWeightedTotalLossGradient() throws {
        let (step, data, _) = try tinyHeadline(
            heads: heads, l2: ["dense": 0.01, "lstm": 0.02, "embedding": 0.005], batch: 8)
        try checkTotalLossGradient(step, data: data, batch: [0, 3, 5, 7, 2, 8, 1, 4], eps: eps, atol: atol, rtol: rtol)
    }

    func testMSEAndSoftmaxCrossEntropyGradients() throws {
        // A small graph with a softmax/CCE head and an MSE head on a shared Dense trunk.
        let x = InputLayer(name: "x", kind: .features, width: 3)
        let trunk = Dense(name: "trunk", units: 4, activation: .tanh, input: x)
        let soft = Dense(name: "soft", units: 3, activation: .softmax, input: trunk)
        let reg = Dense(name: "reg", units: 2, activation: .linear, input: trunk)
        let model = Model(inputs: [x], outputs: [soft, reg], maxBatch: 5)
        let heads = [
            Head(output: "soft", loss: .categoricalCrossentropy, weight: 1.3, classWeights: [2: 0.5]),
            Head(output: "reg", loss: .meanSquaredError, weight: 0.4),
        ]
        let dir = temporaryDirectory()
        var rng = SeededGenerator(seed: 3)
        let xs = (0..<15).map { _ in Float(rng.normal()) }
        let soft_t = (0..<5).flatMap { i -> [Float] in (0..<3).map { $0 == i % 3 ? 1 : 0 } }
        let reg_t = (0..<10).map { _ in Float(rng.normal()) }
        try xs.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [5, 3], to: dir + "/x.npy") }
        try soft_t.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [5, 3], to: dir + "/soft.npy") }
        try reg_t.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [5, 2], to: dir + "/reg.npy") }
        model.parameters.initialize(seed: 8)
        let step = try TrainingStep(
            model: model, heads: heads, optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
            communicator: LocalCommunicator(), l2: ["trunk": 0.1])
        let data = try Dataset(directory: dir, model: model, heads: heads)
        let batch: [Int32] = [4, 0, 2, 1, 3]
        func total() throws -> Double {
            try batch.withUnsafeBufferPointer { try step.computeGradient(globalBatch: $0, data: data).total }
        }
        _ = try total()
        let store = model.parameters
        let analytic = (0..<store.count).map { store.gradients[$0] }
        for i in 0..<store.count {
            let saved = store.values[i]
            store.values[i] = saved + eps
            let up = try total()
            store.values[i] = saved - eps
            let down = try total()
            store.values[i] = saved
            assertClose(Double(analytic[i]), (up - down) / Double(2 * eps), atol: atol, rtol: rtol, "parameter \(i)")
        }
    }

    /// For each parameter tensor: does it get any non-zero gradient with these loss weights?
    private func tensorsWithGradient(main: Double, aux: Double) throws -> [String: Bool] {
        let heads = [
            Head(output: "main_output", loss: .binaryCrossentropy, weight: main),
            Head(output: "aux_output", loss: .binaryCrossentropy, weight: aux),
        ]
        let (step, data, _) = try tinyHeadline(heads: heads, l2: [:], batch: 9)
        let batch: [Int32] = Array(0..<9)
        _ = try batch.withUnsafeBufferPointer { try step.computeGradient(globalBatch: $0, data: data) }
        let store = step.model.parameters
        return Dictionary(
            uniqueKeysWithValues: store.tensors.map { view in
                let g = store.gradient(view)
                return (view.name, (0..<view.count).contains { g[$0] != 0 })
            })
    }

    func testMainWeightZeroLeavesOnlyTheAuxPath() throws {
        for (name, nonzero) in try tensorsWithGradient(main: 0, aux: 0.2) {
            if name.hasPrefix("dense") || name.hasPrefix("main_output") {
                XCTAssertFalse(nonzero, "\(name) must get exactly zero gradient")
            } else {
                XCTAssertTrue(nonzero, "\(name) (trunk or aux head) must get gradient")
            }
        }
    }

    func testAuxWeightZeroGivesTheAuxHeadNoGradient() throws {
        for (name, nonzero) in try tensorsWithGradient(main: 1, aux: 0) {
            XCTAssertEqual(nonzero, !name.hasPrefix("aux_output"), name)
        }
    }

    func testAuxLossMovesTheTrunk() throws {
        // The aux head's loss alone changes the embedding and LSTM gradients.
        let only = { (main: Double, aux: Double) -> [Float] in
            let heads = [
                Head(output: "main_output", loss: .binaryCrossentropy, weight: main),
                Head(output: "aux_output", loss: .binaryCrossentropy, weight: aux),
            ]
            let (step, data, _) = try! tinyHeadline(heads: heads, l2: [:], batch: 9)
            let batch: [Int32] = Array(0..<9)
            _ = try! batch.withUnsafeBufferPointer { try step.computeGradient(globalBatch: $0, data: data) }
            let v = step.model.parameters.view("lstm/kernel")!
            return (0..<v.count).map { step.model.parameters.gradients[v.offset + $0] }
        }
        let both = only(1, 0.2)
        let mainOnly = only(1, 0)
        let auxOnly = only(0, 0.2)
        XCTAssertNotEqual(both, mainOnly)
        for i in both.indices {
            assertClose(
                Double(both[i]), Double(mainOnly[i]) + Double(auxOnly[i]), atol: 1e-7, rtol: 1e-5, "linearity at \(i)")
        }
    }

    func testHeadLossIsKerasSumOverBatchSize() throws {
        let (step, data, _) = try tinyHeadline(heads: heads, l2: [:], batch: 9)
        let batch: [Int32] = [8, 1, 2, 6, 4]
        let figures = try batch.withUnsafeBufferPointer { try step.computeGradient(globalBatch: $0, data: data) }
        // Recompute main_output's loss by hand from the predicted probabilities.
        let p = step.model.output(named: "main_output")!.output.values!
        let weights = try NPYArray(path: data.directory + "/main_output.sample_weight.npy")
        var expected = 0.0
        for (i, sample) in batch.enumerated() {
            var t: Float = 0
            var w: Float = 0
            data.targets[0].readFloats(row: Int(sample), into: &t)
            weights.readFloats(row: Int(sample), into: &w)
            let classWeight = t >= 0.5 ? 2.5 : 1.0
            let pi = Double(p[i])
            expected += Double(w) * classWeight * -(Double(t) * log(pi) + (1 - Double(t)) * log(1 - pi))
        }
        expected /= Double(batch.count)
        // log of a Float32 probability: relative error ~1e-6.
        assertClose(figures.headLossSums[0] / Double(batch.count), expected, atol: 1e-6, rtol: 1e-5)
    }
}
