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

// MARK: - Keras LayerNormalization and BatchNormalization: the layer table's entries (KerasLayerKind.swift)
// and their builders, which read a call's config and refuse every argument Tandem does not implement by name.

extension KerasLayerKind {
    static let layerNormalization = KerasLayerKind(
        classNames: ["LayerNormalization"], build: { a, inputs, _ in try LayerRegistry.layerNormalization(a, inputs) },
        variables: { _, layer, config in
            [
                KerasLayerKind.top(
                    layer,
                    (config["scale"]?.bool == false ? [] : ["gamma"])
                        + (config["center"]?.bool == false ? [] : ["beta"]))
            ]
        },
        regularizerKeys: KerasLayerKind.normalizationKeys)

    static let batchNormalization = KerasLayerKind(
        classNames: ["BatchNormalization"], build: { a, inputs, _ in try LayerRegistry.batchNormalization(a, inputs) },
        variables: { _, layer, config in
            [
                KerasLayerKind.top(
                    layer,
                    (config["scale"]?.bool == false ? [] : ["gamma"])
                        + (config["center"]?.bool == false ? [] : ["beta"]) + [
                            "moving_mean", "moving_variance",
                        ])
            ]
        },
        regularizerKeys: KerasLayerKind.normalizationKeys)
}

extension LayerRegistry {
    static func layerNormalization(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let source = try single(a, inputs)
        try a.lastAxis(rank: source.output.shape.count + 1)
        try a.require("rms_scaling", is: .bool(false), supported: "rms_scaling = false")
        // activity_regularizer: a layer after this one (LayerRegistry.activityPenalty).
        let f = source.output.features
        let epsilon = a.config["epsilon"]?.number ?? 1e-3
        guard epsilon > 0 else { throw a.fail("'epsilon' must be positive") }
        return LayerNormalization(
            name: a.node.id, input: source, epsilon: Float(epsilon),
            center: try a.bool("center", default: true), scale: try a.bool("scale", default: true),
            weights: a.node.layer,
            gammaInitializer: try a.initializer("gamma_initializer", fanIn: f, fanOut: f) ?? .constant(1),
            betaInitializer: try a.initializer("beta_initializer", fanIn: f, fanOut: f) ?? .zeros)
    }

    /// Statistics over the global batch whatever `synchronized` says: one process
    /// of Keras's fit computes them over the whole batch, and so do N ranks here.
    static func batchNormalization(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let source = try single(a, inputs)
        try a.lastAxis(rank: source.output.shape.count + 1)
        try a.require("renorm", is: .bool(false), supported: "renorm = false")
        // activity_regularizer: a layer after this one (LayerRegistry.activityPenalty).
        let f = source.output.features
        let epsilon = a.config["epsilon"]?.number ?? 1e-3
        let momentum = a.config["momentum"]?.number ?? 0.99
        guard epsilon > 0, (0...1).contains(momentum) else {
            throw a.fail("'epsilon' must be positive and 'momentum' in [0, 1]")
        }
        func initializer(_ key: String, _ otherwise: Initializer) throws -> Initializer {
            try a.initializer(key, fanIn: f, fanOut: f) ?? otherwise
        }
        return BatchNormalization(
            name: a.node.id, input: source, momentum: Float(momentum), epsilon: Float(epsilon),
            center: try a.bool("center", default: true), scale: try a.bool("scale", default: true),
            weights: a.node.layer,
            gammaInitializer: try initializer("gamma_initializer", .constant(1)),
            betaInitializer: try initializer("beta_initializer", .zeros),
            movingMeanInitializer: try initializer("moving_mean_initializer", .zeros),
            movingVarianceInitializer: try initializer("moving_variance_initializer", .constant(1)))
    }
}
