// Optimizer flags: each overrides one argument of the archive's compiled
// optimizer (or of --optimizer's Keras defaults). Shared by train and bench.

import ArgumentParser
import Tandem

struct OptimizerOptions: ParsableArguments {
    @Option(
        help:
            "sgd, adam, adamw, rmsprop, adagrad, adamax, nadam, adadelta, lion, ftrl, adafactor, lamb, muon or schedulefreeadamw (Keras's defaults for its arguments). Default: the archive's compiled optimizer, else sgd."
    )
    var optimizer: String?
    @Option(
        help: "Constant learning rate (replaces an archive's schedule). Keras's defaults: sgd 0.01, the others 0.001.")
    var lr: Double?
    @Option(help: "Momentum: sgd (0 ≤ μ < 1) or rmsprop. Default 0.") var momentum: Double?
    @Flag(help: "Nesterov momentum (sgd).") var nesterov = false
    @Option(name: .customLong("beta1"), help: "β1 of adam, adamw, adamax, nadam, lion. Default 0.9.") var beta1: Double?
    @Option(name: .customLong("beta2"), help: "β2 of adam, adamw, adamax, nadam (default 0.999), lion (default 0.99).")
    var beta2: Double?
    @Option(help: "ε of every optimizer but sgd and lion. Default 1e-7.") var epsilon: Double?
    @Option(help: "ρ of rmsprop (default 0.9) and adadelta (default 0.95).") var rho: Double?
    @Flag(help: "AMSGrad variant (adam, adamw).") var amsgrad = false
    @Flag(help: "Centered RMSprop.") var centered = false
    @Option(
        name: .customLong("weight-decay"),
        help: "Decoupled weight decay w ← w − w·wd·lr on every trainable tensor (any optimizer; adamw's default 0.004)."
    )
    var weightDecay: Double?
    @Option(help: "Clip each tensor's gradient to this norm (after the allreduce).") var clipnorm: Double?
    @Option(
        name: .customLong("global-clipnorm"), help: "Clip the whole gradient to this global norm (after the allreduce)."
    ) var globalClipnorm: Double?
    @Option(help: "Clip every gradient element to [−v, v] (after the allreduce).") var clipvalue: Double?
    @Option(
        name: .customLong("gradient-accumulation-steps"),
        help:
            "Keras's gradient_accumulation_steps: the weights move every N-th step by the mean of the N steps' gradients (one allreduce per N steps); 1 turns the archive's off."
    )
    var gradientAccumulationSteps: Int?

    /// The flags given, for messages.
    var given: [String] {
        var names: [String] = []
        if optimizer != nil { names.append("--optimizer") }
        if lr != nil { names.append("--lr") }
        if momentum != nil { names.append("--momentum") }
        if nesterov { names.append("--nesterov") }
        if beta1 != nil { names.append("--beta1") }
        if beta2 != nil { names.append("--beta2") }
        if epsilon != nil { names.append("--epsilon") }
        if rho != nil { names.append("--rho") }
        if amsgrad { names.append("--amsgrad") }
        if centered { names.append("--centered") }
        if weightDecay != nil { names.append("--weight-decay") }
        if clipnorm != nil { names.append("--clipnorm") }
        if globalClipnorm != nil { names.append("--global-clipnorm") }
        if clipvalue != nil { names.append("--clipvalue") }
        if gradientAccumulationSteps != nil { names.append("--gradient-accumulation-steps") }
        return names
    }

    func kind() throws -> OptimizerConfig.Kind? {
        try optimizer.map { name in
            guard let k = OptimizerConfig.Kind(rawValue: name.lowercased()) else {
                throw TandemError.usage(
                    "--optimizer: unknown '\(name)' (choose \(OptimizerConfig.Kind.allCases.map(\.rawValue).joined(separator: ", ")))"
                )
            }
            return k
        }
    }

    /// `base` (the archive's optimizer, or nil) with --optimizer and the argument flags over it.
    func config(over base: OptimizerConfig?) throws -> OptimizerConfig {
        var c: OptimizerConfig
        if let kind = try kind(), kind != base?.kind {
            c = OptimizerConfig(kind: kind)
        } else {
            c = base ?? OptimizerConfig(kind: .sgd)
        }
        func only(_ flag: String, _ kinds: [OptimizerConfig.Kind]) throws {
            guard kinds.contains(c.kind) else {
                throw TandemError.usage(
                    "\(flag) applies to \(kinds.map(\.rawValue).joined(separator: ", ")) (the optimizer is \(c.kind.rawValue))"
                )
            }
        }
        if let lr {
            guard lr > 0 && lr.isFinite else { throw TandemError.usage("--lr must be a positive number, got \(lr)") }
            c.learningRate = lr
            c.schedule = nil
        }
        if let momentum {
            try only("--momentum", [.sgd, .rmsprop])
            c.momentum = momentum
        }
        if nesterov {
            try only("--nesterov", [.sgd])
            c.nesterov = true
        }
        let adams: [OptimizerConfig.Kind] = [.adam, .adamw, .adamax, .nadam, .lion, .lamb, .muon, .scheduleFreeAdamW]
        if let beta1 {
            try only("--beta1", adams)
            c.beta1 = beta1
        }
        if let beta2 {
            try only("--beta2", adams)
            c.beta2 = beta2
        }
        if let epsilon {
            try only(
                "--epsilon",
                [.adam, .adamw, .rmsprop, .adagrad, .adamax, .nadam, .adadelta, .lamb, .muon, .scheduleFreeAdamW])
            c.epsilon = epsilon
        }
        if let rho {
            try only("--rho", [.rmsprop, .adadelta])
            c.rho = rho
        }
        if amsgrad {
            try only("--amsgrad", [.adam, .adamw])
            c.amsgrad = true
        }
        if centered {
            try only("--centered", [.rmsprop])
            c.centered = true
        }
        if let weightDecay { c.weightDecay = weightDecay }
        if clipnorm != nil || globalClipnorm != nil || clipvalue != nil {
            // A clipping flag replaces whatever clipping the archive compiled.
            c.clipnorm = clipnorm
            c.globalClipnorm = globalClipnorm
            c.clipvalue = clipvalue
        }
        if let n = gradientAccumulationSteps {
            guard n >= 1 else { throw TandemError.usage("--gradient-accumulation-steps must be at least 1, got \(n)") }
            c.gradientAccumulationSteps = n == 1 ? nil : n
        }
        do { try c.validate() } catch let TandemError.usage(message) {
            throw TandemError.usage(given.isEmpty ? message : "\(message) [flags: \(given.joined(separator: " "))]")
        }
        return c
    }
}
