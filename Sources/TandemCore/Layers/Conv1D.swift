// Conv1D on [B, T, C] (channels last) as one GEMM: each output step's
// receptive field is gathered into a row of `columns` [B·S, K·C] (im2col;
// cells outside the input are zero), then z = columns · W + b with the
// kernel [K, C, F] read as [K·C, F], and y = act(z). Legend: T input steps,
// S output steps, K kernel size, C input channels, F filters, s stride,
// d dilation. Input step of (o, k): o·s − padFront + k·d. Padding "valid":
// S = ⌊(T − d(K−1) − 1)/s⌋ + 1; "same": S = ⌈T/s⌉ with max((S−1)s + d(K−1) + 1 − T, 0)
// padding, the smaller half in front (XLA's SAME, as Keras's JAX backend);
// "causal": d(K−1) in front, then valid. Backward: dW += columnsᵀ·dz,
// db += Σ dz, dcolumns = dz·Wᵀ scattered back into dx (col2im).

/// Keras `Conv1D(filters, kernel_size, strides, padding, dilation_rate, activation, use_bias)`.
package final class Conv1D: Layer {
    /// The products' FLOPs of one sample's forward (the benchmark's count).
    package var forwardFlopsPerSample: Double { 2 * Double(outSteps * kernelSize * channels * filters) }

    package enum Padding: String, Sendable { case valid, same, causal }
    public let name: String
    package let weightsName: String
    package let inputs: [Layer]
    public let output: Node
    package let filters: Int, kernelSize: Int, stride: Int, dilation: Int, padding: Padding
    package let activation: Activation, useBias: Bool
    public let steps: Int, channels: Int, outSteps: Int
    let padFront: Int
    let initializers: (kernel: Initializer?, bias: Initializer)
    private var kernel: TensorView!, bias: TensorView?
    private var store: ParameterStore!
    private var columns: UnsafeMutablePointer<Float>!, dColumns: UnsafeMutablePointer<Float>!
    private var z: UnsafeMutablePointer<Float>!, dz: UnsafeMutablePointer<Float>!

    package static func outputSteps(steps: Int, kernel: Int, stride: Int, dilation: Int, padding: Padding) -> Int {
        let span = dilation * (kernel - 1) + 1
        switch padding {
        case .valid: return steps >= span ? (steps - span) / stride + 1 : 0
        case .same: return (steps + stride - 1) / stride
        case .causal: return (steps - 1) / stride + 1
        }
    }

    package init(
        name: String, filters: Int, kernelSize: Int, input: Layer, stride: Int = 1, dilation: Int = 1,
        padding: Padding = .valid,
        activation: Activation = .linear, useBias: Bool = true, weights: String? = nil,
        kernelInitializer: Initializer? = nil, biasInitializer: Initializer = .zeros
    ) {
        precondition(input.output.shape.count == 2)
        self.name = name
        weightsName = weights ?? name
        inputs = [input]
        self.filters = filters
        self.kernelSize = kernelSize
        self.stride = stride
        self.dilation = dilation
        self.padding = padding
        self.activation = activation
        self.useBias = useBias
        steps = input.output.shape[0]
        channels = input.output.shape[1]
        outSteps = Conv1D.outputSteps(
            steps: steps, kernel: kernelSize, stride: stride, dilation: dilation, padding: padding)
        precondition(outSteps > 0, "Conv1D's kernel is longer than its input")
        switch padding {
        case .valid: padFront = 0
        case .same: padFront = max((outSteps - 1) * stride + dilation * (kernelSize - 1) + 1 - steps, 0) / 2
        case .causal: padFront = dilation * (kernelSize - 1)
        }
        initializers = (kernelInitializer, biasInitializer)
        output = Node(shape: [outSteps, filters])
    }

    private var patch: Int { kernelSize * channels }

    package var parameterSpecs: [ParameterSpec] {
        // Keras's glorot fans for a conv kernel: K·C in, K·F out.
        let k = ParameterSpec(
            layer: weightsName, weight: "kernel", shape: [kernelSize, channels, filters],
            initializer: initializers.kernel ?? .glorotUniform(fanIn: patch, fanOut: kernelSize * filters))
        return useBias
            ? [k, ParameterSpec(layer: weightsName, weight: "bias", shape: [filters], initializer: initializers.bias)]
            : [k]
    }

    package func bind(parameters: ParameterStore) {
        store = parameters
        kernel = parameters.view("\(weightsName)/kernel")
        bias = useBias ? parameters.view("\(weightsName)/bias") : nil
    }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        let rows = batch * outSteps
        return (2 * rows * patch + 3 * rows * filters, rows * filters)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        let rows = batch * outSteps
        columns = workspace.take(rows * patch)
        dColumns = workspace.take(rows * patch)
        z = workspace.take(rows * filters)
        dz = workspace.take(rows * filters)
        output.values = workspace.take(rows * filters)
        output.gradients = workspace.takeGradient(rows * filters)
    }

    /// The input step that tap k of output step o reads (may be outside 0..<T).
    @inline(__always) private func tap(_ o: Int, _ k: Int) -> Int { o * stride - padFront + k * dilation }

    public func forward(batch: Int, training: Bool) {
        let x = inputs[0].output.values!
        let C = channels
        let rows = batch * outSteps
        for b in 0..<batch {
            for o in 0..<outSteps {
                let row = columns + (b * outSteps + o) * patch
                for k in 0..<kernelSize {
                    let t = tap(o, k)
                    let cell = row + k * C
                    if t >= 0 && t < steps {
                        cell.update(from: x + (b * steps + t) * C, count: C)
                    } else {
                        cell.update(repeating: 0, count: C)
                    }
                }
            }
        }
        gemm(
            .none, .none, m: rows, n: filters, k: patch, a: columns, lda: patch, b: store.value(kernel), ldb: filters,
            beta: 0, c: z, ldc: filters)
        if let bias { addBias(store.value(bias), to: z, rows: rows, columns: filters, stride: filters) }
        activation.apply(z, output.values, rows: rows, columns: filters)
    }

    package func backward(batch: Int) {
        let dx = inputs[0].output.gradients!
        let C = channels
        let rows = batch * outSteps
        activation.backward(dy: output.gradients, z: z, y: output.values, dz: dz, rows: rows, columns: filters)
        gemm(
            .transposed, .none, m: patch, n: filters, k: rows, a: columns, lda: patch, b: dz, ldb: filters,
            beta: 1, c: store.gradient(kernel), ldc: filters)
        if let bias { addColumnSums(dz, rows: rows, columns: filters, stride: filters, into: store.gradient(bias)) }
        guard inputs[0].wantsGradient else { return }
        gemm(
            .none, .transposed, m: rows, n: patch, k: filters, a: dz, lda: filters, b: store.value(kernel),
            ldb: filters,
            beta: 0, c: dColumns, ldc: patch)
        for b in 0..<batch {
            for o in 0..<outSteps {
                let row = dColumns + (b * outSteps + o) * patch
                for k in 0..<kernelSize {
                    let t = tap(o, k)
                    guard t >= 0 && t < steps else { continue }
                    let to = dx + (b * steps + t) * C
                    let from = row + k * C
                    for c in 0..<C { to[c] += from[c] }
                }
            }
        }
    }
}

// MARK: - Keras Conv1D: the layer table's entries (KerasLayerKind.swift) and their builders, which read a
// call's config and refuse every argument Tandem does not implement by name.

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
        try a.requireNull("lora_rank")
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
