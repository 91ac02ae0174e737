// Normalisations of each row of the last axis by its own length, as Keras computes them
// (keras/src/ops/nn.py):
//   UnitNormalization: y = x·r, r = min(1/√Σx², 1/ε), ε = 1e-12 (ops.normalize, order 2);
//   RMSNormalization:  y = x·r·s, r = 1/√(mean x² + ε), s the learned `scale` (ones at first).
// Backward with the row's r kept: dx_k = r·s_k·dy_k − (r³/n)·x_k·Σ_j dy_j·x_j·s_j (RMS; n = 1 and
// s = 1 for unit, whose r has no slope where it is capped), ds_j += Σ_rows dy_j·x_j·r.

import Foundation

package final class RowNormalization: Layer {
    package enum Kind: Sendable { case unit, rms }
    public let name: String
    package let weightsName: String
    package let inputs: [Layer]
    public let output: Node
    package let kind: Kind
    package let epsilon: Float
    private var scale: TensorView?
    private var store: ParameterStore!
    /// r per row.
    private var inverse: UnsafeMutablePointer<Float>!

    package init(name: String, kind: Kind, input: Layer, epsilon: Float, weights: String? = nil) {
        self.name = name
        self.kind = kind
        self.epsilon = epsilon
        weightsName = weights ?? name
        inputs = [input]
        output = Node(shape: input.output.shape)
    }

    private var features: Int { output.features }
    private func rows(_ batch: Int) -> Int { batch * output.width / features }

    package var parameterSpecs: [ParameterSpec] {
        kind == .rms
            ? [ParameterSpec(layer: weightsName, weight: "scale", shape: [features], initializer: .constant(1))] : []
    }

    package func bind(parameters: ParameterStore) {
        store = parameters
        scale = kind == .rms ? parameters.view("\(weightsName)/scale") : nil
    }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (batch * output.width + rows(batch), batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        inverse = workspace.take(rows(batch))
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    public func forward(batch: Int, training: Bool) {
        let x = inputs[0].output.values!
        let y = output.values!
        let f = features
        let s = scale.map { store.value($0) }
        for r in 0..<rows(batch) {
            let row = x + r * f
            var squares: Float = 0
            for j in 0..<f { squares += row[j] * row[j] }
            let inv: Float =
                kind == .unit
                ? min(1 / squares.squareRoot(), 1 / epsilon) : 1 / (squares / Float(f) + epsilon).squareRoot()
            inverse[r] = inv
            for j in 0..<f { y[r * f + j] = row[j] * inv * (s?[j] ?? 1) }
        }
    }

    package func backward(batch: Int) {
        let x = inputs[0].output.values!
        let dx = inputs[0].output.gradients!
        let dy = output.gradients!
        let f = features
        let s = scale.map { store.value($0) }
        let ds = scale.map { store.gradient($0) }
        for r in 0..<rows(batch) {
            let inv = inverse[r]
            let row = x + r * f
            let g = dy + r * f
            var dot: Float = 0
            for j in 0..<f { dot += g[j] * row[j] * (s?[j] ?? 1) }
            // Unit normalisation capped at 1/ε: r is a constant there.
            let capped = kind == .unit && inv >= 1 / epsilon
            let through = capped ? 0 : inv * inv * inv / Float(kind == .rms ? f : 1) * dot
            for j in 0..<f {
                dx[r * f + j] += inv * (s?[j] ?? 1) * g[j] - through * row[j]
                if let ds { ds[j] += g[j] * row[j] * inv }
            }
        }
    }
}

// MARK: - Keras UnitNormalization and RMSNormalization: the layer table's entries (KerasLayerKind.swift).

extension KerasLayerKind {
    static let rowNormalization = KerasLayerKind(
        classNames: ["UnitNormalization", "RMSNormalization"],
        build: { a, inputs, _ in
            let source = try LayerRegistry.single(a, inputs)
            try a.lastAxis(rank: source.output.shape.count + 1)
            if a.node.className == "UnitNormalization" {
                return RowNormalization(name: a.node.id, kind: .unit, input: source, epsilon: 1e-12)
            }
            let epsilon = a.config["epsilon"]?.number ?? 1e-6
            guard epsilon > 0 else { throw a.fail("'epsilon' must be positive") }
            return RowNormalization(
                name: a.node.id, kind: .rms, input: source, epsilon: Float(epsilon), weights: a.node.layer)
        },
        variables: { className, layer, _ in
            [KerasLayerKind.top(layer, className == "RMSNormalization" ? ["scale"] : [])]
        })
}
