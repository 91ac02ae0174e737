// Concatenate along one per-sample axis. With `outer` = the product of the
// axes before it, each input is `outer` contiguous chunks (its axis and the
// axes after it), and the output interleaves them: chunk k of x1, of x2, …
// Backward splits dy the same way and adds each part to its source's gradient.

/// Keras `Concatenate(axis)`; `axis` counts per-sample axes (0 ..< rank).
package final class Concatenate: Layer {
    public let name: String
    package let inputs: [Layer]
    public let output: Node
    package let axis: Int
    private let outer: Int, chunks: [Int]

    /// Inputs agree on every axis but `axis` (default: the last).
    package init(name: String, inputs: [Layer], axis: Int? = nil) {
        let rank = inputs[0].output.shape.count
        let axis = axis ?? rank - 1
        precondition(
            inputs.allSatisfy { $0.output.shape.count == rank } && (0..<rank).contains(axis),
            "Concatenate joins inputs of one rank")
        self.name = name
        self.inputs = inputs
        self.axis = axis
        var shape = inputs[0].output.shape
        shape[axis] = inputs.reduce(0) { $0 + $1.output.shape[axis] }
        outer = shape[..<axis].reduce(1, *)
        chunks = inputs.map { $0.output.width / shape[..<axis].reduce(1, *) }
        output = Node(shape: shape)
    }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (batch * output.width, batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    public func forward(batch: Int, training: Bool) {
        let y = output.values!
        let row = output.width / outer
        var column = 0
        for (source, w) in zip(inputs, chunks) {
            let x = source.output.values!
            for k in 0..<(batch * outer) { (y + k * row + column).update(from: x + k * w, count: w) }
            column += w
        }
    }

    package func backward(batch: Int) {
        let dy = output.gradients!
        let row = output.width / outer
        var column = 0
        for (source, w) in zip(inputs, chunks) {
            let dx = source.output.gradients!
            for k in 0..<(batch * outer) {
                let to = dx + k * w
                let from = dy + k * row + column
                for j in 0..<w { to[j] += from[j] }
            }
            column += w
        }
    }
}
