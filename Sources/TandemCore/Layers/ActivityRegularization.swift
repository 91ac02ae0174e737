// Keras's activity regularization (keras/src/layers/layer.py __call__; layers/regularization/
// activity_regularization.py): a layer's output x adds (λ1·Σ|x| + λ2·Σx²) ÷ batch to the loss, the
// sum over the batch's every element. Tandem's batch is the GLOBAL batch: each rank sums its rows,
// the step's figures carry the sums across ranks, and the gradient λ1·sign(x) + 2λ2·x is scaled by
// 1 / global batch, so N ranks train as one process does. The layer is the identity with that
// penalty: `ActivityRegularization`, or inserted after a layer whose config sets activity_regularizer.

import Foundation

/// What the penalty layers share with the step: the gradient's scale (1 / global batch, or 0 where a
/// pass must not carry the penalty, such as one head's own gradient) and the value's running sum.
package final class ActivityPenalties: @unchecked Sendable {
    package var scale: Float = 0
    /// Σ (λ1·Σ|x| + λ2·Σx²) over the forwards since the last `takeSum`, in Double.
    package var sum = 0.0
    package init() {}
    package func takeSum() -> Double {
        defer { sum = 0 }
        return sum
    }
}

/// A layer that adds a penalty on its output; the model hands it the shared state.
protocol PenaltyLayer: AnyObject {
    func bind(penalties: ActivityPenalties)
}

package final class ActivityPenalty: Layer, PenaltyLayer {
    public let name: String
    package let inputs: [Layer]
    public let output: Node
    package let l1: Float, l2: Float
    private var penalties: ActivityPenalties!

    package init(name: String, l1: Float, l2: Float, input: Layer) {
        self.name = name
        self.l1 = l1
        self.l2 = l2
        inputs = [input]
        output = Node(shape: input.output.shape)
    }

    func bind(penalties: ActivityPenalties) { self.penalties = penalties }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (batch * output.width, batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    public func forward(batch: Int, training: Bool) {
        let x = inputs[0].output.values!
        let n = batch * output.width
        output.values.update(from: x, count: n)
        var magnitudes = 0.0
        var squares = 0.0
        for i in 0..<n {
            magnitudes += Double(abs(x[i]))
            squares += Double(x[i]) * Double(x[i])
        }
        penalties.sum += Double(l1) * magnitudes + Double(l2) * squares
    }

    package func backward(batch: Int) {
        guard inputs[0].wantsGradient else { return }
        let x = inputs[0].output.values!
        let dx = inputs[0].output.gradients!
        let dy = output.gradients!
        let s = penalties.scale
        let a = l1 * s
        let b = 2 * l2 * s
        for i in 0..<(batch * output.width) {
            let v = x[i]
            dx[i] += dy[i] + a * (v > 0 ? 1 : v < 0 ? -1 : 0) + b * v
        }
    }
}

// MARK: - Keras ActivityRegularization: the layer table's entry (KerasLayerKind.swift) and its builder.

extension KerasLayerKind {
    static let activityRegularization = KerasLayerKind(
        classNames: ["ActivityRegularization"],
        build: { a, inputs, _ in
            let source = try LayerRegistry.single(a, inputs)
            func strength(_ key: String) throws -> Float {
                guard let v = a.config[key], !v.isNull else { return 0 }
                guard let x = v.number, x >= 0, x.isFinite else { throw a.fail("'\(key)' must be a number ≥ 0") }
                return Float(x)
            }
            return ActivityPenalty(name: a.node.id, l1: try strength("l1"), l2: try strength("l2"), input: source)
        })
}
