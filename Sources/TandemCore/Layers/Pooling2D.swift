// 2-D pooling over the height and width of [B, H, W, C] (channels last), as Keras's JAX backend
// computes it (lax.reduce_window): windows as a convolution's (ConvWindows.swift; "same" pads as
// XLA does, the smaller half first). Padded cells never win a max and are not counted in a
// "same" average; a "valid" average divides by the pool's size. Max routes each output's gradient
// to its first arg-max in the window's row-major order (XLA's select-and-scatter with ≥).

/// Keras `MaxPooling2D` / `AveragePooling2D(pool_size, strides, padding)`.
package final class Pooling2D: Layer {
    public let name: String
    package let inputs: [Layer]
    public let output: Node
    public let kind: Pooling1D.Kind
    package let geometry: WindowGeometry
    package let channels: Int
    /// Max: the input cell each output value came from, [B, Ho, Wo, C].
    private var argmax: UnsafeMutablePointer<Int32>?
    /// Average: 1 / (the cells each window covers), per window.
    private let divisors: [Float]

    package init(name: String, kind: Pooling1D.Kind, input: Layer, geometry: WindowGeometry) {
        channels = input.output.features
        precondition(input.output.width == geometry.imageCells * channels && geometry.windows > 0)
        self.name = name
        self.kind = kind
        inputs = [input]
        self.geometry = geometry
        output = Node(shape: [geometry.gridHeight, geometry.gridWidth, channels])
        var divisors = [Float](repeating: 0, count: geometry.windows)
        for i in 0..<geometry.gridHeight {
            for j in 0..<geometry.gridWidth {
                geometry.forEachCell(i, j) { _, _ in divisors[i * geometry.gridWidth + j] += 1 }
            }
        }
        self.divisors = divisors
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

    public func forward(batch: Int, training: Bool) {
        let x = inputs[0].output.values!
        let C = channels
        for b in 0..<batch {
            let image = x + b * geometry.imageCells * C
            for i in 0..<geometry.gridHeight {
                for j in 0..<geometry.gridWidth {
                    let w = i * geometry.gridWidth + j
                    let y = output.values + (b * geometry.windows + w) * C
                    switch kind {
                    case .max:
                        let arg = argmax! + (b * geometry.windows + w) * C
                        y.update(repeating: -.infinity, count: C)
                        arg.update(repeating: -1, count: C)
                        geometry.forEachCell(i, j) { cell, _ in
                            let xs = image + cell * C
                            for c in 0..<C where xs[c] > y[c] || arg[c] < 0 {
                                y[c] = xs[c]
                                arg[c] = Int32(cell)
                            }
                        }
                    case .average:
                        y.update(repeating: 0, count: C)
                        geometry.forEachCell(i, j) { cell, _ in
                            let xs = image + cell * C
                            for c in 0..<C { y[c] += xs[c] }
                        }
                        let n = divisors[w]
                        for c in 0..<C { y[c] /= n }
                    }
                }
            }
        }
    }

    package func backward(batch: Int) {
        let dx = inputs[0].output.gradients!
        let C = channels
        for b in 0..<batch {
            let image = dx + b * geometry.imageCells * C
            for i in 0..<geometry.gridHeight {
                for j in 0..<geometry.gridWidth {
                    let w = i * geometry.gridWidth + j
                    let g = output.gradients + (b * geometry.windows + w) * C
                    switch kind {
                    case .max:
                        let arg = argmax! + (b * geometry.windows + w) * C
                        for c in 0..<C { image[Int(arg[c]) * C + c] += g[c] }
                    case .average:
                        let n = divisors[w]
                        geometry.forEachCell(i, j) { cell, _ in
                            let to = image + cell * C
                            for c in 0..<C { to[c] += g[c] / n }
                        }
                    }
                }
            }
        }
    }
}

// MARK: - Keras MaxPooling2D and AveragePooling2D: the layer table's entries (KerasLayerKind.swift) and their
// builders, which read a call's config and refuse every argument Tandem does not implement by name.

extension KerasLayerKind {
    static let pooling2D = KerasLayerKind(
        classNames: ["MaxPooling2D", "AveragePooling2D"],
        build: { a, inputs, _ in try LayerRegistry.pooling2D(a, inputs) })
}

extension LayerRegistry {
    static func pooling2D(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let source = try single(a, inputs)
        let image = try a.spatial(source, rank: 2)
        try a.channelsLast()
        let pool = try a.sizes("pool_size", rank: 2, default: 2)
        let stride = a.config["strides"]?.isNull == false ? try a.sizes("strides", rank: 2) : pool
        let geometry = WindowGeometry.forward(image: image, kernel: pool, stride: stride, same: try a.samePadding())
        guard geometry.windows > 0 else {
            throw a.fail("pool_size \(pool) is larger than the \(image) input it pools")
        }
        return Pooling2D(
            name: a.node.id, kind: a.node.className.hasPrefix("Max") ? .max : .average, input: source,
            geometry: geometry)
    }
}
