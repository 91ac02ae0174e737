// Recurrent layers with every option of Keras 3's RNN on [B, T, D]: GRU
// (reset_after true and false), SimpleRNN, and LSTM when it needs more than
// the plain LSTM class does (go_backwards, a mask, recurrent dropout).
// Legend: B batch, T steps, D input features, U units, G gate columns
// (LSTM 4U: i, f, c, o; GRU 3U: z, r, h; SimpleRNN U). p is the processing
// step and t = p (or T−1−p with go_backwards) the input step it reads.
//   LSTM  z = x·W + b + h̃·R;  i, f, o = σ;  g = tanh;  c = f·c₋ + i·g;  h = o·tanh(c)
//   GRU   x_* = x·W_* + b_in;  z = σ(x_z + h̃·R_z [+ b_rz]);  r = σ(x_r + h̃·R_r [+ b_rr])
//         reset_after:  hh = tanh(x_h + r ⊙ (h̃·R_h + b_rh));  else  hh = tanh(x_h + (r ⊙ h̃)·R_h)
//         h = z ⊙ h₋ + (1 − z) ⊙ hh
//   SimpleRNN  h = act(x·W + b + h̃·R)
// h̃ is h₋ times the recurrent-dropout mask (one per sample, all steps; h₋
// itself otherwise). A masked step (mask 0 at t) leaves the state unchanged;
// its output is the state (or zero with zero_output_for_mask), as Keras's JAX
// backend computes. Outputs come in processing order (Keras does not reverse
// go_backwards outputs). The input projection of all steps is one GEMM over
// B·T rows; the recurrent products run step by step. Input dropout is a
// SpatialDropout1D in front (one mask per sample and feature, all steps).
// This file runs the steps, masks, outputs and weight gradients; each cell's per-step
// forward and backward is in Recurrent+LSTM.swift, Recurrent+GRU.swift, Recurrent+SimpleRNN.swift.

import CKernels
import Foundation

/// Keras `LSTM`, `GRU` or `SimpleRNN` with return_sequences, go_backwards, a mask,
/// recurrent dropout and use_bias.
package final class Recurrent: Layer, RandomLayer, TokenFusable {
    /// The products' FLOPs of one sample's forward (the benchmark's count).
    package var forwardFlopsPerSample: Double { 2 * Double(steps * (inputWidth + units) * gateColumns) }

    package enum Cell: Equatable, Sendable {
        case lstm
        case gru(resetAfter: Bool)
        case simple(Activation)
    }
    public let name: String
    package let weightsName: String
    package let inputs: [Layer]
    public let output: Node
    package let cell: Cell
    package let units: Int, inputWidth: Int, steps: Int
    package let returnSequences: Bool, goBackwards: Bool, useBias: Bool, zeroOutputForMask: Bool
    package let recurrentDropout: Float
    package let source: Layer, mask: Layer?
    let initializers: (kernel: Initializer?, recurrent: Initializer, bias: Initializer?)
    let stream: DropoutStream
    var keys: DropoutKeys!
    var kernel: TensorView!, recurrent: TensorView!, bias: TensorView?
    var store: ParameterStore!
    let G: Int
    // Workspace, B = bound batch: xProj [B,T,G] (input order; none when fused); gates [B,T,G] and rec [B,T,G]
    // (processing order); hPrev / cPrev [B,T,U] with row (b, p) the state before step p,
    // hLast / cLast [B,U] the final state; hIn [B,T,U] (h̃, with recurrent dropout);
    // rh [B,T,U] (GRU without reset_after: r ⊙ h̃); their gradients dXProj, dRec; dh, dc,
    // dHin, dKeep, dRH [B,U]; the recurrent-dropout mask [B,U].
    var xProj: UnsafeMutablePointer<Float>!, gates: UnsafeMutablePointer<Float>!,
        rec: UnsafeMutablePointer<Float>!
    var hPrev: UnsafeMutablePointer<Float>!, hLast: UnsafeMutablePointer<Float>!
    var cPrev: UnsafeMutablePointer<Float>!, cLast: UnsafeMutablePointer<Float>!
    /// LSTM: tanh of the cell after step p, row (s, p) [B,T,U] (the backward reads it).
    var tanhCells: UnsafeMutablePointer<Float>!
    var hIn: UnsafeMutablePointer<Float>!, rh: UnsafeMutablePointer<Float>!
    var dXProj: UnsafeMutablePointer<Float>!, dRec: UnsafeMutablePointer<Float>!
    var dh: UnsafeMutablePointer<Float>!, dc: UnsafeMutablePointer<Float>!, dHin: UnsafeMutablePointer<Float>!
    var dKeep: UnsafeMutablePointer<Float>!, dRH: UnsafeMutablePointer<Float>!,
        dropMask: UnsafeMutablePointer<Float>!
    var dropping = false

    /// `input` yields [B, steps, D]; `mask`, when given, yields [B, steps] of 0/1 (SequenceMask).
    package init(
        name: String, cell: Cell, units: Int, input: Layer, mask: Layer? = nil, returnSequences: Bool = false,
        goBackwards: Bool = false, useBias: Bool = true, zeroOutputForMask: Bool = false, recurrentDropout: Float = 0,
        weights: String? = nil, kernelInitializer: Initializer? = nil, recurrentInitializer: Initializer = .orthogonal,
        biasInitializer: Initializer? = nil
    ) {
        precondition(input.output.shape.count == 2 && units <= LSTM.maxUnits)
        precondition(mask == nil || mask!.output.shape == [input.output.shape[0]])
        self.name = name
        self.cell = cell
        self.units = units
        weightsName = weights ?? name
        steps = input.output.shape[0]
        inputWidth = input.output.shape[1]
        self.returnSequences = returnSequences
        self.goBackwards = goBackwards
        self.useBias = useBias
        self.zeroOutputForMask = zeroOutputForMask
        self.recurrentDropout = recurrentDropout
        source = input
        self.mask = mask
        inputs = mask.map { [input, $0] } ?? [input]
        initializers = (kernelInitializer, recurrentInitializer, biasInitializer)
        stream = DropoutStream(name: name, purpose: 1, rate: recurrentDropout)
        switch cell {
        case .lstm: G = 4 * units
        case .gru: G = 3 * units
        case .simple: G = units
        }
        output = Node(shape: returnSequences ? [steps, units] : [units])
    }

    func bind(keys: DropoutKeys) { self.keys = keys }

    /// The embedding this layer reads through directly, when fused (TokenProjection.swift).
    package var tokens: TokenProjection?
    package var gateColumns: Int { G }
    package var inputKernel: TensorView { kernel }
    package var inputBias: TensorView? { bias }  // GRU with reset_after: row 0 of [2, 3U], the input bias
    package var parameterStore: ParameterStore { store }
    package var kerasClass: String {
        switch cell {
        case .lstm: return "LSTM"
        case .gru: return "GRU"
        case .simple: return "SimpleRNN"
        }
    }
    package var canFuse: Bool { true }

    private var biasShape: [Int] { if case .gru(true) = cell { return [2, G] } else { return [G] } }

    package var parameterSpecs: [ParameterSpec] {
        var specs = [
            ParameterSpec(
                layer: weightsName, weight: "kernel", shape: [inputWidth, G],
                initializer: initializers.kernel ?? .glorotUniform(fanIn: inputWidth, fanOut: G)),
            ParameterSpec(
                layer: weightsName, weight: "recurrent_kernel", shape: [units, G], initializer: initializers.recurrent),
        ]
        if useBias {
            specs.append(
                ParameterSpec(
                    layer: weightsName, weight: "bias", shape: biasShape,
                    initializer: initializers.bias ?? (cell == .lstm ? .lstmBias(units: units) : .zeros)))
        }
        return specs
    }

    package func bind(parameters: ParameterStore) {
        store = parameters
        kernel = parameters.view("\(weightsName)/kernel")
        recurrent = parameters.view("\(weightsName)/recurrent_kernel")
        bias = useBias ? parameters.view("\(weightsName)/bias") : nil
    }

    var isLSTM: Bool { cell == .lstm }
    var resetBefore: Bool { cell == .gru(resetAfter: false) }
    private var isGRU: Bool { if case .gru = cell { return true } else { return false } }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        let bt = batch * steps
        let b = batch
        let U = units
        var n = 3 * bt * G + bt * U + b * U  // gates, dXProj, dRec; hPrev, hLast
        if !readsProjectionInPlace { n += bt * G }  // xProj
        if isGRU { n += bt * G }  // rec
        if isLSTM { n += 2 * bt * U + b * U }  // cPrev, tanhCells, cLast
        if recurrentDropout > 0 { n += bt * U + b * U }  // hIn, mask
        if resetBefore { n += bt * U + b * U }  // rh, dRH
        n += 4 * b * U  // dh, dc, dHin, dKeep
        return (n + batch * output.width + (tokens?.workspaceSize(batch: batch) ?? 0), batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        let bt = batch * steps
        let b = batch
        let U = units
        xProj = readsProjectionInPlace ? nil : workspace.take(bt * G)
        gates = workspace.take(bt * G)
        dXProj = workspace.take(bt * G)
        dRec = workspace.take(bt * G)
        hPrev = workspace.take(bt * U)
        hLast = workspace.take(b * U)
        rec = isGRU ? workspace.take(bt * G) : nil
        if isLSTM {
            cPrev = workspace.take(bt * U)
            tanhCells = workspace.take(bt * U)
            cLast = workspace.take(b * U)
        }
        if recurrentDropout > 0 {
            hIn = workspace.take(bt * U)
            dropMask = workspace.take(b * U)
        } else {
            hIn = hPrev
        }
        if resetBefore {
            rh = workspace.take(bt * U)
            dRH = workspace.take(b * U)
        }
        dh = workspace.take(b * U)
        dc = workspace.take(b * U)
        dHin = workspace.take(b * U)
        dKeep = workspace.take(b * U)
        output.values = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
        tokens?.bind(workspace: &workspace, batch: batch)
    }

    /// Fused, each occurrence's projection is read from the distinct tokens' rows: every
    /// cell adds it to its own recurrent product, so no [B·T, G] gather (xProj) is needed.
    private var readsProjectionInPlace: Bool { tokens != nil }
    /// This forward's distinct-token rows and occurrence slots (fused only).
    private var distinctRows: (rows: UnsafePointer<Float>, slot: UnsafePointer<Int32>)?
    /// Sample s's input projection at input step t (x·W + b).
    @inline(__always) func projected(_ s: Int, _ t: Int) -> UnsafePointer<Float> {
        let o = s * steps + t
        if let d = distinctRows { return d.rows + Int(d.slot[o]) * G }
        return UnsafePointer(xProj + o * G)
    }

    @inline(__always) func inputStep(_ p: Int) -> Int { goBackwards ? steps - 1 - p : p }
    @inline(__always) func masked(_ s: Int, _ t: Int) -> Bool {
        mask.map { $0.output.values[s * steps + t] == 0 } ?? false
    }
    /// The state after step p of sample s (row p+1 of hPrev, or hLast).
    @inline(__always) func next(
        _ base: UnsafeMutablePointer<Float>, _ last: UnsafeMutablePointer<Float>, _ s: Int, _ p: Int
    ) -> UnsafeMutablePointer<Float> {
        p + 1 < steps ? base + (s * steps + p + 1) * units : last + s * units
    }

    /// h̃·R[:, columns] into rows (s, p) of `to` for every sample; at p = 0 h̃ is the zero state,
    /// so no product.
    func recurrentProduct(_ p: Int, batch B: Int, columns: Int, into to: UnsafeMutablePointer<Float>) {
        let T = steps
        if p == 0 {
            for s in 0..<B { (to + s * T * G).update(repeating: 0, count: columns) }
            return
        }
        let R = UnsafePointer(store.value(recurrent))
        gemm(
            .none, .none, m: B, n: columns, k: units, a: hIn + p * units, lda: T * units, b: R, ldb: G, beta: 0, c: to,
            ldc: T * G)
    }

    public func forward(batch: Int, training: Bool) {
        let B = batch
        let T = steps
        let D = inputWidth
        let U = units
        let b = bias.map { UnsafePointer(store.value($0)) }
        // x·W + b_in for every step at once (over the distinct tokens, when fused).
        if let tokens {
            distinctRows = tokens.projectDistinct(batch: B)  // read in place by `projected`
        } else {
            gemm(
                .none, .none, m: B * T, n: G, k: D, a: source.output.values, lda: D, b: store.value(kernel), ldb: G,
                beta: 0, c: xProj, ldc: G)
            if let b { addBias(b, to: xProj, rows: B * T, columns: G, stride: G) }
        }
        dropping = training && recurrentDropout > 0
        if dropping { stream.fill(dropMask, rows: B, count: U, keys: keys) }
        for s in 0..<B {
            (hPrev + s * T * U).update(repeating: 0, count: U)
            if isLSTM { (cPrev + s * T * U).update(repeating: 0, count: U) }
        }
        for p in 0..<T {
            let t = inputStep(p)
            if recurrentDropout > 0 {  // h̃ = h₋ ⊙ mask (h₋ itself in inference)
                for s in 0..<B {
                    let from = hPrev + (s * T + p) * U
                    let to = hIn + (s * T + p) * U
                    if dropping {
                        for j in 0..<U { to[j] = from[j] * dropMask[s * U + j] }
                    } else {
                        to.update(from: from, count: U)
                    }
                }
            }
            switch cell {
            case .lstm: lstmStep(p, t, batch: B)
            case .simple(let act): simpleStep(p, t, batch: B, act)
            case .gru(let resetAfter): gruStep(p, t, batch: B, resetAfter: resetAfter)
            }
            for s in 0..<B where masked(s, t) {  // the state stays
                next(hPrev, hLast, s, p).update(from: hPrev + (s * T + p) * U, count: U)
                if isLSTM { next(cPrev, cLast, s, p).update(from: cPrev + (s * T + p) * U, count: U) }
            }
            if returnSequences || p == T - 1 {
                for s in 0..<B {
                    let y = output.values + (returnSequences ? (s * T + p) * U : s * U)
                    if zeroOutputForMask && masked(s, t) {
                        y.update(repeating: 0, count: U)
                    } else {
                        y.update(from: next(hPrev, hLast, s, p), count: U)
                    }
                }
            }
        }
    }

    package func backward(batch: Int) {
        let B = batch
        let T = steps
        let D = inputWidth
        let U = units
        let R = UnsafePointer(store.value(recurrent))
        dh.update(repeating: 0, count: B * U)
        dc.update(repeating: 0, count: B * U)
        for p in stride(from: T - 1, through: 0, by: -1) {
            let t = inputStep(p)
            if returnSequences || p == T - 1 {
                for s in 0..<B where !(zeroOutputForMask && masked(s, t)) {
                    let g = output.gradients + (returnSequences ? (s * T + p) * U : s * U)
                    let to = dh + s * U
                    for j in 0..<U { to[j] += g[j] }
                }
            }
            for s in 0..<B {
                let dx = dXProj + (s * T + t) * G
                let dr = dRec + (s * T + p) * G
                let dhs = dh + s * U
                let keep = dKeep + s * U
                if masked(s, t) {  // the state passed through: its gradient too
                    dx.update(repeating: 0, count: G)
                    dr.update(repeating: 0, count: G)
                    keep.update(from: dhs, count: U)
                    continue
                }
                switch cell {
                case .lstm: lstmStepBackward(s, p, dh: dhs, dx: dx, dr: dr, keep: keep)
                case .simple(let act): simpleStepBackward(s, p, act, dh: dhs, dx: dx, dr: dr, keep: keep)
                case .gru(let resetAfter):
                    gruStepBackward(s, p, resetAfter: resetAfter, dh: dhs, dx: dx, dr: dr, keep: keep)
                }
            }
            if resetBefore { resetBeforeBackward(p, t, batch: B) }
            guard p > 0 else { continue }  // h₀ is the zero state
            // dh̃ = dRec · Rᵀ (the z, r columns only without reset_after), then through the mask.
            let GR = resetBefore ? 2 * U : G
            gemm(
                .none, .transposed, m: B, n: U, k: GR, a: dRec + p * G, lda: T * G, b: R, ldb: G, beta: 0, c: dHin,
                ldc: U)
            for s in 0..<B {
                let to = dh + s * U
                let k = dKeep + s * U
                let g = dHin + s * U
                let extra: UnsafeMutablePointer<Float>? = resetBefore && !masked(s, t) ? dRH + s * U : nil
                for j in 0..<U {
                    var v = g[j] + (extra?[j] ?? 0)
                    if dropping { v *= dropMask[s * U + j] }
                    to[j] = k[j] + v
                }
            }
        }
        // Weight gradients as single products over all B·T rows.
        let dR = store.gradient(recurrent)
        if resetBefore {
            gemm(.transposed, .none, m: U, n: 2 * U, k: B * T, a: hIn, lda: U, b: dRec, ldb: G, beta: 1, c: dR, ldc: G)
            gemm(
                .transposed, .none, m: U, n: U, k: B * T, a: rh, lda: U, b: dRec + 2 * U, ldb: G, beta: 1,
                c: dR + 2 * U, ldc: G)
        } else {
            gemm(.transposed, .none, m: U, n: G, k: B * T, a: hIn, lda: U, b: dRec, ldb: G, beta: 1, c: dR, ldc: G)
        }
        if let bias, case .gru(true) = cell {
            addColumnSums(dRec, rows: B * T, columns: G, stride: G, into: store.gradient(bias) + G)
        }
        if let tokens {  // input kernel, input bias and table gradients per distinct token
            tokens.backward(batch: B, from: dXProj)
            return
        }
        gemm(
            .transposed, .none, m: D, n: G, k: B * T, a: source.output.values, lda: D, b: dXProj, ldb: G,
            beta: 1, c: store.gradient(kernel), ldc: G)
        if let bias { addColumnSums(dXProj, rows: B * T, columns: G, stride: G, into: store.gradient(bias)) }
        guard source.wantsGradient else { return }
        gemm(
            .none, .transposed, m: B * T, n: D, k: G, a: dXProj, lda: G, b: store.value(kernel), ldb: G,
            beta: 1, c: source.output.gradients, ldc: D)
    }
}

/// Keras's `ops.not_equal(tokens, value)` as Embedding(mask_zero=True) saves it:
/// [B, T] of 1 where the token id differs from `value`, else 0. No gradient.
package final class SequenceMask: Layer {
    public let name: String
    package let inputs: [Layer]
    public let output: Node
    package let value: Int32
    private let source: InputLayer

    package init(name: String, tokens: InputLayer, value: Int32 = 0) {
        precondition(tokens.kind == .tokens)
        self.name = name
        self.value = value
        source = tokens
        inputs = [tokens]
        output = Node(shape: tokens.output.shape)
    }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (batch * output.width, batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    public func forward(batch: Int, training: Bool) {
        let ids = source.tokens!
        for i in 0..<(batch * output.width) { output.values[i] = ids[i] != value ? 1 : 0 }
    }

    package func backward(batch: Int) {}
}

// MARK: - Keras LSTM, GRU, SimpleRNN (the plain LSTM class or the general recurrent layer) and Bidirectional:
// the layer table's entries (KerasLayerKind.swift) and their builders, which read a call's config and refuse
// every argument Tandem does not implement by name.

extension KerasLayerKind {
    static let lstm = recurrent("LSTM")
    static let gru = recurrent("GRU")
    static let simpleRNN = recurrent("SimpleRNN")

    /// An RNN's weights sit in its cell: `cell/vars`, named `<class>_cell`.
    private static func recurrentVariables(_ className: String, _ layer: String, _ config: JSONValue) -> [VariableGroup]
    {
        let names = ["kernel", "recurrent_kernel"] + (config["use_bias"]?.bool == false ? [] : ["bias"])
        return [
            top(layer, []), .init(path: "cell/vars", label: "\(KerasJSON.snakeCase(className))_cell", names: names),
        ]
    }

    private static func recurrent(_ className: String) -> KerasLayerKind {
        KerasLayerKind(
            classNames: [className], readsMask: true,
            build: { a, inputs, mask in try LayerRegistry.recurrent(a, inputs, mask: mask) },
            variables: recurrentVariables,
            regularizerKeys: [
                ("kernel_regularizer", "kernel"), ("recurrent_regularizer", "recurrent_kernel"),
                ("bias_regularizer", "bias"),
            ])
    }

    static let bidirectional = KerasLayerKind(
        classNames: ["Bidirectional"], readsMask: true,
        build: { a, inputs, mask in try LayerRegistry.bidirectional(a, inputs, mask: mask) },
        variables: { _, layer, config in
            // forward_layer/… and backward_layer/…, each an RNN named in the config; Tandem's
            // names are <layer>/<half>/<weight>.
            var groups = [KerasLayerKind.top(layer, [])]
            for (half, attribute) in zip(
                KerasJSON.bidirectionalHalves(config), ["forward_layer", "backward_layer"])
            {
                let name = half["config"]?["name"]?.string ?? attribute
                groups += LayerRegistry.variables(
                    className: half["class_name"]?.string ?? "", layer: name, config: half["config"] ?? .null
                ).map {
                    .init(
                        path: "\(attribute)/\($0.path)", label: $0.path == "vars" ? name : $0.label,
                        names: $0.names.map { "\(name)/\($0)" })
                }
            }
            return groups
        })
}

extension LayerRegistry {
    /// LSTM, GRU, SimpleRNN. The plain LSTM class when nothing more is asked
    /// (the fusion pass knows it); otherwise `Recurrent`. Input dropout is a
    /// SpatialDropout1D in front: one mask per sample and feature, all steps.
    package static func recurrent(
        _ a: LayerArguments, _ inputs: [Layer], mask: Layer?, name: String? = nil, weights: String? = nil,
        zeroOutputForMask: Bool? = nil
    ) throws -> Layer {
        var source = try sequence(a, inputs)
        let id = name ?? a.node.id
        let className = a.node.className
        let units = try a.int("units")
        guard units <= LSTM.maxUnits else { throw a.fail("'units' must be at most \(LSTM.maxUnits), got \(units)") }
        let activation = try a.activation(default: "tanh")
        if className != "SimpleRNN" {
            guard activation == .tanh else { throw a.fail("activation must be tanh (Keras's default)") }
            guard try a.activation("recurrent_activation", default: "sigmoid") == .sigmoid else {
                throw a.fail("recurrent_activation must be sigmoid (Keras's default)")
            }
        } else if activation == .softmax || activation == .logSoftmax {
            throw a.fail(
                "activation \(activation.rawValue) is not supported for SimpleRNN (element-wise activations only)")
        }
        try a.require("return_state", is: .bool(false), supported: "return_state = false")
        try a.require("stateful", is: .bool(false), supported: "stateful = false")
        // activity_regularizer: a layer after this one (LayerRegistry.activityPenalty).
        // `unroll` and `implementation` change how Keras schedules the same arithmetic; `seed`
        // seeds Keras's own generator (Tandem's masks come from the run's seed, docs/SPEC.md §9).
        let useBias = try a.bool("use_bias", default: true)
        let goBackwards = try a.bool("go_backwards", default: false)
        let returnSequences = try a.bool("return_sequences", default: false)
        let dropout = try a.rate("dropout")
        let recurrentDropout = try a.rate("recurrent_dropout")
        let zeroOutput = try zeroOutputForMask ?? a.bool("zero_output_for_mask", default: false)
        let features = source.output.shape[1]
        let cell: Recurrent.Cell
        switch className {
        case "LSTM": cell = .lstm
        case "GRU": cell = .gru(resetAfter: try a.bool("reset_after", default: true))
        default: cell = .simple(activation)
        }
        let g = cell == .lstm ? 4 * units : (className == "GRU" ? 3 * units : units)
        var bias = try a.initializer("bias_initializer", fanIn: units, fanOut: g)
        if cell == .lstm, try a.bool("unit_forget_bias", default: true) {
            // Keras: the forget block is ones, the rest from the bias initializer (zeros by default).
            switch bias {
            case nil, .zeros?: bias = .lstmBias(units: units)
            default: bias = .unsupported("\(a.node.layer)/bias_initializer with unit_forget_bias")
            }
        } else if bias == nil {
            bias = .zeros
        }
        let kernelInit = try a.initializer("kernel_initializer", fanIn: features, fanOut: g)
        let recurrentInit = try a.initializer("recurrent_initializer", fanIn: units, fanOut: g) ?? .orthogonal
        if dropout > 0 { source = Dropout(name: "\(id)/dropout", input: source, rate: dropout, spatial: true) }
        if cell == .lstm, useBias, !goBackwards, mask == nil, recurrentDropout == 0 {
            return LSTM(
                name: id, units: units, input: source, steps: source.output.shape[0], returnSequences: returnSequences,
                weights: weights ?? a.node.layer, kernelInitializer: kernelInit, recurrentInitializer: recurrentInit,
                biasInitializer: bias)
        }
        return Recurrent(
            name: id, cell: cell, units: units, input: source, mask: mask, returnSequences: returnSequences,
            goBackwards: goBackwards, useBias: useBias, zeroOutputForMask: zeroOutput,
            recurrentDropout: recurrentDropout,
            weights: weights ?? a.node.layer, kernelInitializer: kernelInit, recurrentInitializer: recurrentInit,
            biasInitializer: bias)
    }

    /// Keras `Bidirectional(layer, merge_mode, backward_layer)`: the forward RNN, the
    /// backward one (go_backwards; its sequence flipped back to input order) and the merge.
    /// Weights are `<layer>/<half's name>/<weight>` (Keras's forward_layer / backward_layer).
    static func bidirectional(_ a: LayerArguments, _ inputs: [Layer], mask: Layer?) throws -> Layer {
        let source = try sequence(a, inputs)
        guard a.config["layer"]?["config"]?["name"]?.string != nil else { throw a.fail("has no 'layer'") }
        let configs = KerasJSON.bidirectionalHalves(a.config)
        for (half, role) in zip(configs, ["forward", "backward"]) {
            try KerasJSON.refuseCustom(half, what: "layer '\(a.node.layer)'s \(role) layer")
        }
        let mode = try a.string("merge_mode", default: "concat")
        guard ["concat", "sum", "mul", "ave"].contains(mode) else {
            throw a.fail("merge_mode '\(mode)' is not supported (concat, sum, mul, ave)")
        }
        var halves: [Layer] = []
        for half in configs {
            let className = half["class_name"]?.string ?? "?"
            guard ["LSTM", "GRU", "SimpleRNN"].contains(className), let hname = half["config"]?["name"]?.string else {
                throw a.fail("wraps \(className); only LSTM, GRU and SimpleRNN are supported")
            }
            let node = GraphNode(
                id: "\(a.node.id)/\(hname)", layer: "\(a.node.layer)/\(hname)", className: className,
                config: half["config"] ?? .object([]), inputs: a.node.inputs, call: a.node.call)
            let inner = LayerArguments(node: node)
            try inner.require("return_state", is: .bool(false), supported: "return_state = false")
            // Keras forces zero_output_for_mask = return_sequences on both halves.
            var layer = try recurrent(
                inner, [source], mask: mask, zeroOutputForMask: try inner.bool("return_sequences", default: false))
            if let r = layer as? Recurrent, r.goBackwards, r.returnSequences {
                layer = TimeReverse(name: "\(node.id)/reversed", input: r)
            }
            halves.append(layer)
        }
        guard halves[0].output.shape == halves[1].output.shape else { throw a.fail("its halves give different shapes") }
        if mode == "concat" { return Concatenate(name: a.node.id, inputs: halves) }
        let kind: MergeKind = mode == "sum" ? .add : mode == "mul" ? .multiply : .average
        return Merge(name: a.node.id, kind: kind, inputs: halves)
    }
}
