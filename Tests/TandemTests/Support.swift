// Shared test helpers, in one place: the tolerance rule, seeded fills, temporary folders, the
// tiny models and data, the gradient-check drivers, and locked arrays for thread ranks.
// Tolerance rule (as swift-numerics): pass when |a − e| ≤ atol + rtol·max(|a|, |e|).

import Foundation
import TandemTestSupport
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

func assertClose(
    _ actual: Double, _ expected: Double, atol: Double, rtol: Double, _ message: @autoclosure () -> String = "",
    file: StaticString = #filePath, line: UInt = #line
) {
    let ok = abs(actual - expected) <= atol + rtol * max(abs(actual), abs(expected))
    XCTAssertTrue(ok, "\(actual) vs \(expected) (atol \(atol), rtol \(rtol)) \(message())", file: file, line: line)
}

func assertClose(
    _ actual: [Float], _ expected: [Double], atol: Double, rtol: Double, _ message: String = "",
    file: StaticString = #filePath, line: UInt = #line
) {
    XCTAssertEqual(actual.count, expected.count, file: file, line: line)
    for (i, (a, e)) in zip(actual, expected).enumerated() {
        assertClose(Double(a), e, atol: atol, rtol: rtol, "\(message) [\(i)]", file: file, line: line)
    }
}

func fillUniform(
    _ p: UnsafeMutablePointer<Float>, _ n: Int, _ rng: inout SeededGenerator, _ low: Double = -1, _ high: Double = 1
) {
    for i in 0..<n { p[i] = Float(rng.uniform(low, high)) }
}

/// A tiny headline configuration with odd, non-square sizes.
func tinyConfig() -> HeadlineConfig {
    .sized(vocabulary: 13, sequenceLength: 5, embedding: 4, lstmUnits: 3, auxFeatures: 2, denseUnits: 6, denseLayers: 2)
}

/// Writes a small headline dataset with optional sample weights for `main_output`.
func writeTinyData(_ dir: String, samples: Int, config: HeadlineConfig, seed: UInt64, sampleWeights: Bool = false)
    throws
{
    try generateHeadlineData(directory: dir, samples: samples, config: config, seed: seed)
    if sampleWeights {
        var rng = SeededGenerator(seed: seed, stream: 77)
        let w = (0..<samples).map { _ in Float(rng.uniform(0.5, 2.0)) }
        try w.withUnsafeBufferPointer {
            try NPYArray.write(floats: $0, shape: [samples], to: dir + "/main_output.sample_weight.npy")
        }
    }
}

/// `epochs` epochs of global batches of `batch` samples (shuffled by `seed`), then
/// every deferred row brought up to date.
func trainEpochs(_ step: TrainingStep, data: Dataset, batch: Int, epochs: Int, seed: UInt64) throws {
    for epoch in 0..<epochs {
        let order = epochPermutation(count: data.count, seed: seed, epoch: epoch)
        for k in stride(from: 0, to: data.count, by: batch) {
            _ = try order.withUnsafeBufferPointer {
                try step.run(globalBatch: UnsafeBufferPointer(rebasing: $0[k..<min(k + batch, data.count)]), data: data)
            }
        }
    }
    step.synchronize()
}

/// Central differences of the step's total loss against `computeGradient`, every
/// parameter, each tensor getting some gradient (the GradientCheckTests tolerances).
func checkTotalLossGradient(
    _ step: TrainingStep, data: Dataset, batch: [Int32], eps: Float = 1e-3, atol: Double = 5e-4, rtol: Double = 1e-2,
    file: StaticString = #filePath, line: UInt = #line
) throws {
    func total() throws -> Double {
        try batch.withUnsafeBufferPointer { try step.computeGradient(globalBatch: $0, data: data).total }
    }
    _ = try total()
    let store = step.model.parameters
    let analytic = (0..<store.count).map { store.gradients[$0] }
    for view in store.tensors where view.spec.trainable {
        for j in 0..<view.count {
            let p = store.values + view.offset + j
            let saved = p.pointee
            p.pointee = saved + eps
            let up = try total()
            p.pointee = saved - eps
            let down = try total()
            p.pointee = saved
            assertClose(
                Double(analytic[view.offset + j]), (up - down) / Double(2 * eps), atol: atol, rtol: rtol,
                "\(view.name)[\(j)]", file: file, line: line)
        }
        XCTAssertTrue(
            (0..<view.count).contains { analytic[view.offset + $0] != 0 }, "\(view.name) gets gradient", file: file,
            line: line)
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

/// The gradient checks' central-difference step and tolerances (LayerGradientTests.swift's header).
let eps: Float = 1e-3
let atol = 5e-4
let rtol = 1e-2

/// Analytic vs numerical gradients of L = Σ terminal ⊙ R for one layer graph.
func checkLayer(
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

/// Random inputs and MSE targets for every output, then the total-loss gradient check.
func checkGradients(
    inputs: [InputLayer], outputs: [Layer], batch: Int = 3, seed: UInt64 = 5,
    file: StaticString = #filePath, line: UInt = #line
) throws {
    let model = Model(inputs: inputs, outputs: outputs, maxBatch: batch)
    model.parameters.initialize(seed: seed)
    let dir = temporaryDirectory()
    var rng = SeededGenerator(seed: seed + 1)
    for x in inputs {
        try write(
            (0..<(batch * x.width)).map { _ in Float(rng.normal()) }, [batch] + x.output.shape, dir + "/\(x.name).npy")
    }
    for o in outputs {
        try write(
            (0..<(batch * o.output.width)).map { _ in Float(rng.normal()) }, [batch, o.output.width],
            dir + "/\(o.name).npy")
    }
    let heads = outputs.enumerated().map {
        Head(output: $0.element.name, loss: .meanSquaredError, weight: 1 + Double($0.offset) / 3)
    }
    let step = try TrainingStep(
        model: model, heads: heads, optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
        communicator: LocalCommunicator(), regularizers: [])
    try checkTotalLossGradient(
        step, data: try Dataset(directory: dir, model: model, heads: heads),
        batch: (0..<Int32(batch)).reversed(), file: file, line: line)
}

/// tinyConfig with a table at least 4U wide, as the factored form needs: 13 ≥ 12.
func wideTinyConfig() -> HeadlineConfig {
    var config = tinyConfig()
    config.embeddingDimension = 13
    return config
}

/// The total loss's gradient of `model` with one MSE head on `output`, checked numerically on
/// `batch` of the dataset in `dir` (the layer tests' common tail).
func checkMSEGradient(
    _ model: Model, data dir: String, batch: [Int32], output: String = "out", file: StaticString = #filePath,
    line: UInt = #line
) throws {
    let heads = [Head(output: output, loss: .meanSquaredError, weight: 1)]
    let step = try TrainingStep(
        model: model, heads: heads, optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
        communicator: LocalCommunicator(), regularizers: [])
    try checkTotalLossGradient(
        step, data: try Dataset(directory: dir, model: model, heads: heads), batch: batch, file: file, line: line)
}
