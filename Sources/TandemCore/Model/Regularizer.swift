// Weight penalties (Keras's kernel_regularizer & co.): λ₁·Σ|w| + λ₂·Σw² on one
// tensor, added to the total loss once per step — never once per rank, and
// once per tensor even when a shared layer is called several times.

/// A penalty on one parameter tensor, named `<layer>/<weight>`.
public struct Regularizer: Sendable, Codable, Equatable {
    public var tensor: String
    public var l1: Double, l2: Double
    package init(tensor: String, l1: Double = 0, l2: Double = 0) {
        self.tensor = tensor
        self.l1 = l1
        self.l2 = l2
    }

    /// `--l2 LAYER=λ`: λ on the layer's first weight (a kernel, an Embedding's table).
    public static func fromLayerFlags(_ flags: [String: Double], model: Model) throws -> [Regularizer] {
        try flags.sorted { $0.key < $1.key }.map { layer, lambda in
            guard let l = model.layers.first(where: { $0.weightsName == layer }), let weight = l.parameterSpecs.first
            else {
                let named = model.layers.filter { !$0.parameterSpecs.isEmpty }.map(\.weightsName)
                throw TandemError.usage(
                    "--l2: unknown layer '\(layer)' (layers with weights: \(named.joined(separator: ", ")))")
            }
            return Regularizer(tensor: weight.name, l2: lambda)
        }
    }

    /// The penalties resolved to tensors, those on one tensor added together, in arena order.
    package static func combined(_ list: [Regularizer], in store: ParameterStore) throws -> [(
        view: TensorView, l1: Double, l2: Double
    )] {
        var byName: [String: (l1: Double, l2: Double)] = [:]
        for r in list {
            guard store.view(r.tensor) != nil else {
                throw TandemError.usage("regularizer on '\(r.tensor)': the model has no such weight")
            }
            guard r.l1 >= 0, r.l2 >= 0, r.l1.isFinite, r.l2.isFinite else {
                throw TandemError.usage(
                    "regularizer on '\(r.tensor)': l1 and l2 must be finite and non-negative (got \(r.l1), \(r.l2))")
            }
            let old = byName[r.tensor] ?? (0, 0)
            byName[r.tensor] = (old.l1 + r.l1, old.l2 + r.l2)
        }
        // A frozen layer's penalties are not added: Keras sums its trainable weights' only.
        return store.tensors.compactMap { view in
            guard view.spec.trainable, let r = byName[view.name], r.l1 > 0 || r.l2 > 0 else { return nil }
            return (view, r.l1, r.l2)
        }
    }
}
