// Optimizers with Keras 3's update rules and defaults (SPEC §3). Each applies
// one fused pass over the flat parameter / gradient arenas; its slots live in
// arenas of the same layout. Every parameter gets the dense rule each step,
// so embedding rows without gradient still see their moments decay.

import Foundation

/// Which optimizer and its hyper-parameters. Defaults are Keras's.
public struct OptimizerConfig: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable, CaseIterable { case sgd, adam, rmsprop }
    public var kind: Kind = .sgd
    public var learningRate: Double = 0.01
    public var momentum: Double = 0
    public var nesterov = false
    public var beta1 = 0.9, beta2 = 0.999, epsilon = 1e-7, rho = 0.9
    public init(kind: Kind = .sgd, learningRate: Double? = nil) {
        self.kind = kind
        self.learningRate = learningRate ?? (kind == .sgd ? 0.01 : 0.001)
    }
}

/// A stateful optimizer over a `ParameterStore`.
public final class Optimizer {
    public let config: OptimizerConfig
    /// Steps applied so far (Keras's `iterations`).
    public var iterations: Int = 0
    /// Slot arenas by name (`momentum`, `m`, `v`, `velocity`), parameter layout.
    public private(set) var slots: [(name: String, values: UnsafeMutablePointer<Float>)] = []
    private let count: Int

    public init(_ config: OptimizerConfig, parameterCount: Int) {
        self.config = config
        count = parameterCount
        let names: [String]
        switch config.kind {
        case .sgd: names = config.momentum != 0 ? ["momentum"] : []
        case .adam: names = ["m", "v"]
        case .rmsprop: names = ["velocity"]
        }
        for name in names {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
            p.initialize(repeating: 0, count: max(count, 1))
            slots.append((name, p))
        }
    }

    deinit { slots.forEach { $0.values.deallocate() } }

    public func slot(_ name: String) -> UnsafeMutablePointer<Float>? { slots.first { $0.name == name }?.values }

    /// w ← update(w, g) for every parameter; then iterations += 1.
    public func step(parameters w: UnsafeMutablePointer<Float>, gradients g: UnsafePointer<Float>) {
        let n = count
        let lr = Float(config.learningRate)
        switch config.kind {
        case .sgd where config.momentum == 0:
            for i in 0..<n { w[i] -= lr * g[i] }
        case .sgd:
            // m ← μ·m − lr·g;  w ← w + m,  or nesterov  w ← w + μ·m − lr·g (new m)
            let mu = Float(config.momentum), m = slots[0].values
            if config.nesterov {
                for i in 0..<n { let mi = mu * m[i] - lr * g[i]; m[i] = mi; w[i] += mu * mi - lr * g[i] }
            } else {
                for i in 0..<n { let mi = mu * m[i] - lr * g[i]; m[i] = mi; w[i] += mi }
            }
        case .adam:
            // α = lr·√(1−β2^t)/(1−β1^t);  m += (g−m)(1−β1);  v += (g²−v)(1−β2);  w −= α·m/(√v+ε)
            let t = Double(iterations + 1)
            let alpha = Float(config.learningRate * (1 - pow(config.beta2, t)).squareRoot() / (1 - pow(config.beta1, t)))
            let b1 = Float(1 - config.beta1), b2 = Float(1 - config.beta2), eps = Float(config.epsilon)
            let m = slots[0].values, v = slots[1].values
            // 4 lanes at a time (the pointers may alias as far as the compiler
            // knows, so it will not vectorise the plain loop by itself).
            let lanes = 4, body = n - n % lanes
            let b1v = SIMD4<Float>(repeating: b1), b2v = SIMD4<Float>(repeating: b2)
            let av = SIMD4<Float>(repeating: alpha), ev = SIMD4<Float>(repeating: eps)
            var i = 0
            while i < body {
                let gi = load4(g + i), mOld = load4(m + i), vOld = load4(v + i)
                let mi = mOld + (gi - mOld) * b1v
                let vi = vOld + (gi * gi - vOld) * b2v
                store4(mi, m + i); store4(vi, v + i)
                store4(load4(w + i) - av * mi / (vi.squareRoot() + ev), w + i)
                i += lanes
            }
            for i in body..<n {
                let gi = g[i]
                let mi = m[i] + (gi - m[i]) * b1
                let vi = v[i] + (gi * gi - v[i]) * b2
                m[i] = mi; v[i] = vi
                w[i] -= alpha * mi / (vi.squareRoot() + eps)
            }
        case .rmsprop:
            // v ← ρ·v + (1−ρ)·g²;  w ← w − lr·g/√(v + ε)   (ε inside the root, as Keras)
            let rho = Float(config.rho), eps = Float(config.epsilon), v = slots[0].values
            for i in 0..<n {
                let gi = g[i]
                let vi = rho * v[i] + (1 - rho) * gi * gi
                v[i] = vi
                w[i] -= lr * gi / (vi + eps).squareRoot()
            }
        }
        iterations += 1
    }
}

@inline(__always) private func load4(_ p: UnsafePointer<Float>) -> SIMD4<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self)
}

@inline(__always) private func store4(_ x: SIMD4<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: x, as: SIMD4<Float>.self)
}
