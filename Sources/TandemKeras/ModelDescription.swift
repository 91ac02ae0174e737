// The one model description that the CLI, checkpoints, evaluate/predict, the
// benchmark and gen-data share. It is a Keras functional graph: nodes (layer
// calls) with their Keras class and config, inputs, outputs, and what the
// compile config says (heads, regularizers, optimizer). Built from a Keras
// config.json (KerasConfig.swift) — the `headline` preset is one too
// (Headline.swift) — and turned into a runnable `Model` by the layer registry.
// It keeps the config.json it came from, so a checkpoint can store it and
// RUN/model.keras can be written back in Keras's own terms.

import Foundation
import TandemCore

/// A Keras model as Tandem trains it.
public struct ModelDescription: Sendable {
    public let name: String
    /// Every node, producers before consumers.
    package let nodes: [GraphNode]
    /// Input node ids in the model's input order (= data file names).
    package let inputs: [String]
    /// Output node ids in the model's output order.
    package let outputs: [String]
    /// Keras's `model.layers` order (layer name, class): it numbers the HDF5
    /// weight groups and orders `trainable_variables` (docs/KERAS-FORMAT.md §3).
    package let layerOrder: [(name: String, className: String)]
    /// Each nested model's own `model.layers` order, by its layer name (its layers named
    /// `<model>/<layer>`; a model nested in it keyed `<model>/<inner model>`).
    package var innerOrders: [String: [(name: String, className: String)]] = [:]
    package let isSequential: Bool
    /// The heads the compile config defines (outputs with a loss), in output order.
    public var heads: [Head]
    /// Penalties from the layers' `*_regularizer` arguments.
    public let regularizers: [Regularizer]
    /// Projections from the layers' `*_constraint` arguments, applied after each update.
    public var constraints: [WeightConstraint] = []
    /// The compiled optimizer, if the archive has one Tandem supports.
    public var optimizer: OptimizerConfig?
    /// The whole config.json (architecture and compile config).
    public var config: JSONValue
    /// "headline" when built from the preset (`--model headline`), nil for an archive.
    package var preset: String?
    /// The file it was read from, named in errors (nil for the preset).
    package var source: String?

    /// Per input, the sample shape of its data: what fills an `Input(shape=(None, …))`'s None
    /// axes when the model is built (the config keeps None, so RUN/model.keras does too).
    public var dataShapes: [String: [Int]] = [:]
    /// Where `dataShapes` came from (a data directory), named when they do not fit.
    public var dataSource: String?

    /// The inputs declared with a None axis beyond the batch (their lengths come from the data).
    public var variableInputs: [String] {
        inputs.filter { id in
            let config = node(id)?.config
            let dims = (config?["batch_shape"] ?? config?["batch_input_shape"])?.array ?? []
            return dims.dropFirst().contains { $0.isNull }
        }
    }

    /// Gives every None axis of every input the same `length` (generated data: gen-data and bench; the
    /// probe builds that need only the output shapes).
    public mutating func takeLength(_ length: Int) {
        for id in variableInputs {
            let config = node(id)!.config
            let dims = (config["batch_shape"] ?? config["batch_input_shape"])?.array ?? []
            dataShapes[id] = dims.dropFirst().map { $0.integer ?? length }
        }
    }

    public func node(_ id: String) -> GraphNode? { nodes.first { $0.id == id } }

    /// The output layer names (what targets are named after).
    package var outputNames: [String] { outputs.map { node($0)!.layer } }
    public var inputNames: [String] { inputs.map { node($0)!.layer } }

    /// Builds the runnable graph for batches of up to `maxBatch` samples.
    /// Throws a clear error for anything the registry does not support.
    public func build(maxBatch: Int, fuse: Bool = true) throws -> Model {
        do { return try buildGraph(maxBatch: maxBatch, fuse: fuse) } catch let TandemError.usage(message) {
            // Built at the data's lengths: a length the model cannot take names the data's files.
            if !variableInputs.isEmpty, let dataSource {
                let lengths = variableInputs.compactMap { id in
                    dataShapes[id].map { "\(node(id)!.layer).npy \($0)" }
                }.joined(separator: ", ")
                throw TandemError.file(
                    dataSource, "the data's sample shapes (\(lengths)) do not fit the model: \(message)")
            }
            if let source { throw TandemError.file(source, message) }
            throw TandemError.usage(message)
        }
    }

    /// Every node's Tandem layer, by node id: shapes and parameters, no arenas.
    func layerGraph() throws -> [String: Layer] {
        // Inputs that a token reader (Embedding, its mask's integer NotEqual) takes: Keras casts their
        // values to integer ids whatever the input's dtype, so they are token inputs here.
        var readers: [String: [String]] = [:]
        var others: [String: String] = [:]
        for node in nodes {
            for id in node.inputs {
                if LayerRegistry.readsTokens(node) {
                    readers[id, default: []].append(node.layer)
                } else {
                    others[id] = others[id] ?? node.layer
                }
            }
        }
        var built: [String: Layer] = [:]
        for node in nodes {
            let sources = try node.inputs.map { id -> Layer in
                guard let l = built[id] else {
                    throw TandemError.usage("layer '\(node.layer)': its input '\(id)' is not computed before it")
                }
                return l
            }
            var a = LayerArguments(node: node)
            if ["MultiHeadAttention", "GroupQueryAttention", "TransformerEncoder", "TransformerDecoder"].contains(
                node.className)
            {
                // Keras derives the attention mask from its query's, value's and key's Keras masks (not saved
                // in the call): each is the ids ≠ 0 of the model input an Embedding(mask_zero=True) reads.
                a.attentionMasks = try node.inputs.enumerated().map { k, id -> Layer? in
                    let reader = "layer '\(node.layer)' (\(node.className))"
                    guard let input = try KerasCompile.tokenMask(of: id, readBy: node.id, in: nodes, reader: reader)
                    else {
                        return nil
                    }
                    guard let tokens = built[input] as? InputLayer, tokens.kind == .tokens else {
                        throw TandemError.usage("\(reader): its mask's model input '\(input)' is not read as token ids")
                    }
                    return SequenceMask(name: "\(node.id)/\(["query", "value", "key"][k])_mask", tokens: tokens)
                }
            }
            if !node.masked, LayerRegistry.maskConsumers.contains(node.className), let first = node.inputs.first,
                let input = try? KerasCompile.tokenMask(of: first, readBy: node.id, in: nodes, reader: node.layer),
                let tokens = built[input] as? InputLayer, tokens.kind == .tokens
            {
                // Keras fills a `mask` argument the file does not hold from the input's mask at run time (a
                // KerasHub layer's masks exist only then): the same ids ≠ 0.
                a.runtimeMask = SequenceMask(name: "\(node.id)/mask", tokens: tokens)
            }
            a.dataShape = dataShapes[node.id]
            if node.className == "InputLayer", let reader = readers[node.id]?.first {
                if let other = others[node.id] {
                    throw TandemError.usage(
                        "model input '\(node.id)' is read as token ids by layer '\(reader)' and as values by layer '\(other)'; an input must be one or the other"
                    )
                }
                a.readAsTokens = true
            }
            let layer = try LayerRegistry.make(a, inputs: sources)
            built[node.id] = layer
            if let penalty = try LayerRegistry.activityPenalty(a, after: layer) {
                // The penalty layer takes the layer's place for its consumers; an output keeps its name.
                guard !outputs.contains(node.id) else {
                    throw TandemError.usage(
                        "layer '\(node.layer)': an activity_regularizer on a model output is not supported (put it on a hidden layer, or add an ActivityRegularization layer before the output)"
                    )
                }
                built[node.id] = penalty
            }
        }
        return built
    }

    private func buildGraph(maxBatch: Int, fuse: Bool) throws -> Model {
        let built = try layerGraph()
        let inputLayers = try inputs.map { id -> InputLayer in
            guard let l = built[id] as? InputLayer else {
                throw TandemError.usage("model input '\(id)' is not an InputLayer")
            }
            return l
        }
        // Activations for more rows than the machine holds: said by name, before allocating.
        let arenaBytes = built.values.reduce(0) { sum, layer in
            let size = layer.workspaceSize(batch: maxBatch)
            return sum + 4 * (size.values + size.gradients)
        }
        if UInt64(arenaBytes) > ProcessInfo.processInfo.physicalMemory {
            throw TandemError.usage(
                "the activations of \(maxBatch) rows need \(arenaBytes >> 30) GiB, more than this machine's \(ProcessInfo.processInfo.physicalMemory >> 30) GiB (a row needs \(arenaBytes / maxBatch >> 20) MiB): use a smaller --batch-size or more ranks"
            )
        }
        let frozen = frozenLayers
        for case let norm as BatchNormalization in built.values where frozen.contains(norm.weightsName) {
            norm.frozen = true
        }
        let model = Model(
            inputs: inputLayers, outputs: outputs.map { built[$0]! }, maxBatch: maxBatch, fuse: fuse, frozen: frozen)
        model.evaluationRows = ModelDescription.evaluationRows(built.values)
        return model
    }

    /// Rows that evaluation and prediction forward together (docs/SPEC.md §4): 64, or fewer when a
    /// row's activations are so large that 64 rows would pass 1 GiB (a model whose one Conv1D reads
    /// 50 000 channels). A property of the model at its data's lengths, never of the rank count.
    public func evaluationRows() throws -> Int { ModelDescription.evaluationRows(try layerGraph().values) }

    private static func evaluationRows<S: Sequence>(_ layers: S) -> Int where S.Element == Layer {
        let floatsPerRow = layers.reduce(0) { sum, layer in
            let size = layer.workspaceSize(batch: 1)
            return sum + size.values + size.gradients
        }
        return max(1, min(64, (1 << 30) / max(4 * floatsPerRow, 1)))
    }
}
