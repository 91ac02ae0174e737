// Keras Concatenate and the element-wise merges (Add, Subtract, Multiply, Average, Maximum,
// Minimum): the Keras layer table's entries (KerasLayerKind.swift) and their builders, which read
// a call's config and refuse every argument Tandem does not implement by name.

import TandemCore

extension KerasLayerKind {
    /// One entry per element-wise merge class.
    static let merges = MergeKind.allCases.map { kind in
        KerasLayerKind(classNames: [kind.rawValue], build: { a, inputs, _ in try LayerRegistry.merge(a, kind, inputs) })
    }

    static let concatenate = KerasLayerKind(
        classNames: ["Concatenate"], build: { a, inputs, _ in try LayerRegistry.concatenate(a, inputs) })
}

extension LayerRegistry {
    static func merge(_ a: LayerArguments, _ kind: MergeKind, _ inputs: [Layer]) throws -> Layer {
        guard inputs.count >= 2 else { throw a.fail("needs at least two inputs, got \(inputs.count)") }
        guard kind != .subtract || inputs.count == 2 else {
            throw a.fail("takes exactly two inputs, got \(inputs.count)")
        }
        guard inputs.allSatisfy({ $0.output.shape == inputs[0].output.shape }) else {
            throw a.fail(
                "inputs must share one shape (broadcasting is not supported), got \(inputs.map { "\($0.output.shape)" }.joined(separator: " and "))"
            )
        }
        return Merge(name: a.node.id, kind: kind, inputs: inputs)
    }

    static func concatenate(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        guard inputs.count >= 2 else { throw a.fail("needs at least two inputs, got \(inputs.count)") }
        let rank = inputs[0].output.shape.count
        let shapes = inputs.map { shapeText($0) }.joined(separator: " and ")
        guard inputs.allSatisfy({ $0.output.shape.count == rank }) else {
            throw a.fail("inputs must have one rank, got \(shapes)")
        }
        let given = a.config["axis"]?.integer ?? -1
        // Keras counts the batch axis: axis 1 is the first per-sample axis, −1 the last.
        let axis = given < 0 ? rank + given : given - 1
        guard (0..<rank).contains(axis) else {
            throw a.fail("axis \(given) is not an axis of \(shapes) (the batch axis cannot be joined)")
        }
        for i in 0..<rank where i != axis {
            guard inputs.allSatisfy({ $0.output.shape[i] == inputs[0].output.shape[i] }) else {
                throw a.fail("inputs must agree on every axis but \(given), got \(shapes)")
            }
        }
        return Concatenate(name: a.node.id, inputs: inputs, axis: axis)
    }
}
