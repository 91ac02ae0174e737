// Keras 3's learning-rate schedules (keras/src/optimizers/schedules/
// learning_rate_schedule.py): a pure function of the optimizer's iterations,
// so every rank computes the same value and a resume continues it exactly.
// Keras evaluates them in float32; so does this, in the same order of operations.

import Foundation

public enum LearningRateSchedule: Sendable, Equatable, Codable {
    case exponentialDecay(initial: Double, decaySteps: Double, decayRate: Double, staircase: Bool)
    case inverseTimeDecay(initial: Double, decaySteps: Double, decayRate: Double, staircase: Bool)
    case piecewiseConstantDecay(boundaries: [Int], values: [Double])
    case polynomialDecay(initial: Double, decaySteps: Double, end: Double, power: Double, cycle: Bool)
    /// Linear warm-up from `initial` to `warmupTarget` over `warmupSteps` (when a target is set), then cosine decay.
    case cosineDecay(initial: Double, decaySteps: Double, alpha: Double, warmupTarget: Double?, warmupSteps: Double)
    case cosineDecayRestarts(initial: Double, firstDecaySteps: Double, tMul: Double, mMul: Double, alpha: Double)

    package static let classNames = [
        "ExponentialDecay", "InverseTimeDecay", "PiecewiseConstantDecay", "PolynomialDecay",
        "CosineDecay", "CosineDecayRestarts",
    ]

    public var className: String {
        switch self {
        case .exponentialDecay: return "ExponentialDecay"
        case .inverseTimeDecay: return "InverseTimeDecay"
        case .piecewiseConstantDecay: return "PiecewiseConstantDecay"
        case .polynomialDecay: return "PolynomialDecay"
        case .cosineDecay: return "CosineDecay"
        case .cosineDecayRestarts: return "CosineDecayRestarts"
        }
    }

    /// The learning rate at `step` (the iterations done before the update).
    package func value(at step: Int) -> Float {
        let s = Float(step)
        switch self {
        case .exponentialDecay(let initial, let decaySteps, let rate, let staircase):
            var p = s / Float(decaySteps)
            if staircase { p = p.rounded(.down) }
            return Float(initial) * pow(Float(rate), p)
        case .inverseTimeDecay(let initial, let decaySteps, let rate, let staircase):
            var p = s / Float(decaySteps)
            if staircase { p = p.rounded(.down) }
            return Float(initial) / (1 + Float(rate) * p)
        case .piecewiseConstantDecay(let boundaries, let values):
            if step <= boundaries[0] { return Float(values[0]) }
            for i in 1..<boundaries.count where step > boundaries[i - 1] && step <= boundaries[i] {
                return Float(values[i])
            }
            return Float(values[values.count - 1])
        case .polynomialDecay(let initial, let decaySteps, let end, let power, let cycle):
            var x = s
            var steps = Float(decaySteps)
            if cycle {
                steps *= step == 0 ? 1 : (s / Float(decaySteps)).rounded(.up)
            } else {
                x = min(x, steps)
            }
            let p = x / steps
            return (Float(initial) - Float(end)) * pow(1 - p, Float(power)) + Float(end)
        case .cosineDecay(let initial, let decaySteps, let alpha, let warmupTarget, let warmupSteps):
            let steps = Float(decaySteps)
            func decay(_ x: Float, from lr: Float) -> Float {
                let cosine = 0.5 * (1 + cos(Float.pi * (x / steps)))
                return lr * ((1 - Float(alpha)) * cosine + Float(alpha))
            }
            guard let target = warmupTarget.map(Float.init) else { return decay(min(s, steps), from: Float(initial)) }
            let warm = Float(warmupSteps)
            let x = min(s, steps + warm)
            if x < warm { return (target - Float(initial)) * (x / warm) + Float(initial) }
            return decay(x - warm, from: target)
        case .cosineDecayRestarts(let initial, let first, let tMul, let mMul, let alpha):
            var fraction = s / Float(first)
            let t = Float(tMul)
            let restart: Float
            if t == 1 {
                restart = fraction.rounded(.down)
                fraction -= restart
            } else {
                restart = (log(1 - fraction * (1 - t)) / log(t)).rounded(.down)
                let done = (1 - pow(t, restart)) / (1 - t)
                fraction = (fraction - done) / pow(t, restart)
            }
            let cosine = 0.5 * pow(Float(mMul), restart) * (1 + cos(Float.pi * fraction))
            return Float(initial) * ((1 - Float(alpha)) * cosine + Float(alpha))
        }
    }

    func validate() throws {
        func bad(_ what: String) -> TandemError { .usage("learning-rate schedule \(className): \(what)") }
        func positive(_ name: String, _ v: Double) throws {
            if !(v > 0 && v.isFinite) { throw bad("\(name) = \(v) must be a positive number") }
        }
        func finite(_ name: String, _ v: Double) throws {
            if !v.isFinite { throw bad("\(name) = \(v) must be a finite number") }
        }
        switch self {
        case .exponentialDecay(let initial, let steps, let rate, _),
            .inverseTimeDecay(let initial, let steps, let rate, _):
            try positive("initial_learning_rate", initial)
            try positive("decay_steps", steps)
            try finite("decay_rate", rate)
            if rate < 0 { throw bad("decay_rate = \(rate) must not be negative") }
        case .piecewiseConstantDecay(let boundaries, let values):
            if boundaries.isEmpty || values.count != boundaries.count + 1 {
                throw bad(
                    "needs one more value than boundaries (\(boundaries.count) boundaries, \(values.count) values)")
            }
            if zip(boundaries, boundaries.dropFirst()).contains(where: { $0 >= $1 }) {
                throw bad("boundaries \(boundaries) must increase")
            }
            for v in values { try positive("a value", v) }
        case .polynomialDecay(let initial, let steps, let end, let power, _):
            try positive("initial_learning_rate", initial)
            try positive("decay_steps", steps)
            try finite("power", power)
            if !(end >= 0 && end.isFinite) { throw bad("end_learning_rate = \(end) must not be negative") }
        case .cosineDecay(let initial, let steps, let alpha, let target, let warm):
            try positive("initial_learning_rate", initial)
            try positive("decay_steps", steps)
            try finite("alpha", alpha)
            if let target { try positive("warmup_target", target) }
            if !(warm >= 0 && warm.isFinite) { throw bad("warmup_steps = \(warm) must not be negative") }
        case .cosineDecayRestarts(let initial, let first, let tMul, let mMul, let alpha):
            try positive("initial_learning_rate", initial)
            try positive("first_decay_steps", first)
            try positive("t_mul", tMul)
            try finite("m_mul", mMul)
            try finite("alpha", alpha)
        }
    }

    /// The initial learning rate, for display.
    package var initial: Double {
        switch self {
        case .exponentialDecay(let i, _, _, _), .inverseTimeDecay(let i, _, _, _), .polynomialDecay(let i, _, _, _, _),
            .cosineDecay(let i, _, _, _, _), .cosineDecayRestarts(let i, _, _, _, _):
            return i
        case .piecewiseConstantDecay(_, let values): return values[0]
        }
    }

    // MARK: Keras's serialised form

    /// From `{"class_name": "ExponentialDecay", "config": {…}}` (Keras's defaults for absent keys).
    package static func keras(_ value: JSONValue) throws -> LearningRateSchedule {
        let className = value["class_name"]?.string ?? "?"
        let config = value["config"] ?? .object([])
        func fail(_ why: String) -> TandemError { .usage("learning-rate schedule \(className): \(why)") }
        func number(_ key: String, _ fallback: Double? = nil) throws -> Double {
            guard let v = config[key], !v.isNull else {
                if let fallback { return fallback }
                throw fail("'\(key)' is missing")
            }
            guard let x = v.number else { throw fail("'\(key)' = \(v) is not a number") }
            return x
        }
        func flag(_ key: String) -> Bool { config[key]?.bool ?? false }
        let s: LearningRateSchedule
        switch className {
        case "ExponentialDecay":
            s = .exponentialDecay(
                initial: try number("initial_learning_rate"), decaySteps: try number("decay_steps"),
                decayRate: try number("decay_rate"), staircase: flag("staircase"))
        case "InverseTimeDecay":
            s = .inverseTimeDecay(
                initial: try number("initial_learning_rate"), decaySteps: try number("decay_steps"),
                decayRate: try number("decay_rate"), staircase: flag("staircase"))
        case "PiecewiseConstantDecay":
            guard let b = config["boundaries"]?.array, let v = config["values"]?.array else {
                throw fail("needs 'boundaries' and 'values' lists")
            }
            let boundaries = try b.map { x -> Int in
                guard let n = x.number, n.isFinite, abs(n) < 1e15 else {
                    throw fail("boundary \(x) is not a step number")
                }
                return Int(n)  // Keras casts the boundaries to the step's integer type
            }
            s = .piecewiseConstantDecay(
                boundaries: boundaries,
                values: try v.map { x in
                    guard let n = x.number else { throw fail("value \(x) is not a number") }
                    return n
                })
        case "PolynomialDecay":
            s = .polynomialDecay(
                initial: try number("initial_learning_rate"), decaySteps: try number("decay_steps"),
                end: try number("end_learning_rate", 0.0001), power: try number("power", 1), cycle: flag("cycle"))
        case "CosineDecay":
            let target = config["warmup_target"].flatMap { $0.isNull ? nil : $0.number }
            if let t = config["warmup_target"], !t.isNull, t.number == nil {
                throw fail("'warmup_target' = \(t) is not a number")
            }
            s = .cosineDecay(
                initial: try number("initial_learning_rate"), decaySteps: try number("decay_steps"),
                alpha: try number("alpha", 0), warmupTarget: target, warmupSteps: try number("warmup_steps", 0))
        case "CosineDecayRestarts":
            s = .cosineDecayRestarts(
                initial: try number("initial_learning_rate"), firstDecaySteps: try number("first_decay_steps"),
                tMul: try number("t_mul", 2), mMul: try number("m_mul", 1), alpha: try number("alpha", 0))
        default:
            throw TandemError.usage(
                "learning-rate schedule \(className) is not supported (\(classNames.joined(separator: ", ")))")
        }
        try s.validate()
        return s
    }

    /// As Keras serialises it inside an optimizer's `learning_rate`.
    package var kerasConfig: JSONValue {
        func count(_ x: Double) -> JSONValue { x == x.rounded() && abs(x) < 1e15 ? .int(Int64(x)) : .double(x) }
        let fields: [(String, JSONValue)]
        switch self {
        case .exponentialDecay(let i, let steps, let rate, let staircase):
            fields = [
                ("initial_learning_rate", .double(i)), ("decay_steps", count(steps)), ("decay_rate", .double(rate)),
                ("staircase", .bool(staircase)), ("name", .string("ExponentialDecay")),
            ]
        case .inverseTimeDecay(let i, let steps, let rate, let staircase):
            fields = [
                ("initial_learning_rate", .double(i)), ("decay_steps", count(steps)), ("decay_rate", .double(rate)),
                ("staircase", .bool(staircase)), ("name", .string("InverseTimeDecay")),
            ]
        case .piecewiseConstantDecay(let boundaries, let values):
            fields = [
                ("boundaries", .array(boundaries.map { .int(Int64($0)) })),
                ("values", .array(values.map { .double($0) })),
                ("name", .string("PiecewiseConstant")),
            ]
        case .polynomialDecay(let i, let steps, let end, let power, let cycle):
            fields = [
                ("initial_learning_rate", .double(i)), ("decay_steps", count(steps)),
                ("end_learning_rate", .double(end)),
                ("power", .double(power)), ("cycle", .bool(cycle)), ("name", .string("PolynomialDecay")),
            ]
        case .cosineDecay(let i, let steps, let alpha, let target, let warm):
            fields = [
                ("initial_learning_rate", .double(i)), ("decay_steps", count(steps)), ("alpha", .double(alpha)),
                ("name", .string("CosineDecay")), ("warmup_target", target.map { .double($0) } ?? .null),
                ("warmup_steps", count(warm)),
            ]
        case .cosineDecayRestarts(let i, let first, let tMul, let mMul, let alpha):
            fields = [
                ("initial_learning_rate", .double(i)), ("first_decay_steps", count(first)), ("t_mul", .double(tMul)),
                ("m_mul", .double(mMul)), ("alpha", .double(alpha)), ("name", .string("SGDRDecay")),
            ]
        }
        return KerasJSON.serialized("keras.optimizers.schedules", className, fields)
    }
}
