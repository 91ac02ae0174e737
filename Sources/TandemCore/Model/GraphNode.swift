// One call of a Keras layer in a model's graph: what the layer table (KerasLayerKind.swift)
// builds a layer from. The graph itself is TandemKeras's ModelDescription.

/// One call of a Keras layer in the graph.
public struct GraphNode: Sendable {
    /// Unique in the graph: the layer name, or "name@k" for its call k ≥ 1.
    package let id: String
    /// The Keras layer (owner of the weights).
    public let layer: String
    public let className: String
    /// The layer's Keras config (its arguments).
    public let config: JSONValue
    /// Producer node ids, in argument order.
    package let inputs: [String]
    /// Which call of `layer` this is (0 for the first).
    public let call: Int
    /// The call's `mask` argument is its last input (a NotEqual node).
    package var masked = false
    /// The call was saved with `training=False` (itself, or the nested model's call it is part of).
    /// Keras 3's fit overrides it: Functional passes its own training flag to every call
    /// (models/functional.py: operation_fn; keras-team/keras#20285), so it trains as any call does and
    /// the CLI says so once.
    package var savedTrainingFalse = false
    /// The call's keyword arguments that are not tensors (`use_causal_mask=True`, …), for the builder.
    package var callOptions: JSONValue = .object([])

    package init(
        id: String, layer: String, className: String, config: JSONValue, inputs: [String], call: Int,
        masked: Bool = false
    ) {
        self.id = id
        self.layer = layer
        self.className = className
        self.config = config
        self.inputs = inputs
        self.call = call
        self.masked = masked
    }
}
