// Permute, ZeroPadding1D, Cropping1D, UpSampling1D (IndexMap.swift) and PReLU (PReLU.swift): the
// values each puts where Keras puts them, and the total loss's gradient through a chain of them
// (PReLU's α shared and per element), checked numerically (tolerances as in GradientCheckTests).

import Foundation
import TandemTestSupport
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class SequenceMoveTests: XCTestCase {
    /// [T = 3, F = 2] with values 1…6, through one map.
    private func moved(_ built: (shape: [Int], map: [Int32])) -> [Float] {
        let x = InputLayer(name: "x", kind: .features, shape: [3, 2])
        let layer = IndexMap(name: "m", input: x, shape: built.shape, map: built.map)
        let model = Model(inputs: [x], outputs: [layer], maxBatch: 1)
        x.output.values.update(from: [1, 2, 3, 4, 5, 6], count: 6)
        model.forward(batch: 1, training: false)
        return Array(UnsafeBufferPointer(start: layer.output.values, count: layer.output.width))
    }

    func testValuesGoWhereKerasPutsThem() {
        let shape = [3, 2]
        XCTAssertEqual(moved(IndexMap.permutation(shape, order: [1, 0])), [1, 3, 5, 2, 4, 6])
        XCTAssertEqual(
            moved(IndexMap.steps(shape, outSteps: 6) { $0 >= 1 && $0 < 4 ? $0 - 1 : nil }),
            [0, 0, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0])  // ZeroPadding1D((1, 2))
        XCTAssertEqual(moved(IndexMap.steps(shape, outSteps: 1) { $0 + 1 }), [3, 4])  // Cropping1D((1, 1))
        XCTAssertEqual(moved(IndexMap.steps(shape, outSteps: 6) { $0 / 2 }), [1, 2, 1, 2, 3, 4, 3, 4, 5, 6, 5, 6])
        XCTAssertEqual(IndexMap.permutation([2, 3, 4], order: [2, 0, 1]).shape, [4, 2, 3])
    }

    func testRunsMoveTheSameBitsAsTheElementRule() {
        // Padding (asymmetric), cropping and nearest upsampling of a [6, 5, 16] image move runs of whole rows
        // and cells; each against y[i] = x[map[i]] and dx[map[i]] += dy[i], element by element, from a dx
        // that is not zero (backward adds).
        let shape = [6, 5, 16]
        let maps = [
            IndexMap.cells(shape, out: (7, 8)) { i, j in i < 6 && j >= 1 && j < 6 ? (i, j - 1) : nil },
            IndexMap.cells(shape, out: (3, 2)) { i, j in (i + 2, j + 1) },
            IndexMap.cells(shape, out: (12, 10)) { i, j in (i / 2, j / 2) },
        ]
        for (k, built) in maps.enumerated() {
            let x = InputLayer(name: "x", kind: .features, shape: shape)
            x.wantsGradient = true
            let layer = IndexMap(name: "m", input: x, shape: built.shape, map: built.map)
            XCTAssertTrue(layer.movesRuns, "map \(k)")
            let model = Model(inputs: [x], outputs: [layer], maxBatch: 3)
            var rng = SeededGenerator(seed: UInt64(40 + k))
            let (n, m) = (x.width, layer.output.width)
            let xs = (0..<(3 * n)).map { _ in Float(rng.normal()) }
            let dys = (0..<(3 * m)).map { _ in Float(rng.normal()) }
            let dx0 = (0..<(3 * n)).map { _ in Float(rng.normal()) }
            x.output.values.update(from: xs, count: 3 * n)
            model.forward(batch: 3)
            var y = [Float](repeating: 0, count: 3 * m)
            var dx = dx0
            for b in 0..<3 {
                for i in 0..<m where built.map[i] >= 0 {
                    y[b * m + i] = xs[b * n + Int(built.map[i])]
                    dx[b * n + Int(built.map[i])] += dys[b * m + i]
                }
            }
            XCTAssertEqual(
                Array(UnsafeBufferPointer(start: layer.output.values, count: 3 * m)).map(\.bitPattern),
                y.map(\.bitPattern), "forward, map \(k)")
            x.output.gradients.update(from: dx0, count: 3 * n)
            x.output.gradientPending = false
            layer.output.gradients.update(from: dys, count: 3 * m)
            layer.backward(batch: 3)
            XCTAssertEqual(
                Array(UnsafeBufferPointer(start: x.output.gradients, count: 3 * n)).map(\.bitPattern),
                dx.map(\.bitPattern), "backward, map \(k)")
        }
        XCTAssertFalse(
            IndexMap(
                name: "p", input: InputLayer(name: "x", kind: .features, shape: [3, 4]), shape: [4, 3],
                map: IndexMap.permutation([3, 4], order: [1, 0]).map
            ).movesRuns, "a permutation moves element by element")
    }

    func testGradientsThroughTheMovesAndPReLU() throws {
        let x = InputLayer(name: "x", kind: .features, shape: [4, 3])
        let pad = IndexMap.steps([4, 3], outSteps: 7) { $0 >= 1 && $0 < 5 ? $0 - 1 : nil }
        let padded = IndexMap(name: "pad", input: x, shape: pad.shape, map: pad.map)
        let prelu = PReLU(name: "prelu", input: padded, sharedAxes: [0], initializer: .constant(0.3))
        let crop = IndexMap.steps([7, 3], outSteps: 5) { $0 + 1 }
        let cropped = IndexMap(name: "crop", input: prelu, shape: crop.shape, map: crop.map)
        let up = IndexMap.steps([5, 3], outSteps: 10) { $0 / 2 }
        let upsampled = IndexMap(name: "up", input: cropped, shape: up.shape, map: up.map)
        let perm = IndexMap.permutation([10, 3], order: [1, 0])
        let permuted = IndexMap(name: "perm", input: upsampled, shape: perm.shape, map: perm.map)
        let full = PReLU(name: "prelu_full", input: permuted, sharedAxes: [], initializer: .constant(-0.2))
        XCTAssertEqual(full.alphaShape, [3, 10])
        XCTAssertEqual(prelu.alphaShape, [1, 3])
        let out = Dense(name: "out", units: 2, input: Reshape(name: "flat", input: full, shape: [30]))
        let model = Model(inputs: [x], outputs: [out], maxBatch: 3)
        model.parameters.initialize(seed: 31)
        let dir = temporaryDirectory()
        var rng = SeededGenerator(seed: 32)
        try write((0..<36).map { _ in Float(rng.normal()) }, [3, 4, 3], dir + "/x.npy")
        try write((0..<6).map { _ in Float(rng.normal()) }, [3, 2], dir + "/out.npy")
        try checkMSEGradient(model, data: dir, batch: [2, 0, 1])
    }
}

final class DotLayerTests: XCTestCase {
    /// [F]·[F] (plain and normalised), and [T, F] pairs contracted along every pair of axes.
    func testValuesAndGradients() throws {
        let vector = InputLayer(name: "v", kind: .features, width: 3)
        let other = InputLayer(name: "w", kind: .features, width: 3)
        let plain = Dot(name: "d", inputs: [vector, other], axes: (0, 0), normalize: false)
        let cosine = Dot(name: "c", inputs: [vector, other], axes: (0, 0), normalize: true)
        let model = Model(inputs: [vector, other], outputs: [plain, cosine], maxBatch: 1)
        vector.output.values.update(from: [1, 2, 2], count: 3)
        other.output.values.update(from: [0, 3, 4], count: 3)
        model.forward(batch: 1, training: false)
        XCTAssertEqual(plain.output.values[0], 14)
        XCTAssertEqual(cosine.output.values[0], 14 / 15, accuracy: 1e-6)

        for (axes, normalize) in [((0, 0), false), ((1, 1), true), ((1, 0), false), ((0, 1), true)]
            as [((Int, Int), Bool)]
        {
            // x [4, 3]; y [4, 3] when both contract the same axis, else [3, 4]: the contracted sizes agree.
            let x = InputLayer(name: "x", kind: .features, shape: [4, 3])
            let y = InputLayer(name: "y", kind: .features, shape: axes.0 == axes.1 ? [4, 3] : [3, 4])
            let tx = TimeDistributedDense(x, "tx")
            let dot = Dot(name: "dot", inputs: [tx, y], axes: axes, normalize: normalize)
            let out = Dense(name: "out", units: 2, input: Reshape(name: "flat", input: dot, shape: [dot.output.width]))
            let model = Model(inputs: [x, y], outputs: [out], maxBatch: 3)
            model.parameters.initialize(seed: 41)
            let dir = temporaryDirectory()
            var rng = SeededGenerator(seed: 42)
            try write((0..<36).map { _ in Float(rng.normal()) }, [3, 4, 3], dir + "/x.npy")
            try write((0..<36).map { _ in Float(rng.normal()) }, [3] + y.output.shape, dir + "/y.npy")
            try write((0..<6).map { _ in Float(rng.normal()) }, [3, 2], dir + "/out.npy")
            try checkMSEGradient(model, data: dir, batch: [2, 0, 1])
        }
    }

    /// A Dense on the last axis of [4, 3] (so the first input has weights the check moves).
    private func TimeDistributedDense(_ x: Layer, _ name: String) -> Layer {
        Dense(name: name, units: 3, activation: .tanh, input: x)
    }
}
