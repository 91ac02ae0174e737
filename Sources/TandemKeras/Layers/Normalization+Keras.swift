// Keras LayerNormalization and BatchNormalization: the Keras layer table's entries
// (KerasLayerKind.swift) and their builders, which read a call's config and refuse every argument
// Tandem does not implement by name.

import TandemCore

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
        try a.requireNull("beta_constraint", "gamma_constraint", "activity_regularizer")
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
        try a.requireNull("beta_constraint", "gamma_constraint", "activity_regularizer")
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
