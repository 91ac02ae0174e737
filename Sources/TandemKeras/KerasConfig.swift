// config.json → ModelDescription (docs/KERAS-FORMAT.md §2). Functional models (every
// layer's inbound nodes, in Keras 3's {"args", "kwargs"} form or the legacy
// Keras 2 lists; a layer called twice becomes two nodes sharing weights) and
// Sequential models. Keras's `model.layers` order is recomputed as Keras does
// on load (ops/function.py: map_graph), since it numbers the weight groups.
// Custom objects, Lambda layers and modules outside `keras` are refused by
// name; nothing in the file is executed. The compile config is read by
// KerasCompile.swift.

import Foundation
import TandemCore

public enum KerasConfig {
    /// Parses config.json text; `source` names the file in errors.
    public static func description(fromJSON bytes: [UInt8], source: String) throws -> ModelDescription {
        let json: JSONValue
        do { json = try JSONValue.parse(bytes) } catch {
            throw TandemError.file(source, "config.json is not valid JSON (\(error))")
        }
        do {
            var d = try description(from: json)
            d.source = source
            return d
        } catch let e as TandemError {
            if case .usage(let message) = e { throw TandemError.file(source, message) }
            throw e
        }
    }

    public static func description(from json: JSONValue) throws -> ModelDescription {
        guard json.object != nil else { throw TandemError.usage("config.json must hold a JSON object") }
        try KerasJSON.refuseCustom(json, what: "the model")
        let className = json["class_name"]?.string ?? ""
        guard let config = json["config"], config.object != nil else {
            throw TandemError.usage("config.json has no 'config' object")
        }
        if config["trainable"]?.bool == false {
            throw TandemError.usage(
                "the model is frozen (trainable = false); frozen models and layers are not supported")
        }
        var graph: Graph
        switch className {
        case "Functional", "Model": graph = try functional(config)
        case "Sequential": graph = try sequential(config)
        default:
            throw TandemError.usage(
                "the model class '\(className)' is not supported (Functional or Sequential models; subclassed models cannot be read without running their code)"
            )
        }
        let order = try keraslayerOrder(graph.collapsedGraph, sequential: className == "Sequential")
        var regularizers: [Regularizer] = []
        var constraints: [WeightConstraint] = []
        var seen = Set<String>()
        for node in graph.nodes where seen.insert(node.layer).inserted {
            regularizers += try LayerRegistry.regularizers(node)
            constraints += try LayerRegistry.constraints(node)
        }
        var description = ModelDescription(
            name: config["name"]?.string ?? "model", nodes: graph.nodes, inputs: graph.inputs,
            outputs: graph.outputs, layerOrder: order, isSequential: className == "Sequential",
            heads: [], regularizers: regularizers, optimizer: nil, config: json, preset: nil, source: nil)
        description.constraints = constraints
        description.innerOrders = graph.innerOrders
        try KerasCompile.apply(json["compile_config"] ?? .null, to: &description)
        return description
    }

    struct Graph {
        var nodes: [GraphNode] = []
        var inputs: [String] = []
        var outputs: [String] = []
        /// With nested models: the graph with each call of a nested model as one node (its
        /// `model.layers` order numbers the weight groups; `nodes` has the nested layers inlined).
        var collapsed: [GraphNode]?
        var collapsedOutputs: [String]?
        /// Each nested model's own `model.layers` order, by its layer name (inner names prefixed
        /// `<model>/`; deeper models keyed `<model>/<inner model>`).
        var innerOrders: [String: [(name: String, className: String)]] = [:]

        /// The graph Keras numbers its layers by: each nested model's call one node.
        var collapsedGraph: Graph {
            var g = self
            if let collapsed { (g.nodes, g.outputs) = (collapsed, collapsedOutputs ?? outputs) }
            return g
        }
    }

    /// Node id of call `k` of `layer`.
    static func nodeID(_ layer: String, _ k: Int) -> String { k == 0 ? layer : "\(layer)@\(k)" }

    /// A model's `input_layers` / `output_layers` as Keras's `tree.flatten` orders them: a bare
    /// [layer, node, tensor] triple, a list of them (nested lists flattened), or a dict by name
    /// (Keras 3 saves `outputs={"priority": …}` so), whose values come in sorted key order. A dict
    /// key names the input or output in `fit`'s data; Tandem names them after their layers, so a
    /// key that is not its layer's name is refused, naming both.
    private static func triples(_ value: JSONValue?, what: String) throws -> [(String, Int, Int)] {
        guard let value, value.array != nil || value.object != nil else {
            throw TandemError.usage("config.json: '\(what)' must be a list or a dict of [layer, node, tensor]")
        }
        func isLeaf(_ v: JSONValue) -> Bool {
            guard let a = v.array, a.count == 3, a[0].string != nil else { return false }
            return true
        }
        func flatten(_ v: JSONValue) throws -> [(String, Int, Int)] {
            if isLeaf(v), let a = v.array {
                guard let node = a[1].integer, let tensor = a[2].integer, let name = a[0].string else {
                    throw TandemError.usage("config.json: '\(what)' entries must be [layer, node, tensor]")
                }
                return [(name, node, tensor)]
            }
            if let a = v.array { return try a.flatMap(flatten) }
            if case .object(let fields) = v {
                var result: [(String, Int, Int)] = []
                for (key, entry) in fields.sorted(by: { $0.0 < $1.0 }) {
                    let flat = try flatten(entry)
                    guard flat.count == 1, let t = flat.first else {
                        throw TandemError.usage(
                            "config.json: '\(what)' entry '\(key)' must be one [layer, node, tensor]")
                    }
                    guard t.0 == key else {
                        throw TandemError.usage(
                            "config.json: '\(what)' names '\(key)' the tensor of layer '\(t.0)'; Tandem names inputs and outputs after their layers (give the layer name='\(key)', or use that name as the key)"
                        )
                    }
                    result.append(t)
                }
                return result
            }
            throw TandemError.usage("config.json: '\(what)' entries must be [layer, node, tensor]")
        }
        return try flatten(value)
    }

    private static func functional(_ config: JSONValue) throws -> Graph {
        guard let layers = config["layers"]?.array else {
            throw TandemError.usage("config.json: the model has no 'layers' list")
        }
        var raw:
            [String: (
                className: String, config: JSONValue,
                calls: [InboundCall]
            )] =
                [:]
        var fileOrder: [String] = []
        var nested: [String: Graph] = [:]
        var frozenModels = Set<String>()
        for entry in layers {
            let className = entry["class_name"]?.string ?? "?"
            let name = entry["name"]?.string ?? entry["config"]?["name"]?.string ?? ""
            guard !name.isEmpty else { throw TandemError.usage("config.json: a \(className) layer has no name") }
            guard raw[name] == nil else { throw TandemError.usage("config.json: two layers are named '\(name)'") }
            if (entry["module"]?.string ?? "").hasPrefix("keras.src.ops") {
                // An operation, not a layer: only the masks Embedding(mask_zero=True) and Masking save.
                let (calls, config) = try maskOperation(entry, name: name)
                raw[name] = (className, config, calls)
                fileOrder.append(name)
                continue
            }
            try KerasJSON.refuseCustom(entry, what: "layer '\(name)'")
            let calls = try (entry["inbound_nodes"]?.array ?? []).map {
                try inbound($0, layer: name, className: className)
            }
            raw[name] = (className, entry["config"] ?? .object([]), calls)
            fileOrder.append(name)
            if className == "Functional" || className == "Model" {
                // A model used as a layer (how keras.applications backbones appear): read as a model.
                let inner = entry["config"] ?? .null
                do {
                    nested[name] = try functional(inner)
                } catch let TandemError.usage(message) {
                    throw TandemError.usage("nested model '\(name)': \(message)")
                }
                if inner["trainable"]?.bool == false { frozenModels.insert(name) }
            } else if className == "Sequential" {
                throw TandemError.usage(
                    "layer '\(name)': a Sequential model used as a layer is not supported (nested Functional models are)"
                )
            }
        }
        var graph = Graph()
        let inputs = try triples(config["input_layers"], what: "input_layers")
        let outputs = try triples(config["output_layers"], what: "output_layers")
        // A nested model's call k is its inner graph under the prefix `<model>[@k]/`; its tensor t is its
        // output t.
        func prefix(_ model: String, _ k: Int) -> String { nodeID(model, k) + "/" }
        func checkedID(_ t: (String, Int, Int), _ context: String, collapsed: Bool = false) throws -> String {
            guard let entry = raw[t.0] else {
                throw TandemError.usage("config.json: \(context) names an unknown layer '\(t.0)'")
            }
            if let inner = nested[t.0] {
                guard t.1 >= 0 && t.1 < entry.calls.count, t.2 >= 0 && t.2 < inner.outputs.count else {
                    throw TandemError.usage(
                        "config.json: \(context) reads output \(t.2) of call \(t.1) of model '\(t.0)', which has \(entry.calls.count) call(s) and \(inner.outputs.count) output(s)"
                    )
                }
                return collapsed ? nodeID(t.0, t.1) : prefix(t.0, t.1) + inner.outputs[t.2]
            }
            guard t.2 == 0 else {
                throw TandemError.usage(
                    "config.json: \(context) reads output \(t.2) of layer '\(t.0)'; only single-output layers are supported"
                )
            }
            let calls = entry.className == "InputLayer" ? 1 : entry.calls.count
            guard t.1 >= 0 && t.1 < calls else {
                throw TandemError.usage(
                    "config.json: \(context) reads call \(t.1) of layer '\(t.0)', which has \(calls)")
            }
            return nodeID(t.0, t.1)
        }
        graph.inputs = try inputs.map { try checkedID($0, "input_layers") }
        graph.outputs = try outputs.map { try checkedID($0, "output_layers") }
        let collapsedOutputs = try outputs.map { try checkedID($0, "output_layers", collapsed: true) }
        for id in graph.inputs where raw[id]?.className != "InputLayer" {
            throw TandemError.usage("config.json: model input '\(id)' is not an InputLayer")
        }
        // Nodes, producers first: a depth-first walk from the outputs (inputs first for a stable order).
        var nodes: [String: GraphNode] = [:]
        var collapsed: [String: GraphNode] = [:]
        for name in fileOrder {
            let e = raw[name]!
            if e.className == "InputLayer" {
                nodes[name] = GraphNode(
                    id: name, layer: name, className: e.className, config: e.config, inputs: [], call: 0)
                continue
            }
            for (k, args) in e.calls.enumerated() {
                let producers = try args.tensors.map { try checkedID($0, "layer '\(name)'") }
                if let inner = nested[name] {
                    collapsed[nodeID(name, k)] = GraphNode(
                        id: nodeID(name, k), layer: name, className: e.className, config: e.config,
                        inputs: try args.tensors.map { try checkedID($0, "layer '\(name)'", collapsed: true) }, call: k)
                    guard !args.masked, producers.count == inner.inputs.count else {
                        throw TandemError.usage(
                            "config.json: model '\(name)' is called on \(producers.count) tensor(s)\(args.masked ? " with a mask" : ""); it has \(inner.inputs.count) input(s) and reads no mask"
                        )
                    }
                    // Its layers, named `<model>/<layer>` (a second call shares their weights).
                    let p = prefix(name, k)
                    let bound = Dictionary(uniqueKeysWithValues: zip(inner.inputs, producers))
                    for n in inner.nodes where n.className != "InputLayer" {
                        var config = n.config
                        if frozenModels.contains(name) { config = config.setting("trainable", to: .bool(false)) }
                        var node = GraphNode(
                            id: p + n.id, layer: "\(name)/\(n.layer)", className: n.className, config: config,
                            inputs: n.inputs.map { bound[$0] ?? p + $0 }, call: n.call, masked: n.masked)
                        node.savedTrainingFalse = n.savedTrainingFalse || args.trainingFalse
                        node.callOptions = n.callOptions
                        nodes[p + n.id] = node
                    }
                    continue
                }
                nodes[nodeID(name, k)] = GraphNode(
                    id: nodeID(name, k), layer: name, className: e.className, config: e.config,
                    inputs: producers, call: k, masked: args.masked)
                nodes[nodeID(name, k)]!.savedTrainingFalse = args.trainingFalse
                nodes[nodeID(name, k)]!.callOptions = args.options
                if !nested.isEmpty {
                    collapsed[nodeID(name, k)] = GraphNode(
                        id: nodeID(name, k), layer: name, className: e.className, config: e.config,
                        inputs: try args.tensors.map { try checkedID($0, "layer '\(name)'", collapsed: true) }, call: k,
                        masked: args.masked)
                }
            }
        }
        var done = Set<String>()
        var active = Set<String>()
        func visit(_ id: String) throws {
            if done.contains(id) { return }
            guard let node = nodes[id] else { throw TandemError.usage("config.json: unknown node '\(id)'") }
            guard active.insert(id).inserted else {
                throw TandemError.usage("config.json: layer '\(node.layer)' is part of a cycle")
            }
            for p in node.inputs { try visit(p) }
            active.remove(id)
            done.insert(id)
            graph.nodes.append(node)
        }
        for id in graph.inputs + graph.outputs { try visit(id) }
        if !nested.isEmpty {
            for name in fileOrder where raw[name]!.className == "InputLayer" { collapsed[name] = nodes[name] }
            graph.collapsed = Array(collapsed.values)
            graph.collapsedOutputs = collapsedOutputs
            for (name, inner) in nested {
                let order = try keraslayerOrder(inner.collapsedGraph, sequential: false)
                graph.innerOrders[name] = order.map { ("\(name)/\($0.name)", $0.className) }
                for (key, deeper) in inner.innerOrders {
                    graph.innerOrders["\(name)/\(key)"] = deeper.map { ("\(name)/\($0.name)", $0.className) }
                }
            }
        }
        return graph
    }

    /// The classes of `keras.src.ops` a file may hold: the masks of Embedding(mask_zero=True)
    /// (`not_equal(ids, 0)`) and of Masking (`any(not_equal(x, v), axis=-1)`).
    static let operations = ["NotEqual", "Any", "LogicalOr"]

    /// A mask operation's one call and its config: NotEqual's `value` (an integer for token ids, a
    /// float for Masking's mask_value, as the file writes it), Any's axis −1.
    private static func maskOperation(_ entry: JSONValue, name: String) throws -> (
        [InboundCall], JSONValue
    ) {
        let className = entry["class_name"]?.string ?? "?"
        guard operations.contains(className), entry["module"]?.string == "keras.src.ops.numpy" else {
            throw TandemError.usage(
                "layer '\(name)': the operation \(className) is not supported (only NotEqual, Any and LogicalOr: the masks that Embedding(mask_zero=True), Masking and merge layers save)"
            )
        }
        guard let calls = entry["inbound_nodes"]?.array, calls.count == 1, let args = calls[0]["args"]?.array else {
            throw TandemError.usage("layer '\(name)': \(className) must be called once")
        }
        if className == "LogicalOr" {  // a merge layer's two input masks
            guard args.count == 2 else {
                throw TandemError.usage("layer '\(name)': LogicalOr must combine two masks")
            }
            let tensors = try inbound(.object([("args", .array(args))]), layer: name)
            guard tensors.tensors.count == 2 else {
                throw TandemError.usage("layer '\(name)': LogicalOr must combine two masks")
            }
            return ([tensors], .object([("name", .string(name))]))
        }
        if className == "Any" {
            let axis = entry["config"]?["axis"]
            guard args.count == 1, axis?.integer == -1 || axis?.array?.first?.integer == -1 && axis?.array?.count == 1,
                entry["config"]?["keepdims"]?.bool != true
            else {
                throw TandemError.usage(
                    "layer '\(name)': Any must reduce one tensor over axis -1 without keepdims (Masking's mask)")
            }
            let tensors = try inbound(.object([("args", .array([args[0]]))]), layer: name)
            return ([tensors], .object([("name", .string(name))]))
        }
        guard args.count == 2, let value = args[1].number, value.isFinite else {
            throw TandemError.usage("layer '\(name)': NotEqual must compare one tensor with a number")
        }
        let tensors = try inbound(.object([("args", .array([args[0]]))]), layer: name)
        return ([tensors], .object([("name", .string(name)), ("value", args[1])]))
    }

    /// The tensors one call reads: Keras 3's {"args": [...], "kwargs": {...}} or Keras 2's [[layer, node, tensor, kwargs], ...].
    /// A `mask` keyword tensor comes last, and `masked` says so.
    /// One call's producers (a `mask` last when `masked`), its training=False, and its other keyword
    /// arguments that are not tensors (`use_causal_mask`, …), which the layer's builder reads.
    typealias InboundCall = (
        tensors: [(String, Int, Int)], masked: Bool, trainingFalse: Bool, options: JSONValue
    )

    /// Keyword tensors a class's call takes as inputs, in the order they follow its positional ones.
    static let keywordInputs = [
        "MultiHeadAttention": ["query", "value", "key", "attention_mask"],
        "GroupQueryAttention": ["query", "value", "key", "attention_mask"],
        "TransformerDecoder": ["decoder_sequence", "encoder_sequence"],
    ]

    private static func inbound(_ call: JSONValue, layer: String, className: String = "") throws -> InboundCall {
        var found: [(String, Int, Int)] = []
        func collect(_ v: JSONValue) throws {
            if v["class_name"]?.string == "__keras_tensor__" {
                guard let h = v["config"]?["keras_history"]?.array, h.count == 3, let n = h[0].string,
                    let node = h[1].integer, let t = h[2].integer
                else {
                    throw TandemError.usage("layer '\(layer)': a tensor without a valid keras_history")
                }
                found.append((n, node, t))
            } else if let items = v.array {
                for item in items { try collect(item) }
            }  // anything else (a number, a serialised object) is an argument, not a graph edge
        }
        if call.object != nil {
            try collect(call["args"] ?? .array([]))
            var mask: [(String, Int, Int)] = []
            var trainingFalse = false
            var options: [(String, JSONValue)] = []
            var keyword: [String: [(String, Int, Int)]] = [:]
            for (key, value) in call["kwargs"]?.object ?? [] {
                if key == "training" {
                    trainingFalse = value.bool == false  // overridden by fit (GraphNode.savedTrainingFalse)
                    continue
                }
                var tensors: [(String, Int, Int)] = []
                swap(&tensors, &found)
                try collect(value)
                swap(&tensors, &found)
                if key == "mask", tensors.count == 1 {
                    mask = tensors
                    continue
                }
                if tensors.count == 1, keywordInputs[className]?.contains(key) == true {
                    keyword[key] = tensors
                    continue
                }
                if tensors.isEmpty { options.append((key, value)) }
                if !tensors.isEmpty {
                    throw TandemError.usage(
                        "layer '\(layer)': the tensor argument '\(key)' is not supported (tensors come as inputs, and a mask as 'mask')"
                    )
                }
            }
            for key in keywordInputs[className] ?? [] { found += keyword[key] ?? [] }
            // An attention mask tensor comes last among the inputs; the option says it is there.
            if keyword["attention_mask"] != nil { options.append(("attention_mask", .string("the last input"))) }
            return (found + mask, !mask.isEmpty, trainingFalse, .object(options))
        }
        // Legacy: a list of [layer, node, tensor, kwargs].
        guard let items = call.array else {
            throw TandemError.usage("layer '\(layer)': inbound_nodes entries must be objects or lists")
        }
        for item in items {
            guard let a = item.array, a.count >= 3, let n = a[0].string, let node = a[1].integer, let t = a[2].integer
            else {
                throw TandemError.usage("layer '\(layer)': a legacy inbound node must be [layer, node, tensor, kwargs]")
            }
            found.append((n, node, t))
        }
        return (found, false, false, .object([]))
    }

    private static func sequential(_ config: JSONValue) throws -> Graph {
        guard var layers = config["layers"]?.array, !layers.isEmpty else {
            throw TandemError.usage("config.json: the Sequential model has no layers")
        }
        var graph = Graph()
        if layers[0]["class_name"]?.string != "InputLayer" {
            throw TandemError.usage(
                "the Sequential model has no InputLayer: build it with keras.Input(shape=...) as its first layer, so its input shape is in the file"
            )
        }
        let first = layers.removeFirst()
        try KerasJSON.refuseCustom(first, what: "the input layer")
        let inputName = first["config"]?["name"]?.string ?? "input_layer"
        graph.nodes.append(
            GraphNode(
                id: inputName, layer: inputName, className: "InputLayer", config: first["config"] ?? .object([]),
                inputs: [], call: 0))
        graph.inputs = [inputName]
        var previous = inputName
        var names = Set([inputName])
        // A Sequential file does not spell the mask out: it flows from Embedding(mask_zero=True)
        // through the layers that pass masks on, to the first layer that reads it, as in Keras.
        var mask: String?
        for entry in layers {
            let className = entry["class_name"]?.string ?? "?"
            guard let name = entry["config"]?["name"]?.string else {
                throw TandemError.usage("config.json: a \(className) layer has no name")
            }
            try KerasJSON.refuseCustom(entry, what: "layer '\(name)'")
            guard names.insert(name).inserted else {
                throw TandemError.usage("config.json: two layers are named '\(name)'")
            }
            let config = entry["config"] ?? .object([])
            let reads = mask != nil && LayerRegistry.maskConsumers.contains(className)
            graph.nodes.append(
                GraphNode(
                    id: name, layer: name, className: className, config: config,
                    inputs: [previous] + (reads ? [mask!] : []), call: 0, masked: reads))
            if className == "Embedding", config["mask_zero"]?.bool == true, previous == inputName {
                let id = "\(name)/not_equal"
                graph.nodes.insert(
                    GraphNode(
                        id: id, layer: id, className: "NotEqual",
                        config: .object([("name", .string(id)), ("value", .int(0))]),
                        inputs: [inputName], call: 0), at: graph.nodes.count - 1)
                mask = id
            } else if className == "Masking" {
                // Masking's mask, as a functional file spells it: any(not_equal(x, mask_value), axis=-1).
                let value = config["mask_value"]?.number ?? 0
                let notEqual = "\(name)/not_equal"
                let any = "\(name)/any"
                graph.nodes.insert(
                    contentsOf: [
                        GraphNode(
                            id: notEqual, layer: notEqual, className: "NotEqual",
                            config: .object([("name", .string(notEqual)), ("value", .double(value))]),
                            inputs: [previous],
                            call: 0),
                        GraphNode(
                            id: any, layer: any, className: "Any", config: .object([("name", .string(any))]),
                            inputs: [notEqual], call: 0),
                    ], at: graph.nodes.count - 1)
                mask = any
            } else if reads {
                // An RNN returning its sequence passes the mask on; otherwise it is used up.
                if !(config["return_sequences"]?.bool ?? config["layer"]?["config"]?["return_sequences"]?.bool ?? false)
                {
                    mask = nil
                }
            } else if !["Dense", "Activation", "Dropout", "SpatialDropout1D", "LayerNormalization", "TimeDistributed"]
                .contains(className)
            {
                mask = nil  // a layer without mask support drops it
            }
            previous = name
        }
        graph.outputs = [previous]
        return graph
    }

    /// Keras's `model.layers` order (ops/function.py: map_graph): depth-first
    /// from the outputs, a layer's first visit gives its index; depth of a node
    /// is 0 for a node nothing consumes, else max(consumer depth + 1), and a
    /// layer takes the largest depth of its nodes; layers by depth descending,
    /// ties by index. Sequential: its layers in order, without the InputLayer.
    static func keraslayerOrder(_ graph: Graph, sequential: Bool) throws -> [(name: String, className: String)] {
        let byID = Dictionary(uniqueKeysWithValues: graph.nodes.map { ($0.id, $0) })
        if sequential {
            return graph.nodes.dropFirst().filter { !operations.contains($0.className) }.map {
                ($0.layer, $0.className)
            }
        }
        var finished = Set<String>()
        var ordered: [String] = []
        var index: [String: Int] = [:]
        func walk(_ id: String) {
            guard !finished.contains(id), let node = byID[id] else { return }
            if index[node.layer] == nil { index[node.layer] = index.count }
            for p in node.inputs { walk(p) }
            finished.insert(id)
            ordered.append(id)
        }
        for o in graph.outputs { walk(o) }
        var nodeDepth: [String: Int] = [:]
        var layerDepth: [String: Int] = [:]
        for id in ordered.reversed() {
            let node = byID[id]!
            let depth = max(nodeDepth[id] ?? 0, layerDepth[node.layer] ?? 0)
            layerDepth[node.layer] = depth
            nodeDepth[id] = depth
            for p in node.inputs { nodeDepth[p] = max(depth + 1, nodeDepth[p] ?? 0) }
        }
        for i in graph.inputs where layerDepth[byID[i]!.layer] == nil {
            layerDepth[byID[i]!.layer] = 0
            index[byID[i]!.layer] = -1
        }
        let classOf = Dictionary(graph.nodes.map { ($0.layer, $0.className) }, uniquingKeysWith: { a, _ in a })
        // Operations (a NotEqual mask) take part in the walk but are not layers.
        return layerDepth.keys.filter { !operations.contains(classOf[$0]!) }.sorted { a, b in
            layerDepth[a]! != layerDepth[b]! ? layerDepth[a]! > layerDepth[b]! : index[a]! < index[b]!
        }.map { ($0, classOf[$0]!) }
    }

}

extension ModelDescription {
    /// Each layer's HDF5 group under `layers/`, in `layerOrder`: the snake-cased
    /// class name, `_k` for its k-th repeat (docs/KERAS-FORMAT.md §3).
    /// A nested model's group comes first, then its layers' under `<its group>/layers/`, numbered
    /// within it.
    package var weightGroups: [(layer: String, className: String, group: String)] {
        func groups(_ order: [(name: String, className: String)], under prefix: String) -> [(
            layer: String, className: String, group: String
        )] {
            var counts: [String: Int] = [:]
            return order.flatMap { name, className in
                let base = KerasJSON.snakeCase(className)
                let k = counts[base, default: 0]
                counts[base] = k + 1
                let group = prefix + (k == 0 ? base : "\(base)_\(k)")
                let inner = innerOrders[name].map { groups($0, under: group + "/layers/") } ?? []
                return [(name, className, group)] + inner
            }
        }
        return groups(layerOrder, under: "")
    }

    /// `layerOrder` with each nested model followed by its layers, recursively: the order of Keras's
    /// `model.trainable_variables`.
    package var flatLayerOrder: [(name: String, className: String)] {
        weightGroups.map { ($0.layer, $0.className) }
    }

    /// Each weight's path as Keras names the variable (`variable.path`): Tandem's `layer/weight`, with an
    /// RNN cell's name before the weight (`lstm/lstm_cell/kernel`, `bi/forward_gru/gru_cell/bias`).
    /// Muon's exclude_layers patterns and its embedding rule read these.
    package var kerasVariablePaths: [String: String] {
        var paths: [String: String] = [:]
        for (layer, className, _) in weightGroups {
            let config = nodes.first { $0.layer == layer }?.config ?? .null
            for v in ModelDescription.kerasVariables(className: className, layer: layer, config: config)
            where v.path.hasSuffix("cell/vars") {
                for name in v.names {
                    var parts = name.split(separator: "/").map(String.init)
                    parts.insert(v.label, at: parts.count - 1)
                    paths["\(layer)/\(name)"] = "\(layer)/" + parts.joined(separator: "/")
                }
            }
        }
        return paths
    }

    /// A layer's variable groups (docs/KERAS-FORMAT.md §3): `vars` (named after the layer),
    /// and for a wrapper its sub-objects' (an RNN's weights under `cell/`,
    /// TimeDistributed's under `layer/`), each holding its own variables.
    package typealias VariableGroup = KerasLayerKind.VariableGroup

    package static func kerasVariables(className: String, layer: String, config: JSONValue) -> [VariableGroup] {
        LayerRegistry.variables(className: className, layer: layer, config: config)
    }

    /// A note for the run's start when a call was saved with `training=False`: Keras 3's fit overrides it
    /// (GraphNode.savedTrainingFalse), and so does Tandem, which trains as Keras does.
    public var trainingFalseNote: String? {
        let calls = nodes.filter(\.savedTrainingFalse)
        guard !calls.isEmpty else { return nil }
        let norms = calls.filter { $0.className == "BatchNormalization" && $0.config["trainable"]?.bool != false }
        var note =
            "\(calls.count) layer call\(calls.count == 1 ? " was" : "s were") saved with training=False (\(calls[0].layer)\(calls.count > 1 ? ", …" : "")); Keras 3's fit overrides that argument with training=True (keras-team/keras#20285), and Tandem trains as Keras does"
        if !norms.isEmpty {
            note +=
                ": \(norms.count) trainable BatchNormalization layer\(norms.count == 1 ? "" : "s") use batch statistics; set trainable=False on them to keep their moving statistics"
        }
        return note
    }

    /// The layers whose weights do not train: Keras's `trainable: false` in a layer's config.
    package var frozenLayers: Set<String> {
        Set(nodes.filter { $0.className != "InputLayer" && $0.config["trainable"]?.bool == false }.map(\.layer))
    }

    /// Every trainable variable in Keras's `model.trainable_variables` order, as `<layer>/<weight>`
    /// (a frozen layer's are not: Keras keeps no optimizer variables for them).
    package var trainableVariables: [String] {
        let frozen = frozenLayers
        return flatLayerOrder.filter { !frozen.contains($0.name) }.flatMap { name, className -> [String] in
            let config = nodes.first { $0.layer == name }?.config ?? .null
            // BatchNormalization's moving statistics are not trainable variables (no optimizer slots).
            return ModelDescription.kerasVariables(className: className, layer: name, config: config).flatMap(\.names)
                .filter { className != "BatchNormalization" || !$0.hasPrefix("moving_") }.map { "\(name)/\($0)" }
        }
    }
}
