// Keras's noise layers (keras/src/layers/regularization/), active in training only, their draws
// following dropout's rule (Dropout.swift): element e of sample p in epoch E is a pure function
// of (seed, layer, E, p, e), so a sample gets the same noise on whichever rank holds it.
//   GaussianNoise(stddev):  y = x + n,  n ~ N(0, stddev²)
//   GaussianDropout(rate):  y = x·n,    n ~ N(1, rate/(1 − rate))
//   AlphaDropout(rate):     y = a·(k ? x : α′) + b,  k kept with probability 1 − rate,
//     α′ = −1.6733·1.0507 (SELU's saturation), a = ((1 − rate)(1 + rate·α′²))^(−½), b = −a·α′·rate.
// Normal draws are Box–Muller from two of the stream's uniforms. The values are Tandem's, not
// JAX's: like dropout, these layers are checked across rank counts, not against Keras's draws.

import Foundation

package final class NoiseLayer: Layer, RandomLayer {
    package enum Kind: Sendable, Equatable {
        case gaussianNoise(stddev: Float)
        case gaussianDropout(rate: Float)
        case alphaDropout(rate: Float)
    }
    public let name: String
    package let inputs: [Layer]
    public let output: Node
    package let kind: Kind
    let stream: DropoutStream
    private var keys: DropoutKeys!
    /// Per element of the last training pass: what dx = dy·factor uses (1 for additive noise).
    private var factor: UnsafeMutablePointer<Float>!
    private var active = false

    package init(name: String, kind: Kind, input: Layer) {
        self.name = name
        self.kind = kind
        inputs = [input]
        output = Node(shape: input.output.shape)
        stream = DropoutStream(name: name, rate: 0)
    }

    func bind(keys: DropoutKeys) { self.keys = keys }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (2 * batch * output.width, batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        factor = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    /// A standard normal draw for (sample key, element): Box–Muller on uniforms 2e and 2e + 1.
    @inline(__always) private static func normal(_ key: UInt64, _ e: Int) -> Float {
        let u1 = Double(DropoutStream.unit(key, 2 * e)) + 0x1.0p-25  // in (0, 1): the logarithm is finite
        let u2 = Double(DropoutStream.unit(key, 2 * e + 1))
        return Float((-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2))
    }

    public func forward(batch: Int, training: Bool) {
        let x = inputs[0].output.values!
        let y = output.values!
        let w = output.width
        switch kind {
        case .gaussianNoise(let s): active = training && s > 0
        case .gaussianDropout(let r), .alphaDropout(let r): active = training && r > 0
        }
        guard active else {
            y.update(from: x, count: batch * w)
            return
        }
        for b in 0..<batch {
            let key = stream.sampleKey(keys, position: keys.firstPosition + b)
            for e in 0..<w {
                let i = b * w + e
                switch kind {
                case .gaussianNoise(let stddev):
                    y[i] = x[i] + stddev * NoiseLayer.normal(key, e)
                    factor[i] = 1
                case .gaussianDropout(let rate):
                    let n = 1 + Float((Double(rate) / (1 - Double(rate))).squareRoot()) * NoiseLayer.normal(key, e)
                    y[i] = x[i] * n
                    factor[i] = n
                case .alphaDropout(let rate):
                    let alphaP = -1.6732632423543772848170429916717 * 1.0507009873554804934193349852946
                    let r = Double(rate)
                    let a = Float(Foundation.pow((1 - r) * (1 + r * alphaP * alphaP), -0.5))
                    let bias = Float(-Double(a) * alphaP * r)
                    let kept = DropoutStream.unit(key, e) >= rate
                    y[i] = a * (kept ? x[i] : Float(alphaP)) + bias
                    factor[i] = kept ? a : 0
                }
            }
        }
    }

    package func backward(batch: Int) {
        let dx = inputs[0].output.gradients!
        let dy = output.gradients!
        let n = batch * output.width
        if active {
            for i in 0..<n { dx[i] += dy[i] * factor[i] }
        } else {
            for i in 0..<n { dx[i] += dy[i] }
        }
    }
}

// MARK: - Keras GaussianNoise, GaussianDropout and AlphaDropout: the layer table's entry.

extension KerasLayerKind {
    static let noise = KerasLayerKind(
        classNames: ["GaussianNoise", "GaussianDropout", "AlphaDropout"],
        build: { a, inputs, _ in
            let source = try LayerRegistry.single(a, inputs)
            switch a.node.className {
            case "GaussianNoise":
                guard let s = a.config["stddev"]?.number, s >= 0, s.isFinite else {
                    throw a.fail("'stddev' must be a number ≥ 0")
                }
                return NoiseLayer(name: a.node.id, kind: .gaussianNoise(stddev: Float(s)), input: source)
            case "GaussianDropout":
                return NoiseLayer(name: a.node.id, kind: .gaussianDropout(rate: try a.rate("rate")), input: source)
            default:
                try a.requireNull("noise_shape")
                return NoiseLayer(name: a.node.id, kind: .alphaDropout(rate: try a.rate("rate")), input: source)
            }
        })
}
