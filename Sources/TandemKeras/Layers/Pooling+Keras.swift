// Keras MaxPooling1D, AveragePooling1D and the global poolings: the Keras layer table's entries
// (KerasLayerKind.swift) and their builders, which read a call's config and refuse every argument
// Tandem does not implement by name.

import TandemCore

extension KerasLayerKind {
    static let pooling1D = KerasLayerKind(
        classNames: ["MaxPooling1D", "AveragePooling1D"],
        build: { a, inputs, _ in try LayerRegistry.pooling(a, inputs) })

    static let globalAveragePooling1D = KerasLayerKind(
        classNames: ["GlobalAveragePooling1D"], readsMask: true,
        build: { a, inputs, mask in try LayerRegistry.globalPooling(a, inputs, mask: mask) })

    static let globalMaxPooling1D = KerasLayerKind(
        classNames: ["GlobalMaxPooling1D"],
        build: { a, inputs, mask in try LayerRegistry.globalPooling(a, inputs, mask: mask) })
}

extension LayerRegistry {
    static func pooling(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let source = try sequence(a, inputs)
        try a.channelsLast()
        let pool = try a.size("pool_size", default: 2)
        let stride = try a.size("strides", default: pool)
        let padding = try a.string("padding", default: "valid")
        guard padding == "valid" || padding == "same" else {
            throw a.fail("padding '\(padding)' is not supported (valid, same)")
        }
        let steps = source.output.shape[0]
        guard padding == "same" || pool <= steps else {
            throw a.fail("pool_size \(pool) is longer than the \(steps) steps it pools")
        }
        return Pooling1D(
            name: a.node.id, kind: a.node.className.hasPrefix("Max") ? .max : .average, input: source,
            pool: pool, stride: stride, same: padding == "same")
    }

    static func globalPooling(_ a: LayerArguments, _ inputs: [Layer], mask: Layer?) throws -> Layer {
        let source = try sequence(a, inputs)
        try a.channelsLast()
        try a.require("keepdims", is: .bool(false), supported: "keepdims = false")
        return GlobalPooling1D(
            name: a.node.id, kind: a.node.className.hasPrefix("GlobalMax") ? .max : .average, input: source, mask: mask)
    }
}
