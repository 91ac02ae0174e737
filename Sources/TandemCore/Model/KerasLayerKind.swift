// Everything Tandem knows about each Keras layer class, one entry per class: how one call of it
// is built from its config, its variables in the order Keras saves them (docs/KERAS-FORMAT.md §3),
// which `*_regularizer` keys reach which weight, and whether a call may take Keras's `mask`. Each
// entry and its builder sit at the end of the layer's own file in Layers/; `LayerRegistry.kinds`
// lists them, one line each. The layer states its own FLOPs (Layer.forwardFlopsPerSample). Adding
// a Keras class is one layer file, one line in `kinds`, and its tests.

/// One Keras layer class (or a few that share everything but their name).
package struct KerasLayerKind: Sendable {
    /// One HDF5 group of a layer's variables: its path under the layer's group,
    /// the `name` attribute Keras writes on it, and the variables in Keras's order
    /// as Tandem names them (`<layer>/<name>`).
    package struct VariableGroup: Sendable {
        package let path: String, label: String, names: [String]
    }
    let classNames: [String]
    /// Listed among the supported classes (not the ops Keras records as layers, like NotEqual).
    var listed = true
    /// Whether a call may take Keras's `mask` argument (from Embedding(mask_zero=True)).
    var readsMask = false
    /// Builds the layer for one call: its arguments, its producers' layers, and the mask's layer.
    let build: @Sendable (LayerArguments, [Layer], Layer?) throws -> Layer
    /// Its variable groups for (class, layer name, config); default: none.
    package var variables: @Sendable (String, String, JSONValue) -> [VariableGroup] = { _, layer, _ in [top(layer, [])]
    }
    /// `*_regularizer` keys and the weight each penalises.
    var regularizerKeys: [(key: String, weight: String)] = []

    /// The group of a layer's own variables, named after it.
    static func top(_ layer: String, _ names: [String]) -> VariableGroup {
        VariableGroup(path: "vars", label: layer, names: names)
    }
}

extension KerasLayerKind {
    static func kernelAndBias(_ config: JSONValue) -> [String] {
        config["use_bias"]?.bool == false ? ["kernel"] : ["kernel", "bias"]
    }
    static let denseKeys = [(key: "kernel_regularizer", weight: "kernel"), ("bias_regularizer", "bias")]
    static let normalizationKeys = [(key: "gamma_regularizer", weight: "gamma"), ("beta_regularizer", "beta")]
}

extension LayerRegistry {
    /// Every class Tandem builds, one line each (their entries end the layers' files), in the order
    /// the supported list and the mask readers name them.
    static let kinds: [KerasLayerKind] =
        [
            .input, .embedding, .lstm, .gru, .simpleRNN, .bidirectional, .dense, .concatenate, .activation,
            .activationLayers,
        ] + KerasLayerKind.merges
        + [
            .flatten, .reshape, .repeatVector, .dropout, .layerNormalization, .timeDistributed, .pooling1D,
            .globalAveragePooling1D, .globalMaxPooling1D, .conv1D, .batchNormalization, .notEqual, .rescaling,
            .rowNormalization, .indexMaps, .prelu, .dot, .noise, .featureNormalization, .groupNormalization, .masking,
            .anyMask, .maskOr, .activityRegularization, .convolutions, .depthwiseConvolutions, .separableConvolutions,
            .pooling2D, .globalPooling2D, .resampling2D, .augmentation, .multiHeadAttention, .einsumDense,
            .scoreAttention, .positionEmbedding, .tokenAndPositionEmbedding, .transformerEncoder,
            .transformerDecoder, .sinePositionEncoding, .reversibleEmbedding,
            .rotaryEmbedding,
        ]

    /// The entry of each class name.
    static let kindByClass: [String: KerasLayerKind] = Dictionary(
        kinds.flatMap { kind in kind.classNames.map { ($0, kind) } }, uniquingKeysWith: { first, _ in first })

    /// A layer's variable groups (docs/KERAS-FORMAT.md §3): `vars` (named after the layer), and
    /// for a wrapper its sub-objects' (an RNN's weights under `cell/`, TimeDistributed's under
    /// `layer/`), each holding its own variables.
    package static func variables(className: String, layer: String, config: JSONValue) -> [KerasLayerKind.VariableGroup]
    {
        guard let kind = kindByClass[className] else { return [KerasLayerKind.top(layer, [])] }
        return kind.variables(className, layer, config)
    }
}
