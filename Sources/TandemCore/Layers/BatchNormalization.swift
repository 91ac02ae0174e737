// BatchNormalization over the GLOBAL batch (Keras's synchronized=True): in
// training, every rank adds its rows' per-channel Σx and Σx² (in Double), one
// allreduce makes them the sums over the whole global batch (and every time
// step of [B, T, C]), so N ranks normalise exactly as one process does:
//   μ = Σx / N,  σ² = Σx²/N − μ² (the biased variance, as Keras),
//   x̂ = (x − μ)/√(σ² + ε),  y = γ·x̂ + β,
//   moving_mean ← m·momentum + μ·(1 − momentum), moving_variance likewise with σ².
// Backward needs global sums too: with Σdy and Σdy·x̂ allreduced,
//   dx = γ/√(σ² + ε) · (dy − Σdy/N − x̂·Σ(dy·x̂)/N);  dγ += Σ dy·x̂, dβ += Σ dy (local:
// the gradient's own allreduce adds the ranks). Backward is split at that allreduce (SplitBackward):
// while the sums travel, the model makes the weight gradients the convolutions above left (Model.backward),
// so a rank that arrives first computes instead of waiting. Inference uses the moving
// statistics and no collective. The moving statistics live in the parameter
// store (so checkpoints and model.keras keep them) but get no gradient.

import CKernels
import Foundation

/// A layer that makes collectives of its own during training (the step binds its communicator).
package protocol CollectiveLayer: AnyObject {
    func bind(communicator: Communicator)
    /// The first collective failure since the last call, cleared.
    func takeError() -> Error?
}

/// Keras `BatchNormalization(axis=-1, momentum, epsilon, center, scale)`.
package final class BatchNormalization: Layer, CollectiveLayer, GradientOverwriting, SplitBackward {
    public let name: String
    package let weightsName: String
    package let inputs: [Layer]
    public let output: Node
    public let momentum: Float, epsilon: Float, center: Bool, scale: Bool
    let initializers: (gamma: Initializer, beta: Initializer, mean: Initializer, variance: Initializer)
    private var gamma: TensorView?, beta: TensorView?, movingMean: TensorView!, movingVariance: TensorView!
    private var store: ParameterStore!
    private var communicator: Communicator = LocalCommunicator()
    private var error: Error?
    /// Per channel: μ and σ² (Σx, Σx² and the count while reduced), the global Σdy, Σdy·x̂,
    /// then this rank's Σdy, Σdy·x̂ (Double).
    private var sums: UnsafeMutablePointer<Double>
    /// 1/√(σ² + ε) per channel (x̂ = (x − μ)·inv is computed again in backward, not kept).
    private var inverse: UnsafeMutablePointer<Float>
    /// Per channel, for the C passes (CKernels/normalization.c): μ as Float, γ/√(σ² + ε), the
    /// global mean dy and mean dy·x̂, and ones and zeros standing in for an absent γ or β.
    private var mean32, scale32, meanDy, meanDyx, ones, zeros: UnsafeMutablePointer<Float>
    private var batchStatistics = false, count = 0.0

    package init(
        name: String, input: Layer, momentum: Float = 0.99, epsilon: Float = 1e-3, center: Bool = true,
        scale: Bool = true,
        weights: String? = nil, gammaInitializer: Initializer = .constant(1), betaInitializer: Initializer = .zeros,
        movingMeanInitializer: Initializer = .zeros, movingVarianceInitializer: Initializer = .constant(1)
    ) {
        self.name = name
        weightsName = weights ?? name
        inputs = [input]
        self.momentum = momentum
        self.epsilon = epsilon
        self.center = center
        self.scale = scale
        initializers = (gammaInitializer, betaInitializer, movingMeanInitializer, movingVarianceInitializer)
        output = Node(shape: input.output.shape)
        let c = input.output.features
        sums = .allocate(capacity: 6 * c + 1)
        inverse = .allocate(capacity: c)
        (mean32, scale32, meanDy, meanDyx) = (
            .allocate(capacity: c), .allocate(capacity: c), .allocate(capacity: c), .allocate(capacity: c)
        )
        ones = .allocate(capacity: c)
        ones.initialize(repeating: 1, count: c)
        zeros = .allocate(capacity: c)
        zeros.initialize(repeating: 0, count: c)
    }

    deinit {
        for p in [inverse, mean32, scale32, meanDy, meanDyx, ones, zeros] { p.deallocate() }
        sums.deallocate()
    }

    package func bind(communicator: Communicator) { self.communicator = communicator }
    package func takeError() -> Error? {
        defer { error = nil }
        return error
    }

    private var channels: Int { output.features }
    private func rows(_ batch: Int) -> Int { batch * output.width / channels }

    package var parameterSpecs: [ParameterSpec] {
        let c = [channels]
        return
            (scale
            ? [ParameterSpec(layer: weightsName, weight: "gamma", shape: c, initializer: initializers.gamma)] : [])
            + (center
                ? [ParameterSpec(layer: weightsName, weight: "beta", shape: c, initializer: initializers.beta)] : [])
            + [
                ParameterSpec(
                    layer: weightsName, weight: "moving_mean", shape: c, initializer: initializers.mean,
                    trainable: false),
                ParameterSpec(
                    layer: weightsName, weight: "moving_variance", shape: c, initializer: initializers.variance,
                    trainable: false),
            ]
    }

    package func bind(parameters: ParameterStore) {
        store = parameters
        gamma = scale ? parameters.view("\(weightsName)/gamma") : nil
        beta = center ? parameters.view("\(weightsName)/beta") : nil
        movingMean = parameters.view("\(weightsName)/moving_mean")
        movingVariance = parameters.view("\(weightsName)/moving_variance")
    }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (batch * output.width, batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    /// Sums `2·channels + extra` doubles over every rank; on failure keeps the error and poisons the sums.
    private func allReduce(_ n: Int) {
        do { try communicator.allReduceSum(sums, count: n) } catch {
            if self.error == nil { self.error = error }
            sums.update(repeating: .nan, count: n)
        }
    }

    /// The ReLU or ReLU6 layer fused after this one (FusionPass.pairNormalizationActivations): forward
    /// writes its output, clamped, instead of y; backward reads its gradient and output and takes its
    /// backward on the way (dy where 0 < a < top, else 0). y and dy are never formed.
    package private(set) weak var fused: ActivationLayer?
    /// The fused ReLU's upper bound (+∞ or 6); 0 when none is fused.
    private var top: Float = 0
    package func fuse(_ activation: ActivationLayer) {
        fused = activation
        top = activation.activation == .relu ? .infinity : 6
        activation.fusedInto = self
    }
    /// What backward reads as dy: the fused ReLU's gradient (with its output a, for the mask), or this layer's.
    private var upstream: (dy: UnsafeMutablePointer<Float>, a: UnsafePointer<Float>?) {
        fused.map { ($0.output.gradients, UnsafePointer($0.output.values)) } ?? (output.gradients, nil)
    }

    /// Keras 3: a frozen BatchNormalization (trainable = False) runs in inference mode, in training
    /// too — the moving statistics normalise and do not move, and it makes no collective.
    package var frozen = false

    public func forward(batch: Int, training batchTraining: Bool) {
        let C = channels
        let n = rows(batch)
        let x = inputs[0].output.values!
        let y = fused?.output.values ?? output.values!
        let training = batchTraining && !frozen
        batchStatistics = training
        if training && !givenStatistics {
            inputSums(batch: batch, into: sums)
            sums[2 * C] = Double(n)
            allReduce(2 * C + 1)
            setStatistics(sums, count: sums[2 * C])
        } else if !training {
            let mean = store.value(movingMean)
            let variance = store.value(movingVariance)
            for c in 0..<C {
                sums[c] = Double(mean[c])
                inverse[c] = 1 / (variance[c] + epsilon).squareRoot()
            }
        }  // else: the step set this step's statistics (reproducible mode)
        for c in 0..<C { mean32[c] = Float(sums[c]) }
        // y = x̂·γ + β, x̂ = (x − μ)·inv, in one pass over the rows.
        tandem_bn_apply(
            x, n, Int32(C), mean32, inverse, gamma.map { store.value($0) } ?? ones,
            beta.map { store.value($0) } ?? zeros, y, top)
    }

    package func backward(batch: Int) {
        if beginBackward(batch: batch) { finishBackward(batch: batch) }
    }

    /// This rank's Σdy, Σdy·x̂ (and dγ, dβ from them), and the start of their global sum; with constant
    /// statistics, or the step's (reproducible mode), the whole backward.
    package func beginBackward(batch: Int) -> Bool {
        let C = channels
        let dg = gamma.map { store.gradient($0) }
        let db = beta.map { store.gradient($0) }
        let local = sums + 4 * C + 1
        let global = sums + 2 * C + 1  // Σdy, Σdy·x̂: this rank's rows, then the global batch's
        gradientSums(batch: batch, into: local)
        for c in 0..<C {
            dg?[c] += Float(local[C + c])
            db?[c] += Float(local[c])
        }
        guard batchStatistics else {  // statistics were constants: dx = γ·dy/√(σ² + ε)
            backwardConstant(batch: batch)
            return false
        }
        guard !givenStatistics else {
            finishBackward(batch: batch)
            return false
        }
        // The gradient of the global statistics needs the global sums.
        global.update(from: local, count: 2 * C)
        do { try communicator.startAllReduceSum(global, count: 2 * C) } catch { fail(error) }
        return true
    }

    /// dx once the global Σdy, Σdy·x̂ are in.
    package func finishBackward(batch: Int) {
        let C = channels
        let global = sums + 2 * C + 1
        if !givenStatistics {
            do { try communicator.finishDoubleSum() } catch { fail(error) }
        }
        let g = gamma.map { UnsafePointer(store.value($0)) }
        for c in 0..<C {
            meanDy[c] = Float(global[c] / count)
            meanDyx[c] = Float(global[C + c] / count)
            scale32[c] = (g?[c] ?? 1) * inverse[c]
        }
        let first = inputs[0].output.claimGradient()
        let (dy, a) = upstream
        tandem_bn_backward(
            dy, a, top, inputs[0].output.values, mean32, inverse, rows(batch), Int32(C), scale32, meanDy, meanDyx,
            inputs[0].output.gradients!, first ? 0 : 1)
    }

    /// Keeps the first collective failure and poisons the global gradient sums.
    private func fail(_ error: Error) {
        if self.error == nil { self.error = error }
        (sums + 2 * channels + 1).update(repeating: .nan, count: 2 * channels)
    }

    private func backwardConstant(batch: Int) {
        let C = channels
        let n = rows(batch)
        let dx = inputs[0].output.gradients!
        let (dy, a) = upstream
        let g = gamma.map { UnsafePointer(store.value($0)) }
        if inputs[0].output.claimGradient() { dx.update(repeating: 0, count: n * C) }
        for r in 0..<n {
            for c in 0..<C {
                let i = r * C + c
                let d = a.map { $0[i] > 0 && $0[i] < top ? dy[i] : 0 } ?? dy[i]
                dx[i] += d * (g?[c] ?? 1) * inverse[c]
            }
        }
    }

    // Reproducible mode (ReproducibleStep.swift) gathers the sums per canonical micro-batch
    // and adds them in one order on every rank, so the statistics are the same bits for
    // any rank count; the layer then makes no collective of its own.

    /// Reproducible mode: the step sets the statistics and the global gradient sums.
    package var givenStatistics = false

    /// Σx, Σx² per channel over the input rows of the current forward (2C doubles, in row order).
    package func inputSums(batch: Int, into out: UnsafeMutablePointer<Double>) {
        let C = channels
        tandem_bn_sums(inputs[0].output.values!, rows(batch), Int32(C), out, out + C)
    }

    /// Σdy, Σdy·x̂ per channel over the rows of the current backward (2C doubles, in row order).
    package func gradientSums(batch: Int, into out: UnsafeMutablePointer<Double>) {
        let C = channels
        let (dy, a) = upstream
        tandem_bn_gradient_sums(
            dy, a, top, inputs[0].output.values, mean32, inverse, rows(batch), Int32(C), out, out + C)
    }

    /// The step's statistics from the global Σx, Σx² over `count` rows; the moving statistics move once.
    package func setStatistics(_ totals: UnsafePointer<Double>, count: Double) {
        let C = channels
        let mean = store.value(movingMean)
        let variance = store.value(movingVariance)
        self.count = count
        for c in 0..<C {
            let mu = totals[c] / count
            let v = max(totals[C + c] / count - mu * mu, 0)
            sums[c] = mu
            sums[C + c] = v
            inverse[c] = Float(1 / (v + Double(epsilon)).squareRoot())
            mean[c] = mean[c] * momentum + Float(mu) * (1 - momentum)
            variance[c] = variance[c] * momentum + Float(v) * (1 - momentum)
        }
    }

    /// The global Σdy, Σdy·x̂ (reproducible mode).
    package func setGradientSums(_ totals: UnsafePointer<Double>) {
        (sums + 2 * channels + 1).update(from: totals, count: 2 * channels)
    }

    /// Rows per sample (time steps of a sequence, else 1).
    package var rowsPerSample: Int { output.width / channels }
}
