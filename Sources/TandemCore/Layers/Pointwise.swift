// Element-wise layers with arguments (keras/src/activations/activations.py, layers/preprocessing/
// rescaling.py), computed in float32 as Keras's ops are, with JAX's derivatives:
//   ReLU(negative_slope s, max_value m, threshold θ): with s ≠ 0 and neither m nor θ, leaky ReLU
//     (x ≥ 0 ? x : s·x); else y = p − s·relu(θ − x) where p = (x > θ ? x : 0), clipped to [0, m].
//   LeakyReLU(s): x ≥ 0 ? x : s·x.   ELU(α): x > 0 ? x : α·(eˣ − 1).
//   Rescaling(scale, offset): x·scale + offset (scalars, or one per channel of the last axis).
// The plain cases (ReLU(), ReLU(6), LeakyReLU(0.2), ELU(1)) are ActivationLayers (Merge.swift).
// Backward ACCUMULATES into the input's gradient.

import Foundation

package final class PointwiseLayer: Layer {
    package enum Function: Sendable, Equatable {
        case relu(slope: Float, maxValue: Float?, threshold: Float)
        case leakyRelu(slope: Float)
        case elu(alpha: Float)
        case rescaling(scale: [Float], offset: [Float])
    }
    public let name: String
    package let inputs: [Layer]
    public let output: Node
    package let function: Function

    package init(name: String, function: Function, input: Layer) {
        self.name = name
        self.function = function
        inputs = [input]
        output = Node(shape: input.output.shape)
    }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (batch * output.width, batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    public func forward(batch: Int, training: Bool) {
        let x = inputs[0].output.values!
        let y = output.values!
        let n = batch * output.width
        switch function {
        case .relu(let s, let m, let theta):
            if s != 0 && m == nil && theta == 0 {
                for i in 0..<n { y[i] = x[i] >= 0 ? x[i] : s * x[i] }
                return
            }
            for i in 0..<n {
                var p = theta != 0 ? (x[i] > theta ? x[i] : 0) : max(x[i], 0)
                if let m { p = min(max(p, 0), m) }
                y[i] = s != 0 ? p - s * max(theta - x[i], 0) : p
            }
        case .leakyRelu(let s): for i in 0..<n { y[i] = x[i] >= 0 ? x[i] : s * x[i] }
        case .elu(let alpha): for i in 0..<n { y[i] = x[i] > 0 ? x[i] : alpha * expm1f(x[i]) }
        case .rescaling(let scale, let offset):
            let c = max(scale.count, offset.count)
            for i in 0..<n {
                let k = i % c
                y[i] = x[i] * scale[scale.count == 1 ? 0 : k] + offset[offset.count == 1 ? 0 : k]
            }
        }
    }

    package func backward(batch: Int) {
        let x = inputs[0].output.values!
        let dx = inputs[0].output.gradients!
        let dy = output.gradients!
        let n = batch * output.width
        switch function {
        case .relu(let s, let m, let theta):
            if s != 0 && m == nil && theta == 0 {
                for i in 0..<n { dx[i] += x[i] >= 0 ? dy[i] : s * dy[i] }
                return
            }
            for i in 0..<n {
                // p's slope: 1 above θ (above 0 without θ), 0 where the clip to [0, m] holds it;
                // the negative part's: s below θ.
                let p = theta != 0 ? (x[i] > theta ? x[i] : 0) : max(x[i], 0)
                var slope: Float = (theta != 0 ? x[i] > theta : x[i] > 0) ? 1 : 0
                if let m, p > m || p < 0 { slope = 0 }
                if s != 0 && theta - x[i] > 0 { slope += s }
                dx[i] += slope * dy[i]
            }
        case .leakyRelu(let s): for i in 0..<n { dx[i] += x[i] >= 0 ? dy[i] : s * dy[i] }
        case .elu(let alpha): for i in 0..<n { dx[i] += x[i] > 0 ? dy[i] : alpha * expf(x[i]) * dy[i] }
        case .rescaling(let scale, _):
            for i in 0..<n { dx[i] += dy[i] * scale[scale.count == 1 ? 0 : i % scale.count] }
        }
    }
}

// MARK: - Keras ReLU, LeakyReLU and ELU with any arguments, and Rescaling: the layer table's entries
// (KerasLayerKind.swift). The activation layers' plain cases build ActivationLayers (Merge.swift).

extension KerasLayerKind {
    static let rescaling = KerasLayerKind(
        classNames: ["Rescaling"],
        build: { a, inputs, _ in
            let source = try LayerRegistry.single(a, inputs)
            func values(_ key: String, default value: Float) throws -> [Float] {
                guard let v = a.config[key], !v.isNull else { return [value] }
                if let x = v.number { return [Float(x)] }
                guard let list = v.array?.compactMap(\.number), list.count == v.array?.count,
                    list.count == 1 || list.count == source.output.features
                else {
                    throw a.fail(
                        "'\(key)' = \(v) is not supported (a number, or one per channel of the last axis: \(source.output.features))"
                    )
                }
                return list.map(Float.init)
            }
            return PointwiseLayer(
                name: a.node.id,
                function: .rescaling(scale: try values("scale", default: 1), offset: try values("offset", default: 0)),
                input: source)
        })
}

extension LayerRegistry {
    /// ReLU, LeakyReLU or ELU whose arguments are not one of Keras's plain activations.
    static func pointwiseActivation(_ a: LayerArguments, _ source: Layer) throws -> Layer? {
        func number(_ key: String, default value: Double) throws -> Double {
            guard let v = a.config[key], !v.isNull else { return value }
            guard let x = v.number, x.isFinite else { throw a.fail("'\(key)' must be a number") }
            return x
        }
        let function: PointwiseLayer.Function
        switch a.node.className {
        case "ReLU":
            let slope = try number("negative_slope", default: 0)
            let threshold = try number("threshold", default: 0)
            let maxValue = try a.config["max_value"].flatMap { v -> Double? in
                if v.isNull { return nil }
                guard let x = v.number, x >= 0 else { throw a.fail("'max_value' must be a number ≥ 0 or null") }
                return x
            }
            guard slope >= 0 else { throw a.fail("'negative_slope' must be ≥ 0 (Keras's ReLU refuses others)") }
            if slope == 0 && threshold == 0 && (maxValue == nil || maxValue == 6) { return nil }
            function = .relu(slope: Float(slope), maxValue: maxValue.map(Float.init), threshold: Float(threshold))
        case "LeakyReLU":
            let slope = try number("negative_slope", default: 0.3)
            if slope == 0.2 { return nil }
            function = .leakyRelu(slope: Float(slope))
        case "ELU":
            let alpha = try number("alpha", default: 1)
            if alpha == 1 { return nil }
            function = .elu(alpha: Float(alpha))
        default: return nil
        }
        return PointwiseLayer(name: a.node.id, function: function, input: source)
    }
}
