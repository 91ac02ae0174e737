// The model core beyond the headline preset: gradient checks of the new layer
// options and loss inputs (LSTM sequences, a shared layer's two calls, Dense
// without bias, sparse CCE, from_logits, losses on probabilities, L1), the
// Keras config reader (legacy inbound nodes, bare triples, Keras's layer
// order), the JSON value type, and a few hundred mutated archives read
// without a trap. Gradient tolerances as in GradientCheckTests (Support.swift).

import Foundation
import Tandem
import XCTest

private func write(_ values: [Float], _ shape: [Int], _ path: String) throws {
    try values.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: shape, to: path) }
}

final class NewLayerGradientTests: XCTestCase {
    func testLSTMReturnSequencesFeedsAStackedLSTM() throws {
        // x [B, 4, 3] → LSTM(5, return_sequences) → LSTM(2): every step's output gets gradient from the next layer.
        let x = InputLayer(name: "x", kind: .features, shape: [4, 3])
        let first = LSTM(name: "first", units: 5, input: x, steps: 4, returnSequences: true)
        let second = LSTM(name: "second", units: 2, input: first, steps: 4)
        XCTAssertEqual(first.output.shape, [4, 5])
        let head = Dense(name: "out", units: 1, activation: .sigmoid, input: second)
        let model = Model(inputs: [x], outputs: [head], maxBatch: 3)
        model.parameters.initialize(seed: 4)
        let dir = temporaryDirectory()
        var rng = SeededGenerator(seed: 6)
        try write((0..<36).map { _ in Float(rng.normal()) }, [3, 4, 3], dir + "/x.npy")
        try write([1, 0, 1], [3, 1], dir + "/out.npy")
        let heads = [Head(output: "out", loss: .binaryCrossentropy, weight: 1)]
        let step = try TrainingStep(
            model: model, heads: heads, optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
            communicator: LocalCommunicator(), regularizers: [])
        try checkTotalLossGradient(
            step, data: try Dataset(directory: dir, model: model, heads: heads), batch: [2, 0, 1])
    }

    func testEveryLossInputAndASharedLayer() throws {
        // x → shared Dense "trunk" called on x and on x2 (one set of weights, two calls' gradients added);
        // heads: sparse CCE on a softmax Dense (from its logits), BCE from_logits on a linear Dense
        // without bias, CCE on probabilities of a softmax Dense that also feeds another layer (so the loss
        // reads the output, clipped as Keras does), MSE on that layer; L1 + L2 on the trunk.
        let x = InputLayer(name: "x", kind: .features, width: 3)
        let x2 = InputLayer(name: "x2", kind: .features, width: 3)
        let trunk = Dense(name: "trunk", units: 4, activation: .tanh, input: x)
        let trunk2 = Dense(name: "trunk@1", units: 4, activation: .tanh, input: x2, weights: "trunk")
        let joined = Concatenate(name: "joined", inputs: [trunk, trunk2])
        let ids = Dense(name: "ids", units: 3, activation: .softmax, input: joined)
        let logit = Dense(name: "logit", units: 2, activation: .linear, input: joined, useBias: false)
        let probs = Dense(name: "probs", units: 3, activation: .softmax, input: trunk2)
        let after = Dense(name: "after", units: 2, activation: .linear, input: probs)
        let model = Model(inputs: [x, x2], outputs: [ids, logit, probs, after], maxBatch: 5)
        XCTAssertEqual(
            model.parameters.tensors.filter { $0.name.hasPrefix("trunk") }.map(\.name), ["trunk/kernel", "trunk/bias"])
        model.parameters.initialize(seed: 9)
        let dir = temporaryDirectory()
        var rng = SeededGenerator(seed: 10)
        try write((0..<15).map { _ in Float(rng.normal()) }, [5, 3], dir + "/x.npy")
        try write((0..<15).map { _ in Float(rng.normal()) }, [5, 3], dir + "/x2.npy")
        try write([2, 0, 1, 1, 2], [5], dir + "/ids.npy")
        try write((0..<10).map { _ in Float(rng.below(2)) }, [5, 2], dir + "/logit.npy")
        try write(
            (0..<5).flatMap { i in (0..<3).map { $0 == (i + 1) % 3 ? Float(0.8) : 0.1 } }, [5, 3], dir + "/probs.npy")
        try write((0..<10).map { _ in Float(rng.normal()) }, [5, 2], dir + "/after.npy")
        let heads = [
            Head(output: "ids", loss: .sparseCategoricalCrossentropy, weight: 1.1, classWeights: [2: 1.5]),
            Head(output: "logit", loss: .binaryCrossentropy, weight: 0.6, fromLogits: true),
            Head(output: "probs", loss: .categoricalCrossentropy, weight: 0.9),
            Head(output: "after", loss: .meanSquaredError, weight: 0.3),
        ]
        let step = try TrainingStep(
            model: model, heads: heads, optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
            communicator: LocalCommunicator(), regularizers: [Regularizer(tensor: "trunk/kernel", l1: 0.02, l2: 0.05)])
        XCTAssertTrue(ids.lossWritesLogitGradient, "sparse CCE folds into the softmax")
        XCTAssertFalse(probs.lossWritesLogitGradient, "a Dense read further on keeps its activation's derivative")
        try checkTotalLossGradient(
            step, data: try Dataset(directory: dir, model: model, heads: heads), batch: [3, 1, 4, 0, 2])
    }

    func testMergeLayersAndTheActivationLayer() throws {
        // Three tanh branches merged by every Keras merge, each through an Activation layer
        // (softmax and log_softmax over the last axis among them), MSE on each.
        let xs = (0..<3).map { InputLayer(name: "x\($0)", kind: .features, width: 3) }
        let branches = xs.enumerated().map {
            Dense(name: "b\($0.offset)", units: 4, activation: .tanh, input: $0.element)
        }
        let activations: [Activation] = [.gelu, .softplus, .logSoftmax, .mish, .softmax, .silu]
        var outputs: [Layer] = []
        for (k, kind) in MergeKind.allCases.enumerated() {
            let merged = Merge(
                name: "m\(k)", kind: kind, inputs: kind == .subtract ? Array(branches.prefix(2)) : branches)
            outputs.append(ActivationLayer(name: "a\(k)", activation: activations[k], input: merged))
        }
        let model = Model(inputs: xs, outputs: outputs, maxBatch: 4)
        model.parameters.initialize(seed: 12)
        let dir = temporaryDirectory()
        var rng = SeededGenerator(seed: 13)
        for x in xs { try write((0..<12).map { _ in Float(rng.normal()) }, [4, 3], dir + "/\(x.name).npy") }
        for o in outputs { try write((0..<16).map { _ in Float(rng.normal()) }, [4, 4], dir + "/\(o.name).npy") }
        let heads = outputs.enumerated().map {
            Head(output: $0.element.name, loss: .meanSquaredError, weight: 0.5 + Double($0.offset) / 4)
        }
        let step = try TrainingStep(
            model: model, heads: heads, optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
            communicator: LocalCommunicator(), regularizers: [])
        try checkTotalLossGradient(
            step, data: try Dataset(directory: dir, model: model, heads: heads), batch: [1, 3, 0, 2])
    }

    func testBinaryCrossentropyOnProbabilitiesMatchesKerasFormula() throws {
        // A sigmoid Dense read by another layer: BCE from clipped probabilities, −[t·log p + (1−t)·log(1−p)].
        let x = InputLayer(name: "x", kind: .features, width: 2)
        let p = Dense(name: "p", units: 1, activation: .sigmoid, input: x)
        let q = Dense(name: "q", units: 1, activation: .linear, input: p)
        let model = Model(inputs: [x], outputs: [p, q], maxBatch: 4)
        model.parameters.initialize(seed: 2)
        let dir = temporaryDirectory()
        try write([0.5, -1, 2, 0.25, -0.3, 0.1, 1, 1], [4, 2], dir + "/x.npy")
        try write([1, 0, 1, 0], [4, 1], dir + "/p.npy")
        try write([0.3, 0.1, -0.2, 0.5], [4, 1], dir + "/q.npy")
        let heads = [
            Head(output: "p", loss: .binaryCrossentropy, weight: 1),
            Head(output: "q", loss: .meanSquaredError, weight: 0.5),
        ]
        let step = try TrainingStep(
            model: model, heads: heads, optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
            communicator: LocalCommunicator(), regularizers: [])
        let data = try Dataset(directory: dir, model: model, heads: heads)
        let figures = try [Int32]([0, 1, 2, 3]).withUnsafeBufferPointer {
            try step.computeGradient(globalBatch: $0, data: data)
        }
        var expected = 0.0
        for i in 0..<4 {
            let pi = min(max(Double(p.output.values[i]), 1e-7), 1 - 1e-7)
            let t = [1.0, 0, 1, 0][i]
            expected -= t * log(pi) + (1 - t) * log(1 - pi)
        }
        assertClose(figures.headLossSums[0], expected, atol: 1e-7, rtol: 1e-6)
        try checkTotalLossGradient(step, data: data, batch: [0, 1, 2, 3])
    }
}

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
                "layer 'out' (Dense): its 'mask' argument is not supported (masks are read by LSTM, GRU, SimpleRNN, Bidirectional, GlobalAveragePooling1D)"
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

    func testSnakeCaseAsKeras() {
        let cases = [
            "InputLayer": "input_layer", "LSTM": "lstm", "GRU": "gru", "Conv1D": "conv1d", "Dense": "dense",
            "GlobalAveragePooling1D": "global_average_pooling1d", "LayerNormalization": "layer_normalization",
            "BatchNormalization": "batch_normalization", "SimpleRNN": "simple_rnn",
        ]
        for (k, v) in cases { XCTAssertEqual(KerasConfig.snakeCase(k), v, k) }
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

final class ArchiveMutationTests: XCTestCase {
    /// A few hundred mutated archives (bytes flipped, runs zeroed, truncated; in config.json,
    /// in model.weights.h5 of a directory archive — no CRC to catch it — and in the zip):
    /// each one reads, or fails with a TandemError; none traps.
    func testMutatedArchivesNeverTrap() throws {
        let dir = temporaryDirectory()
        var config = HeadlineConfig()
        config.vocabulary = 11
        config.sequenceLength = 3
        config.embeddingDimension = 4
        config.lstmUnits = 2
        config.auxFeatures = 2
        config.denseUnits = 3
        config.denseLayers = 1
        let d = try ModelDescription.headline(config)
        let model = try d.build(maxBatch: 2)
        model.parameters.initialize(seed: 1)
        let optimizer = Optimizer(OptimizerConfig(kind: .adam), parameterCount: model.parameters.count)
        optimizer.restore(iterations: 3)
        try d.saveArchive(to: dir + "/m.keras", store: model.parameters, optimizer: optimizer, heads: d.heads)
        let original = try KerasArchive(path: dir + "/m.keras")
        // The archive round-trips before any mutation.
        let fresh = try d.build(maxBatch: 2)
        try d.loadWeights(fresh.parameters, from: original)
        XCTAssertEqual(fresh.parameters.snapshot(), model.parameters.snapshot())
        let state = try d.loadOptimizerState(
            Optimizer(OptimizerConfig(kind: .adam), parameterCount: fresh.parameters.count), store: fresh.parameters,
            from: original)
        XCTAssertEqual(state.iterations, 3)

        let zipBytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir + "/m.keras")))
        var rng = SeededGenerator(seed: 77)
        var outcomes = (read: 0, refused: 0)
        func mutate(_ bytes: [UInt8]) -> [UInt8] {
            var b = bytes
            switch rng.below(4) {
            case 0: for _ in 0..<(1 + rng.below(8)) { b[rng.below(b.count)] ^= UInt8(1 << rng.below(8)) }
            case 1:
                let at = rng.below(b.count)
                for i in at..<min(b.count, at + 1 + rng.below(64)) { b[i] = 0 }
            case 2: b = Array(b.prefix(rng.below(b.count)))
            default:
                let at = rng.below(b.count)
                for i in at..<min(b.count, at + 8) { b[i] = 0xFF }
            }
            return b
        }
        func attempt(_ path: String) {
            do {
                let a = try KerasArchive(path: path)
                let description = try a.description()
                let m = try description.build(maxBatch: 2)
                try description.loadWeights(m.parameters, from: a)
                _ = try description.loadOptimizerState(
                    Optimizer(OptimizerConfig(kind: .adam), parameterCount: m.parameters.count), store: m.parameters,
                    from: a)
                outcomes.read += 1
            } catch is TandemError {
                outcomes.refused += 1
            } catch {
                XCTFail("\(path): an error that is not a TandemError: \(error)")
            }
        }
        for k in 0..<300 {
            let folder = dir + "/case\(k)"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            switch k % 3 {
            case 0:
                try Data(mutate(zipBytes)).write(to: URL(fileURLWithPath: folder + "/m.keras"))
                attempt(folder + "/m.keras")
            case 1:
                try Data(mutate(original.configBytes)).write(to: URL(fileURLWithPath: folder + "/config.json"))
                try Data(original.weightsBytes!).write(to: URL(fileURLWithPath: folder + "/model.weights.h5"))
                attempt(folder)
            default:
                try Data(original.configBytes).write(to: URL(fileURLWithPath: folder + "/config.json"))
                try Data(mutate(original.weightsBytes!)).write(to: URL(fileURLWithPath: folder + "/model.weights.h5"))
                attempt(folder)
            }
            try? FileManager.default.removeItem(atPath: folder)
        }
        XCTAssertGreaterThan(outcomes.refused, 100, "most mutations are caught")
        XCTAssertEqual(outcomes.read + outcomes.refused, 300)
    }
}

final class FusionTests: XCTestCase {
    /// The fused Embedding → LSTM (over the batch's distinct tokens) against the plain pair:
    /// the same losses and gradients, up to float summation order.
    func testFusedEmbeddingRecurrentEqualsThePlainPair() throws {
        let config = tinyConfig()
        let dir = temporaryDirectory()
        try writeTinyData(dir, samples: 9, config: config, seed: 5, sampleWeights: true)
        let heads = Head.headlineDefaults
        var results: [(loss: Double, gradients: [String: [Float]])] = []
        for fuse in [true, false] {
            let model = try ModelDescription.headline(config).build(maxBatch: 9, fuse: fuse)
            XCTAssertEqual(model.layers.compactMap { $0 as? Embedding }.first!.fused, fuse)
            // The fusion pass puts ONE explicit layer in the schedule in place of the pair; the graph keeps both.
            XCTAssertEqual(model.schedule.filter { $0 is FusedEmbeddingRecurrent }.count, fuse ? 1 : 0)
            XCTAssertEqual(model.schedule.contains { $0 is Embedding || $0 is LSTM }, !fuse)
            XCTAssertEqual(model.layers.count, model.schedule.count + (fuse ? 1 : 0))
            model.parameters.initialize(seed: 21)
            let step = try TrainingStep(
                model: model, heads: heads,
                optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
                communicator: LocalCommunicator(), regularizers: [])
            let data = try Dataset(directory: dir, model: model, heads: heads)
            let figures = try [Int32]([0, 3, 5, 7, 2, 8, 1]).withUnsafeBufferPointer {
                try step.computeGradient(globalBatch: $0, data: data)
            }
            let store = model.parameters
            results.append(
                (
                    figures.total,
                    Dictionary(
                        uniqueKeysWithValues: store.tensors.map { v in
                            (v.name, (0..<v.count).map { store.gradient(v)[$0] })
                        })
                ))
        }
        assertClose(results[0].loss, results[1].loss, atol: 1e-7, rtol: 1e-6, "total loss")
        XCTAssertEqual(Set(results[0].gradients.keys), Set(results[1].gradients.keys))
        for (name, fused) in results[0].gradients {
            // Float32 sums over the same terms in another order.
            assertClose(fused, results[1].gradients[name]!.map(Double.init), atol: 1e-6, rtol: 1e-4, name)
            XCTAssertTrue(fused.contains { $0 != 0 }, "\(name) gets gradient")
        }
    }

    /// The same for GRU (both resets), SimpleRNN and the general LSTM, with a mask and go_backwards.
    func testFusedEmbeddingGRUAndSimpleRNNEqualThePlainPair() throws {
        let dir = temporaryDirectory()
        var rng = SeededGenerator(seed: 31)
        let ids = (0..<(8 * 6)).map { _ in Int32(rng.below(7)) }
        try ids.withUnsafeBufferPointer { try NPYArray.write(ints: $0, shape: [8, 6], to: dir + "/tokens.npy") }
        let targets = (0..<8).map { _ in Float(rng.below(2)) }
        try targets.withUnsafeBufferPointer { try NPYArray.write(floats: $0, shape: [8, 1], to: dir + "/out.npy") }
        let heads = [Head(output: "out", loss: .binaryCrossentropy, weight: 1)]
        let cells: [Recurrent.Cell] = [.gru(resetAfter: true), .gru(resetAfter: false), .simple(.tanh), .lstm]
        for (k, cell) in cells.enumerated() {
            var results: [(loss: Double, gradients: [String: [Float]])] = []
            for fuse in [true, false] {
                let tokens = InputLayer(name: "tokens", kind: .tokens, shape: [6])
                let e = Embedding(name: "embedding", vocabulary: 7, dimension: 5, input: tokens)
                let r = Recurrent(
                    name: "rnn", cell: cell, units: 3, input: e,
                    mask: k % 2 == 0 ? SequenceMask(name: "mask", tokens: tokens) : nil,
                    goBackwards: k >= 2)
                let model = Model(
                    inputs: [tokens], outputs: [Dense(name: "out", units: 1, activation: .sigmoid, input: r)],
                    maxBatch: 8, fuse: fuse)
                XCTAssertEqual(model.schedule.filter { $0 is FusedEmbeddingRecurrent }.count, fuse ? 1 : 0, "\(cell)")
                model.parameters.initialize(seed: 32)
                let step = try TrainingStep(
                    model: model, heads: heads,
                    optimizer: Optimizer(OptimizerConfig(), parameterCount: model.parameters.count),
                    communicator: LocalCommunicator(), regularizers: [])
                let data = try Dataset(directory: dir, model: model, heads: heads)
                let figures = try [Int32]([4, 0, 7, 2, 5, 1]).withUnsafeBufferPointer {
                    try step.computeGradient(globalBatch: $0, data: data)
                }
                let store = model.parameters
                results.append(
                    (
                        figures.total,
                        Dictionary(
                            uniqueKeysWithValues: store.tensors.map { v in
                                (v.name, (0..<v.count).map { store.gradient(v)[$0] })
                            })
                    ))
            }
            assertClose(results[0].loss, results[1].loss, atol: 1e-7, rtol: 1e-6, "\(cell): total loss")
            for (name, fused) in results[0].gradients {
                assertClose(
                    fused, results[1].gradients[name]!.map(Double.init), atol: 1e-6, rtol: 1e-4, "\(cell): \(name)")
                XCTAssertTrue(fused.contains { $0 != 0 }, "\(cell): \(name) gets gradient")
            }
        }
    }
}
