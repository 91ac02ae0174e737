// Keras A model input (InputLayer): its shape and dtype from `batch_shape`: the Keras layer
// table's entries (KerasLayerKind.swift) and their builders, which read a call's config and refuse
// every argument Tandem does not implement by name.

import TandemCore

extension KerasLayerKind {
    static let input = KerasLayerKind(classNames: ["InputLayer"], build: { a, _, _ in try LayerRegistry.input(a) })
}

extension LayerRegistry {
    static func input(_ a: LayerArguments) throws -> Layer {
        let shape = a.config["batch_shape"] ?? a.config["batch_input_shape"]
        guard let dims = shape?.array, dims.count >= 2, dims[0].isNull || dims[0].integer != nil else {
            throw a.fail("'batch_shape' must be [null, …] with at least one feature axis")
        }
        let sample = try dims.dropFirst().map { d -> Int in
            guard let n = d.integer, n > 0 else {
                throw a.fail("every axis but the batch must have a fixed size, got \(shape!)")
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
        guard sample.count <= 2 else {
            throw a.fail("inputs of rank \(sample.count + 1) are not supported (features or [time, features])")
        }
        return InputLayer(name: a.node.id, kind: .features, shape: sample)
    }
}
