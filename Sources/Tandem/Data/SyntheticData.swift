// `tandem gen-data`: a learnable synthetic headline dataset.
// Each sample has a hidden topic y ∈ {0, 1}. A fifth of its tokens come from
// that topic's own block of "signal" ids, the rest are uniform noise, so the
// aux label (= y) depends on the tokens only. The main label depends on the
// tokens AND the aux features: main = [1.5·(2y − 1) + 2·x₀ − x₁ > 0].

import Foundation

/// Writes main_input, aux_input, main_output and aux_output .npy files to `directory`.
public func generateHeadlineData(directory: String, samples: Int, config: HeadlineConfig, seed: UInt64) throws {
    guard samples > 0 else { throw TandemError.usage("--samples must be at least 1") }
    guard config.vocabulary >= 4 else { throw TandemError.usage("--vocab must be at least 4 for generated data") }
    try makeDirectory(directory)
    var rng = SeededGenerator(seed: seed, stream: 0xDA7A)
    let T = config.sequenceLength, F = config.auxFeatures, V = config.vocabulary
    let block = max(1, V / 20)  // topic 0 uses ids [0, block), topic 1 [block, 2·block)
    var tokens = [Int32](repeating: 0, count: samples * T)
    var features = [Float](repeating: 0, count: samples * F)
    var main = [Float](repeating: 0, count: samples), aux = [Float](repeating: 0, count: samples)
    for s in 0..<samples {
        let topic = rng.below(2)
        for t in 0..<T {
            let signal = rng.nextUnit() < 0.2
            tokens[s * T + t] = Int32(signal ? topic * block + rng.below(block) : rng.below(V))
        }
        for j in 0..<F { features[s * F + j] = Float(rng.normal()) }
        let x0 = Double(features[s * F]), x1 = F > 1 ? Double(features[s * F + 1]) : 0
        aux[s] = Float(topic)
        main[s] = 1.5 * Double(2 * topic - 1) + 2 * x0 - x1 > 0 ? 1 : 0
    }
    func path(_ name: String) -> String { URL(fileURLWithPath: directory).appendingPathComponent(name).path }
    try tokens.withUnsafeBufferPointer { try NPYArray.write(ints: $0, shape: [samples, T], to: path("main_input.npy")) }
    try features.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [samples, F], to: path("aux_input.npy")) }
    try main.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [samples, 1], to: path("main_output.npy")) }
    try aux.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [samples, 1], to: path("aux_output.npy")) }
}
