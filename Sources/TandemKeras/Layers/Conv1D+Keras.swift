// Keras Conv1D: the Keras layer table's entries (KerasLayerKind.swift) and their builders, which
// read a call's config and refuse every argument Tandem does not implement by name.

import TandemCore

extension KerasLayerKind {
    static let conv1D = KerasLayerKind(
        classNames: ["Conv1D"], build: { a, inputs, _ in try LayerRegistry.conv1D(a, inputs) },
        variables: { _, layer, config in [KerasLayerKind.top(layer, KerasLayerKind.kernelAndBias(config))] },
        regularizerKeys: KerasLayerKind.denseKeys)
}

extension LayerRegistry {
    static func conv1D(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let source = try sequence(a, inputs)
        try a.channelsLast()
        try a.require("groups", is: .int(1), supported: "groups = 1")
        try a.requireNull("kernel_constraint", "bias_constraint", "activity_regularizer", "lora_rank")
        let filters = try a.int("filters")
        let size = try a.size("kernel_size")
        let stride = try a.size("strides", default: 1)
        let dilation = try a.size("dilation_rate", default: 1)
        guard stride == 1 || dilation == 1 else {
            throw a.fail("strides > 1 with dilation_rate > 1 is not allowed (as in Keras)")
        }
        let name = try a.string("padding", default: "valid")
        guard let padding = Conv1D.Padding(rawValue: name) else {
            throw a.fail("padding '\(name)' is not supported (valid, same, causal)")
        }
        let steps = source.output.shape[0]
        let channels = source.output.shape[1]
        guard Conv1D.outputSteps(steps: steps, kernel: size, stride: stride, dilation: dilation, padding: padding) > 0
        else {
            throw a.fail("its kernel (size \(size), dilation \(dilation)) is longer than the \(steps) steps it reads")
        }
        return Conv1D(
            name: a.node.id, filters: filters, kernelSize: size, input: source, stride: stride, dilation: dilation,
            padding: padding, activation: try a.activation(), useBias: try a.bool("use_bias", default: true),
            weights: a.node.layer,
            kernelInitializer: try a.initializer("kernel_initializer", fanIn: size * channels, fanOut: size * filters),
            biasInitializer: try a.initializer("bias_initializer", fanIn: size * channels, fanOut: filters) ?? .zeros)
    }
}
