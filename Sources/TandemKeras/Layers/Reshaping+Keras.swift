// Keras Flatten, Reshape and RepeatVector: the Keras layer table's entries (KerasLayerKind.swift)
// and their builders, which read a call's config and refuse every argument Tandem does not
// implement by name.

import TandemCore

extension KerasLayerKind {
    static let flatten = KerasLayerKind(
        classNames: ["Flatten"],
        build: { a, inputs, _ in
            try a.channelsLast()
            return Reshape(
                name: a.node.id, input: try LayerRegistry.single(a, inputs),
                shape: [try LayerRegistry.single(a, inputs).output.width])
        })

    static let reshape = KerasLayerKind(
        classNames: ["Reshape"], build: { a, inputs, _ in try LayerRegistry.reshape(a, inputs) })

    static let repeatVector = KerasLayerKind(
        classNames: ["RepeatVector"],
        build: { a, inputs, _ in
            let source = try LayerRegistry.single(a, inputs)
            guard source.output.shape.count == 1 else {
                throw a.fail("needs [batch, features], got \(LayerRegistry.shapeText(source))")
            }
            return RepeatVector(name: a.node.id, input: source, count: try a.int("n"))
        })
}

extension LayerRegistry {
    static func reshape(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let source = try single(a, inputs)
        guard let dims = a.config["target_shape"]?.array, !dims.isEmpty else {
            throw a.fail("'target_shape' must be a list of sizes")
        }
        var shape = try dims.map { d -> Int in
            guard let n = d.integer, n > 0 || n == -1 else {
                throw a.fail("'target_shape' sizes must be positive or -1, got \(d)")
            }
            return n
        }
        if let free = shape.firstIndex(of: -1) {
            let known = shape.filter { $0 != -1 }.reduce(1, *)
            guard shape.filter({ $0 == -1 }).count == 1, source.output.width % known == 0 else {
                throw a.fail("cannot reshape \(shapeText(source)) to \(shape)")
            }
            shape[free] = source.output.width / known
        }
        guard shape.reduce(1, *) == source.output.width else {
            throw a.fail("cannot reshape \(shapeText(source)) (\(source.output.width) values a sample) to \(shape)")
        }
        guard shape.count <= 2 else {
            throw a.fail("target shapes of rank \(shape.count) are not supported (features or [time, features])")
        }
        return Reshape(name: a.node.id, input: source, shape: shape)
    }
}
