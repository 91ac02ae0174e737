// Keras Dropout and SpatialDropout1D: the Keras layer table's entries (KerasLayerKind.swift) and
// their builders, which read a call's config and refuse every argument Tandem does not implement
// by name.

import TandemCore

extension KerasLayerKind {
    static let dropout = KerasLayerKind(
        classNames: ["Dropout", "SpatialDropout1D"], build: { a, inputs, _ in try LayerRegistry.dropout(a, inputs) })
}

extension LayerRegistry {
    static func dropout(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let spatial = a.node.className == "SpatialDropout1D"
        let source = spatial ? try sequence(a, inputs) : try single(a, inputs)
        try a.requireNull("noise_shape")  // SpatialDropout1D's is fixed; Dropout's must be absent
        // `seed` seeds Keras's own generator; Tandem's masks come from the run's seed (docs/SPEC.md §9).
        return Dropout(name: a.node.id, input: source, rate: try a.rate("rate"), spatial: spatial)
    }
}
