// Keras `EinsumDense(equation, output_shape, bias_axes, activation)` (keras/src/layers/core/einsum_dense.py)
// for every equation that is a matrix product after fixed transposes: input × kernel → output where each
// letter is the batch axis (first in input and output), a free input axis (input and output), a contracted
// axis (input and kernel) or a free kernel axis (kernel and output); `...` leading both input and output
// stands for leading input axes. Per sample, the input is read as X [free, contracted] (free axes in the
// output's order, contracted in the kernel's), the kernel as W [contracted, kernel-free], Y = X·W over all
// samples' rows at once, then written to the output's order; each permutation is a gather table, skipped
// when it is the identity (MultiHeadAttention's projections are). The bias broadcasts over the output's
// axes from its first bias axis on, as Keras shapes it (1 on the others); then the activation.
// Other equations (an axis in all three, an input axis summed without the kernel, `...` elsewhere) are
// refused naming the equation.

package final class EinsumDense: Layer {
    /// The product's FLOPs of one sample's forward.
    public var forwardFlopsPerSample: Double { 2 * Double(rows * inner * columns) }
    public let name: String
    package let weightsName: String
    package let inputs: [Layer]
    public let output: Node
    package let equation: String
    package let activation: Activation
    let kernelShape: [Int], biasShape: [Int]?
    let kernelInitializer: Initializer?, biasInitializer: Initializer
    /// Per sample: rows of X (the free input axes' product), the contracted size, the kernel-free size.
    let rows: Int, inner: Int, columns: Int
    /// Gather tables (nil: identity): X[r, c] = x[xFrom[r·inner + c]], W[c, n] = kernel[wFrom[c·columns + n]],
    /// output[yTo[r·columns + n]] = Y[r, n]; the bias entry of each output element.
    private let xFrom: [Int32]?, wFrom: [Int32]?, yTo: [Int32]?, biasOf: [Int32]?
    private var store: ParameterStore!
    private var kernel: TensorView!, bias: TensorView?
    /// X gathered (dX gathered in backward), W gathered and its gradient, Y, z (before the activation), dz.
    private var gx, gw, y, z, dz, dgw: UnsafeMutablePointer<Float>!
    private let inputWidth: Int

    /// `outputShape`: the output's per-sample shape; the equation is canonical (no `...`), batch letter first.
    package init(
        name: String, input: Layer, equation: String, inputLetters: [Character], kernelLetters: [Character],
        outputLetters: [Character], outputShape: [Int], biasAxes: String?, activation: Activation = .linear,
        weights: String? = nil, kernelInitializer: Initializer? = nil, biasInitializer: Initializer = .zeros
    ) {
        self.name = name
        weightsName = weights ?? name
        inputs = [input]
        self.equation = equation
        self.activation = activation
        self.kernelInitializer = kernelInitializer
        self.biasInitializer = biasInitializer
        output = Node(shape: outputShape)
        inputWidth = input.output.width
        var size: [Character: Int] = [:]
        for (letter, n) in zip(inputLetters.dropFirst(), input.output.shape) { size[letter] = n }
        for (letter, n) in zip(outputLetters.dropFirst(), outputShape) { size[letter] = n }
        kernelShape = kernelLetters.map { size[$0]! }
        let free = outputLetters.dropFirst().filter { inputLetters.contains($0) }
        let contracted = kernelLetters.filter { inputLetters.contains($0) }
        let kernelFree = outputLetters.filter { kernelLetters.contains($0) }
        rows = free.reduce(1) { $0 * size[$1]! }
        inner = contracted.reduce(1) { $0 * size[$1]! }
        columns = kernelFree.reduce(1) { $0 * size[$1]! }
        /// Row-major strides of `letters` with `sizes`.
        func strides(_ letters: [Character]) -> [Character: Int] {
            var s: [Character: Int] = [:]
            var stride = 1
            for l in letters.reversed() {
                s[l] = stride
                stride *= size[l]!
            }
            return s
        }
        /// Offsets of every element of the [outer, inner] matrix (letters in order) in a tensor of `layout`.
        func table(_ outer: [Character], _ innerLetters: [Character], in layout: [Character]) -> [Int32]? {
            let s = strides(layout)
            var offsets: [Int32] = []
            func walk(_ letters: ArraySlice<Character>, _ offset: Int) {
                guard let l = letters.first else { return offsets.append(Int32(offset)) }
                for i in 0..<size[l]! { walk(letters.dropFirst(), offset + i * s[l]!) }
            }
            walk(ArraySlice(outer + innerLetters), 0)
            return offsets.indices.allSatisfy({ offsets[$0] == Int32($0) }) ? nil : offsets
        }
        xFrom = table(Array(free), contracted, in: Array(inputLetters.dropFirst()))
        wFrom = table(contracted, kernelFree, in: kernelLetters)
        yTo = table(Array(free), kernelFree, in: Array(outputLetters.dropFirst()))
        if let biasAxes {
            // Keras: the output's letters from the first bias letter on, 1 where not a bias letter.
            let o = Array(outputLetters.dropFirst())
            let first = o.firstIndex { biasAxes.contains($0) }!
            let suffix = Array(o[first...])
            biasShape = suffix.map { biasAxes.contains($0) ? size[$0]! : 1 }
            var stride = 1
            var biasStride: [Character: Int] = [:]
            for l in suffix.reversed() where biasAxes.contains(l) {
                biasStride[l] = stride
                stride *= size[l]!
            }
            let out = strides(o)
            biasOf = (0..<outputShape.reduce(1, *)).map { e in
                var entry = 0
                for l in suffix { if let s = biasStride[l] { entry += (e / out[l]!) % size[l]! * s } }
                return Int32(entry)
            }
        } else {
            biasShape = nil
            biasOf = nil
        }
    }

    public var parameterSpecs: [ParameterSpec] {
        let k = ParameterSpec(
            layer: weightsName, weight: "kernel", shape: kernelShape,
            initializer: kernelInitializer ?? .glorotUniform(fanIn: inner, fanOut: columns))
        return [k]
            + (biasShape.map {
                [ParameterSpec(layer: weightsName, weight: "bias", shape: $0, initializer: biasInitializer)]
            } ?? [])
    }

    public func bind(parameters: ParameterStore) {
        store = parameters
        kernel = parameters.view("\(weightsName)/kernel")
        bias = biasShape == nil ? nil : parameters.view("\(weightsName)/bias")
    }

    public func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        let n = batch * output.width
        return (
            batch * rows * inner + 2 * inner * columns + n + WorkspaceCursor.outputValues(n, activation: activation), n
        )
    }

    public func bind(workspace: inout WorkspaceCursor, batch: Int) {
        gx = workspace.take(batch * rows * inner)
        gw = workspace.take(inner * columns)
        dgw = workspace.take(inner * columns)
        y = workspace.take(batch * output.width)  // Y in the product's order (dY in backward)
        (z, dz) = workspace.takeOutput(output, batch * output.width, activation: activation)
    }

    private var lastColumns: Int { output.shape.last ?? 1 }

    public func forward(batch: Int, training: Bool) {
        let x = inputs[0].output.values!
        let k = store.value(kernel)
        let xs: UnsafePointer<Float> =
            xFrom.map { from in
                from.withUnsafeBufferPointer { f in
                    for b in 0..<batch {
                        for i in 0..<(rows * inner) { gx[b * rows * inner + i] = x[b * inputWidth + Int(f[i])] }
                    }
                }
                return UnsafePointer(gx)
            } ?? UnsafePointer(x)
        let ws: UnsafePointer<Float> =
            wFrom.map { from in
                for i in 0..<(inner * columns) { gw[i] = k[Int(from[i])] }
                return UnsafePointer(gw)
            } ?? UnsafePointer(k)
        let product = yTo == nil ? z! : y!
        gemm(
            .none, .none, m: batch * rows, n: columns, k: inner, a: xs, lda: inner, b: ws, ldb: columns, beta: 0,
            c: product, ldc: columns)
        let width = output.width
        if let to = yTo {
            for b in 0..<batch { for i in 0..<width { z[b * width + Int(to[i])] = y[b * width + i] } }
        }
        if let biasOf, let bias {
            let v = store.value(bias)
            for b in 0..<batch { for e in 0..<width { z[b * width + e] += v[Int(biasOf[e])] } }
        }
        activation.apply(z, output.values, rows: batch * width / lastColumns, columns: lastColumns)
    }

    public func backward(batch: Int) {
        let width = output.width
        activation.backward(
            dy: output.gradients, z: z, y: output.values, dz: dz, rows: batch * width / lastColumns,
            columns: lastColumns)
        if let biasOf, let bias {
            let g = store.gradient(bias)
            for b in 0..<batch { for e in 0..<width { g[Int(biasOf[e])] += dz[b * width + e] } }
        }
        // dY in the product's order.
        let dY: UnsafePointer<Float> =
            yTo.map { to in
                for b in 0..<batch { for i in 0..<width { y[b * width + i] = dz[b * width + Int(to[i])] } }
                return UnsafePointer(y)
            } ?? UnsafePointer(dz)
        let x = inputs[0].output.values!
        let xs = UnsafePointer(xFrom == nil ? x : gx!)
        // dW = Xᵀ·dY, scattered into the kernel's order.
        let kernelGradient = store.gradient(kernel)
        if let from = wFrom {
            gemm(
                .transposed, .none, m: inner, n: columns, k: batch * rows, a: xs, lda: inner, b: dY, ldb: columns,
                beta: 0, c: dgw, ldc: columns)
            for i in 0..<(inner * columns) { kernelGradient[Int(from[i])] += dgw[i] }
        } else {
            gemm(
                .transposed, .none, m: inner, n: columns, k: batch * rows, a: xs, lda: inner, b: dY, ldb: columns,
                beta: 1, c: kernelGradient, ldc: columns)
        }
        guard inputs[0].wantsGradient, let dx = inputs[0].output.gradients else { return }
        let ws = UnsafePointer(wFrom == nil ? store.value(kernel) : gw!)
        if let from = xFrom {  // dX = dY·Wᵀ in the gathered order, then scattered
            gemm(
                .none, .transposed, m: batch * rows, n: inner, k: columns, a: dY, lda: columns, b: ws, ldb: columns,
                beta: 0, c: gx, ldc: inner)
            for b in 0..<batch {
                for i in 0..<(rows * inner) { dx[b * inputWidth + Int(from[i])] += gx[b * rows * inner + i] }
            }
        } else {
            gemm(
                .none, .transposed, m: batch * rows, n: inner, k: columns, a: dY, lda: columns, b: ws, ldb: columns,
                beta: 1, c: dx, ldc: inner)
        }
    }
}

// MARK: - Keras EinsumDense: the layer table's entry (KerasLayerKind.swift) and its builder, which reads the
// equation and refuses, naming it, every equation that is not a matrix product after fixed transposes.

extension KerasLayerKind {
    static let einsumDense = KerasLayerKind(
        classNames: ["EinsumDense"], build: { a, inputs, _ in try LayerRegistry.einsumDense(a, inputs) },
        variables: { _, layer, config in
            let bias = config["bias_axes"].map { !$0.isNull && !($0.string ?? "").isEmpty } ?? false
            return [top(layer, bias ? ["kernel", "bias"] : ["kernel"])]
        },
        regularizerKeys: KerasLayerKind.denseKeys)
}

extension LayerRegistry {
    static func einsumDense(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let source = try single(a, inputs)
        let equation = try a.string("equation", default: "")
        try a.requireNull("lora_rank", "quantization_config")
        func refuse(_ why: String) -> TandemError {
            a.fail(
                "the equation '\(equation)' is not supported (\(why); supported: a matrix product after fixed transposes — every letter the batch, an input axis kept, a contracted axis or a kernel axis kept — with '...' only leading the input and the output)"
            )
        }
        let parts = equation.replacingOccurrences(of: " ", with: "").split(
            separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[1].hasPrefix(">") else { throw refuse("not 'input,kernel->output'") }
        let operands = parts[0].split(separator: ",", omittingEmptySubsequences: false)
        guard operands.count == 2 else { throw refuse("not two operands") }
        var (x, w, o) = (String(operands[0]), String(operands[1]), String(parts[1].dropFirst()))
        let rank = source.output.shape.count + 1  // with the batch axis
        var elided = 0
        if x.hasPrefix("...") || o.hasPrefix("...") {
            guard x.hasPrefix("..."), o.hasPrefix("..."), !w.contains(".") else {
                throw refuse("'...' not leading both")
            }
            x.removeFirst(3)
            o.removeFirst(3)
            elided = rank - x.count
            guard elided >= 1 else { throw refuse("'...' stands for no axis") }
            let fresh = String("ABCDEFGHIJKLMNOPQRSTUVWXYZ".prefix(elided))
            x = fresh + x
            o = fresh + o
        }
        let (xs, ws, os) = (Array(x), Array(w), Array(o))
        guard xs.allSatisfy(\.isLetter), ws.allSatisfy({ $0.isLetter && $0.isLowercase }), os.allSatisfy(\.isLetter),
            Set(xs).count == xs.count, Set(ws).count == ws.count, Set(os).count == os.count
        else { throw refuse("letters must be distinct within each operand") }
        guard xs.count == rank else {
            throw refuse("the input has \(rank) axes with the batch, the equation \(xs.count)")
        }
        guard let batch = xs.first, os.first == batch, !ws.contains(batch) else {
            throw refuse("the batch axis must lead the input and the output")
        }
        for l in xs where !os.contains(l) && !ws.contains(l) { throw refuse("'\(l)' is summed without the kernel") }
        for l in xs where os.contains(l) && ws.contains(l) { throw refuse("'\(l)' is in the input, kernel and output") }
        for l in ws where !os.contains(l) && !xs.contains(l) { throw refuse("kernel axis '\(l)' is in nothing else") }
        for l in os where !xs.contains(l) && !ws.contains(l) { throw refuse("output axis '\(l)' comes from nothing") }
        // The output's sizes: `...`'s from the input, the rest from output_shape (an int or a list, None
        // where an input axis gives it).
        // Keras's output_shape leaves out the batch axis and the axes '...' stands for.
        let given = a.config["output_shape"]?.array ?? a.config["output_shape"].map { [$0] } ?? []
        let first = max(elided, 1)
        guard given.count == os.count - first else {
            throw a.fail("'output_shape' \(a.config["output_shape"] ?? .null) does not fit the equation '\(equation)'")
        }
        var shape: [Int] = []
        for (i, l) in os.enumerated().dropFirst() {
            if let at = xs.firstIndex(of: l) {
                let n = source.output.shape[at - 1]
                if i >= first, let stated = given[i - first].integer, stated != n {
                    throw a.fail("'output_shape' gives \(stated) for axis '\(l)', which the input has as \(n)")
                }
                shape.append(n)
            } else {
                guard i >= first, let n = given[i - first].integer, n > 0 else {
                    throw a.fail("'output_shape' must give the size of kernel axis '\(l)'")
                }
                shape.append(n)
            }
        }
        var biasAxes: String?
        if let b = a.config["bias_axes"], !b.isNull, let s = b.string, !s.isEmpty {
            guard s.allSatisfy({ os.contains($0) }) else {
                throw a.fail("'bias_axes' '\(s)' is not in the output '\(o)'")
            }
            biasAxes = s
        }
        let contracted = ws.filter { xs.contains($0) }
        var size: [Character: Int] = [:]
        for (l, n) in zip(xs.dropFirst(), source.output.shape) { size[l] = n }
        for (l, n) in zip(os.dropFirst(), shape) { size[l] = n }
        let fanIn = contracted.reduce(1) { $0 * size[$1]! }
        let fanOut = ws.filter { os.contains($0) }.reduce(1) { $0 * size[$1]! }
        return EinsumDense(
            name: a.node.id, input: source, equation: equation, inputLetters: xs, kernelLetters: ws,
            outputLetters: os, outputShape: shape, biasAxes: biasAxes, activation: try a.activation(),
            weights: a.node.layer,
            kernelInitializer: try a.initializer("kernel_initializer", fanIn: fanIn, fanOut: fanOut),
            biasInitializer: try a.initializer("bias_initializer", fanIn: fanIn, fanOut: fanOut) ?? .zeros)
    }
}
