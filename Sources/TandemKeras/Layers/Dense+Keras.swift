// Keras Dense and Activation: the Keras layer table's entries (KerasLayerKind.swift) and their
// builders, which read a call's config and refuse every argument Tandem does not implement by
// name.

import TandemCore

extension KerasLayerKind {
    static let dense = KerasLayerKind(
        classNames: ["Dense"], build: { a, inputs, _ in try LayerRegistry.dense(a, inputs) },
        variables: { _, layer, config in [KerasLayerKind.top(layer, KerasLayerKind.kernelAndBias(config))] },
        regularizerKeys: KerasLayerKind.denseKeys)

    static let activation = KerasLayerKind(
        classNames: ["Activation"],
        build: { a, inputs, _ in
            ActivationLayer(name: a.node.id, activation: try a.activation(), input: try LayerRegistry.single(a, inputs))
        })
}

extension LayerRegistry {
    static func dense(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let source = try single(a, inputs)
        let units = try a.int("units")
        try a.requireNull(
            "kernel_constraint", "bias_constraint", "activity_regularizer", "lora_rank", "quantization_config")
        let useBias = try a.bool("use_bias", default: true)
        return Dense(
            name: a.node.id, units: units, activation: try a.activation(), input: source, useBias: useBias,
            weights: a.node.layer,
            kernelInitializer: try a.initializer("kernel_initializer", fanIn: source.output.features, fanOut: units),
            biasInitializer: try a.initializer("bias_initializer", fanIn: source.output.features, fanOut: units)
                ?? .zeros)
    }
}
