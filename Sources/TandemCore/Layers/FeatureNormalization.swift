// Keras `Normalization` (keras/src/layers/preprocessing/normalization.py) over the last axis:
// y = (x − mean) / max(√variance, ε), or with `invert` y = mean + x·max(√variance, ε), ε = 1e-7.
// The mean and variance are the adapted ones the archive holds (the variables `mean`, `variance`
// and `count`, none of them trained), or the `mean`/`variance` its config gives. Backward:
// dx = dy / max(√variance, ε) (× with invert).

import Foundation

package final class FeatureNormalization: Layer {
    public let name: String
    package let weightsName: String
    package let inputs: [Layer]
    public let output: Node
    package let invert: Bool
    /// From the config (nil: the adapted variables, read from the archive).
    private let given: (mean: [Float], variance: [Float])?
    private var meanView: TensorView?, varianceView: TensorView?
    private var store: ParameterStore!

    package init(
        name: String, input: Layer, invert: Bool, given: (mean: [Float], variance: [Float])?, weights: String? = nil
    ) {
        self.name = name
        weightsName = weights ?? name
        inputs = [input]
        output = Node(shape: input.output.shape)
        self.invert = invert
        self.given = given
    }

    private var features: Int { output.features }

    package var parameterSpecs: [ParameterSpec] {
        guard given == nil else { return [] }
        let f = features
        return [
            ParameterSpec(layer: weightsName, weight: "mean", shape: [f], initializer: .zeros, trainable: false),
            ParameterSpec(
                layer: weightsName, weight: "variance", shape: [f], initializer: .constant(1), trainable: false),
            ParameterSpec(layer: weightsName, weight: "count", shape: [], initializer: .zeros, trainable: false),
        ]
    }

    package func bind(parameters: ParameterStore) {
        store = parameters
        if given == nil {
            meanView = parameters.view("\(weightsName)/mean")
            varianceView = parameters.view("\(weightsName)/variance")
        }
    }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (batch * output.width, batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    /// Mean and max(√variance, ε) of feature j.
    @inline(__always) private func statistics(_ j: Int) -> (Float, Float) {
        let f = features
        let mean: Float
        let variance: Float
        if let given {
            mean = given.mean[given.mean.count == 1 ? 0 : j % f]
            variance = given.variance[given.variance.count == 1 ? 0 : j % f]
        } else {
            mean = store.value(meanView!)[j % f]
            variance = store.value(varianceView!)[j % f]
        }
        return (mean, max(variance.squareRoot(), 1e-7))
    }

    public func forward(batch: Int, training: Bool) {
        let x = inputs[0].output.values!
        let y = output.values!
        let f = features
        for i in 0..<(batch * output.width) {
            let (mean, scale) = statistics(i % f)
            y[i] = invert ? mean + x[i] * scale : (x[i] - mean) / scale
        }
    }

    package func backward(batch: Int) {
        let dx = inputs[0].output.gradients!
        let dy = output.gradients!
        let f = features
        for i in 0..<(batch * output.width) {
            let (_, scale) = statistics(i % f)
            dx[i] += invert ? dy[i] * scale : dy[i] / scale
        }
    }
}

// MARK: - Keras Normalization: the layer table's entry (KerasLayerKind.swift) and its builder.

extension KerasLayerKind {
    static let featureNormalization = KerasLayerKind(
        classNames: ["Normalization"],
        build: { a, inputs, _ in
            let source = try LayerRegistry.single(a, inputs)
            try a.lastAxis(rank: source.output.shape.count + 1)
            var given: (mean: [Float], variance: [Float])?
            if let m = a.config["mean"], !m.isNull {
                func values(_ key: String) throws -> [Float] {
                    let v = a.config[key] ?? .null
                    if let x = v.number { return [Float(x)] }
                    let list = (v.array ?? []).flatMap { $0.array ?? [$0] }.compactMap(\.number)
                    guard list.count == 1 || list.count == source.output.features else {
                        throw a.fail(
                            "'\(key)' = \(v) is not supported (a number or one per feature of the last axis: \(source.output.features))"
                        )
                    }
                    return list.map(Float.init)
                }
                given = (try values("mean"), try values("variance"))
                _ = m
            }
            return FeatureNormalization(
                name: a.node.id, input: source, invert: try a.bool("invert", default: false), given: given,
                weights: a.node.layer)
        },
        variables: { _, layer, config in
            [KerasLayerKind.top(layer, (config["mean"]?.isNull ?? true) ? ["mean", "variance", "count"] : [])]
        })
}
