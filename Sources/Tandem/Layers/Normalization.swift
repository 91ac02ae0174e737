// LayerNormalization over the last axis, as Keras computes it: per row of F
// features, μ = mean x, σ² = mean (x − μ)² (the biased variance), x̂ = (x − μ)/√(σ² + ε),
// y = γ·x̂ + β. Backward: dγ += Σ dy·x̂, dβ += Σ dy, and with g = dy·γ,
// dx = (g − mean g − x̂·mean(g·x̂)) / √(σ² + ε).

import Foundation

/// Keras `LayerNormalization(axis=-1, epsilon, center, scale)` on [B, F] or [B, T, F].
public final class LayerNormalization: Layer {
    public let name: String
    public let weightsName: String
    public let inputs: [Layer]
    public let output: Node
    public let epsilon: Float, center: Bool, scale: Bool
    let initializers: (gamma: Initializer, beta: Initializer)
    private var gamma: TensorView?, beta: TensorView?
    private var store: ParameterStore!
    /// x̂ [rows, F] and 1/√(σ² + ε) per row.
    private var normalized: UnsafeMutablePointer<Float>!, inverse: UnsafeMutablePointer<Float>!

    public init(name: String, input: Layer, epsilon: Float = 1e-3, center: Bool = true, scale: Bool = true, weights: String? = nil,
                gammaInitializer: Initializer = .constant(1), betaInitializer: Initializer = .zeros) {
        self.name = name; weightsName = weights ?? name; inputs = [input]
        self.epsilon = epsilon; self.center = center; self.scale = scale
        initializers = (gammaInitializer, betaInitializer)
        output = Node(shape: input.output.shape)
    }

    private var features: Int { output.features }
    private func rows(_ batch: Int) -> Int { batch * output.width / features }

    public var parameterSpecs: [ParameterSpec] {
        (scale ? [ParameterSpec(layer: weightsName, weight: "gamma", shape: [features], initializer: initializers.gamma)] : [])
            + (center ? [ParameterSpec(layer: weightsName, weight: "beta", shape: [features], initializer: initializers.beta)] : [])
    }

    public func bind(parameters: ParameterStore) {
        store = parameters
        gamma = scale ? parameters.view("\(weightsName)/gamma") : nil
        beta = center ? parameters.view("\(weightsName)/beta") : nil
    }

    public func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (2 * batch * output.width + rows(batch), batch * output.width)
    }

    public func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        normalized = workspace.take(batch * output.width)
        inverse = workspace.take(rows(batch))
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    public func forward(batch: Int, training: Bool) {
        let F = features, x = inputs[0].output.values!, y = output.values!
        let g = gamma.map { UnsafePointer(store.value($0)) }, b = beta.map { UnsafePointer(store.value($0)) }
        for r in 0..<rows(batch) {
            let xr = x + r * F, n = normalized + r * F, yr = y + r * F
            var mean: Float = 0
            for j in 0..<F { mean += xr[j] }
            mean /= Float(F)
            var variance: Float = 0
            for j in 0..<F { let d = xr[j] - mean; variance += d * d }
            variance /= Float(F)
            let inv = 1 / (variance + epsilon).squareRoot()
            inverse[r] = inv
            for j in 0..<F {
                n[j] = (xr[j] - mean) * inv
                yr[j] = n[j] * (g?[j] ?? 1) + (b?[j] ?? 0)
            }
        }
    }

    public func backward(batch: Int) {
        let F = features, dx = inputs[0].output.gradients!, dy = output.gradients!
        let g = gamma.map { UnsafePointer(store.value($0)) }
        let dg = gamma.map { store.gradient($0) }, db = beta.map { store.gradient($0) }
        for r in 0..<rows(batch) {
            let n = normalized + r * F, d = dy + r * F, to = dx + r * F
            var meanG: Float = 0, meanGN: Float = 0
            for j in 0..<F {
                dg?[j] += d[j] * n[j]
                db?[j] += d[j]
                let gj = d[j] * (g?[j] ?? 1)
                meanG += gj; meanGN += gj * n[j]
            }
            meanG /= Float(F); meanGN /= Float(F)
            for j in 0..<F { to[j] += (d[j] * (g?[j] ?? 1) - meanG - n[j] * meanGN) * inverse[r] }
        }
    }
}
