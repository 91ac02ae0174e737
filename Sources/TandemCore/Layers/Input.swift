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

// MARK: - Keras InputLayer (a model input: its shape and dtype from `batch_shape`): the layer table's entries
// (KerasLayerKind.swift) and their builders, which read a call's config and refuse every argument Tandem does
// not implement by name.

extension KerasLayerKind {
    static let input = KerasLayerKind(classNames: ["InputLayer"], build: { a, _, _ in try LayerRegistry.input(a) })
}

extension LayerRegistry {
    static func input(_ a: LayerArguments) throws -> Layer {
        let shape = a.config["batch_shape"] ?? a.config["batch_input_shape"]
        guard let dims = shape?.array, dims.count >= 2, dims[0].isNull || dims[0].integer != nil else {
            throw a.fail("'batch_shape' must be [null, …] with at least one feature axis")
        }
        // A None axis (`Input(shape=(None,))`) takes its length from the data (ModelDescription.dataShapes).
        let sample = try dims.dropFirst().enumerated().map { i, d -> Int in
            if d.isNull {
                guard let data = a.dataShape else {
                    throw a.fail(
                        "axis \(i + 1) of \(shape!) has a variable length (None); it takes its length from the data, and none is given here (gen-data and bench: --seq-len N)"
                    )
                }
                guard data.count == dims.count - 1, data[i] > 0 else {
                    throw a.fail("the data's sample shape \(data) does not fit \(shape!)")
                }
                return data[i]
            }
            guard let n = d.integer, n > 0 else {
                throw a.fail("every axis but the batch must have a size or be None, got \(shape!)")
            }
            return n
        }
        try a.require("sparse", is: .bool(false), supported: "dense inputs only")
        try a.require("ragged", is: .bool(false), supported: "dense inputs only")
        try a.require("optional", is: .bool(false), supported: "inputs that are always given")
        let dtype = a.config["dtype"]?.string ?? a.config["dtype"]?["config"]?["name"]?.string ?? "float32"
        let integers = ["int32", "int64", "int16", "int8", "uint8", "uint16", "uint32", "uint64", "bool"]
        let floats = ["float32", "float64", "float16", "bfloat16"]
        guard integers.contains(dtype) || floats.contains(dtype) else {
            throw a.fail("input dtype '\(dtype)' is not supported (integer, bool or float inputs)")
        }
        // An input an Embedding reads holds token ids whatever its dtype (Keras's Embedding casts
        // them; a float id with a fraction is refused when the data is read, naming the file).
        // Every other input is float32 values, as Keras casts integer and bool inputs.
        if a.readAsTokens {
            guard sample.count == 1 else {
                throw a.fail(
                    "token ids must be [batch, length], got [batch, \(sample.map(String.init).joined(separator: ", "))]"
                )
            }
            return InputLayer(name: a.node.id, kind: .tokens, shape: sample)
        }
        guard sample.count <= 3 else {
            throw a.fail(
                "inputs of rank \(sample.count + 1) are not supported (features, [time, features] or [height, width, channels])"
            )
        }
        return InputLayer(name: a.node.id, kind: .features, shape: sample)
    }
}
