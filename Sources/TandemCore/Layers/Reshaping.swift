// Layers that only move values: Flatten and Reshape (the same row-major
// floats under a new per-sample shape), RepeatVector ([F] → [n, F]) and the
// time reversal of a Bidirectional's backward sequence.
// Backward ACCUMULATES into the input's gradient, as every layer does.

/// Keras `Flatten` and `Reshape(target_shape)`: y = x with another per-sample shape.
package final class Reshape: Layer {
    public let name: String
    package let inputs: [Layer]
    public let output: Node

    package init(name: String, input: Layer, shape: [Int]) {
        precondition(shape.reduce(1, *) == input.output.width, "Reshape keeps the element count")
        self.name = name
        inputs = [input]
        output = Node(shape: shape)
    }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (batch * output.width, batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    public func forward(batch: Int, training: Bool) {
        output.values.update(from: inputs[0].output.values, count: batch * output.width)
    }

    package func backward(batch: Int) {
        let dx = inputs[0].output.gradients!
        let dy = output.gradients!
        for i in 0..<(batch * output.width) { dx[i] += dy[i] }
    }
}

/// Keras `RepeatVector(n)`: [B, F] → [B, n, F], every step a copy.
package final class RepeatVector: Layer {
    public let name: String
    package let inputs: [Layer]
    public let output: Node
    public let count: Int

    package init(name: String, input: Layer, count: Int) {
        precondition(input.output.shape.count == 1 && count > 0)
        self.name = name
        self.count = count
        inputs = [input]
        output = Node(shape: [count, input.output.width])
    }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (batch * output.width, batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    public func forward(batch: Int, training: Bool) {
        let f = inputs[0].output.width
        let x = inputs[0].output.values!
        for b in 0..<batch {
            for t in 0..<count { (output.values + (b * count + t) * f).update(from: x + b * f, count: f) }
        }
    }

    package func backward(batch: Int) {
        let f = inputs[0].output.width
        let dx = inputs[0].output.gradients!
        for b in 0..<batch {
            for t in 0..<count {
                let dy = output.gradients + (b * count + t) * f
                for j in 0..<f { dx[b * f + j] += dy[j] }
            }
        }
    }
}

/// [B, T, F] with the time axis reversed: y[b, t] = x[b, T−1−t] (a Bidirectional's
/// backward half returns its sequence in processing order; Keras flips it back).
package final class TimeReverse: Layer {
    public let name: String
    package let inputs: [Layer]
    public let output: Node

    package init(name: String, input: Layer) {
        precondition(input.output.shape.count == 2)
        self.name = name
        inputs = [input]
        output = Node(shape: input.output.shape)
    }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (batch * output.width, batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    public func forward(batch: Int, training: Bool) {
        let T = output.shape[0]
        let F = output.shape[1]
        let x = inputs[0].output.values!
        for b in 0..<batch {
            for t in 0..<T {
                let from: UnsafeMutablePointer<Float> = x + (b * T + T - 1 - t) * F
                (output.values + (b * T + t) * F).update(from: from, count: F)
            }
        }
    }

    package func backward(batch: Int) {
        let T = output.shape[0]
        let F = output.shape[1]
        let dx = inputs[0].output.gradients!
        for b in 0..<batch {
            for t in 0..<T {
                let to = dx + (b * T + T - 1 - t) * F
                let from = output.gradients + (b * T + t) * F
                for j in 0..<F { to[j] += from[j] }
            }
        }
    }
}

// MARK: - Keras Flatten, Reshape and RepeatVector: the layer table's entries (KerasLayerKind.swift) and their
// builders, which read a call's config and refuse every argument Tandem does not implement by name.

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
        guard shape.count <= 3 else {
            throw a.fail(
                "target shapes of rank \(shape.count) are not supported (features, [time, features] or [height, width, channels])"
            )
        }
        return Reshape(name: a.node.id, input: source, shape: shape)
    }
}
