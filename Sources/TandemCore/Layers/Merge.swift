// Element-wise merges (Keras Add, Subtract, Multiply, Average, Maximum, Minimum) and the
// Activation layer. Legend: n = B · width. Inputs share one rank; an axis of size 1 broadcasts
// against the others (EfficientNet's squeeze-and-excite: [H, W, C] · [1, 1, C]), read through a
// per-sample index map, and its gradient is the sum over the axis it was repeated along.
// Backward ACCUMULATES into every input's gradient, as every layer does.

import CKernels

/// Keras's element-wise merge layers.
package enum MergeKind: String, Sendable, CaseIterable {
    case add = "Add"
    case subtract = "Subtract"
    case multiply = "Multiply"
    case average = "Average"
    case maximum = "Maximum"
    case minimum = "Minimum"
}

/// y = x₁ ∘ x₂ ∘ … element by element (Subtract: exactly two inputs, x₁ − x₂).
package final class Merge: Layer {
    public let name: String
    package let inputs: [Layer]
    public let output: Node
    public let kind: MergeKind

    /// Per input: nil when it has the output's shape, else the index of its element that each
    /// output element of a sample reads (broadcasting).
    let sources: [[Int32]?]

    package init(name: String, kind: MergeKind, inputs: [Layer]) {
        let shape = Merge.broadcastShape(inputs.map(\.output.shape))
        precondition(inputs.count >= 2 && shape != nil, "merge inputs broadcast to one shape")
        precondition(kind != .subtract || inputs.count == 2, "Subtract takes two inputs")
        self.name = name
        self.kind = kind
        self.inputs = inputs
        output = Node(shape: shape!)
        sources = inputs.map { $0.output.shape == shape! ? nil : IndexMap.broadcast(from: $0.output.shape, to: shape!) }
    }

    /// The shape same-rank inputs broadcast to (each axis equal, or 1), nil when they do not.
    package static func broadcastShape(_ shapes: [[Int]]) -> [Int]? {
        guard let rank = shapes.first?.count, shapes.allSatisfy({ $0.count == rank }) else { return nil }
        var result = [Int](repeating: 1, count: rank)
        for shape in shapes {
            for (k, n) in shape.enumerated() where n != 1 {
                guard result[k] == 1 || result[k] == n else { return nil }
                result[k] = n
            }
        }
        return result
    }

    /// Input k's element that output element i (of the whole batch) reads.
    @inline(__always) private func at(_ k: Int, _ i: Int) -> Int {
        guard let map = sources[k] else { return i }
        let w = output.width
        return (i / w) * inputs[k].output.width + Int(map[i % w])
    }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (batch * output.width, batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    public func forward(batch: Int, training: Bool) {
        let n = batch * output.width
        let y = output.values!
        if sources[0] == nil {
            y.update(from: inputs[0].output.values, count: n)
        } else {
            for i in 0..<n { y[i] = inputs[0].output.values[at(0, i)] }
        }
        for (k, source) in inputs.enumerated().dropFirst() {
            let x = source.output.values!
            if sources[k] != nil {
                for i in 0..<n {
                    let v = x[at(k, i)]
                    switch kind {
                    case .add, .average: y[i] += v
                    case .subtract: y[i] -= v
                    case .multiply: y[i] *= v
                    case .maximum: y[i] = max(y[i], v)
                    case .minimum: y[i] = min(y[i], v)
                    }
                }
                continue
            }
            switch kind {
            case .add, .average: for i in 0..<n { y[i] += x[i] }
            case .subtract: for i in 0..<n { y[i] -= x[i] }
            case .multiply: for i in 0..<n { y[i] *= x[i] }
            case .maximum: for i in 0..<n { y[i] = max(y[i], x[i]) }
            case .minimum: for i in 0..<n { y[i] = min(y[i], x[i]) }
            }
        }
        if kind == .average {
            let k = 1 / Float(inputs.count)
            for i in 0..<n { y[i] *= k }
        }
    }

    package func backward(batch: Int) {
        let n = batch * output.width
        let dy = output.gradients!
        let y = output.values!
        let broadcast = sources.contains { $0 != nil }
        for (k, source) in inputs.enumerated() {
            let dx = source.output.gradients!
            let x = source.output.values!
            if broadcast {
                // Through the index maps: a broadcast input's element gathers every output it fed.
                for i in 0..<n {
                    let g: Float
                    switch kind {
                    case .add: g = dy[i]
                    case .average: g = dy[i] / Float(inputs.count)
                    case .subtract: g = k == 0 ? dy[i] : -dy[i]
                    case .multiply:
                        var p: Float = 1
                        for (j, other) in inputs.enumerated() where j != k { p *= other.output.values[at(j, i)] }
                        g = dy[i] * p
                    case .maximum, .minimum:
                        let mine = x[at(k, i)] == y[i]
                        let earlier = (0..<k).contains { inputs[$0].output.values[at($0, i)] == y[i] }
                        g = mine && !earlier ? dy[i] : 0
                    }
                    dx[at(k, i)] += g
                }
                continue
            }
            switch kind {
            case .add: for i in 0..<n { dx[i] += dy[i] }
            case .average:
                let s = 1 / Float(inputs.count)
                for i in 0..<n { dx[i] += dy[i] * s }
            case .subtract:
                let s: Float = k == 0 ? 1 : -1
                for i in 0..<n { dx[i] += s * dy[i] }
            case .multiply:
                // ∂y/∂x_k = Π_{j≠k} x_j (a product, not y / x_k, so zeros are exact).
                for i in 0..<n {
                    var p: Float = 1
                    for (j, other) in inputs.enumerated() where j != k { p *= other.output.values[i] }
                    dx[i] += dy[i] * p
                }
            case .maximum, .minimum:
                // The first input that holds the extreme takes the gradient.
                for i in 0..<n where x[i] == y[i] && !inputs[..<k].contains(where: { $0.output.values[i] == y[i] }) {
                    dx[i] += dy[i]
                }
            }
        }
    }
}

/// Keras `Activation(activation)`: y = act(x) on any shape (softmax over the last axis).
package final class ActivationLayer: Layer, GradientOverwriting {
    public let name: String
    package let inputs: [Layer]
    public let output: Node
    package let activation: Activation
    private var dz: UnsafeMutablePointer<Float>!
    /// The BatchNormalization this ReLU is fused into (FusionPass.pairNormalizationActivations): it writes
    /// this layer's output and reads this layer's gradient, so this layer runs nothing.
    package weak var fusedInto: Layer?

    package init(name: String, activation: Activation, input: Layer) {
        self.name = name
        self.activation = activation
        inputs = [input]
        output = Node(shape: input.output.shape)
    }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (2 * batch * output.width, batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        dz = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    private var rows: (Int) -> Int { { batch in batch * self.output.width / self.output.features } }

    public func forward(batch: Int, training: Bool) {
        guard fusedInto == nil else { return }
        activation.apply(inputs[0].output.values, output.values, rows: rows(batch), columns: output.features)
    }

    package func backward(batch: Int) {
        guard fusedInto == nil else {
            inputs[0].output.gradientPending = false  // the normalisation's gradient is never formed or read
            return
        }
        guard inputs[0].wantsGradient else { return }
        let dx = inputs[0].output.gradients!
        let n = batch * output.width
        let first = inputs[0].output.claimGradient()
        // ReLU and ReLU6 (MobileNet's): dx (+)= dy where the input passed, in one pass.
        if activation == .relu || activation == .relu6 {
            let top: Float = activation == .relu ? .infinity : 6
            if first {
                tandem_relu_backward_bounded(output.gradients, inputs[0].output.values, dx, n, top)
            } else {
                tandem_relu_backward_add(output.gradients, inputs[0].output.values, dx, n, top)
            }
            return
        }
        activation.backward(
            dy: output.gradients, z: inputs[0].output.values, y: output.values, dz: first ? dx : dz,
            rows: rows(batch), columns: output.features)
        if !first { for i in 0..<n { dx[i] += dz[i] } }
    }
}

// MARK: - Keras Activation and the activation layers (ReLU, LeakyReLU, ELU, Softmax, Identity): the
// layer table's entries, each an ActivationLayer when its arguments name one of Keras's activations.

extension KerasLayerKind {
    static let activation = KerasLayerKind(
        classNames: ["Activation"],
        build: { a, inputs, _ in
            ActivationLayer(name: a.node.id, activation: try a.activation(), input: try LayerRegistry.single(a, inputs))
        })

    /// ReLU(max_value, negative_slope, threshold), LeakyReLU(negative_slope), ELU(alpha) — their plain
    /// cases here, any other arguments as a PointwiseLayer —,
    /// Softmax(axis) and Identity: Keras's activation functions at the arguments they share.
    static let activationLayers = KerasLayerKind(
        classNames: ["ReLU", "LeakyReLU", "ELU", "Softmax", "Identity"],
        build: { a, inputs, _ in
            let source = try LayerRegistry.single(a, inputs)
            // Other arguments than a plain activation's: an element-wise layer (Pointwise.swift).
            if let layer = try LayerRegistry.pointwiseActivation(a, source) { return layer }
            if a.node.className == "Softmax", let axes = try LayerRegistry.softmaxAxes(a, source) {
                return AxisSoftmax(name: a.node.id, axes: axes, input: source)
            }
            return ActivationLayer(
                name: a.node.id, activation: try LayerRegistry.activationOfLayer(a, source), input: source)
        })
}

extension LayerRegistry {
    static func activationOfLayer(_ a: LayerArguments, _ source: Layer) throws -> Activation {
        func number(_ key: String, default value: Double) throws -> Double {
            guard let v = a.config[key], !v.isNull else { return value }
            guard let x = v.number else { throw a.fail("'\(key)' must be a number") }
            return x
        }
        switch a.node.className {
        case "ReLU":
            let slope = try number("negative_slope", default: 0)
            let threshold = try number("threshold", default: 0)
            let maxValue = a.config["max_value"].flatMap { $0.isNull ? nil : $0.number }
            guard slope == 0, threshold == 0 else {
                throw a.fail("negative_slope \(slope) and threshold \(threshold) are not supported (only 0 and 0)")
            }
            switch maxValue {
            case nil: return .relu
            case 6?: return .relu6
            case let m?: throw a.fail("max_value \(m) is not supported (none, or 6)")
            }
        case "LeakyReLU":
            // Keras's leaky_relu activation has slope 0.2; the LeakyReLU layer defaults to 0.3.
            let slope = try number("negative_slope", default: 0.3)
            guard slope == 0.2 else { throw a.fail("negative_slope \(slope) is not supported (only 0.2)") }
            return .leakyRelu
        case "ELU":
            let alpha = try number("alpha", default: 1)
            guard alpha == 1 else { throw a.fail("alpha \(alpha) is not supported (only 1.0)") }
            return .elu
        case "Softmax": return .softmax  // the last axis (other axes: AxisSoftmax)
        default:
            return .linear  // Identity
        }
    }
}

// MARK: - Keras Concatenate and the element-wise merges (Add, Subtract, Multiply, Average, Maximum, Minimum):
// the layer table's entries (KerasLayerKind.swift) and their builders, which read a call's config and refuse
// every argument Tandem does not implement by name.

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
        guard Merge.broadcastShape(inputs.map(\.output.shape)) != nil else {
            throw a.fail(
                "inputs must share one rank and broadcast (each axis equal, or 1), got \(inputs.map { "\($0.output.shape)" }.joined(separator: " and "))"
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
