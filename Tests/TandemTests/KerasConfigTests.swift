// Part of what NewLayerGradientTests.swift's header describes.

import Foundation
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class KerasConfigTests: XCTestCase {
    private func layer(_ cls: String, _ name: String, _ config: String, _ inbound: String) -> String {
        #"{"module": "keras.layers", "class_name": "\#(cls)", "config": {"name": "\#(name)"\#(config)}, "registered_name": null, "name": "\#(name)", "inbound_nodes": \#(inbound)}"#
    }

    func testLegacyInboundNodesBareTriplesAndKerasLayerOrder() throws {
        // Keras 2's inbound form ([[layer, node, tensor, kwargs]]), one bare triple for the single input,
        // a Dense called twice (a second node), written in an order Keras would not write.
        let layers = [
            layer("Dense", "out", #", "units": 1, "activation": "sigmoid""#, #"[[["mid", 1, 0, {}]]]"#),
            layer(
                "Dense", "mid", #", "units": 3, "activation": "relu""#, #"[[["x", 0, 0, {}]], [["side", 0, 0, {}]]]"#),
            layer("InputLayer", "x", #", "batch_shape": [null, 3], "dtype": "float32""#, "[]"),
            layer("Dense", "side", #", "units": 3"#, #"[[["mid", 0, 0, {}]]]"#),
            layer("Dense", "aux", #", "units": 2, "activation": "softmax""#, #"[[["mid", 0, 0, {}]]]"#),
        ]
        let json =
            #"{"module": "keras.src.models.functional", "class_name": "Functional", "registered_name": "Functional", "config": {"name": "m", "layers": [\#(layers.joined(separator: ", "))], "input_layers": ["x", 0, 0], "output_layers": [["out", 0, 0], ["aux", 0, 0]]}, "compile_config": {"loss": ["binary_crossentropy", "categorical_crossentropy"], "loss_weights": [2.0, 0.5], "metrics": [["accuracy"], ["acc"]], "optimizer": "rmsprop"}}"#
        let d = try KerasConfig.description(fromJSON: Array(json.utf8), source: "test")
        XCTAssertEqual(d.inputs, ["x"])
        XCTAssertEqual(d.outputs, ["out", "aux"])
        XCTAssertEqual(d.node("mid@1")?.inputs, ["side"])
        // Keras's map_graph: depth from the outputs (out 0, mid@1 1, side 2, mid 3 → the layer 'mid' takes 3, x 4; aux 0).
        XCTAssertEqual(d.layerOrder.map(\.name), ["x", "mid", "side", "out", "aux"])
        XCTAssertEqual(d.weightGroups.map(\.group), ["input_layer", "dense", "dense_1", "dense_2", "dense_3"])
        XCTAssertEqual(d.heads.map(\.weight), [2.0, 0.5])
        XCTAssertEqual(d.heads.map { $0.accuracy?.kind }, [.binary, .categorical])
        XCTAssertEqual(d.optimizer?.kind, .rmsprop)
        let model = try d.build(maxBatch: 2)
        XCTAssertEqual(model.parameters.tensors.map(\.name).filter { $0.hasPrefix("mid") }, ["mid/kernel", "mid/bias"])
        XCTAssertEqual(
            d.trainableVariables,
            ["mid/kernel", "mid/bias", "side/kernel", "side/bias", "out/kernel", "out/bias", "aux/kernel", "aux/bias"])
    }

    /// A Functional model used as a layer, twice (a siamese backbone), frozen, with two outputs: its layers are
    /// inlined under `<model>/<layer>`, both calls share their weights, the outer model numbers it as one
    /// layer (`functional`) and its layers are numbered within it (`functional/layers/dense`), and Keras's
    /// trainable variables skip its frozen layers.
    func testNestedFunctionalModelCalledTwice() throws {
        let inner = [
            layer("InputLayer", "inner_in", #", "batch_shape": [null, 3], "dtype": "float32""#, "[]"),
            layer(
                "Dense", "hidden", #", "units": 4, "activation": "relu", "trainable": false"#,
                #"[[["inner_in", 0, 0, {}]]]"#),
            layer("Dense", "code", #", "units": 2, "trainable": false"#, #"[[["hidden", 0, 0, {}]]]"#),
            layer("Dense", "side", #", "units": 1, "trainable": false"#, #"[[["hidden", 0, 0, {}]]]"#),
        ].joined(separator: ", ")
        let backbone =
            #"{"module": "keras.src.models.functional", "class_name": "Functional", "registered_name": "Functional", "name": "backbone", "config": {"name": "backbone", "trainable": false, "layers": [\#(inner)], "input_layers": ["inner_in", 0, 0], "output_layers": [["code", 0, 0], ["side", 0, 0]]}, "inbound_nodes": [[["a", 0, 0, {}]], [["b", 0, 0, {}]]]}"#
        let layers = [
            layer("InputLayer", "a", #", "batch_shape": [null, 3], "dtype": "float32""#, "[]"),
            layer("InputLayer", "b", #", "batch_shape": [null, 3], "dtype": "float32""#, "[]"),
            backbone,
            layer(
                "Concatenate", "joined", #", "axis": -1"#,
                #"[[["backbone", 0, 0, {}], ["backbone", 1, 0, {}], ["backbone", 1, 1, {}]]]"#),
            layer("Dense", "out", #", "units": 1"#, #"[[["joined", 0, 0, {}]]]"#),
        ]
        let json =
            #"{"module": "keras.src.models.functional", "class_name": "Functional", "registered_name": "Functional", "config": {"name": "m", "layers": [\#(layers.joined(separator: ", "))], "input_layers": [["a", 0, 0], ["b", 0, 0]], "output_layers": [["out", 0, 0]]}, "compile_config": {"loss": "mse", "optimizer": "adam"}}"#
        let d = try KerasConfig.description(fromJSON: Array(json.utf8), source: "test")
        XCTAssertEqual(d.node("joined")?.inputs, ["backbone/code", "backbone@1/code", "backbone@1/side"])
        XCTAssertEqual(d.node("backbone@1/hidden")?.inputs, ["b"])
        XCTAssertEqual(d.node("backbone@1/hidden")?.layer, "backbone/hidden")
        XCTAssertEqual(d.layerOrder.map(\.name), ["a", "b", "backbone", "joined", "out"])
        XCTAssertEqual(
            d.weightGroups.map(\.group),
            [
                "input_layer", "input_layer_1", "functional", "functional/layers/input_layer",
                "functional/layers/dense",
                "functional/layers/dense_1", "functional/layers/dense_2", "concatenate", "dense",
            ])
        XCTAssertEqual(d.weightGroups[5].layer, "backbone/code")
        XCTAssertEqual(d.trainableVariables, ["out/kernel", "out/bias"])
        let model = try d.build(maxBatch: 2)
        XCTAssertEqual(
            model.parameters.tensors.filter(\.spec.trainable).map(\.name), ["out/kernel", "out/bias"])
        XCTAssertEqual(model.parameters.tensors.count, 8)  // one set of backbone weights for both calls
    }

    /// Inputs and outputs as Keras 3 saves `Model(inputs={…}, outputs={…})`: dicts by name, flattened
    /// as Keras's tree.flatten does (sorted keys; nested lists in order), a loss dict and a single
    /// loss string mapped by output name; a key that is not its layer's name is refused naming both.
    func testDictAndNestedInputsAndOutputs() throws {
        let layers = [
            layer("InputLayer", "title", #", "batch_shape": [null, 3], "dtype": "float32""#, "[]"),
            layer("InputLayer", "body", #", "batch_shape": [null, 2], "dtype": "float32""#, "[]"),
            layer(
                "Concatenate", "cat", #", "axis": -1"#,
                #"[{"args": [[{"class_name": "__keras_tensor__", "config": {"keras_history": ["title", 0, 0]}}, {"class_name": "__keras_tensor__", "config": {"keras_history": ["body", 0, 0]}}]], "kwargs": {}}]"#
            ),
            layer("Dense", "priority", #", "units": 1"#, #"[[["cat", 0, 0, {}]]]"#),
            layer("Dense", "department", #", "units": 3"#, #"[[["cat", 0, 0, {}]]]"#),
        ].joined(separator: ", ")
        func model(inputs: String, outputs: String, loss: String) -> [UInt8] {
            Array(
                #"{"module": "keras.src.models.functional", "class_name": "Functional", "config": {"name": "m", "layers": [\#(layers)], "input_layers": \#(inputs), "output_layers": \#(outputs)}, "compile_config": {"loss": \#(loss), "optimizer": "rmsprop"}}"#
                    .utf8)
        }
        let byName = #"{"title": ["title", 0, 0], "body": ["body", 0, 0]}"#
        let d = try KerasConfig.description(
            fromJSON: model(
                inputs: byName, outputs: #"{"priority": ["priority", 0, 0], "department": ["department", 0, 0]}"#,
                loss: #"{"priority": "binary_crossentropy", "department": "categorical_crossentropy"}"#),
            source: "m.keras")
        XCTAssertEqual(d.inputs, ["body", "title"])
        XCTAssertEqual(d.outputs, ["department", "priority"])
        XCTAssertEqual(d.heads.map(\.output), ["department", "priority"])
        XCTAssertEqual(d.heads.map(\.loss), [.categoricalCrossentropy, .binaryCrossentropy])
        _ = try d.build(maxBatch: 2)

        let nested = try KerasConfig.description(
            fromJSON: model(
                inputs: #"[[["title", 0, 0]], [["body", 0, 0]]]"#,
                outputs: #"[[["priority", 0, 0]], ["department", 0, 0]]"#, loss: #""mse""#),
            source: "m.keras")
        XCTAssertEqual(nested.inputs, ["title", "body"])
        XCTAssertEqual(nested.outputs, ["priority", "department"])
        XCTAssertEqual(nested.heads.map(\.loss), [.meanSquaredError, .meanSquaredError])

        XCTAssertThrowsError(
            try KerasConfig.description(
                fromJSON: model(
                    inputs: byName, outputs: #"{"urgency": ["priority", 0, 0], "department": ["department", 0, 0]}"#,
                    loss: #""mse""#),
                source: "m.keras")
        ) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("'urgency'") && text.contains("'priority'"), text)
        }
    }

    /// `Input(shape=(None,))`: the model is built at the data's length (the config keeps None); without
    /// data it says so; a length a valid convolution cannot take names the data and the layer.
    func testVariableLengthInputTakesTheDataLength() throws {
        let layers = [
            layer("InputLayer", "ids", #", "batch_shape": [null, null], "dtype": "float32""#, "[]"),
            layer("Embedding", "embedding", #", "input_dim": 20, "output_dim": 4"#, #"[[["ids", 0, 0, {}]]]"#),
            layer(
                "Conv1D", "conv", #", "filters": 3, "kernel_size": 5, "padding": "valid""#,
                #"[[["embedding", 0, 0, {}]]]"#),
            layer("GlobalMaxPooling1D", "pool", "", #"[[["conv", 0, 0, {}]]]"#),
            layer("Dense", "out", #", "units": 1"#, #"[[["pool", 0, 0, {}]]]"#),
        ].joined(separator: ", ")
        let json =
            #"{"module": "keras.src.models.functional", "class_name": "Functional", "config": {"name": "m", "layers": [\#(layers)], "input_layers": [["ids", 0, 0]], "output_layers": [["out", 0, 0]]}, "compile_config": {"loss": "mse", "optimizer": "rmsprop"}}"#
        var d = try KerasConfig.description(fromJSON: Array(json.utf8), source: "m.keras")
        XCTAssertEqual(d.variableInputs, ["ids"])
        XCTAssertThrowsError(try d.build(maxBatch: 2)) { error in
            XCTAssertTrue("\(error)".contains("variable length (None)"), "\(error)")
        }
        for length in [7, 12] {
            d.dataShapes = ["ids": [length]]
            let model = try d.build(maxBatch: 2)
            XCTAssertEqual(model.inputs[0].kind, .tokens, "float32 ids read by an Embedding")
            XCTAssertEqual(model.inputs[0].output.shape, [length])
            XCTAssertEqual(model.layers.first { $0.name == "conv" }?.output.shape, [length - 4, 3])
        }
        d.dataShapes = ["ids": [3]]
        d.dataSource = "data/"
        XCTAssertThrowsError(try d.build(maxBatch: 2)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("data/") && text.contains("ids.npy [3]") && text.contains("'conv'"), text)
        }
    }

    /// What the layers issue still refuses is refused by name, with the reason; never trapped on.
    func testUnsupportedLayerOptionsAreRefusedWithTheReason() throws {
        func tensor(_ name: String, _ shape: String) -> String {
            #"{"class_name": "__keras_tensor__", "config": {"shape": \#(shape), "dtype": "float32", "keras_history": ["\#(name)", 0, 0]}}"#
        }
        let input = layer("InputLayer", "tok", #", "batch_shape": [null, 5], "dtype": "int32""#, "[]")
        let embedding = layer(
            "Embedding", "emb", #", "input_dim": 9, "output_dim": 4, "mask_zero": true"#,
            #"[{"args": [\#(tensor("tok", "[null, 5]"))], "kwargs": {}}]"#)
        let mask =
            #"{"module": "keras.src.ops.numpy", "class_name": "NotEqual", "config": {"name": "ne"}, "registered_name": "NotEqual", "name": "ne", "inbound_nodes": [{"args": [\#(tensor("tok", "[null, 5]")), 0], "kwargs": {}}]}"#
        func model(_ last: String, output: String = "out") -> String {
            #"{"class_name": "Functional", "config": {"name": "m", "layers": [\#([input, embedding, mask, last].joined(separator: ", "))], "input_layers": [["tok", 0, 0]], "output_layers": [["\#(output)", 0, 0]]}}"#
        }
        let seq = tensor("emb", "[null, 5, 4]")
        let cases: [(String, String)] = [
            (
                layer(
                    "Dense", "out", #", "units": 2"#,
                    #"[{"args": [\#(seq)], "kwargs": {"mask": \#(tensor("ne", "[null, 5]"))}}]"#),
                "layer 'out' (Dense): its 'mask' argument is not supported (masks are read by LSTM, GRU, SimpleRNN, Bidirectional, TimeDistributed, GlobalAveragePooling1D)"
            ),
            (
                layer("GRU", "out", #", "units": 2, "stateful": true"#, #"[{"args": [\#(seq)], "kwargs": {}}]"#),
                "layer 'out' (GRU): 'stateful' = true is not supported (stateful = false)"
            ),
            (
                layer(
                    "TimeDistributed", "out",
                    #", "layer": {"module": "keras.layers", "class_name": "BatchNormalization", "config": {"name": "bn"}, "registered_name": null}"#,
                    #"[{"args": [\#(seq)], "kwargs": {}}]"#),
                "Keras normalises each step of a TimeDistributed BatchNormalization on its own"
            ),
            (
                layer(
                    "Conv1D", "out", #", "filters": 2, "kernel_size": 3, "groups": 2"#,
                    #"[{"args": [\#(seq)], "kwargs": {}}]"#),
                "'groups' = 2 is not supported (groups = 1)"
            ),
            (
                layer(
                    "Bidirectional", "out",
                    #", "layer": {"module": "keras.layers", "class_name": "Dense", "config": {"name": "forward_dense", "units": 2}, "registered_name": null}"#,
                    #"[{"args": [\#(seq)], "kwargs": {}}]"#),
                "wraps Dense; only LSTM, GRU and SimpleRNN are supported"
            ),
            (
                layer("ReLU", "out", #", "negative_slope": -0.1"#, #"[{"args": [\#(seq)], "kwargs": {}}]"#),
                "layer 'out' (ReLU): 'negative_slope' must be ≥ 0 (Keras's ReLU refuses others)"
            ),
            (
                layer("ReLU", "out", #", "max_value": -1"#, #"[{"args": [\#(seq)], "kwargs": {}}]"#),
                "layer 'out' (ReLU): 'max_value' must be a number ≥ 0 or null"
            ),
            (
                layer(
                    "UnitNormalization", "out",
                    #", "activity_regularizer": {"module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.01}, "registered_name": null}"#,
                    #"[{"args": [\#(seq)], "kwargs": {}}]"#),
                "layer 'out': an activity_regularizer on a model output is not supported"
            ),
            (
                layer("Softmax", "out", #", "axis": 0"#, #"[{"args": [\#(seq)], "kwargs": {}}]"#),
                "layer 'out' (Softmax): 'axis' = 0 is not supported (non-batch axes"
            ),
        ]
        for (last, expected) in cases {
            XCTAssertThrowsError(
                try KerasConfig.description(fromJSON: Array(model(last).utf8), source: "m.keras").build(maxBatch: 2)
            ) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error)")
                XCTAssertTrue("\(error)".hasPrefix("m.keras"), "\(error)")
            }
        }
        // The accepted form of the same file: the mask read by a GRU.
        let gru = layer(
            "GRU", "out", #", "units": 2"#, #"[{"args": [\#(seq)], "kwargs": {"mask": \#(tensor("ne", "[null, 5]"))}}]"#
        )
        let d = try KerasConfig.description(fromJSON: Array(model(gru).utf8), source: "m.keras")
        XCTAssertEqual(d.layerOrder.map(\.name), ["tok", "emb", "out"], "the NotEqual op is not a layer")
        XCTAssertTrue(try d.build(maxBatch: 2).layers.contains { $0 is SequenceMask })
    }

    /// MultiHeadAttention's call: a key as a keyword tensor, use_causal_mask and the Keras masks of
    /// Embedding(mask_zero=True) are read; what Tandem does not implement (gates, other axes, attention
    /// scores, an explicit mask tensor) and a dropout outside [0, 1) are refused by name.
    func testMultiHeadAttentionCallsAndRefusals() throws {
        func tensor(_ name: String, _ shape: String = "[null, 5, 4]") -> String {
            #"{"class_name": "__keras_tensor__", "config": {"shape": \#(shape), "dtype": "float32", "keras_history": ["\#(name)", 0, 0]}}"#
        }
        func model(_ options: String, kwargs: String = "", maskZero: Bool = false) -> String {
            let layers = [
                layer("InputLayer", "tok", #", "batch_shape": [null, 5], "dtype": "int32""#, "[]"),
                layer(
                    "Embedding", "emb", #", "input_dim": 9, "output_dim": 4, "mask_zero": \#(maskZero)"#,
                    #"[{"args": [\#(tensor("tok", "[null, 5]"))], "kwargs": {}}]"#),
                layer("Dense", "keys", #", "units": 3"#, #"[{"args": [\#(tensor("emb"))], "kwargs": {}}]"#),
                layer(
                    "MultiHeadAttention", "out", #", "num_heads": 2, "key_dim": 3\#(options)"#,
                    #"[{"args": [\#(tensor("emb")), \#(tensor("emb"))], "kwargs": {\#(kwargs)}}]"#),
            ]
            return
                #"{"class_name": "Functional", "config": {"name": "m", "layers": [\#(layers.joined(separator: ", "))], "input_layers": [["tok", 0, 0]], "output_layers": [["out", 0, 0]]}}"#
        }
        let accepted = try KerasConfig.description(
            fromJSON: Array(
                model(#", "output_shape": [6]"#, kwargs: #""key": \#(tensor("keys")), "use_causal_mask": true"#).utf8),
            source: "m.keras"
        ).build(maxBatch: 2)
        let attention = try XCTUnwrap(accepted.layers.first { $0 is MultiHeadAttention } as? MultiHeadAttention)
        XCTAssertTrue(attention.causal)
        XCTAssertEqual(attention.inputs.map(\.name), ["emb", "emb", "keys"])
        XCTAssertEqual(attention.output.shape, [5, 6])
        // Embedding(mask_zero=True): the query's, value's and key's masks (through the Dense) are its ids ≠ 0.
        let masked = try KerasConfig.description(
            fromJSON: Array(model("", kwargs: #""key": \#(tensor("keys"))"#, maskZero: true).utf8), source: "m.keras"
        ).build(maxBatch: 2)
        let maskedAttention = try XCTUnwrap(masked.layers.first { $0 is MultiHeadAttention })
        XCTAssertEqual(maskedAttention.inputs.filter { $0 is SequenceMask }.count, 3)
        let cases: [(String, String, Bool, String)] = [
            (
                #", "dropout": 1.5"#, "", false,
                "'dropout' = 1.5 must be in [0, 1)"
            ),
            (#", "use_gate": true"#, "", false, "'use_gate' = true is not supported (false)"),
            (#", "attention_axes": [2]"#, "", false, "'attention_axes' = [2] is not supported"),
            (
                "", #""return_attention_scores": true"#, false,
                "the call argument return_attention_scores=true is not supported"
            ),
            (
                "", #""attention_mask": \#(tensor("keys"))"#, false,
                "its attention_mask is [5, 3] per sample; it must be [query steps, key steps] = [5, 5]"
            ),
        ]
        for (options, kwargs, maskZero, expected) in cases {
            XCTAssertThrowsError(
                try KerasConfig.description(
                    fromJSON: Array(model(options, kwargs: kwargs, maskZero: maskZero).utf8), source: "m.keras"
                ).build(maxBatch: 2)
            ) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error)")
                XCTAssertTrue("\(error)".hasPrefix("m.keras"), "\(error)")
            }
        }
    }

    func testSnakeCaseAsKeras() {
        let cases = [
            "InputLayer": "input_layer", "LSTM": "lstm", "GRU": "gru", "Conv1D": "conv1d", "Dense": "dense",
            "GlobalAveragePooling1D": "global_average_pooling1d", "LayerNormalization": "layer_normalization",
            "BatchNormalization": "batch_normalization", "SimpleRNN": "simple_rnn",
        ]
        for (k, v) in cases { XCTAssertEqual(KerasJSON.snakeCase(k), v, k) }
    }

    func testJSONRoundTripKeepsTypesAndOrder() throws {
        let text =
            #"{"b": 1, "a": 1.0, "c": true, "d": [null, -2.5e-3, "é\n\"x\"", {"z": 0}], "e": 0.009999999776482582, "f": "\ud83d\ude00"}"#
        let v = try JSONValue.parse(Array(text.utf8))
        XCTAssertEqual(v.object?.map(\.0), ["b", "a", "c", "d", "e", "f"])
        XCTAssertEqual(v["b"], .int(1))
        XCTAssertEqual(v["a"], .double(1))
        XCTAssertEqual(v["c"], .bool(true))
        XCTAssertEqual(v["f"]?.string, "😀")
        let again = try JSONValue.parse(Array(v.serialized().utf8))
        XCTAssertEqual(again, v)
        XCTAssertTrue(v.serialized().contains(#""a": 1.0"#))
        XCTAssertTrue(v.serialized().contains(#""e": 0.009999999776482582"#))
        XCTAssertThrowsError(try JSONValue.parse(Array(String(repeating: "[", count: 1000).utf8)))
        XCTAssertThrowsError(try JSONValue.parse(Array(#"{"a": 1,}"#.utf8)))
        XCTAssertThrowsError(try JSONValue.parse(Array(#"{"a": "x"} tail"#.utf8)))
    }
}
