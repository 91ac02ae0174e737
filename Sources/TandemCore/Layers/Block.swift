// A layer made of layers: one Keras layer that is a small graph of its own (a KerasHub TransformerEncoder,
// TokenAndPositionEmbedding), run as its parts in order and back in reverse. The parts are ordinary Tandem
// layers with their own names (`<layer>/<part>`), weights and windows of the arenas; the block only sequences
// them, lists their parameters in the order Keras builds them (what the archive's optimizer slots follow),
// and hands random keys and collectives to the parts that take them.

package final class Block: Layer, RandomLayer {
    public let name: String
    package let inputs: [Layer]
    /// The parts in the order they run; the last one's output is the block's.
    package let parts: [Layer]
    /// The parts in the order Keras creates their variables.
    private let variableOrder: [Layer]

    package init(name: String, inputs: [Layer], parts: [Layer], variableOrder: [Layer]? = nil) {
        precondition(!parts.isEmpty)
        self.name = name
        self.inputs = inputs
        self.parts = parts
        self.variableOrder = variableOrder ?? parts
        precondition(Set(self.variableOrder.map(ObjectIdentifier.init)) == Set(parts.map(ObjectIdentifier.init)))
    }

    public var output: Node { parts.last!.output }
    public var forwardFlopsPerSample: Double { parts.reduce(0) { $0 + $1.forwardFlopsPerSample } }
    public var parameterSpecs: [ParameterSpec] { variableOrder.flatMap(\.parameterSpecs) }
    public func bind(parameters: ParameterStore) { for p in parts { p.bind(parameters: parameters) } }

    public func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        parts.map { $0.workspaceSize(batch: batch) }.reduce((0, 0)) { ($0.0 + $1.0, $0.1 + $1.1) }
    }

    public func bind(workspace: inout WorkspaceCursor, batch: Int) {
        for p in parts { p.bind(workspace: &workspace, batch: batch) }
    }

    public func forward(batch: Int, training: Bool) { for p in parts { p.forward(batch: batch, training: training) } }
    public func backward(batch: Int) { for p in parts.reversed() { p.backward(batch: batch) } }

    func bind(keys: DropoutKeys) { for case let p as RandomLayer in parts { p.bind(keys: keys) } }
}
