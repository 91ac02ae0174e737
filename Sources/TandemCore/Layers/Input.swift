// Model inputs: int32 token ids or float32 features, filled by the data loader.

/// The element type of a model input.
package enum InputKind: String, Sendable { case tokens, features }

/// A named model input of per-sample width `width` (seq_len for tokens).
package final class InputLayer: Layer {
    public let name: String
    public let kind: InputKind
    package let inputs: [Layer] = []
    public let output: Node
    /// Token ids [B, width] for `.tokens` inputs (nil for features).
    package private(set) var tokens: UnsafeMutablePointer<Int32>?
    private var tokenStorage: UnsafeMutablePointer<Int32>?

    /// `shape` is per sample (Keras's batch_shape without the batch axis).
    package init(name: String, kind: InputKind, shape: [Int]) {
        self.name = name
        self.kind = kind
        output = Node(shape: shape)
    }

    package convenience init(name: String, kind: InputKind, width: Int) {
        self.init(name: name, kind: kind, shape: [width])
    }

    deinit { tokenStorage?.deallocate() }

    package var width: Int { output.width }
    /// Whether layers reading this input form its gradient. Training has no use for it
    /// (XLA drops it too), so a Dense on the features skips its dx product; the
    /// gradient checks turn it on to check every layer's dx.
    package var wantsGradient = false

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        kind == .features ? (batch * width, batch * width) : (0, 0)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        if kind == .features {
            output.values = workspace.take(batch * width)
            output.gradients = workspace.takeGradient(batch * width)
        } else {
            tokenStorage?.deallocate()
            tokenStorage = .allocate(capacity: max(batch * width, 1))
            tokenStorage!.initialize(repeating: 0, count: max(batch * width, 1))
            tokens = tokenStorage
        }
    }

    public func forward(batch: Int, training: Bool) {}
    package func backward(batch: Int) {}
}
