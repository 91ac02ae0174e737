// LayerNormalization over the last axis, as Keras computes it: per row of F
// features, μ = mean x, σ² = mean (x − μ)² (the biased variance), x̂ = (x − μ)/√(σ² + ε),
// y = γ·x̂ + β. Backward: dγ += Σ dy·x̂, dβ += Σ dy, and with g = dy·γ,
// dx = (g − mean g − x̂·mean(g·x̂)) / √(σ² + ε).

import CKernels
import Foundation

/// Keras `LayerNormalization(axis=-1, epsilon, center, scale)` on [B, F] or [B, T, F].
package final class LayerNormalization: Layer {
    public let name: String
    package let weightsName: String
    package let inputs: [Layer]
    public let output: Node
    public let epsilon: Float, center: Bool, scale: Bool
    let initializers: (gamma: Initializer, beta: Initializer)
    private var gamma: TensorView?, beta: TensorView?
    private var store: ParameterStore!
    /// x̂ [rows, F] and 1/√(σ² + ε) per row.
    private var normalized: UnsafeMutablePointer<Float>!, inverse: UnsafeMutablePointer<Float>!
    /// Ones and zeros standing in for an absent γ or β (the C kernels take both).
    private let ones: UnsafeMutablePointer<Float>, zeros: UnsafeMutablePointer<Float>

    package init(
        name: String, input: Layer, epsilon: Float = 1e-3, center: Bool = true, scale: Bool = true,
        weights: String? = nil,
        gammaInitializer: Initializer = .constant(1), betaInitializer: Initializer = .zeros
    ) {
        self.name = name
        weightsName = weights ?? name
        inputs = [input]
        self.epsilon = epsilon
        self.center = center
        self.scale = scale
        initializers = (gammaInitializer, betaInitializer)
        output = Node(shape: input.output.shape)
        let f = output.features
        ones = .allocate(capacity: f)
        ones.initialize(repeating: 1, count: f)
        zeros = .allocate(capacity: f)
        zeros.initialize(repeating: 0, count: f)
    }

    deinit {
        ones.deallocate()
        zeros.deallocate()
    }

    private var features: Int { output.features }
    private func rows(_ batch: Int) -> Int { batch * output.width / features }

    package var parameterSpecs: [ParameterSpec] {
        (scale
            ? [ParameterSpec(layer: weightsName, weight: "gamma", shape: [features], initializer: initializers.gamma)]
            : [])
            + (center
                ? [ParameterSpec(layer: weightsName, weight: "beta", shape: [features], initializer: initializers.beta)]
                : [])
    }

    package func bind(parameters: ParameterStore) {
        store = parameters
        gamma = scale ? parameters.view("\(weightsName)/gamma") : nil
        beta = center ? parameters.view("\(weightsName)/beta") : nil
    }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (2 * batch * output.width + rows(batch), batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        normalized = workspace.take(batch * output.width)
        inverse = workspace.take(rows(batch))
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    // One pass over the rows each way (CKernels/normalization.c): a row's sums and its
    // outputs are formed while it is in L1.
    public func forward(batch: Int, training: Bool) {
        tandem_ln_forward(
            inputs[0].output.values!, rows(batch), Int32(features), epsilon, gamma.map { store.value($0) } ?? ones,
            beta.map { store.value($0) } ?? zeros, normalized, inverse, output.values!)
    }

    package func backward(batch: Int) {
        tandem_ln_backward(
            output.gradients!, normalized, inverse, rows(batch), Int32(features), gamma.map { store.value($0) } ?? ones,
            gamma.map { store.gradient($0) }, beta.map { store.gradient($0) }, inputs[0].output.gradients!)
    }
}
