// Conv2D (with groups) and the transposed convolutions on channels-last images [B, H, W, C], each
// through the GEMM layer (ConvWindows.swift has the window map; a 1-D form is an image of one row).
//
// Conv2D: each output cell's receptive field is gathered into a row of `columns` [B·Ho·Wo, kh·kw·Cg]
// per group (im2col), then z = columns · W_g + b with the kernel [kh, kw, Cg, F] read as
// [kh·kw·Cg, F] (group g: filters [g·Fg, (g+1)·Fg), channels [g·Cg, (g+1)·Cg)), y = act(z).
// Backward: dW_g += columns_gᵀ·dz_g, db += Σ dz, dcolumns_g = dz_g·W_gᵀ scattered back into dx.
// That is the plain path; by default the three products run as oneDNN's direct convolutions instead
// (Kernels/ConvolutionDNNL.swift: no columns, kernels chosen from the CPU's instruction sets), and
// the tests hold them to the plain path.
//
// Transposed (Keras's JAX backend: jax.lax.conv_transpose with transpose_kernel): every input cell
// i spreads x[i]·W over the output, tap u landing on i·s + u·d − P, with the kernel
// [kh, kw, F, C] read as [kh·kw·F, C]: cols = x·Wᵀ scattered into z (col2im). Backward: dcols =
// im2col(dz), dW += dcolsᵀ·x, dx += dcols·W. Per axis, with span = d(k − 1) + 1 and Keras's
// padding rule (backend/common/backend_utils.py): "valid" pads span − 1 before and span − 1 + op
// after, op = max(span, s) − span by default; "same" pads p = s + span − 2 in all (or
// span + span%2 − 2 + op with output_padding), min(⌈p/2⌉, span − 1) before. Output length
// (n − 1)·s + 1 + before + after − (span − 1), and P = span − 1 − before.

/// Keras `Conv2D(filters, kernel_size, strides, padding, dilation_rate, groups, activation, use_bias)`.
package final class Conv2D: Layer, GradientOverwriting, DeferringWeightGradients {
    public let name: String
    package let weightsName: String
    package let inputs: [Layer]
    public let output: Node
    package let geometry: WindowGeometry
    package let channels: Int, filters: Int, groups: Int
    package let activation: Activation, useBias: Bool
    /// The kernel's shape as Keras stores it ([kh, kw, Cg, F], or [k, Cg, F] for a 1-D form).
    let kernelShape: [Int]
    let initializers: (kernel: Initializer?, bias: Initializer)
    package let primitives: ConvolutionPrimitives
    private var kernel: TensorView!, bias: TensorView?
    private var store: ParameterStore!
    private var columns: UnsafeMutablePointer<Float>!, dColumns: UnsafeMutablePointer<Float>!
    private var z: UnsafeMutablePointer<Float>!, dz: UnsafeMutablePointer<Float>!

    package var forwardFlopsPerSample: Double { 2 * Double(geometry.windows * patch * filters) }

    /// `outputShape` is the per-sample shape ([Ho, Wo, F], or [S, F] for a 1-D form).
    package init(
        name: String, input: Layer, geometry: WindowGeometry, filters: Int, groups: Int = 1,
        activation: Activation = .linear, useBias: Bool = true, weights: String? = nil, kernelShape: [Int],
        outputShape: [Int], kernelInitializer: Initializer? = nil, biasInitializer: Initializer = .zeros,
        kernels: ConvolutionKernels = .preferred
    ) {
        channels = input.output.features
        precondition(input.output.width == geometry.imageCells * channels && geometry.windows > 0)
        precondition(channels % groups == 0 && filters % groups == 0)
        precondition(kernelShape.reduce(1, *) == geometry.taps * channels / groups * filters)
        precondition(outputShape.reduce(1, *) == geometry.windows * filters)
        self.name = name
        weightsName = weights ?? name
        inputs = [input]
        self.geometry = geometry
        self.filters = filters
        self.groups = groups
        self.activation = activation
        self.useBias = useBias
        self.kernelShape = kernelShape
        initializers = (kernelInitializer, biasInitializer)
        primitives = ConvolutionPrimitives(
            kernels, layer: name, geometry: geometry, channels: channels, filters: filters, groups: groups)
        output = Node(shape: outputShape)
    }

    /// One window's values in one group: kh·kw·Cg.
    private var patch: Int { geometry.taps * channels / groups }

    package var parameterSpecs: [ParameterSpec] {
        // Keras's glorot fans for a conv kernel: taps·Cg in, taps·F out.
        let k = ParameterSpec(
            layer: weightsName, weight: "kernel", shape: kernelShape,
            initializer: initializers.kernel ?? .glorotUniform(fanIn: patch, fanOut: geometry.taps * filters))
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
        let rows = batch * geometry.windows
        let columns = primitives.kernels == .oneDNN ? 0 : 2 * rows * patch * groups
        return (columns + WorkspaceCursor.outputValues(rows * filters, activation: activation), rows * filters)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        let rows = batch * geometry.windows
        if primitives.kernels == .im2col {
            columns = workspace.take(rows * patch * groups)
            dColumns = workspace.take(rows * patch * groups)
        } else {
            _ = primitives(batch: batch)
        }
        (z, dz) = workspace.takeOutput(output, rows * filters, activation: activation)
    }

    public func forward(batch: Int, training: Bool) {
        let x = inputs[0].output.values!
        let rows = batch * geometry.windows
        let w = store.value(kernel)
        if let conv = primitives(batch: batch) {
            conv.forward(x, kernel: w, into: z)
        } else {
            forwardPlain(x, w, batch: batch)
        }
        if let bias { addBias(store.value(bias), to: z, rows: rows, columns: filters, stride: filters) }
        activation.apply(z, output.values, rows: rows, columns: filters)
    }

    private func forwardPlain(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, batch: Int) {
        let rows = batch * geometry.windows
        let (cg, fg) = (channels / groups, filters / groups)
        for g in 0..<groups {
            let block = columns + g * rows * patch
            for b in 0..<batch {
                geometry.gather(
                    x + b * geometry.imageCells * channels, channels: channels, first: g * cg, count: cg,
                    into: block + b * geometry.windows * patch)
            }
            gemm(
                .none, .none, m: rows, n: fg, k: patch, a: block, lda: patch, b: w + g * fg, ldb: filters, beta: 0,
                c: z + g * fg, ldc: filters)
        }
    }

    package func backward(batch: Int) {
        if backwardLeavingWeights(batch: batch) { backwardWeights(batch: batch) }
    }

    /// dz, the bias's gradient and dx; the kernel's gradient (dz and x, both unchanged until then) waits
    /// when oneDNN runs the products.
    package func backwardLeavingWeights(batch: Int) -> Bool {
        let rows = batch * geometry.windows
        let (cg, fg) = (channels / groups, filters / groups)
        activation.backward(dy: output.gradients, z: z, y: output.values, dz: dz, rows: rows, columns: filters)
        let w = store.value(kernel)
        let dw = store.gradient(kernel)
        if let bias { addColumnSums(dz, rows: rows, columns: filters, stride: filters, into: store.gradient(bias)) }
        let first = inputs[0].wantsGradient && inputs[0].output.claimGradient()
        if let conv = primitives(batch: batch) {
            if inputs[0].wantsGradient {
                conv.backwardData(dz, kernel: w, addingTo: inputs[0].output.gradients!, overwriting: first)
            }
            return true
        }
        for g in 0..<groups {
            gemm(
                .transposed, .none, m: patch, n: fg, k: rows, a: columns + g * rows * patch, lda: patch, b: dz + g * fg,
                ldb: filters, beta: 1, c: dw + g * fg, ldc: filters)
        }
        guard inputs[0].wantsGradient else { return false }
        let dx = inputs[0].output.gradients!
        if first { dx.update(repeating: 0, count: batch * inputs[0].output.width) }
        for g in 0..<groups {
            let block = dColumns + g * rows * patch
            gemm(
                .none, .transposed, m: rows, n: patch, k: fg, a: dz + g * fg, lda: filters, b: w + g * fg,
                ldb: filters, beta: 0, c: block, ldc: patch)
            for b in 0..<batch {
                geometry.scatterAdd(
                    block + b * geometry.windows * patch, channels: channels, first: g * cg, count: cg,
                    into: dx + b * geometry.imageCells * channels)
            }
        }
        return false
    }

    package func backwardWeights(batch: Int) {
        primitives(batch: batch)!.backwardWeights(inputs[0].output.values!, dz, addingTo: store.gradient(kernel))
    }
}

/// Keras `Conv2DTranspose` / `Conv1DTranspose(filters, kernel_size, strides, padding, output_padding,
/// dilation_rate, activation, use_bias)`. Its geometry's grid is the input, its image the output.
package final class ConvTranspose: Layer {
    public let name: String
    package let weightsName: String
    package let inputs: [Layer]
    public let output: Node
    package let geometry: WindowGeometry
    package let channels: Int, filters: Int
    package let activation: Activation, useBias: Bool
    /// [kh, kw, F, C], or [k, F, C] for the 1-D form.
    let kernelShape: [Int]
    let initializers: (kernel: Initializer?, bias: Initializer)
    private var kernel: TensorView!, bias: TensorView?
    private var store: ParameterStore!
    private var columns: UnsafeMutablePointer<Float>!, dColumns: UnsafeMutablePointer<Float>!
    private var z: UnsafeMutablePointer<Float>!, dz: UnsafeMutablePointer<Float>!

    package var forwardFlopsPerSample: Double { 2 * Double(geometry.windows * channels * patch) }

    package init(
        name: String, input: Layer, geometry: WindowGeometry, filters: Int, activation: Activation = .linear,
        useBias: Bool = true, weights: String? = nil, kernelShape: [Int], outputShape: [Int],
        kernelInitializer: Initializer? = nil, biasInitializer: Initializer = .zeros
    ) {
        channels = input.output.features
        precondition(input.output.width == geometry.windows * channels)
        precondition(outputShape.reduce(1, *) == geometry.imageCells * filters)
        precondition(kernelShape.reduce(1, *) == geometry.taps * filters * channels)
        self.name = name
        weightsName = weights ?? name
        inputs = [input]
        self.geometry = geometry
        self.filters = filters
        self.activation = activation
        self.useBias = useBias
        self.kernelShape = kernelShape
        initializers = (kernelInitializer, biasInitializer)
        output = Node(shape: outputShape)
    }

    /// One input cell's contribution: kh·kw·F.
    private var patch: Int { geometry.taps * filters }

    package var parameterSpecs: [ParameterSpec] {
        // Keras's glorot fans read the kernel's last two axes: taps·F in, taps·C out.
        let k = ParameterSpec(
            layer: weightsName, weight: "kernel", shape: kernelShape,
            initializer: initializers.kernel ?? .glorotUniform(fanIn: patch, fanOut: geometry.taps * channels))
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
        let rowsIn = batch * geometry.windows
        let rowsOut = batch * geometry.imageCells
        return (2 * rowsIn * patch + 3 * rowsOut * filters, rowsOut * filters)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        let rowsIn = batch * geometry.windows
        let rowsOut = batch * geometry.imageCells
        columns = workspace.take(rowsIn * patch)
        dColumns = workspace.take(rowsIn * patch)
        z = workspace.take(rowsOut * filters)
        dz = workspace.take(rowsOut * filters)
        output.values = workspace.take(rowsOut * filters)
        output.gradients = workspace.takeGradient(rowsOut * filters)
    }

    public func forward(batch: Int, training: Bool) {
        let x = inputs[0].output.values!
        let rowsIn = batch * geometry.windows
        let rowsOut = batch * geometry.imageCells
        gemm(
            .none, .transposed, m: rowsIn, n: patch, k: channels, a: x, lda: channels, b: store.value(kernel),
            ldb: channels, beta: 0, c: columns, ldc: patch)
        z.update(repeating: 0, count: rowsOut * filters)
        for b in 0..<batch {
            geometry.scatterAdd(
                columns + b * geometry.windows * patch, channels: filters, count: filters,
                into: z + b * geometry.imageCells * filters)
        }
        if let bias { addBias(store.value(bias), to: z, rows: rowsOut, columns: filters, stride: filters) }
        activation.apply(z, output.values, rows: rowsOut, columns: filters)
    }

    package func backward(batch: Int) {
        let x = inputs[0].output.values!
        let rowsIn = batch * geometry.windows
        let rowsOut = batch * geometry.imageCells
        activation.backward(dy: output.gradients, z: z, y: output.values, dz: dz, rows: rowsOut, columns: filters)
        for b in 0..<batch {
            geometry.gather(
                dz + b * geometry.imageCells * filters, channels: filters, count: filters,
                into: dColumns + b * geometry.windows * patch)
        }
        gemm(
            .transposed, .none, m: patch, n: channels, k: rowsIn, a: dColumns, lda: patch, b: x, ldb: channels,
            beta: 1, c: store.gradient(kernel), ldc: channels)
        if let bias { addColumnSums(dz, rows: rowsOut, columns: filters, stride: filters, into: store.gradient(bias)) }
        guard inputs[0].wantsGradient else { return }
        gemm(
            .none, .none, m: rowsIn, n: channels, k: patch, a: dColumns, lda: patch, b: store.value(kernel),
            ldb: channels, beta: 1, c: inputs[0].output.gradients!, ldc: channels)
    }
}

// MARK: - Keras Conv2D, Conv2DTranspose and Conv1DTranspose: the layer table's entries (KerasLayerKind.swift)
// and their builders, which read a call's config and refuse every argument Tandem does not implement by name.

extension KerasLayerKind {
    static let convolutions = KerasLayerKind(
        classNames: ["Conv2D", "Conv2DTranspose", "Conv1DTranspose"],
        build: { a, inputs, _ in try LayerRegistry.convolution(a, inputs) },
        variables: { _, layer, config in [KerasLayerKind.top(layer, KerasLayerKind.kernelAndBias(config))] },
        regularizerKeys: KerasLayerKind.denseKeys)
}

extension LayerArguments {
    /// A 1-D or 2-D layer's spatial shape: [1, T] for a sequence [T, C], [H, W] for an image [H, W, C].
    func spatial(_ source: Layer, rank: Int) throws -> (Int, Int) {
        let shape = source.output.shape
        guard shape.count == rank + 1 else {
            let wanted = rank == 1 ? "a sequence [batch, time, channels]" : "an image [batch, height, width, channels]"
            throw fail("needs \(wanted), got \(LayerRegistry.shapeText(source))")
        }
        return rank == 1 ? (1, shape[0]) : (shape[0], shape[1])
    }

    /// A size per spatial axis: an int for every axis, or a list of `rank` ints ((1, n) for 1-D).
    func sizes(_ key: String, rank: Int, default value: Int? = nil, min: Int = 1) throws -> (Int, Int) {
        guard let v = config[key], !v.isNull else {
            if let value { return (rank == 1 ? 1 : value, value) }
            throw fail("'\(key)' must be given")
        }
        let list = v.integer.map { Array(repeating: $0, count: rank) } ?? (v.array ?? []).compactMap(\.integer)
        guard list.count == rank, list.allSatisfy({ $0 >= min }), v.integer != nil || v.array?.count == rank else {
            throw fail("'\(key)' must be an integer ≥ \(min) or a list of \(rank), got \(v)")
        }
        return rank == 1 ? (1, list[0]) : (list[0], list[1])
    }

    /// "valid" (false) or "same" (true).
    func samePadding() throws -> Bool {
        let name = try string("padding", default: "valid")
        guard name == "valid" || name == "same" else { throw fail("padding '\(name)' is not supported (valid, same)") }
        return name == "same"
    }
}

extension LayerRegistry {
    static func convolution(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let source = try single(a, inputs)
        let transposed = a.node.className.hasSuffix("Transpose")
        let rank = a.node.className.hasPrefix("Conv1D") ? 1 : 2
        let image = try a.spatial(source, rank: rank)
        try a.channelsLast()
        try a.requireNull("lora_rank")
        let channels = source.output.features
        let filters = try a.int("filters")
        let kernel = try a.sizes("kernel_size", rank: rank)
        let stride = try a.sizes("strides", rank: rank, default: 1)
        let dilation = try a.sizes("dilation_rate", rank: rank, default: 1)
        guard (stride.0 == 1 && stride.1 == 1) || (dilation.0 == 1 && dilation.1 == 1) else {
            throw a.fail("strides > 1 with dilation_rate > 1 is not allowed (as in Keras)")
        }
        let same = try a.samePadding()
        let activation = try a.activation()
        let useBias = try a.bool("use_bias", default: true)
        let taps = kernel.0 * kernel.1
        let keep = { (shape: [Int]) in rank == 1 ? Array(shape.dropFirst()) : shape }
        if transposed {
            let padding = try outputPadding(a, rank: rank, stride: stride)
            let y = transposedAxis(
                length: image.0, kernel: kernel.0, stride: stride.0, dilation: dilation.0, same: same,
                outputPadding: padding.0)
            let x = transposedAxis(
                length: image.1, kernel: kernel.1, stride: stride.1, dilation: dilation.1, same: same,
                outputPadding: padding.1)
            let geometry = WindowGeometry(
                image: (y.out, x.out), kernel: kernel, stride: stride, dilation: dilation,
                padding: (y.shift, x.shift), grid: image)
            return ConvTranspose(
                name: a.node.id, input: source, geometry: geometry, filters: filters, activation: activation,
                useBias: useBias, weights: a.node.layer, kernelShape: keep([kernel.0, kernel.1, filters, channels]),
                outputShape: keep([y.out, x.out, filters]),
                kernelInitializer: try a.initializer(
                    "kernel_initializer", fanIn: taps * filters, fanOut: taps * channels),
                biasInitializer: try a.initializer("bias_initializer", fanIn: taps * filters, fanOut: filters) ?? .zeros
            )
        }
        let groups = a.config["groups"]?.isNull == false ? try a.int("groups") : 1
        guard channels % groups == 0 && filters % groups == 0 else {
            throw a.fail("groups = \(groups) must divide its \(channels) input channels and its \(filters) filters")
        }
        let geometry = WindowGeometry.forward(
            image: image, kernel: kernel, stride: stride, dilation: dilation, same: same)
        guard geometry.windows > 0 else {
            throw a.fail(
                "its kernel \(kernel) with dilation \(dilation) is larger than the \(image) input it reads")
        }
        let cg = channels / groups
        return Conv2D(
            name: a.node.id, input: source, geometry: geometry, filters: filters, groups: groups,
            activation: activation, useBias: useBias, weights: a.node.layer,
            kernelShape: keep([kernel.0, kernel.1, cg, filters]),
            outputShape: keep([geometry.gridHeight, geometry.gridWidth, filters]),
            kernelInitializer: try a.initializer("kernel_initializer", fanIn: taps * cg, fanOut: taps * filters),
            biasInitializer: try a.initializer("bias_initializer", fanIn: taps * cg, fanOut: filters) ?? .zeros)
    }

    /// A transposed convolution's `output_padding` per axis (nil: Keras's default), each below its stride.
    private static func outputPadding(_ a: LayerArguments, rank: Int, stride: (Int, Int)) throws -> (Int?, Int?) {
        guard let v = a.config["output_padding"], !v.isNull else { return (nil, nil) }
        let p = try a.sizes("output_padding", rank: rank, min: 0)
        guard p.1 < stride.1 && (rank == 1 || p.0 < stride.0) else {
            throw a.fail("'output_padding' \(v) must be smaller than the strides")
        }
        return (rank == 1 ? 0 : p.0, p.1)
    }

    /// One axis of a transposed convolution: its output length, and where tap 0 of input cell 0 lands
    /// (−shift), by Keras's JAX padding rule (the header comment).
    static func transposedAxis(
        length n: Int, kernel k: Int, stride s: Int, dilation d: Int, same: Bool, outputPadding: Int?
    )
        -> (out: Int, shift: Int)
    {
        let span = d * (k - 1) + 1
        let before: Int
        let after: Int
        if same {
            let total = outputPadding.map { span + span % 2 - 2 + $0 } ?? s + span - 2
            before = min(total / 2 + total % 2, span - 1)
            after = total - before
        } else {
            before = span - 1
            after = span - 1 + (outputPadding ?? max(span, s) - span)
        }
        return ((n - 1) * s + 1 + before + after - (span - 1), span - 1 - before)
    }
}
