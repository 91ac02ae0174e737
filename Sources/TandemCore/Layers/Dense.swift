// Dense: y = act(x·K + b). Legend: B batch, I input width, O output width.
// On a sequence [B, T, I] it acts on the last axis: one GEMM over B·T rows.
// The pre-activation z is kept so a loss can take its gradient from the logits
// (sigmoid + BCE, softmax + CCE: dz = p − t) instead of through act'.

/// Keras `Dense(units, activation)` on [B, I] or [B, T, I]: `kernel` [I, O] glorot uniform, `bias` [O] zeros.
public final class Dense: Layer, GradientOverwriting {
    /// The products' FLOPs of one sample's forward (the benchmark's count).
    public var forwardFlopsPerSample: Double { 2 * Double(steps * inputWidth * units) }

    public let name: String
    public let weightsName: String
    package let useBias: Bool
    /// How the weights start (Keras's defaults unless the archive says otherwise).
    let kernelInitializer: Initializer?, biasInitializer: Initializer
    public let inputs: [Layer]
    public let output: Node
    package let activation: Activation
    package let units: Int, inputWidth: Int
    /// Rows per sample: 1, or T on a sequence.
    public let steps: Int
    private let source: Layer
    private var kernel: TensorView!, bias: TensorView!
    private var store: ParameterStore!
    /// Pre-activation z and its gradient, [B, O].
    package private(set) var logits: UnsafeMutablePointer<Float>!
    package private(set) var dLogits: UnsafeMutablePointer<Float>!
    /// Set by the loss when it writes dLogits itself (the fused logits form).
    package var lossWritesLogitGradient = false

    /// `weights` names the Keras layer whose weights a shared call uses (default: `name`).
    package init(
        name: String, units: Int, activation: Activation = .linear, input: Layer, useBias: Bool = true,
        weights: String? = nil, kernelInitializer: Initializer? = nil, biasInitializer: Initializer = .zeros
    ) {
        precondition(!input.output.shape.isEmpty, "Dense reads [B, …, features]")
        self.name = name
        self.units = units
        self.activation = activation
        weightsName = weights ?? name
        self.useBias = useBias
        self.kernelInitializer = kernelInitializer
        self.biasInitializer = biasInitializer
        source = input
        inputs = [input]
        inputWidth = input.output.features
        steps = input.output.width / inputWidth
        output = Node(shape: input.output.shape.dropLast() + [units])
    }

    public var parameterSpecs: [ParameterSpec] {
        let k = ParameterSpec(
            layer: weightsName, weight: "kernel", shape: [inputWidth, units],
            initializer: kernelInitializer ?? .glorotUniform(fanIn: inputWidth, fanOut: units))
        return useBias
            ? [k, ParameterSpec(layer: weightsName, weight: "bias", shape: [units], initializer: biasInitializer)] : [k]
    }

    public func bind(parameters: ParameterStore) {
        store = parameters
        kernel = parameters.view("\(weightsName)/kernel")
        bias = useBias ? parameters.view("\(weightsName)/bias") : nil
    }

    public func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (batch * steps * units * 3, batch * steps * units)
    }

    public func bind(workspace: inout WorkspaceCursor, batch: Int) {
        let n = batch * steps * units
        logits = workspace.take(n)
        dLogits = workspace.take(n)
        output.values = workspace.take(n)
        output.gradients = workspace.takeGradient(n)
    }

    public func forward(batch: Int, training: Bool) {
        let batch = batch * steps  // rows
        gemm(
            .none, .none, m: batch, n: units, k: inputWidth, a: source.output.values, lda: inputWidth,
            b: store.value(kernel), ldb: units, beta: 0, c: logits, ldc: units)
        if useBias { addBias(store.value(bias), to: logits, rows: batch, columns: units, stride: units) }
        activation.apply(logits, output.values, rows: batch, columns: units)
    }

    public func backward(batch: Int) {
        let batch = batch * steps  // rows
        if !lossWritesLogitGradient {
            activation.backward(
                dy: output.gradients, z: logits, y: output.values, dz: dLogits,
                rows: batch, columns: units)
        }
        // dK += xᵀ·dz;  db += Σ_b dz;  dx += dz·Kᵀ
        gemm(
            .transposed, .none, m: inputWidth, n: units, k: batch, a: source.output.values, lda: inputWidth,
            b: dLogits, ldb: units, beta: 1, c: store.gradient(kernel), ldc: units)
        if useBias { addColumnSums(dLogits, rows: batch, columns: units, stride: units, into: store.gradient(bias)) }
        guard source.wantsGradient else { return }
        // The first writer of dx writes it outright (beta 0): no zeroing pass, no read of dx.
        gemm(
            .none, .transposed, m: batch, n: inputWidth, k: units, a: dLogits, lda: units,
            b: store.value(kernel), ldb: units, beta: source.output.claimGradient() ? 0 : 1,
            c: source.output.gradients, ldc: inputWidth)
    }
}

// MARK: - Keras Dense: the layer table's entries (KerasLayerKind.swift) and their builders,
// which read a call's config and refuse every argument Tandem does not implement by name.

extension KerasLayerKind {
    static let dense = KerasLayerKind(
        classNames: ["Dense"], build: { a, inputs, _ in try LayerRegistry.dense(a, inputs) },
        variables: { _, layer, config in [KerasLayerKind.top(layer, KerasLayerKind.kernelAndBias(config))] },
        regularizerKeys: KerasLayerKind.denseKeys)
}

extension LayerRegistry {
    static func dense(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let source = try single(a, inputs)
        let units = try a.int("units")
        try a.requireNull("lora_rank", "quantization_config")
        let useBias = try a.bool("use_bias", default: true)
        return Dense(
            name: a.node.id, units: units, activation: try a.activation(), input: source, useBias: useBias,
            weights: a.node.layer,
            kernelInitializer: try a.initializer("kernel_initializer", fanIn: source.output.features, fanOut: units),
            biasInitializer: try a.initializer("bias_initializer", fanIn: source.output.features, fanOut: units)
                ?? .zeros)
    }
}
