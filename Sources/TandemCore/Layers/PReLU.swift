// Keras `PReLU` (keras/src/layers/activations/prelu.py): y = relu(x) − α·relu(−x) with a learned α
// per element of the sample shape, or shared along `shared_axes` (α's size 1 there; Keras's
// weight `alpha` has that shape). Backward: dx = dy where x > 0, α·dy where x < 0 (0 at 0, as
// JAX's relu); dα += Σ_shared −relu(−x)·dy.

package final class PReLU: Layer {
    public let name: String
    package let weightsName: String
    package let inputs: [Layer]
    public let output: Node
    /// α's shape: the sample shape with 1 on the shared axes.
    package let alphaShape: [Int]
    let initializer: Initializer
    private var alpha: TensorView!
    private var store: ParameterStore!
    /// Per element of the sample, its α's index.
    private let alphaIndex: [Int32]

    package init(
        name: String, input: Layer, sharedAxes: Set<Int>, initializer: Initializer = .zeros, weights: String? = nil
    ) {
        self.name = name
        weightsName = weights ?? name
        inputs = [input]
        output = Node(shape: input.output.shape)
        self.initializer = initializer
        let shape = input.output.shape
        alphaShape = shape.enumerated().map { sharedAxes.contains($0.offset) ? 1 : $0.element }
        // Row-major index of the sample element → row-major index into α (shared axes collapse to 0).
        var strides = [Int](repeating: 1, count: shape.count)
        for k in stride(from: shape.count - 2, through: 0, by: -1) { strides[k] = strides[k + 1] * alphaShape[k + 1] }
        var index = [Int32](repeating: 0, count: shape.reduce(1, *))
        var position = [Int](repeating: 0, count: shape.count)
        for e in index.indices {
            var a = 0
            for k in shape.indices where !sharedAxes.contains(k) { a += position[k] * strides[k] }
            index[e] = Int32(a)
            var k = shape.count - 1
            while k >= 0 {
                position[k] += 1
                if position[k] < shape[k] { break }
                position[k] = 0
                k -= 1
            }
        }
        alphaIndex = index
    }

    package var parameterSpecs: [ParameterSpec] {
        [ParameterSpec(layer: weightsName, weight: "alpha", shape: alphaShape, initializer: initializer)]
    }

    package func bind(parameters: ParameterStore) {
        store = parameters
        alpha = parameters.view("\(weightsName)/alpha")
    }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (batch * output.width, batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    public func forward(batch: Int, training: Bool) {
        let x = inputs[0].output.values!
        let y = output.values!
        let a = store.value(alpha)
        let w = output.width
        alphaIndex.withUnsafeBufferPointer { index in
            for b in 0..<batch {
                for e in 0..<w {
                    let v = x[b * w + e]
                    y[b * w + e] = max(v, 0) - a[Int(index[e])] * max(-v, 0)
                }
            }
        }
    }

    package func backward(batch: Int) {
        let x = inputs[0].output.values!
        let dx = inputs[0].output.gradients!
        let dy = output.gradients!
        let a = store.value(alpha)
        let da = store.gradient(alpha)
        let w = output.width
        alphaIndex.withUnsafeBufferPointer { index in
            for b in 0..<batch {
                for e in 0..<w {
                    let i = b * w + e
                    let v = x[i]
                    let k = Int(index[e])
                    if v > 0 {
                        dx[i] += dy[i]
                    } else if v < 0 {
                        dx[i] += a[k] * dy[i]
                        da[k] -= -v * dy[i]
                    }
                }
            }
        }
    }
}

// MARK: - Keras PReLU: the layer table's entry (KerasLayerKind.swift) and its builder.

extension KerasLayerKind {
    static let prelu = KerasLayerKind(
        classNames: ["PReLU"],
        build: { a, inputs, _ in
            let source = try LayerRegistry.single(a, inputs)
            // activity_regularizer: a layer after this one (LayerRegistry.activityPenalty).
            let rank = source.output.shape.count
            var shared = Set<Int>()
            if let v = a.config["shared_axes"], !v.isNull {
                let axes = v.array?.compactMap(\.integer) ?? v.integer.map { [$0] } ?? []
                guard !axes.isEmpty, axes.allSatisfy({ $0 >= 1 && $0 <= rank }) else {
                    throw a.fail("'shared_axes' = \(v) must name sample axes 1…\(rank)")
                }
                shared = Set(axes.map { $0 - 1 })
            }
            let width = source.output.width
            return PReLU(
                name: a.node.id, input: source, sharedAxes: shared,
                initializer: try a.initializer("alpha_initializer", fanIn: width, fanOut: width) ?? .zeros,
                weights: a.node.layer)
        },
        variables: { _, layer, _ in [KerasLayerKind.top(layer, ["alpha"])] },
        regularizerKeys: [(key: "alpha_regularizer", weight: "alpha")])
}
