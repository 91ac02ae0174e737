// Depthwise and separable convolutions on channels-last images [B, H, W, C] (1-D forms: one row).
// Depthwise: output channel c·M + m of each cell is Σ over taps of x[tap cell, c]·K[tap, c, m], the
// kernel [kh, kw, C, M] (M = depth_multiplier), as Keras's JAX backend runs it (a grouped
// convolution with C groups; the kernel's memory is the same). Each channel's product is a handful
// of multiply-adds, far too small for a GEMM, so the plain path is a direct loop over the window map
// (ConvWindows.swift); by default oneDNN's depthwise kernels run it instead (a grouped convolution,
// Kernels/ConvolutionDNNL.swift), held to the loop by the tests. Separable: that depthwise result (no bias) times the pointwise kernel
// [1, 1, C·M, F] through the GEMM layer, then bias and activation.

/// Keras `DepthwiseConv2D` / `DepthwiseConv1D`, and with `pointwise` filters `SeparableConv2D` /
/// `SeparableConv1D`.
package final class DepthwiseConv: Layer, GradientOverwriting, DeferringWeightGradients {
    public let name: String
    package let weightsName: String
    package let inputs: [Layer]
    public let output: Node
    package let geometry: WindowGeometry
    package let channels: Int, multiplier: Int
    /// The separable form's filters (nil: depthwise alone).
    package let pointwise: Int?
    package let activation: Activation, useBias: Bool
    package let primitives: ConvolutionPrimitives
    /// True for the 1-D forms, whose kernels drop the height axis.
    let oneD: Bool
    let initializers: (depthwise: Initializer?, pointwise: Initializer?, bias: Initializer)
    private var depthwiseKernel: TensorView!, pointwiseKernel: TensorView?, bias: TensorView?
    private var store: ParameterStore!
    /// The depthwise result [rows, C·M] (the separable form's GEMM input; the depthwise form's z).
    private var middle: UnsafeMutablePointer<Float>!, dMiddle: UnsafeMutablePointer<Float>!
    private var z: UnsafeMutablePointer<Float>!, dz: UnsafeMutablePointer<Float>!

    package var forwardFlopsPerSample: Double {
        2 * Double(geometry.windows * channels * multiplier) * Double(geometry.taps + (pointwise ?? 0))
    }

    package init(
        name: String, input: Layer, geometry: WindowGeometry, multiplier: Int, pointwise: Int? = nil,
        activation: Activation = .linear, useBias: Bool = true, weights: String? = nil, oneD: Bool = false,
        depthwiseInitializer: Initializer? = nil, pointwiseInitializer: Initializer? = nil,
        biasInitializer: Initializer = .zeros, kernels: ConvolutionKernels = .preferred
    ) {
        channels = input.output.features
        precondition(input.output.width == geometry.imageCells * channels && geometry.windows > 0)
        self.name = name
        weightsName = weights ?? name
        inputs = [input]
        self.geometry = geometry
        self.multiplier = multiplier
        self.pointwise = pointwise
        self.activation = activation
        self.useBias = useBias
        self.oneD = oneD
        initializers = (depthwiseInitializer, pointwiseInitializer, biasInitializer)
        // Keras's [kh, kw, C, M] is oneDNN's grouped kernel with C groups of one channel and M filters.
        primitives = ConvolutionPrimitives(
            kernels, layer: name, geometry: geometry, channels: channels, filters: channels * multiplier,
            groups: channels)
        let spatial = oneD ? [geometry.gridWidth] : [geometry.gridHeight, geometry.gridWidth]
        output = Node(shape: spatial + [pointwise ?? channels * multiplier])
    }

    private var depth: Int { channels * multiplier }
    private var filters: Int { pointwise ?? depth }

    package var parameterSpecs: [ParameterSpec] {
        let taps = geometry.taps
        let spatial = oneD ? [geometry.kernelWidth] : [geometry.kernelHeight, geometry.kernelWidth]
        var specs = [
            ParameterSpec(
                layer: weightsName, weight: pointwise == nil ? "kernel" : "depthwise_kernel",
                shape: spatial + [channels, multiplier],
                initializer: initializers.depthwise ?? .glorotUniform(fanIn: taps * channels, fanOut: taps * multiplier)
            )
        ]
        if let pointwise {
            specs.append(
                ParameterSpec(
                    layer: weightsName, weight: "pointwise_kernel", shape: (oneD ? [1] : [1, 1]) + [depth, pointwise],
                    initializer: initializers.pointwise ?? .glorotUniform(fanIn: depth, fanOut: pointwise)))
        }
        if useBias {
            specs.append(
                ParameterSpec(layer: weightsName, weight: "bias", shape: [filters], initializer: initializers.bias))
        }
        return specs
    }

    package func bind(parameters: ParameterStore) {
        store = parameters
        depthwiseKernel = parameters.view("\(weightsName)/\(pointwise == nil ? "kernel" : "depthwise_kernel")")
        pointwiseKernel = pointwise == nil ? nil : parameters.view("\(weightsName)/pointwise_kernel")
        bias = useBias ? parameters.view("\(weightsName)/bias") : nil
    }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        let rows = batch * geometry.windows
        return (
            (pointwise == nil ? 0 : 2 * rows * depth)
                + WorkspaceCursor.outputValues(rows * filters, activation: activation),
            rows * filters
        )
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        let rows = batch * geometry.windows
        _ = primitives(batch: batch)
        (z, dz) = workspace.takeOutput(output, rows * filters, activation: activation)
        if pointwise != nil {
            middle = workspace.take(rows * depth)
            dMiddle = workspace.take(rows * depth)
        } else {
            (middle, dMiddle) = (z, dz)
        }
    }

    public func forward(batch: Int, training: Bool) {
        let x = inputs[0].output.values!
        let k = store.value(depthwiseKernel)
        let rows = batch * geometry.windows
        if let conv = primitives(batch: batch) {
            conv.forward(x, kernel: k, into: middle)
        } else {
            forwardPlain(x, k, batch: batch)
        }
        if let pointwiseKernel {
            gemm(
                .none, .none, m: rows, n: filters, k: depth, a: middle, lda: depth, b: store.value(pointwiseKernel),
                ldb: filters, beta: 0, c: z, ldc: filters)
        }
        if let bias { addBias(store.value(bias), to: z, rows: rows, columns: filters, stride: filters) }
        activation.apply(z, output.values, rows: rows, columns: filters)
    }

    private func forwardPlain(_ x: UnsafePointer<Float>, _ k: UnsafePointer<Float>, batch: Int) {
        let (C, M, D) = (channels, multiplier, depth)
        middle.update(repeating: 0, count: batch * geometry.windows * D)
        for b in 0..<batch {
            let image = x + b * geometry.imageCells * C
            for i in 0..<geometry.gridHeight {
                for j in 0..<geometry.gridWidth {
                    let out = middle + (b * geometry.windows + i * geometry.gridWidth + j) * D
                    geometry.forEachCell(i, j) { cell, tap in
                        let xs = image + cell * C
                        let ks = k + tap * D
                        if M == 1 {
                            for c in 0..<C { out[c] += xs[c] * ks[c] }
                        } else {
                            for c in 0..<C { for m in 0..<M { out[c * M + m] += xs[c] * ks[c * M + m] } }
                        }
                    }
                }
            }
        }
    }

    package func backward(batch: Int) {
        if backwardLeavingWeights(batch: batch) { backwardWeights(batch: batch) }
    }

    /// All but the depthwise kernel's gradient (x and dMiddle, unchanged until then), which waits when
    /// oneDNN runs the depthwise products.
    package func backwardLeavingWeights(batch: Int) -> Bool {
        let x = inputs[0].output.values!
        let (C, M, D) = (channels, multiplier, depth)
        let rows = batch * geometry.windows
        activation.backward(dy: output.gradients, z: z, y: output.values, dz: dz, rows: rows, columns: filters)
        if let bias { addColumnSums(dz, rows: rows, columns: filters, stride: filters, into: store.gradient(bias)) }
        if let pointwiseKernel {
            gemm(
                .transposed, .none, m: D, n: filters, k: rows, a: middle, lda: D, b: dz, ldb: filters, beta: 1,
                c: store.gradient(pointwiseKernel), ldc: filters)
            gemm(
                .none, .transposed, m: rows, n: D, k: filters, a: dz, lda: filters, b: store.value(pointwiseKernel),
                ldb: filters, beta: 0, c: dMiddle, ldc: D)
        }
        let k = store.value(depthwiseKernel)
        let dk = store.gradient(depthwiseKernel)
        let dx: UnsafeMutablePointer<Float>? = inputs[0].wantsGradient ? inputs[0].output.gradients! : nil
        let first = dx != nil && inputs[0].output.claimGradient()
        if let conv = primitives(batch: batch) {
            if let dx { conv.backwardData(dMiddle, kernel: k, addingTo: dx, overwriting: first) }
            return true
        }
        if first, let dx { dx.update(repeating: 0, count: batch * inputs[0].output.width) }
        for b in 0..<batch {
            let image = x + b * geometry.imageCells * C
            for i in 0..<geometry.gridHeight {
                for j in 0..<geometry.gridWidth {
                    let g = dMiddle + (b * geometry.windows + i * geometry.gridWidth + j) * D
                    geometry.forEachCell(i, j) { cell, tap in
                        let xs = image + cell * C
                        let dks = dk + tap * D
                        for c in 0..<C { for m in 0..<M { dks[c * M + m] += xs[c] * g[c * M + m] } }
                        guard let dx else { return }
                        let ks = k + tap * D
                        let dxs = dx + (b * geometry.imageCells + cell) * C
                        for c in 0..<C {
                            var s: Float = 0
                            for m in 0..<M { s += ks[c * M + m] * g[c * M + m] }
                            dxs[c] += s
                        }
                    }
                }
            }
        }
        return false
    }

    package func backwardWeights(batch: Int) {
        primitives(batch: batch)!.backwardWeights(
            inputs[0].output.values!, dMiddle, addingTo: store.gradient(depthwiseKernel))
    }
}

// MARK: - Keras DepthwiseConv1D/2D and SeparableConv1D/2D: the layer table's entries (KerasLayerKind.swift) and
// their builders, which read a call's config and refuse every argument Tandem does not implement by name.

extension KerasLayerKind {
    static let depthwiseConvolutions = KerasLayerKind(
        classNames: ["DepthwiseConv2D", "DepthwiseConv1D"],
        build: { a, inputs, _ in try LayerRegistry.depthwise(a, inputs) },
        variables: { _, layer, config in [KerasLayerKind.top(layer, KerasLayerKind.kernelAndBias(config))] },
        regularizerKeys: [(key: "depthwise_regularizer", weight: "kernel"), ("bias_regularizer", "bias")])

    static let separableConvolutions = KerasLayerKind(
        classNames: ["SeparableConv2D", "SeparableConv1D"],
        build: { a, inputs, _ in try LayerRegistry.depthwise(a, inputs) },
        variables: { _, layer, config in
            [
                KerasLayerKind.top(
                    layer,
                    config["use_bias"]?.bool == false
                        ? ["depthwise_kernel", "pointwise_kernel"] : ["depthwise_kernel", "pointwise_kernel", "bias"])
            ]
        },
        regularizerKeys: [
            (key: "depthwise_regularizer", weight: "depthwise_kernel"), ("pointwise_regularizer", "pointwise_kernel"),
            ("bias_regularizer", "bias"),
        ])
}

extension LayerRegistry {
    static func depthwise(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let source = try single(a, inputs)
        let rank = a.node.className.hasSuffix("1D") ? 1 : 2
        let image = try a.spatial(source, rank: rank)
        try a.channelsLast()
        let separable = a.node.className.hasPrefix("Separable")
        let channels = source.output.features
        let multiplier = a.config["depth_multiplier"]?.isNull == false ? try a.int("depth_multiplier") : 1
        let kernel = try a.sizes("kernel_size", rank: rank)
        let stride = try a.sizes("strides", rank: rank, default: 1)
        let dilation = try a.sizes("dilation_rate", rank: rank, default: 1)
        guard (stride.0 == 1 && stride.1 == 1) || (dilation.0 == 1 && dilation.1 == 1) else {
            throw a.fail("strides > 1 with dilation_rate > 1 is not allowed (as in Keras)")
        }
        let geometry = WindowGeometry.forward(
            image: image, kernel: kernel, stride: stride, dilation: dilation, same: try a.samePadding())
        guard geometry.windows > 0 else {
            throw a.fail("its kernel \(kernel) with dilation \(dilation) is larger than the \(image) input it reads")
        }
        let taps = kernel.0 * kernel.1
        let depth = channels * multiplier
        let filters = separable ? try a.int("filters") : depth
        let depthwiseKey = "depthwise_initializer"
        return DepthwiseConv(
            name: a.node.id, input: source, geometry: geometry, multiplier: multiplier,
            pointwise: separable ? filters : nil, activation: try a.activation(),
            useBias: try a.bool("use_bias", default: true), weights: a.node.layer, oneD: rank == 1,
            depthwiseInitializer: try a.initializer(depthwiseKey, fanIn: taps * channels, fanOut: taps * multiplier),
            pointwiseInitializer: separable
                ? try a.initializer("pointwise_initializer", fanIn: depth, fanOut: filters) : nil,
            biasInitializer: try a.initializer("bias_initializer", fanIn: depth, fanOut: filters) ?? .zeros)
    }
}
