// Keras `GroupNormalization(groups, axis=-1, epsilon, center, scale)` (keras/src/layers/
// normalization/group_normalization.py) on [B, F] or [B, T, F]: the F channels in `groups` groups
// of F/G; per sample and group, μ and the biased σ² over every step and channel of the group;
// y = x̂·γ_c + β_c with x̂ = (x − μ)·r, r = 1/√(σ² + ε). Backward, with g = dy·γ:
// dx = r·(g − mean g − x̂·mean(g·x̂)) over the group; dγ_c += Σ dy·x̂, dβ_c += Σ dy.

import Foundation

package final class GroupNormalization: Layer {
    public let name: String
    package let weightsName: String
    package let inputs: [Layer]
    public let output: Node
    package let groups: Int
    public let epsilon: Float, center: Bool, scale: Bool
    let initializers: (gamma: Initializer, beta: Initializer)
    private var gamma: TensorView?, beta: TensorView?
    private var store: ParameterStore!
    /// x̂ per element, and r per (sample, group).
    private var normalized: UnsafeMutablePointer<Float>!, inverse: UnsafeMutablePointer<Float>!

    package init(
        name: String, input: Layer, groups: Int, epsilon: Float = 1e-3, center: Bool = true, scale: Bool = true,
        weights: String? = nil, gammaInitializer: Initializer = .constant(1), betaInitializer: Initializer = .zeros
    ) {
        precondition(groups > 0 && input.output.features % groups == 0)
        self.name = name
        weightsName = weights ?? name
        inputs = [input]
        output = Node(shape: input.output.shape)
        self.groups = groups
        self.epsilon = epsilon
        self.center = center
        self.scale = scale
        initializers = (gammaInitializer, betaInitializer)
    }

    private var features: Int { output.features }
    private var steps: Int { output.width / features }

    package var parameterSpecs: [ParameterSpec] {
        (scale
            ? [ParameterSpec(layer: weightsName, weight: "gamma", shape: [features], initializer: initializers.gamma)]
            : [])
            + (center
                ? [ParameterSpec(layer: weightsName, weight: "beta", shape: [features], initializer: initializers.beta)]
                : [])
    }

    package func bind(parameters: ParameterStore) {
        store = parameters
        gamma = scale ? parameters.view("\(weightsName)/gamma") : nil
        beta = center ? parameters.view("\(weightsName)/beta") : nil
    }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (2 * batch * output.width + batch * groups, batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        normalized = workspace.take(batch * output.width)
        inverse = workspace.take(batch * groups)
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    /// Calls `body(offset, channel)` for every element of group `g` of a sample.
    @inline(__always) private func each(_ g: Int, _ body: (Int, Int) -> Void) {
        let size = features / groups
        for t in 0..<steps {
            for k in 0..<size {
                let c = g * size + k
                body(t * features + c, c)
            }
        }
    }

    public func forward(batch: Int, training: Bool) {
        let x = inputs[0].output.values!
        let y = output.values!
        let w = output.width
        let n = Float(w / groups)
        let gammaValues = gamma.map { store.value($0) }
        let betaValues = beta.map { store.value($0) }
        for b in 0..<batch {
            let sample = x + b * w
            for g in 0..<groups {
                var sum: Float = 0
                each(g) { o, _ in sum += sample[o] }
                let mean = sum / n
                var squares: Float = 0
                each(g) { o, _ in squares += (sample[o] - mean) * (sample[o] - mean) }
                let r = 1 / (squares / n + epsilon).squareRoot()
                inverse[b * groups + g] = r
                each(g) { o, c in
                    let xhat = (sample[o] - mean) * r
                    normalized[b * w + o] = xhat
                    y[b * w + o] = xhat * (gammaValues?[c] ?? 1) + (betaValues?[c] ?? 0)
                }
            }
        }
    }

    package func backward(batch: Int) {
        let dx = inputs[0].output.gradients!
        let dy = output.gradients!
        let w = output.width
        let n = Float(w / groups)
        let gammaValues = gamma.map { store.value($0) }
        let dGamma = gamma.map { store.gradient($0) }
        let dBeta = beta.map { store.gradient($0) }
        for b in 0..<batch {
            for g in 0..<groups {
                var meanG: Float = 0
                var meanGX: Float = 0
                each(g) { o, c in
                    let i = b * w + o
                    let gi = dy[i] * (gammaValues?[c] ?? 1)
                    meanG += gi
                    meanGX += gi * normalized[i]
                    dGamma?[c] += dy[i] * normalized[i]
                    dBeta?[c] += dy[i]
                }
                meanG /= n
                meanGX /= n
                let r = inverse[b * groups + g]
                each(g) { o, c in
                    let i = b * w + o
                    let gi = dy[i] * (gammaValues?[c] ?? 1)
                    dx[i] += r * (gi - meanG - normalized[i] * meanGX)
                }
            }
        }
    }
}

// MARK: - Keras GroupNormalization: the layer table's entry (KerasLayerKind.swift) and its builder.

extension KerasLayerKind {
    static let groupNormalization = KerasLayerKind(
        classNames: ["GroupNormalization"],
        build: { a, inputs, _ in
            let source = try LayerRegistry.single(a, inputs)
            try a.lastAxis(rank: source.output.shape.count + 1)
            let f = source.output.features
            let groups = try a.int("groups")
            guard f % groups == 0 else {
                throw a.fail("'groups' = \(groups) does not divide the \(f) channels")
            }
            let epsilon = a.config["epsilon"]?.number ?? 1e-3
            guard epsilon > 0 else { throw a.fail("'epsilon' must be positive") }
            return GroupNormalization(
                name: a.node.id, input: source, groups: groups, epsilon: Float(epsilon),
                center: try a.bool("center", default: true), scale: try a.bool("scale", default: true),
                weights: a.node.layer,
                gammaInitializer: try a.initializer("gamma_initializer", fanIn: f, fanOut: f) ?? .constant(1),
                betaInitializer: try a.initializer("beta_initializer", fanIn: f, fanOut: f) ?? .zeros)
        },
        variables: { _, layer, config in
            [
                KerasLayerKind.top(
                    layer,
                    (config["scale"]?.bool == false ? [] : ["gamma"])
                        + (config["center"]?.bool == false ? [] : ["beta"]))
            ]
        },
        regularizerKeys: KerasLayerKind.normalizationKeys)
}
