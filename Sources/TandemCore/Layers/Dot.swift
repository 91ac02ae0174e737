// Keras `Dot(axes, normalize)` (keras/src/layers/merging/dot.py): per sample, the product of two
// inputs contracted along one axis each — [F]·[F] → [1]; [T1, F1]·[T2, F2] → the free axes of the
// first, then of the second (e.g. axes (2, 2): [T1, T2], a similarity of every pair of steps).
// With `normalize`, each vector along its contracted axis is first scaled to unit length as
// ops.normalize does: x·min(1/‖x‖, 1/ε), ε = 1e-7.
// Per sample C = op(A)·op(B) through the one GEMM layer; backward dA = dC·op(B)ᵀ, dB = op(A)ᵀ·dC,
// then through the normalisation: dx = r·(dx̂ − x̂·(x̂·dx̂)) along the axis (r held where capped).

package final class Dot: Layer {
    public let name: String
    package let inputs: [Layer]
    public let output: Node
    package let normalize: Bool
    /// Per input: rows and columns of its sample, and whether the contracted axis is the rows (0).
    private let shapes: [(rows: Int, columns: Int, contractRows: Bool)]
    private var unit: [UnsafeMutablePointer<Float>] = []
    private var inverse: [UnsafeMutablePointer<Float>] = []
    private var dUnit: [UnsafeMutablePointer<Float>] = []

    /// `axes`: each input's contracted sample axis (0-based).
    package init(name: String, inputs: [Layer], axes: (Int, Int), normalize: Bool) {
        self.name = name
        self.inputs = inputs
        self.normalize = normalize
        let all = [axes.0, axes.1]
        shapes = inputs.enumerated().map { i, layer in
            let s = layer.output.shape
            return s.count == 1 ? (1, s[0], false) : (s[0], s[1], all[i] == 0)
        }
        let free = shapes.map { $0.contractRows ? $0.columns : $0.rows }
        let contracted = shapes.map { $0.contractRows ? $0.rows : $0.columns }
        precondition(contracted[0] == contracted[1], "Dot contracts axes of the same size")
        output = Node(shape: inputs[0].output.shape.count == 1 ? [1] : [free[0], free[1]])
    }

    private func width(_ i: Int) -> Int { shapes[i].rows * shapes[i].columns }
    /// Vectors along the contracted axis, per sample.
    private func vectors(_ i: Int) -> Int { shapes[i].contractRows ? shapes[i].columns : shapes[i].rows }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        let extra = normalize ? (0..<2).reduce(0) { $0 + batch * (2 * width($1) + vectors($1)) } : 0
        return (batch * output.width + extra, batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        if normalize {
            unit = (0..<2).map { workspace.take(batch * width($0)) }
            dUnit = (0..<2).map { workspace.take(batch * width($0)) }
            inverse = (0..<2).map { workspace.take(batch * vectors($0)) }
        }
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    /// Element `e` of vector `v` of input `i`'s sample: its offset in the sample.
    private func at(_ i: Int, vector v: Int, element e: Int) -> Int {
        shapes[i].contractRows ? e * shapes[i].columns + v : v * shapes[i].columns + e
    }
    private func length(_ i: Int) -> Int { shapes[i].contractRows ? shapes[i].rows : shapes[i].columns }

    /// The operand gemm reads for input `i` of sample `b`: the input itself, or its unit vectors.
    private func operand(_ i: Int, _ b: Int) -> UnsafeMutablePointer<Float> {
        (normalize ? unit[i] : inputs[i].output.values!) + b * width(i)
    }

    public func forward(batch: Int, training: Bool) {
        if normalize {
            for i in 0..<2 {
                let x = inputs[i].output.values!
                for b in 0..<batch {
                    for v in 0..<vectors(i) {
                        var squares: Float = 0
                        for e in 0..<length(i) {
                            let value = x[b * width(i) + at(i, vector: v, element: e)]
                            squares += value * value
                        }
                        let r = min(1 / squares.squareRoot(), 1 / 1e-7)
                        inverse[i][b * vectors(i) + v] = r
                        for e in 0..<length(i) {
                            let o = b * width(i) + at(i, vector: v, element: e)
                            unit[i][o] = x[o] * r
                        }
                    }
                }
            }
        }
        let (a, c) = (shapes[0], shapes[1])
        let m = output.shape.count == 1 ? 1 : output.shape[0]
        let n = output.shape.count == 1 ? 1 : output.shape[1]
        for b in 0..<batch {
            // op(A) [m, k]: A stored [rows, columns]; contracted along rows → transposed.
            gemm(
                a.contractRows ? .transposed : .none, c.contractRows ? .none : .transposed,
                m: m, n: n, k: length(0), a: operand(0, b), lda: a.columns, b: operand(1, b), ldb: c.columns,
                beta: 0, c: output.values + b * output.width, ldc: n)
        }
    }

    package func backward(batch: Int) {
        let (a, c) = (shapes[0], shapes[1])
        let m = output.shape.count == 1 ? 1 : output.shape[0]
        let n = output.shape.count == 1 ? 1 : output.shape[1]
        let k = length(0)
        // Gradients of the operands: into the inputs directly, or into dUnit to go through the normalisation.
        let targets: [UnsafeMutablePointer<Float>] =
            normalize ? dUnit : [inputs[0].output.gradients!, inputs[1].output.gradients!]
        if normalize { for i in 0..<2 { targets[i].update(repeating: 0, count: batch * width(i)) } }
        for b in 0..<batch {
            let dC = output.gradients + b * output.width
            // dA: stored like A. Not transposed: dA[m, k] = dC[m, n]·op(B)ᵀ; transposed: dA[k, m] = op(B)·dCᵀ.
            if a.contractRows {
                gemm(
                    c.contractRows ? .none : .transposed, .transposed, m: k, n: m, k: n, a: operand(1, b),
                    lda: c.columns, b: dC, ldb: n, beta: 1, c: targets[0] + b * width(0), ldc: a.columns)
            } else {
                gemm(
                    .none, c.contractRows ? .transposed : .none, m: m, n: k, k: n, a: dC, lda: n, b: operand(1, b),
                    ldb: c.columns, beta: 1, c: targets[0] + b * width(0), ldc: a.columns)
            }
            // dB: stored like B. Contracted along rows (stored [k, n]): dB = op(A)ᵀ·dC; else (stored [n, k]) dCᵀ·op(A).
            if c.contractRows {
                gemm(
                    a.contractRows ? .none : .transposed, .none, m: k, n: n, k: m, a: operand(0, b), lda: a.columns,
                    b: dC, ldb: n, beta: 1, c: targets[1] + b * width(1), ldc: c.columns)
            } else {
                gemm(
                    .transposed, a.contractRows ? .transposed : .none, m: n, n: k, k: m, a: dC, lda: n,
                    b: operand(0, b), ldb: a.columns, beta: 1, c: targets[1] + b * width(1), ldc: c.columns)
            }
        }
        guard normalize else { return }
        for i in 0..<2 {
            let dx = inputs[i].output.gradients!
            for b in 0..<batch {
                for v in 0..<vectors(i) {
                    let r = inverse[i][b * vectors(i) + v]
                    var dot: Float = 0
                    for e in 0..<length(i) {
                        let o = b * width(i) + at(i, vector: v, element: e)
                        dot += unit[i][o] * dUnit[i][o]
                    }
                    let capped = r >= 1 / 1e-7
                    for e in 0..<length(i) {
                        let o = b * width(i) + at(i, vector: v, element: e)
                        dx[o] += r * (dUnit[i][o] - (capped ? 0 : unit[i][o] * dot))
                    }
                }
            }
        }
    }
}

// MARK: - Keras Dot: the layer table's entry (KerasLayerKind.swift) and its builder.

extension KerasLayerKind {
    static let dot = KerasLayerKind(
        classNames: ["Dot"],
        build: { a, inputs, _ in
            guard inputs.count == 2 else { throw a.fail("needs exactly 2 inputs, got \(inputs.count)") }
            let ranks = inputs.map { $0.output.shape.count + 1 }
            guard ranks[0] == ranks[1], ranks[0] == 2 || ranks[0] == 3 else {
                throw a.fail(
                    "inputs of shapes \(inputs.map(LayerRegistry.shapeText).joined(separator: " and ")) are not supported (both [batch, features] or both [batch, steps, features])"
                )
            }
            let given = a.config["axes"]
            var axes = given?.array?.compactMap(\.integer) ?? given?.integer.map { [$0, $0] } ?? []
            guard axes.count == 2 else { throw a.fail("'axes' = \(given ?? .null) must be an axis or a pair of axes") }
            axes = zip(axes, ranks).map { $0 < 0 ? $0 + $1 : $0 }
            guard axes.allSatisfy({ $0 >= 1 && $0 < ranks[0] }) else {
                throw a.fail("'axes' = \(given ?? .null) must name sample axes (not the batch)")
            }
            let lengths = zip(inputs, axes).map { $0.output.shape[$1 - 1] }
            guard lengths[0] == lengths[1] else {
                throw a.fail("the contracted axes have sizes \(lengths[0]) and \(lengths[1]); they must match")
            }
            return Dot(
                name: a.node.id, inputs: inputs, axes: (axes[0] - 1, axes[1] - 1),
                normalize: try a.bool("normalize", default: false))
        })
}
