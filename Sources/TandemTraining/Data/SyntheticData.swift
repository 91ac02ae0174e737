// `tandem gen-data`: a learnable synthetic headline dataset.
// Each sample has a hidden topic y ∈ {0, 1}. A fifth of its tokens come from
// that topic's own block of "signal" ids, the rest are uniform noise, so the
// aux label (= y) depends on the tokens only. The main label depends on the
// tokens AND the aux features: main = [1.5·(2y − 1) + 2·x₀ − x₁ > 0].

import Foundation
import TandemCore
import TandemKeras

/// Writes main_input, aux_input, main_output and aux_output .npy files to `directory`.
public func generateHeadlineData(directory: String, samples: Int, config: HeadlineConfig, seed: UInt64) throws {
    guard samples > 0 else { throw TandemError.usage("--samples must be at least 1") }
    guard config.vocabulary >= 4 else { throw TandemError.usage("--vocab must be at least 4 for generated data") }
    try makeDirectory(directory)
    var rng = SeededGenerator(seed: seed, stream: 0xDA7A)
    let T = config.sequenceLength
    let F = config.auxFeatures
    let V = config.vocabulary
    let block = max(1, V / 20)  // topic 0 uses ids [0, block), topic 1 [block, 2·block)
    var tokens = [Int32](repeating: 0, count: samples * T)
    var features = [Float](repeating: 0, count: samples * F)
    var main = [Float](repeating: 0, count: samples)
    var aux = [Float](repeating: 0, count: samples)
    for s in 0..<samples {
        let topic = rng.below(2)
        for t in 0..<T {
            let signal = rng.nextUnit() < 0.2
            tokens[s * T + t] = Int32(signal ? topic * block + rng.below(block) : rng.below(V))
        }
        for j in 0..<F { features[s * F + j] = Float(rng.normal()) }
        let x0 = Double(features[s * F])
        let x1 = F > 1 ? Double(features[s * F + 1]) : 0
        aux[s] = Float(topic)
        main[s] = 1.5 * Double(2 * topic - 1) + 2 * x0 - x1 > 0 ? 1 : 0
    }
    func path(_ name: String) -> String { URL(fileURLWithPath: directory).appendingPathComponent(name).path }
    try tokens.withUnsafeBufferPointer {
        try NPYArray.write(ints: $0, shape: [samples, T], to: path("main_input.npy"))
    }
    try features.withUnsafeBufferPointer {
        try NPYArray.write(floats: $0, shape: [samples, F], to: path("aux_input.npy"))
    }
    try main.withUnsafeBufferPointer {
        try NPYArray.write(floats: $0, shape: [samples, 1], to: path("main_output.npy"))
    }
    try aux.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [samples, 1], to: path("aux_output.npy")) }
}

/// A learnable synthetic dataset for any model: inputs are random (token ids
/// uniform over the vocabulary of the Embedding that reads them, features
/// standard normal) and the targets are what a TEACHER — the same
/// architecture with weights drawn from `seed` — predicts: binary labels by
/// thresholding each column at its median (balanced classes), class ids and
/// one-hot rows from its argmax, regression targets as its values. So the
/// model can fit the data exactly, and every file has the model's names,
/// shapes and dtypes.
public func generateData(directory: String, samples: Int, description: ModelDescription, seed: UInt64) throws {
    guard samples > 0 else { throw TandemError.usage("--samples must be at least 1") }
    // 256 rows a pass; fewer for a model whose rows are very large (ModelDescription.evaluationRows).
    let rows = try description.evaluationRows()
    let batch = rows < 64 ? rows : 256
    let teacher = try description.build(maxBatch: batch, fuse: false)
    teacher.parameters.initialize(seed: seed &+ 0x7EAC)
    try makeDirectory(directory)
    var rng = SeededGenerator(seed: seed, stream: 0xDA7B)
    func path(_ name: String) -> String { URL(fileURLWithPath: directory).appendingPathComponent(name).path }
    // Inputs.
    var tokenData: [[Int32]] = []
    var floatData: [[Float]] = []
    for input in teacher.inputs {
        let n = samples * input.width
        if input.kind == .tokens {
            let vocab =
                teacher.lookups.first { $0.inputs.first === input }?.vocabulary ?? 100
            tokenData.append((0..<n).map { _ in Int32(rng.below(vocab)) })
            floatData.append([])
        } else {
            floatData.append((0..<n).map { _ in Float(rng.normal()) })
            tokenData.append([])
        }
    }
    // The teacher's predictions, batch by batch.
    var predictions = teacher.outputs.map { [Float](repeating: 0, count: samples * $0.output.width) }
    var start = 0
    while start < samples {
        let n = min(batch, samples - start)
        for (i, input) in teacher.inputs.enumerated() {
            let w = input.width
            if let t = input.tokens {
                tokenData[i].withUnsafeBufferPointer { (t).update(from: $0.baseAddress! + start * w, count: n * w) }
            } else {
                floatData[i].withUnsafeBufferPointer {
                    input.output.values.update(from: $0.baseAddress! + start * w, count: n * w)
                }
            }
        }
        teacher.forward(batch: n, training: false)
        for (o, layer) in teacher.outputs.enumerated() {
            let w = layer.output.width
            predictions[o].withUnsafeMutableBufferPointer {
                ($0.baseAddress! + start * w).update(from: layer.output.values, count: n * w)
            }
        }
        start += n
    }
    for (i, input) in teacher.inputs.enumerated() {
        let shape = [samples] + input.output.shape
        if input.kind == .tokens {
            try tokenData[i].withUnsafeBufferPointer {
                try NPYArray.write(ints: $0, shape: shape, to: path("\(input.name).npy"))
            }
        } else {
            try floatData[i].withUnsafeBufferPointer {
                try NPYArray.write(floats: $0, shape: shape, to: path("\(input.name).npy"))
            }
        }
    }
    for head in description.heads {
        guard let o = teacher.outputs.firstIndex(where: { $0.name == head.output }) else { continue }
        // An output with spatial or time axes: one target per element (token, pixel), made as a sample's.
        let layer = teacher.outputs[o]
        let cellShape = Array(layer.output.shape.dropLast())
        let w = head.elements(of: layer).columns
        let samples = samples * head.elements(of: layer).cells
        let p = predictions[o]
        var targets: [Float]
        var shape = [samples, w]
        switch head.loss {
        case .binaryCrossentropy, .binaryFocalCrossentropy, .hinge, .squaredHinge, .dice, .tversky:
            targets = [Float](repeating: 0, count: samples * w)
            for j in 0..<w {
                let column = (0..<samples).map { p[$0 * w + j] }.sorted()
                let median = column[samples / 2]
                for s in 0..<samples { targets[s * w + j] = p[s * w + j] >= median ? 1 : 0 }
            }
        case .categoricalCrossentropy, .sparseCategoricalCrossentropy, .categoricalHinge,
            .categoricalFocalCrossentropy, .categoricalGeneralizedCrossEntropy:
            let ids = (0..<samples).map { s -> Int in
                var best = 0
                for j in 1..<w where p[s * w + j] > p[s * w + best] { best = j }
                return best
            }
            if head.loss.targetWidth(outputWidth: w) == 1 {
                targets = ids.map(Float.init)
                // Generalized cross-entropy's ids are [N]: Keras broadcasts [N, 1] ones (Dataset refuses them).
                shape = head.loss == .categoricalGeneralizedCrossEntropy ? [samples] : [samples, 1]
                // With ignore_class, every fourth sample (from the second) is unlabelled.
                if let c = head.options.ignoreClass {
                    for s in stride(from: 1, to: samples, by: 4) { targets[s] = Float(c) }
                }
            } else {
                targets = [Float](repeating: 0, count: samples * w)
                for (s, id) in ids.enumerated() { targets[s * w + id] = 1 }
            }
        case .circle:  // class ids: the teacher's embedding's largest coordinate
            targets = (0..<samples).map { s -> Float in
                var best = 0
                for j in 1..<w where p[s * w + j] > p[s * w + best] { best = j }
                return Float(best)
            }
            shape = [samples, 1]
        case .meanSquaredError, .meanAbsoluteError, .huber, .logCosh, .cosineSimilarity:
            targets = p
        case .meanAbsolutePercentageError:  // away from 0, where a percentage has no scale
            targets = p.map { $0 >= 0 ? 1 + $0 : $0 - 1 }
        case .meanSquaredLogarithmicError:  // logarithms of non-negative values
            targets = p.map { abs($0) }
        case .poisson:  // counts' rates are non-negative
            targets = p.map { max($0, 0) }
        case .klDivergence:  // a distribution per row
            targets = p.map { max(abs($0), 1e-3) }
            for s in 0..<samples {
                let total = targets[(s * w)..<((s + 1) * w)].reduce(0, +)
                for j in 0..<w { targets[s * w + j] /= total }
            }
        }
        if !cellShape.isEmpty { shape = [samples / cellShape.reduce(1, *)] + cellShape + shape.dropFirst() }
        try targets.withUnsafeBufferPointer {
            try NPYArray.write(floats: $0, shape: shape, to: path("\(head.output).npy"))
        }
    }
}

/// Marks about `fraction` of the rows of `<output>.npy` in `directory` as unlabelled (NaN in
/// every column, docs/SPEC.md §10), the rows drawn from `seed`; returns how many. The file is
/// rewritten as float32, since NaN needs a float type.
@discardableResult
public func markMissingLabels(directory: String, output: String, fraction: Double, seed: UInt64) throws -> Int {
    let path = URL(fileURLWithPath: directory).appendingPathComponent("\(output).npy").path
    let array = try NPYArray(path: path)
    let w = array.rowWidth
    var values = [Float](repeating: 0, count: array.rows * w)
    values.withUnsafeMutableBufferPointer { v in
        for r in 0..<array.rows { array.readFloats(row: r, into: v.baseAddress! + r * w) }
    }
    var rng = SeededGenerator(seed: seed ^ 0x6d69_7373_696e_67)  // "missing"
    var marked = 0
    for r in 0..<array.rows where rng.uniform(0, 1) < fraction {
        for j in 0..<w { values[r * w + j] = .nan }
        marked += 1
    }
    let shape = array.shape
    try values.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: shape, to: path) }
    return marked
}
