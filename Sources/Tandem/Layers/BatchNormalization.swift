// BatchNormalization over the GLOBAL batch (Keras's synchronized=True): in
// training, every rank adds its rows' per-channel Σx and Σx² (in Double), one
// allreduce makes them the sums over the whole global batch (and every time
// step of [B, T, C]), so N ranks normalise exactly as one process does:
//   μ = Σx / N,  σ² = Σx²/N − μ² (the biased variance, as Keras),
//   x̂ = (x − μ)/√(σ² + ε),  y = γ·x̂ + β,
//   moving_mean ← m·momentum + μ·(1 − momentum), moving_variance likewise with σ².
// Backward needs global sums too: with Σdy and Σdy·x̂ allreduced,
//   dx = γ/√(σ² + ε) · (dy − Σdy/N − x̂·Σ(dy·x̂)/N);  dγ += Σ dy·x̂, dβ += Σ dy (local:
// the gradient's own allreduce adds the ranks). Inference uses the moving
// statistics and no collective. The moving statistics live in the parameter
// store (so checkpoints and model.keras keep them) but get no gradient.

import Foundation

/// A layer that makes collectives of its own during training (the step binds its communicator).
protocol CollectiveLayer: AnyObject {
    func bind(communicator: Communicator)
    /// The first collective failure since the last call, cleared.
    func takeError() -> Error?
}

/// Keras `BatchNormalization(axis=-1, momentum, epsilon, center, scale)`.
public final class BatchNormalization: Layer, CollectiveLayer {
    public let name: String
    public let weightsName: String
    public let inputs: [Layer]
    public let output: Node
    public let momentum: Float, epsilon: Float, center: Bool, scale: Bool
    let initializers: (gamma: Initializer, beta: Initializer, mean: Initializer, variance: Initializer)
    private var gamma: TensorView?, beta: TensorView?, movingMean: TensorView!, movingVariance: TensorView!
    private var store: ParameterStore!
    private var communicator: Communicator = LocalCommunicator()
    private var error: Error?
    /// Per channel: Σx, Σx², and the global count, then Σdy, Σdy·x̂ (Double, for the allreduce).
    private var sums: UnsafeMutablePointer<Double>
    /// x̂ [rows, C]; 1/√(σ² + ε) per channel; whether the last forward used batch statistics.
    private var normalized: UnsafeMutablePointer<Float>!, inverse: UnsafeMutablePointer<Float>
    private var batchStatistics = false, count = 0.0

    public init(name: String, input: Layer, momentum: Float = 0.99, epsilon: Float = 1e-3, center: Bool = true, scale: Bool = true,
                weights: String? = nil, gammaInitializer: Initializer = .constant(1), betaInitializer: Initializer = .zeros,
                movingMeanInitializer: Initializer = .zeros, movingVarianceInitializer: Initializer = .constant(1)) {
        self.name = name; weightsName = weights ?? name; inputs = [input]
        self.momentum = momentum; self.epsilon = epsilon; self.center = center; self.scale = scale
        initializers = (gammaInitializer, betaInitializer, movingMeanInitializer, movingVarianceInitializer)
        output = Node(shape: input.output.shape)
        let c = input.output.features
        sums = .allocate(capacity: 4 * c + 1)
        inverse = .allocate(capacity: c)
    }

    deinit { sums.deallocate(); inverse.deallocate() }

    func bind(communicator: Communicator) { self.communicator = communicator }
    func takeError() -> Error? { defer { error = nil }; return error }

    private var channels: Int { output.features }
    private func rows(_ batch: Int) -> Int { batch * output.width / channels }

    public var parameterSpecs: [ParameterSpec] {
        let c = [channels]
        return (scale ? [ParameterSpec(layer: weightsName, weight: "gamma", shape: c, initializer: initializers.gamma)] : [])
            + (center ? [ParameterSpec(layer: weightsName, weight: "beta", shape: c, initializer: initializers.beta)] : [])
            + [ParameterSpec(layer: weightsName, weight: "moving_mean", shape: c, initializer: initializers.mean, trainable: false),
               ParameterSpec(layer: weightsName, weight: "moving_variance", shape: c, initializer: initializers.variance, trainable: false)]
    }

    public func bind(parameters: ParameterStore) {
        store = parameters
        gamma = scale ? parameters.view("\(weightsName)/gamma") : nil
        beta = center ? parameters.view("\(weightsName)/beta") : nil
        movingMean = parameters.view("\(weightsName)/moving_mean")
        movingVariance = parameters.view("\(weightsName)/moving_variance")
    }

    public func workspaceSize(batch: Int) -> (values: Int, gradients: Int) { (2 * batch * output.width, batch * output.width) }

    public func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        normalized = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    /// Sums `2·channels + extra` doubles over every rank; on failure keeps the error and poisons the sums.
    private func allReduce(_ n: Int) {
        do { try communicator.allReduceSum(sums, count: n) } catch {
            if self.error == nil { self.error = error }
            sums.update(repeating: .nan, count: n)
        }
    }

    public func forward(batch: Int, training: Bool) {
        let C = channels, n = rows(batch), x = inputs[0].output.values!, y = output.values!
        let mean = store.value(movingMean), variance = store.value(movingVariance)
        batchStatistics = training
        if training {
            sums.update(repeating: 0, count: 2 * C + 1)
            for r in 0..<n {
                let row = x + r * C
                for c in 0..<C { let v = Double(row[c]); sums[c] += v; sums[C + c] += v * v }
            }
            sums[2 * C] = Double(n)
            allReduce(2 * C + 1)
            count = sums[2 * C]
            for c in 0..<C {
                let mu = sums[c] / count, v = max(sums[C + c] / count - mu * mu, 0)
                sums[c] = mu; sums[C + c] = v
                inverse[c] = Float(1 / (v + Double(epsilon)).squareRoot())
                mean[c] = mean[c] * momentum + Float(mu) * (1 - momentum)
                variance[c] = variance[c] * momentum + Float(v) * (1 - momentum)
            }
        } else {
            for c in 0..<C { sums[c] = Double(mean[c]); inverse[c] = 1 / (variance[c] + epsilon).squareRoot() }
        }
        let g = gamma.map { UnsafePointer(store.value($0)) }, b = beta.map { UnsafePointer(store.value($0)) }
        for r in 0..<n {
            let xr = x + r * C, nr = normalized + r * C, yr = y + r * C
            for c in 0..<C {
                nr[c] = (xr[c] - Float(sums[c])) * inverse[c]
                yr[c] = nr[c] * (g?[c] ?? 1) + (b?[c] ?? 0)
            }
        }
    }

    public func backward(batch: Int) {
        let C = channels, n = rows(batch), dx = inputs[0].output.gradients!, dy = output.gradients!
        let g = gamma.map { UnsafePointer(store.value($0)) }
        let dg = gamma.map { store.gradient($0) }, db = beta.map { store.gradient($0) }
        let dySum = sums + 2 * C + 1, dyxSum = dySum + C
        dySum.update(repeating: 0, count: 2 * C)
        for r in 0..<n {
            let d = dy + r * C, nr = normalized + r * C
            for c in 0..<C { dySum[c] += Double(d[c]); dyxSum[c] += Double(d[c] * nr[c]) }
        }
        for c in 0..<C { dg?[c] += Float(dyxSum[c]); db?[c] += Float(dySum[c]) }
        guard batchStatistics else {  // statistics were constants: dx = γ·dy/√(σ² + ε)
            for r in 0..<n { for c in 0..<C { dx[r * C + c] += dy[r * C + c] * (g?[c] ?? 1) * inverse[c] } }
            return
        }
        // The gradient of the global statistics needs the global sums.
        do { try communicator.allReduceSum(dySum, count: 2 * C) } catch {
            if self.error == nil { self.error = error }
            dySum.update(repeating: .nan, count: 2 * C)
        }
        for r in 0..<n {
            let d = dy + r * C, nr = normalized + r * C, to = dx + r * C
            for c in 0..<C {
                let meanDy = Float(dySum[c] / count), meanDyx = Float(dyxSum[c] / count)
                to[c] += (g?[c] ?? 1) * inverse[c] * (d[c] - meanDy - nr[c] * meanDyx)
            }
        }
    }
}
