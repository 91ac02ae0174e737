// Weight constraints (Keras's kernel_constraint & co., keras/src/constraints/constraints.py):
// after each update the optimizer projects the tensor back, as Keras's optimizer does after
// update_step, in float32 with ε = 1e-7:
//   MaxNorm(m, axis):              w·(clip(‖w‖, 0, m) / (ε + ‖w‖))
//   MinMaxNorm(lo, hi, rate, axis): w·((rate·clip(‖w‖, lo, hi) + (1 − rate)·‖w‖) / (ε + ‖w‖))
//   UnitNorm(axis):                w / (ε + ‖w‖)
//   NonNeg:                        w·(w ≥ 0)
// ‖w‖ is the L2 norm over `axis` (default 0: for a Dense kernel [in, out], each unit's incoming
// weights). Every rank applies it to the same reduced update, so the weights stay identical.

import Foundation

public struct WeightConstraint: Sendable, Codable, Equatable {
    public enum Kind: Sendable, Codable, Equatable {
        case maxNorm(Double)
        case minMaxNorm(min: Double, max: Double, rate: Double)
        case unitNorm
        case nonNeg
    }
    /// The tensor, `<layer>/<weight>`.
    public var tensor: String
    public var kind: Kind
    /// The axes the norm is taken over (0-based tensor axes; negative from the end).
    public var axes: [Int]

    package init(tensor: String, kind: Kind, axes: [Int] = [0]) {
        self.tensor = tensor
        self.kind = kind
        self.axes = axes
    }

    /// A Keras constraint object (or name) of `tensor`, or nil for none; anything else is refused.
    package static func keras(_ value: JSONValue, tensor: String, key: String) throws -> WeightConstraint? {
        if value.isNull { return nil }
        let name = value.string ?? value["class_name"]?.string ?? ""
        let config = value["config"] ?? .object([])
        func number(_ k: String, _ fallback: Double) throws -> Double {
            guard let v = config[k], !v.isNull else { return fallback }
            guard let x = v.number, x.isFinite else {
                throw TandemError.usage("'\(key)' \(name): '\(k)' must be a number")
            }
            return x
        }
        var axes = [0]
        if let a = config["axis"], !a.isNull {
            guard let list = a.array?.compactMap(\.integer) ?? a.integer.map({ [$0] }), !list.isEmpty else {
                throw TandemError.usage("'\(key)' \(name): 'axis' = \(a) must be an axis or a list of axes")
            }
            axes = list
        }
        switch name {
        case "MaxNorm", "max_norm":
            return WeightConstraint(tensor: tensor, kind: .maxNorm(try number("max_value", 2)), axes: axes)
        case "MinMaxNorm", "min_max_norm":
            return WeightConstraint(
                tensor: tensor,
                kind: .minMaxNorm(
                    min: try number("min_value", 0), max: try number("max_value", 1), rate: try number("rate", 1)),
                axes: axes)
        case "UnitNorm", "unit_norm": return WeightConstraint(tensor: tensor, kind: .unitNorm, axes: axes)
        case "NonNeg", "non_neg": return WeightConstraint(tensor: tensor, kind: .nonNeg)
        default:
            throw TandemError.usage(
                "'\(key)' \(name.isEmpty ? "\(value)" : name) is not supported (MaxNorm, MinMaxNorm, UnitNorm, NonNeg)")
        }
    }

    /// Projects `w` (a tensor of `shape`) as Keras's constraint does.
    package func apply(_ w: UnsafeMutablePointer<Float>, shape: [Int]) {
        let count = shape.reduce(1, *)
        if case .nonNeg = kind {
            for i in 0..<count where !(w[i] >= 0) { w[i] = 0 }
            return
        }
        // Each element's group: its index with the normed axes set to 0.
        let reduced = Set(axes.map { $0 < 0 ? $0 + shape.count : $0 })
        var strides = [Int](repeating: 1, count: shape.count)
        for k in stride(from: shape.count - 2, through: 0, by: -1) { strides[k] = strides[k + 1] * shape[k + 1] }
        var group = [Int](repeating: 0, count: count)
        for i in 0..<count {
            var g = 0
            for k in shape.indices where !reduced.contains(k) { g += (i / strides[k]) % shape[k] * strides[k] }
            group[i] = g
        }
        var squares = [Float](repeating: 0, count: count)
        for i in 0..<count { squares[group[i]] += w[i] * w[i] }
        let epsilon: Float = 1e-7
        for i in 0..<count {
            let norm = squares[group[i]].squareRoot()
            switch kind {
            case .maxNorm(let m): w[i] *= min(max(norm, 0), Float(m)) / (epsilon + norm)
            case .minMaxNorm(let lo, let hi, let rate):
                let desired = Float(rate) * min(max(norm, Float(lo)), Float(hi)) + (1 - Float(rate)) * norm
                w[i] *= desired / (epsilon + norm)
            case .unitNorm: w[i] /= epsilon + norm
            case .nonNeg: break
            }
        }
    }
}
