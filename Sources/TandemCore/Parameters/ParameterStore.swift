// All of a model's parameters in ONE contiguous Float32 arena, their gradients
// in a second arena of the same layout, and named views into both. The flat
// gradient arena is the single gradient set that data parallelism allreduces.
// Not a general tensor type: a view is a name, a shape and an offset.

import Foundation

/// How a parameter tensor starts (Keras 3 initialisers).
package enum Initializer: Sendable, Equatable {
    case zeros
    /// Uniform in ±sqrt(6 / (fanIn + fanOut)).
    case glorotUniform(fanIn: Int, fanOut: Int)
    /// Uniform in ±limit (Keras's Embedding default is 0.05).
    case uniform(limit: Double)
    /// Keras `Orthogonal` for a [rows, columns] matrix, gain 1.
    case orthogonal
    /// LSTM bias with unit_forget_bias: zeros except the forget block [u, 2u) = 1.
    case lstmBias(units: Int)
    /// Every value the same.
    case constant(Double)
    /// Uniform in [low, high) (Keras `RandomUniform`).
    case uniformRange(low: Double, high: Double)
    /// `Orthogonal` times a gain.
    case scaledOrthogonal(gain: Double)
    /// A Keras initializer Tandem does not implement, named; usable only when
    /// the weights come from a file (`ParameterStore.unsupportedInitializers`).
    case unsupported(String)
}

/// What a layer asks the store for.
public struct ParameterSpec: Sendable {
    public let layer: String
    public let weight: String
    public let shape: [Int]
    package let initializer: Initializer
    /// False for state a layer updates itself (BatchNormalization's moving statistics), and for the
    /// weights of a frozen layer (Keras's trainable = False): the optimizer leaves it as it is.
    package let trainable: Bool
    public var name: String { "\(layer)/\(weight)" }
    package init(layer: String, weight: String, shape: [Int], initializer: Initializer, trainable: Bool = true) {
        self.layer = layer
        self.weight = weight
        self.shape = shape
        self.initializer = initializer
        self.trainable = trainable
    }

    /// This weight of a frozen layer.
    package var frozen: ParameterSpec {
        ParameterSpec(layer: layer, weight: weight, shape: shape, initializer: initializer, trainable: false)
    }
}

/// A named window [offset, offset + count) of the parameter (and gradient) arena.
public struct TensorView: Sendable {
    package let spec: ParameterSpec
    package let offset: Int
    public var name: String { spec.name }
    public var shape: [Int] { spec.shape }
    public var count: Int { spec.shape.reduce(1, *) }
}

/// The parameter and gradient arenas of one model.
public final class ParameterStore: @unchecked Sendable {
    package let tensors: [TensorView]
    /// Total number of Float32 parameters.
    public let count: Int
    /// All parameter values, tensors back to back in declaration order.
    package let values: UnsafeMutablePointer<Float>
    /// Gradients, same layout as `values`.
    package let gradients: UnsafeMutablePointer<Float>
    private let index: [String: Int]

    package init(specs: [ParameterSpec]) {
        var views: [TensorView] = []
        var offset = 0
        for spec in specs {
            views.append(TensorView(spec: spec, offset: offset))
            offset += spec.shape.reduce(1, *)
        }
        tensors = views
        count = offset
        values = .allocate(capacity: max(offset, 1))
        values.initialize(repeating: 0, count: max(offset, 1))
        // Zero pages from calloc are mapped lazily: a window no step writes (the
        // table's, in the compact layout) never becomes resident.
        gradients = calloc(max(offset, 1), MemoryLayout<Float>.stride)!.bindMemory(
            to: Float.self, capacity: max(offset, 1))
        index = Dictionary(uniqueKeysWithValues: views.enumerated().map { ($1.name, $0) })
    }

    deinit {
        values.deallocate()
        free(gradients)
    }

    package func view(_ name: String) -> TensorView? { index[name].map { tensors[$0] } }

    package func value(_ view: TensorView) -> UnsafeMutablePointer<Float> { values + view.offset }
    package func gradient(_ view: TensorView) -> UnsafeMutablePointer<Float> { gradients + view.offset }

    package func zeroGradients() { gradients.update(repeating: 0, count: count) }

    /// The tensors whose initializer Tandem cannot run (they need weights from a file).
    package var unsupportedInitializers: [String] {
        tensors.compactMap { if case .unsupported(let what) = $0.spec.initializer { return what } else { return nil } }
    }

    /// Fills every tensor from its initialiser, in declaration order, from one seeded stream.
    public func initialize(seed: UInt64) {
        var rng = SeededGenerator(seed: seed, stream: 0x1417)
        for view in tensors {
            fill(values + view.offset, view.spec, &rng)
        }
    }

    private func fill(_ p: UnsafeMutablePointer<Float>, _ spec: ParameterSpec, _ rng: inout SeededGenerator) {
        let n = spec.shape.reduce(1, *)
        switch spec.initializer {
        case .zeros:
            p.update(repeating: 0, count: n)
        case .glorotUniform(let fanIn, let fanOut):
            let limit = (6.0 / Double(fanIn + fanOut)).squareRoot()
            for i in 0..<n { p[i] = Float(rng.uniform(-limit, limit)) }
        case .uniform(let limit):
            for i in 0..<n { p[i] = Float(rng.uniform(-limit, limit)) }
        case .orthogonal, .scaledOrthogonal:
            var gain = 1.0
            if case .scaledOrthogonal(let g) = spec.initializer { gain = g }
            let rows = spec.shape.dropLast().reduce(1, *)
            let columns = spec.shape.last ?? 1
            let q = orthogonalMatrix(rows: rows, columns: columns, rng: &rng)
            for i in 0..<n { p[i] = Float(gain * q[i]) }
        case .constant(let v):
            p.update(repeating: Float(v), count: n)
        case .uniformRange(let low, let high):
            for i in 0..<n { p[i] = Float(rng.uniform(low, high)) }
        case .unsupported:
            p.update(repeating: 0, count: n)
        case .lstmBias(let units):
            p.update(repeating: 0, count: n)
            for j in units..<(2 * units) { p[j] = 1 }
        }
    }

    /// Copies every parameter value out (the tests compare weights through it).
    func snapshot() -> [Float] { Array(UnsafeBufferPointer(start: values, count: count)) }

    /// FNV-1a 64 over the bytes of one tensor; identical bytes give identical hashes.
    package func hash(of view: TensorView) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        let raw = UnsafeRawPointer(values + view.offset).assumingMemoryBound(to: UInt32.self)
        for i in 0..<view.count {
            // Mix four bytes at a time: still a function of every byte.
            h = (h ^ UInt64(raw[i])) &* 0x0000_0100_0000_01B3
        }
        return h
    }
}

/// Keras `Orthogonal`: QR of a normal matrix, signs fixed so R's diagonal is
/// positive, transposed when there are fewer rows than columns. Row-major result.
func orthogonalMatrix(rows: Int, columns: Int, rng: inout SeededGenerator) -> [Double] {
    // Work on the tall shape [tallRows, tallColumns] with tallRows ≥ tallColumns.
    let tallRows = max(rows, columns)
    let tallColumns = min(rows, columns)
    var a = (0..<(tallRows * tallColumns)).map { _ in rng.normal() }
    // Modified Gram–Schmidt on the columns; it yields R with a positive diagonal,
    // which is exactly Keras's sign correction q · sign(diag(r)).
    for j in 0..<tallColumns {
        for k in 0..<j {
            var dot = 0.0
            for i in 0..<tallRows { dot += a[i * tallColumns + k] * a[i * tallColumns + j] }
            for i in 0..<tallRows { a[i * tallColumns + j] -= dot * a[i * tallColumns + k] }
        }
        var norm = 0.0
        for i in 0..<tallRows { norm += a[i * tallColumns + j] * a[i * tallColumns + j] }
        norm = norm.squareRoot()
        for i in 0..<tallRows { a[i * tallColumns + j] /= norm }
    }
    if rows >= columns { return a }
    // Transpose [columns, rows] → [rows, columns].
    var t = [Double](repeating: 0, count: rows * columns)
    for i in 0..<tallRows { for j in 0..<tallColumns { t[j * columns + i] = a[i * tallColumns + j] } }
    return t
}
