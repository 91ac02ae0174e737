// LSTM, Keras 3 layout and semantics: the last hidden state [B, U], or with
// return_sequences every step's [B, T, U].
// Legend: B batch, T time steps, D input width, U units, G = 4U gate columns
// in the order i, f, c, o.  z = x·W + h·R + b;  i, f, o = σ(z);  g = tanh(z_c);
// c_t = f·c_{t-1} + i·g;  h_t = o·tanh(c_t). Full backpropagation through time.
// The input projection of all T steps is ONE GEMM over B·T rows; only the
// recurrent product runs step by step.

import CKernels
import Foundation

/// Keras `LSTM(units, return_sequences)`.
public final class LSTM: Layer, TokenFusable {
    /// The products' FLOPs of one sample's forward (the benchmark's count).
    public var forwardFlopsPerSample: Double { 2 * Double(steps * (inputWidth + units) * 4 * units) }

    public let name: String
    public let weightsName: String
    public let inputs: [Layer]
    public let output: Node
    package let units: Int, inputWidth: Int, steps: Int
    package let returnSequences: Bool
    let initializers: (kernel: Initializer?, recurrent: Initializer, bias: Initializer?)
    package let source: Layer
    var kernel: TensorView!, recurrent: TensorView!, bias: TensorView!
    var store: ParameterStore!
    /// The embedding this LSTM reads through directly, when fused (TokenProjection.swift).
    package var tokens: TokenProjection?
    // Workspace (B = bound batch): gates [B,T,G] pre-activations then activations;
    // cells [B,T,U] c_t and tanhCells [B,T,U] tanh(c_t) (kept: the backward would
    // otherwise recompute it, most of its kernel's work); hPrev [B,T,U] with row
    // (b,t) = h_{t-1} (zero at t = 0); dGates [B,T,G]; dh, dc [B,U].
    var gates: UnsafeMutablePointer<Float>!
    private var cells: UnsafeMutablePointer<Float>!
    private var tanhCells: UnsafeMutablePointer<Float>!
    private var hPrev: UnsafeMutablePointer<Float>!
    var dGates: UnsafeMutablePointer<Float>!
    private var dh: UnsafeMutablePointer<Float>!, dc: UnsafeMutablePointer<Float>!

    /// The most units the vectorised step kernel takes (its zero state is a fixed buffer).
    public static let maxUnits = 4096

    /// `input` yields sequences [B, steps, inputWidth]. `weights` names the Keras
    /// layer whose weights a shared call uses (default: `name`). Initialisers
    /// default to Keras's (glorot uniform, orthogonal, zeros with forget bias 1).
    package init(
        name: String, units: Int, input: Layer, steps: Int, returnSequences: Bool = false, weights: String? = nil,
        kernelInitializer: Initializer? = nil, recurrentInitializer: Initializer = .orthogonal,
        biasInitializer: Initializer? = nil
    ) {
        precondition(input.output.width % steps == 0, "LSTM input width must be steps × features")
        precondition(units <= LSTM.maxUnits, "LSTM units are limited to 4096 (the step kernel's zero state)")
        self.name = name
        self.units = units
        self.steps = steps
        self.returnSequences = returnSequences
        weightsName = weights ?? name
        initializers = (kernelInitializer, recurrentInitializer, biasInitializer)
        inputWidth = input.output.width / steps
        source = input
        inputs = [input]
        output = Node(shape: returnSequences ? [steps, units] : [units])
    }

    public var parameterSpecs: [ParameterSpec] {
        let g = 4 * units
        return [
            ParameterSpec(
                layer: weightsName, weight: "kernel", shape: [inputWidth, g],
                initializer: initializers.kernel ?? .glorotUniform(fanIn: inputWidth, fanOut: g)),
            ParameterSpec(
                layer: weightsName, weight: "recurrent_kernel", shape: [units, g], initializer: initializers.recurrent),
            ParameterSpec(
                layer: weightsName, weight: "bias", shape: [g],
                initializer: initializers.bias ?? .lstmBias(units: units)),
        ]
    }

    package var gateColumns: Int { 4 * units }
    package var inputKernel: TensorView { kernel }
    package var inputBias: TensorView? { bias }
    package var parameterStore: ParameterStore { store }
    package var kerasClass: String { "LSTM" }
    package var canFuse: Bool { true }

    public func bind(parameters: ParameterStore) {
        store = parameters
        kernel = parameters.view("\(weightsName)/kernel")
        recurrent = parameters.view("\(weightsName)/recurrent_kernel")
        bias = parameters.view("\(weightsName)/bias")
    }

    public func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        let bt = batch * steps
        let out = batch * output.width
        return (
            bt * 4 * units * 2 + bt * units * 3 + batch * units * 2 + out + (tokens?.workspaceSize(batch: batch) ?? 0),
            out
        )
    }

    public func bind(workspace: inout WorkspaceCursor, batch: Int) {
        let bt = batch * steps
        let g = 4 * units
        gates = workspace.take(bt * g)
        dGates = workspace.take(bt * g)
        cells = workspace.take(bt * units)
        tanhCells = workspace.take(bt * units)
        hPrev = workspace.take(bt * units)
        dh = workspace.take(batch * units)
        dc = workspace.take(batch * units)
        output.values = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
        tokens?.bind(workspace: &workspace, batch: batch)
    }

    public func forward(batch: Int, training: Bool) {
        let B = batch
        let T = steps
        let D = inputWidth
        let U = units
        let G = 4 * units
        let r = store.value(recurrent)
        if let tokens {
            tokens.project(batch: B, into: gates)
        } else {
            // All steps' input projections at once: gates[B·T, G] = X[B·T, D] · W[D, G] + b.
            gemm(
                .none, .none, m: B * T, n: G, k: D, a: source.output.values, lda: D, b: store.value(kernel), ldb: G,
                beta: 0, c: gates, ldc: G)
            addBias(store.value(bias), to: gates, rows: B * T, columns: G, stride: G)
        }
        for t in 0..<T {
            let zt = gates + t * G
            if t > 0 {  // z_t += h_{t-1} · R, reading rows b·T + t of hPrev.
                gemm(
                    .none, .none, m: B, n: G, k: U, a: hPrev + t * U, lda: T * U,
                    b: r, ldb: G, beta: 1, c: zt, ldc: T * G)
            }
            for s in 0..<B {
                let z = zt + s * T * G
                let c = cells + (s * T + t) * U
                let cPrev: UnsafeMutablePointer<Float>? = t > 0 ? c - U : nil
                let last = returnSequences ? output.values + (s * T + T - 1) * U : output.values + s * U
                let hOut = t + 1 < T ? hPrev + (s * T + t + 1) * U : last
                // CKernels/lstm.c (vectorised).
                tandem_lstm_step_forward(z, nil, cPrev, c, tanhCells + (s * T + t) * U, hOut, Int32(U))
            }
        }
        if returnSequences {
            // h_t for t < T−1 is row (b, t+1) of hPrev: output rows (b, 0..<T−1) are those rows.
            let y: UnsafeMutablePointer<Float> = output.values
            let rowsPerSample = T * U
            for s in 0..<B {
                let from: UnsafeMutablePointer<Float> = hPrev + (s * rowsPerSample + U)
                (y + s * rowsPerSample).update(from: from, count: rowsPerSample - U)
            }
        }
        for s in 0..<B { (hPrev + s * T * U).update(repeating: 0, count: U) }
    }

    public func backward(batch: Int) {
        let B = batch
        let T = steps
        let D = inputWidth
        let U = units
        let G = 4 * units
        let r = store.value(recurrent)
        // dh_T−1: the output's gradient (its last step's, for a sequence).
        if returnSequences {
            for s in 0..<B { (dh + s * U).update(from: output.gradients + (s * T + T - 1) * U, count: U) }
        } else {
            dh.update(from: output.gradients, count: B * U)
        }
        dc.update(repeating: 0, count: B * U)
        for t in stride(from: T - 1, through: 0, by: -1) {
            for s in 0..<B {
                let a = gates + (s * T + t) * G
                let dz = dGates + (s * T + t) * G
                let c = cells + (s * T + t) * U
                tandem_lstm_step_backward(
                    a, tanhCells + (s * T + t) * U, t > 0 ? c - U : nil, dh + s * U, dc + s * U, dz, Int32(U))
            }
            if t > 0 {  // dh_{t-1} = dz_t · Rᵀ (+ the output's gradient at t−1, for a sequence)
                gemm(
                    .none, .transposed, m: B, n: U, k: G, a: dGates + t * G, lda: T * G,
                    b: r, ldb: G, beta: 0, c: dh, ldc: U)
                if returnSequences {
                    for s in 0..<B {
                        let to = dh + s * U
                        let from = output.gradients + (s * T + t - 1) * U
                        for j in 0..<U { to[j] += from[j] }
                    }
                }
            }
        }
        // Weight gradients as single products over all B·T rows.
        gemm(
            .transposed, .none, m: U, n: G, k: B * T, a: hPrev, lda: U, b: dGates, ldb: G,
            beta: 1, c: store.gradient(recurrent), ldc: G)
        if let tokens {
            tokens.backward(batch: B, from: dGates)
            return
        }
        gemm(
            .transposed, .none, m: D, n: G, k: B * T, a: source.output.values, lda: D, b: dGates, ldb: G,
            beta: 1, c: store.gradient(kernel), ldc: G)
        addColumnSums(dGates, rows: B * T, columns: G, stride: G, into: store.gradient(bias))
        guard source.wantsGradient else { return }
        gemm(
            .none, .transposed, m: B * T, n: D, k: G, a: dGates, lda: G, b: store.value(kernel), ldb: G,
            beta: 1, c: source.output.gradients, ldc: D)
    }
}
