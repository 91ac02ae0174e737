// Dropout whose masks do not depend on the rank count (docs/SPEC.md §9): element e of
// sample p's mask in epoch E is a pure function of (seed, layer, E, p, e),
// where p is the sample's position in the epoch's order. The trainer says
// where a forward pass's rows sit (`DropoutKeys`); the same sample gets the
// same mask on whichever rank — and in whichever micro-batch — it lands.
// Kept elements are scaled by 1/(1 − rate) (inverted dropout, as Keras);
// inference (training = false) passes values through.

/// Where the rows of the current forward pass sit: row b is position `firstPosition + b`.
package final class DropoutKeys: @unchecked Sendable {
    public var seed: UInt64 = 0
    public var epoch = 0
    package var firstPosition = 0
    package init() {}
}

/// A layer that draws dropout masks; the model hands it its keys.
protocol RandomLayer: AnyObject {
    func bind(keys: DropoutKeys)
}

/// The mask stream of one layer (and one purpose within it, e.g. an RNN's recurrent mask).
struct DropoutStream {
    public let layer: UInt64
    let rate: Float

    /// A stable 64-bit key for a layer name (FNV-1a): the same on every rank and run.
    init(name: String, purpose: UInt64 = 0, rate: Float) {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in name.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01B3 }
        layer = DropoutStream.mix(h ^ (purpose &* 0x9E37_79B9_7F4A_7C15))
        self.rate = rate
    }

    @inline(__always) static func mix(_ x: UInt64) -> UInt64 { splitMix64(x) }

    /// The key of sample `position` of `keys.epoch`: every element's draw derives from it.
    @inline(__always) func sampleKey(_ keys: DropoutKeys, position: Int) -> UInt64 {
        DropoutStream.mix(
            DropoutStream.mix(DropoutStream.mix(keys.seed ^ layer) ^ UInt64(keys.epoch)) ^ UInt64(position))
    }

    /// Uniform in [0, 1) on a 2⁻²⁴ grid for (sample key, element).
    @inline(__always) static func unit(_ key: UInt64, _ element: Int) -> Float {
        Float(mix(key ^ UInt64(element)) >> 40) * 0x1.0p-24
    }

    /// Writes row b's mask (0 or 1/(1 − rate)) for `count` elements into `mask + b·count`.
    func fill(_ mask: UnsafeMutablePointer<Float>, rows: Int, count: Int, keys: DropoutKeys) {
        let keep = 1 - rate
        let scale = 1 / keep
        for b in 0..<rows {
            let key = sampleKey(keys, position: keys.firstPosition + b)
            let m = mask + b * count
            for e in 0..<count { m[e] = DropoutStream.unit(key, e) < keep ? scale : 0 }
        }
    }
}

/// Keras `Dropout(rate, noise_shape)`, `SpatialDropout1D(rate)` and `SpatialDropout2D(rate)`: one draw
/// per element of the noise shape, broadcast over the sample (spatial: one per channel, shared by every
/// time step of [B, T, C] or every cell of [B, H, W, C]; noise_shape (None, 1, 1, 1): one per sample).
package final class Dropout: Layer, RandomLayer {
    public let name: String
    package let inputs: [Layer]
    public let output: Node
    package let rate: Float
    /// The per-sample shape of the draws (the sample's own shape: every element its own draw).
    package let noise: [Int]
    /// Per element of a sample, its draw (nil: every element its own).
    private let draws: [Int32]?
    let stream: DropoutStream
    private var keys: DropoutKeys!
    /// The mask of the last training pass, [B, drawn], nil in inference.
    private var mask: UnsafeMutablePointer<Float>!
    private var masked = false

    package convenience init(name: String, input: Layer, rate: Float, spatial: Bool = false) {
        let shape = input.output.shape
        precondition(!spatial || shape.count >= 2)
        let noise = spatial ? Array(repeating: 1, count: shape.count - 1) + [shape.last!] : shape
        self.init(name: name, input: input, rate: rate, noise: noise)
    }

    package init(name: String, input: Layer, rate: Float, noise: [Int]) {
        let shape = input.output.shape
        precondition(rate >= 0 && rate < 1 && Merge.broadcastShape([noise, shape]) == shape)
        self.name = name
        self.rate = rate
        self.noise = noise
        draws = noise == shape ? nil : IndexMap.broadcast(from: noise, to: shape)
        inputs = [input]
        stream = DropoutStream(name: name, rate: rate)
        output = Node(shape: shape)
    }

    func bind(keys: DropoutKeys) { self.keys = keys }

    private var drawn: Int { noise.reduce(1, *) }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (batch * (output.width + drawn), batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        mask = workspace.take(batch * drawn)
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    public func forward(batch: Int, training: Bool) {
        let x = inputs[0].output.values!
        let y = output.values!
        let n = batch * output.width
        masked = training && rate > 0
        guard masked else {
            y.update(from: x, count: n)
            return
        }
        stream.fill(mask, rows: batch, count: drawn, keys: keys)
        guard let draws else {
            for i in 0..<n { y[i] = x[i] * mask[i] }
            return
        }
        let w = output.width
        for b in 0..<batch {
            for e in 0..<w { y[b * w + e] = x[b * w + e] * mask[b * drawn + Int(draws[e])] }
        }
    }

    package func backward(batch: Int) {
        let dx = inputs[0].output.gradients!
        let dy = output.gradients!
        let n = batch * output.width
        guard masked else {
            for i in 0..<n { dx[i] += dy[i] }
            return
        }
        guard let draws else {
            for i in 0..<n { dx[i] += dy[i] * mask[i] }
            return
        }
        let w = output.width
        for b in 0..<batch {
            for e in 0..<w { dx[b * w + e] += dy[b * w + e] * mask[b * drawn + Int(draws[e])] }
        }
    }
}

// MARK: - Keras Dropout, SpatialDropout1D and SpatialDropout2D: the layer table's entries (KerasLayerKind.swift) and their
// builders, which read a call's config and refuse every argument Tandem does not implement by name.

extension KerasLayerKind {
    static let dropout = KerasLayerKind(
        classNames: ["Dropout", "SpatialDropout1D", "SpatialDropout2D"],
        build: { a, inputs, _ in try LayerRegistry.dropout(a, inputs) })
}

extension LayerRegistry {
    static func dropout(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let spatial = a.node.className.hasPrefix("Spatial")
        let source = a.node.className == "SpatialDropout1D" ? try sequence(a, inputs) : try single(a, inputs)
        if a.node.className == "SpatialDropout2D" {
            _ = try a.spatial(source, rank: 2)
            try a.channelsLast()
        }
        // `seed` seeds Keras's own generator; Tandem's masks come from the run's seed (docs/SPEC.md §9).
        if !spatial, let given = a.config["noise_shape"], !given.isNull {
            // Keras's noise_shape counts the batch axis; None is the input's size.
            let shape = source.output.shape
            guard let dims = given.array, dims.count == shape.count + 1 else {
                throw a.fail("'noise_shape' \(given) must have one entry per axis of \(shapeText(source))")
            }
            let noise = try dims.dropFirst().enumerated().map { k, d -> Int in
                if d.isNull { return shape[k] }
                guard let n = d.integer, n == 1 || n == shape[k] else {
                    throw a.fail("'noise_shape' \(given) must hold None, 1 or the input's size on each axis")
                }
                return n
            }
            guard dims[0].isNull || dims[0].integer == nil else {
                throw a.fail("'noise_shape' \(given): a mask shared across the batch is not supported (None first)")
            }
            return Dropout(name: a.node.id, input: source, rate: try a.rate("rate"), noise: noise)
        }
        if spatial { try a.requireNull("noise_shape") }
        return Dropout(name: a.node.id, input: source, rate: try a.rate("rate"), spatial: spatial)
    }
}
