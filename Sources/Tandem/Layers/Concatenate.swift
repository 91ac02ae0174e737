// Concatenate along the feature axis: y[b] = x1[b] ⊕ x2[b] ⊕ …
// Backward splits dy and adds each part to its source's gradient.

/// Keras `Concatenate()` (axis −1) of [B, features] inputs.
public final class Concatenate: Layer {
    public let name: String
    public let inputs: [Layer]
    public let output: Node

    public init(name: String, inputs: [Layer]) {
        precondition(inputs.allSatisfy { $0.output.shape.count == 1 }, "Concatenate joins [B, features] inputs")
        self.name = name; self.inputs = inputs
        output = Node(width: inputs.reduce(0) { $0 + $1.output.width })
    }

    public func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (batch * output.width, batch * output.width)
    }

    public func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    public func forward(batch: Int, training: Bool) {
        let y = output.values!, n = output.width
        var column = 0
        for source in inputs {
            let w = source.output.width, x = source.output.values!
            for b in 0..<batch { (y + b * n + column).update(from: x + b * w, count: w) }
            column += w
        }
    }

    public func backward(batch: Int) {
        let dy = output.gradients!, n = output.width
        var column = 0
        for source in inputs {
            let w = source.output.width, dx = source.output.gradients!
            for b in 0..<batch {
                let to = dx + b * w, from = dy + b * n + column
                for j in 0..<w { to[j] += from[j] }
            }
            column += w
        }
    }
}
