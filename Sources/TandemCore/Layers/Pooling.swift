// 1-D pooling over the time axis of [B, T, C] (channels last), as Keras's JAX
// backend computes it. Legend: T input steps, S output steps, C channels,
// P pool size, s stride. Padding "valid": S = ⌊(T − P)/s⌋ + 1; "same":
// S = ⌈T/s⌉ with max((S−1)·s + P − T, 0) padding, the smaller half first
// (XLA's SAME); padded cells never win a max and are not counted in an average.
// Max routes each output's gradient to its (first) arg-max.

/// Keras `MaxPooling1D` / `AveragePooling1D`.
package final class Pooling1D: Layer {
    public enum Kind: Sendable { case max, average }
    public let name: String
    package let inputs: [Layer]
    public let output: Node
    public let kind: Kind
    package let pool: Int, stride: Int, steps: Int, channels: Int, outSteps: Int
    /// Padding before the first step ("same" only).
    let padFront: Int
    /// Max: the input step each output cell took its value from, [B, S, C].
    private var argmax: UnsafeMutablePointer<Int32>?

    package static func outputSteps(steps: Int, pool: Int, stride: Int, same: Bool) -> Int {
        same ? (steps + stride - 1) / stride : (steps - pool) / stride + 1
    }

    package init(name: String, kind: Kind, input: Layer, pool: Int, stride: Int, same: Bool) {
        precondition(input.output.shape.count == 2)
        self.name = name
        self.kind = kind
        inputs = [input]
        self.pool = pool
        self.stride = stride
        steps = input.output.shape[0]
        channels = input.output.shape[1]
        outSteps = Pooling1D.outputSteps(steps: steps, pool: pool, stride: stride, same: same)
        precondition(outSteps > 0)
        padFront = same ? max((outSteps - 1) * stride + pool - steps, 0) / 2 : 0
        output = Node(shape: [outSteps, channels])
    }

    deinit { argmax?.deallocate() }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (batch * output.width, batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
        if kind == .max {
            argmax?.deallocate()
            argmax = .allocate(capacity: max(batch * output.width, 1))
        }
    }

    /// The input steps output step `o` covers.
    @inline(__always) private func window(_ o: Int) -> Range<Int> {
        let first = o * stride - padFront
        return max(first, 0)..<min(first + pool, steps)
    }

    public func forward(batch: Int, training: Bool) {
        let x = inputs[0].output.values!
        let y = output.values!
        let C = channels
        for b in 0..<batch {
            for o in 0..<outSteps {
                let w = window(o)
                let row = y + (b * outSteps + o) * C
                switch kind {
                case .max:
                    let arg = argmax! + (b * outSteps + o) * C
                    for c in 0..<C {
                        var best = -Float.infinity
                        var at = w.lowerBound
                        for t in w where x[(b * steps + t) * C + c] > best {
                            best = x[(b * steps + t) * C + c]
                            at = t
                        }
                        row[c] = best
                        arg[c] = Int32(at)
                    }
                case .average:
                    row.update(repeating: 0, count: C)
                    for t in w { for c in 0..<C { row[c] += x[(b * steps + t) * C + c] } }
                    let k = Float(w.count)
                    for c in 0..<C { row[c] /= k }
                }
            }
        }
    }

    package func backward(batch: Int) {
        let dx = inputs[0].output.gradients!
        let dy = output.gradients!
        let C = channels
        for b in 0..<batch {
            for o in 0..<outSteps {
                let g = dy + (b * outSteps + o) * C
                switch kind {
                case .max:
                    let arg = argmax! + (b * outSteps + o) * C
                    for c in 0..<C { dx[(b * steps + Int(arg[c])) * C + c] += g[c] }
                case .average:
                    let w = window(o)
                    let k = Float(w.count)
                    for t in w { for c in 0..<C { dx[(b * steps + t) * C + c] += g[c] / k } }
                }
            }
        }
    }
}

/// Keras `GlobalAveragePooling1D` / `GlobalMaxPooling1D`: [B, T, C] → [B, C], or [B, 1, C] with
/// `keepdims` (the same values in the same order); the 2-D forms: [B, H, W, C] → [B, C] or
/// [B, 1, 1, C], the H·W cells taken as the steps.
/// With a mask (average only, as in Keras) the mean is over the unmasked steps:
/// Σ mask·x / Σ mask (0/0 when every step is masked, as Keras computes).
package final class GlobalPooling: Layer {
    public let name: String
    package let inputs: [Layer]
    public let output: Node
    public let kind: Pooling1D.Kind
    public let steps: Int, channels: Int
    let mask: Layer?
    private var argmax: UnsafeMutablePointer<Int32>?

    package init(name: String, kind: Pooling1D.Kind, input: Layer, mask: Layer? = nil, keepDims: Bool = false) {
        let rank = input.output.shape.count
        precondition(
            rank >= 2
                && (mask == nil || (rank == 2 && kind == .average && mask!.output.shape == [input.output.shape[0]])))
        self.name = name
        self.kind = kind
        self.mask = mask
        inputs = mask.map { [input, $0] } ?? [input]
        channels = input.output.features
        steps = input.output.width / channels
        output = Node(shape: keepDims ? Array(repeating: 1, count: rank - 1) + [channels] : [channels])
    }

    deinit { argmax?.deallocate() }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) { (batch * channels, batch * channels) }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * channels)
        output.gradients = workspace.takeGradient(batch * channels)
        if kind == .max {
            argmax?.deallocate()
            argmax = .allocate(capacity: max(batch * channels, 1))
        }
    }

    @inline(__always) private func weight(_ b: Int, _ t: Int) -> Float {
        mask.map { $0.output.values[b * steps + t] } ?? 1
    }
    /// The steps an average runs over.
    private func count(_ b: Int) -> Float {
        guard let mask else { return Float(steps) }
        var n: Float = 0
        for t in 0..<steps { n += mask.output.values[b * steps + t] }
        return n
    }

    public func forward(batch: Int, training: Bool) {
        let x = inputs[0].output.values!
        let C = channels
        let T = steps
        for b in 0..<batch {
            let y = output.values + b * C
            switch kind {
            case .max:
                let arg = argmax! + b * C
                for c in 0..<C {
                    var best = -Float.infinity
                    var at = 0
                    for t in 0..<T where x[(b * T + t) * C + c] > best {
                        best = x[(b * T + t) * C + c]
                        at = t
                    }
                    y[c] = best
                    arg[c] = Int32(at)
                }
            case .average:
                y.update(repeating: 0, count: C)
                for t in 0..<T where weight(b, t) != 0 { for c in 0..<C { y[c] += x[(b * T + t) * C + c] } }
                let n = count(b)
                for c in 0..<C { y[c] /= n }
            }
        }
    }

    package func backward(batch: Int) {
        let dx = inputs[0].output.gradients!
        let C = channels
        let T = steps
        for b in 0..<batch {
            let g = output.gradients + b * C
            switch kind {
            case .max:
                let arg = argmax! + b * C
                for c in 0..<C { dx[(b * T + Int(arg[c])) * C + c] += g[c] }
            case .average:
                let n = count(b)
                for t in 0..<T where weight(b, t) != 0 { for c in 0..<C { dx[(b * T + t) * C + c] += g[c] / n } }
            }
        }
    }
}

// MARK: - Keras MaxPooling1D, AveragePooling1D and the global poolings: the layer table's entries
// (KerasLayerKind.swift) and their builders, which read a call's config and refuse every argument Tandem does
// not implement by name.

extension KerasLayerKind {
    static let pooling1D = KerasLayerKind(
        classNames: ["MaxPooling1D", "AveragePooling1D"],
        build: { a, inputs, _ in try LayerRegistry.pooling(a, inputs) })

    static let globalAveragePooling1D = KerasLayerKind(
        classNames: ["GlobalAveragePooling1D"], readsMask: true,
        build: { a, inputs, mask in try LayerRegistry.globalPooling(a, inputs, mask: mask) })

    static let globalMaxPooling1D = KerasLayerKind(
        classNames: ["GlobalMaxPooling1D"],
        build: { a, inputs, mask in try LayerRegistry.globalPooling(a, inputs, mask: mask) })

    static let globalPooling2D = KerasLayerKind(
        classNames: ["GlobalAveragePooling2D", "GlobalMaxPooling2D"],
        build: { a, inputs, _ in try LayerRegistry.globalPooling(a, inputs, mask: nil) })
}

extension LayerRegistry {
    static func pooling(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let source = try sequence(a, inputs)
        try a.channelsLast()
        let pool = try a.size("pool_size", default: 2)
        let stride = try a.size("strides", default: pool)
        let padding = try a.string("padding", default: "valid")
        guard padding == "valid" || padding == "same" else {
            throw a.fail("padding '\(padding)' is not supported (valid, same)")
        }
        let steps = source.output.shape[0]
        guard padding == "same" || pool <= steps else {
            throw a.fail("pool_size \(pool) is longer than the \(steps) steps it pools")
        }
        return Pooling1D(
            name: a.node.id, kind: a.node.className.hasPrefix("Max") ? .max : .average, input: source,
            pool: pool, stride: stride, same: padding == "same")
    }

    static func globalPooling(_ a: LayerArguments, _ inputs: [Layer], mask: Layer?) throws -> Layer {
        let source = a.node.className.hasSuffix("2D") ? try single(a, inputs) : try sequence(a, inputs)
        if a.node.className.hasSuffix("2D") { _ = try a.spatial(source, rank: 2) }
        try a.channelsLast()
        let keepDims = try a.bool("keepdims", default: false)
        return GlobalPooling(
            name: a.node.id, kind: a.node.className.hasPrefix("GlobalMax") ? .max : .average, input: source, mask: mask,
            keepDims: keepDims)
    }
}
