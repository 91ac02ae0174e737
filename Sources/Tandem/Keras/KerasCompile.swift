// The compile config (KERAS-FORMAT §2) → heads and optimizer: each output's
// loss (a name, a loss object, a list by output position or a dict by output
// name), loss weights (list or dict), metrics ("accuracy" resolved from the
// output and target as Keras does), and the optimizer (object or name) with
// its arguments. What Tandem does not implement is refused by name, with
// what is supported; the overrides of the command line apply afterwards.

import Foundation

enum KerasCompile {
    static func apply(_ compile: JSONValue, to d: inout ModelDescription) throws {
        let outputs = d.outputNames
        // Without a compile config the model has no losses: train needs flags then (the CLI says so).
        guard compile.object != nil, let loss = compile["loss"], !loss.isNull else {
            d.heads = []
            d.optimizer = try compile["optimizer"].flatMap { $0.isNull ? nil : try optimizer($0) }
            return
        }
        let losses = try perOutput(loss, outputs: outputs, what: "loss")
        let weights = try perOutput(compile["loss_weights"] ?? .null, outputs: outputs, what: "loss_weights")
        let metrics = try perOutput(compile["metrics"] ?? .null, outputs: outputs, what: "metrics", listIsShared: true)
        if let w = compile["weighted_metrics"], !w.isNull, !(w.array?.isEmpty ?? false) {
            throw TandemError.usage("compile config: weighted_metrics are not supported yet (they come with the losses/metrics issue)")
        }
        var heads: [Head] = []
        let graph = try d.layerGraph()  // the output shapes (layers only; no arenas)
        for (o, name) in outputs.enumerated() {
            guard let l = losses[o], !l.isNull else { continue }  // an output without a loss is not trained
            let (kind, fromLogits, options) = try lossKind(l, output: name)
            var weight = 1.0
            if let w = weights[o], !w.isNull {
                guard let x = w.number, x.isFinite, x >= 0 else { throw TandemError.usage("output '\(name)': loss weight \(w) is not a non-negative number") }
                weight = x
            }
            let output = graph[d.outputs[o]]!.output
            guard output.shape.count == 1 else {
                throw TandemError.usage("output '\(name)' is a sequence [batch, \(output.shape.map(String.init).joined(separator: ", "))]; losses on sequence outputs are not supported yet (only [batch, features])")
            }
            let width = output.width
            var head = Head(output: d.outputs[o], loss: kind, weight: weight, fromLogits: fromLogits)
            head.options = options
            head.accuracy = try accuracy(metrics[o], output: name, outputWidth: width, targetWidth: kind.targetWidth(outputWidth: width))
            heads.append(head)
        }
        d.heads = heads
        if let opt = compile["optimizer"], !opt.isNull { d.optimizer = try optimizer(opt) }
    }

    /// The per-output entries of a loss / loss_weights / metrics value.
    private static func perOutput(_ value: JSONValue, outputs: [String], what: String, listIsShared: Bool = false) throws -> [JSONValue?] {
        let n = outputs.count
        if value.isNull { return Array(repeating: nil, count: n) }
        if let fields = value.object, value["class_name"] == nil {  // a dict by output name
            for (key, _) in fields where !outputs.contains(key) {
                throw TandemError.usage("compile config: \(what) names '\(key)', which is not an output (outputs: \(outputs.joined(separator: ", ")))")
            }
            return outputs.map { name in fields.first { $0.0 == name }?.1 }
        }
        if let items = value.array {
            if n == 1 { return [listIsShared ? value : (items.count == 1 ? items[0] : value)] }
            guard items.count == n else {
                throw TandemError.usage("compile config: \(what) is a list of \(items.count) entries for \(n) outputs (give one per output, in output order, or a dict)")
            }
            return items
        }
        // One loss (a name or an object) for every output.
        return Array(repeating: value, count: n)
    }

    /// The keys each loss class has beyond name, reduction, dtype and axis (Keras 3's constructors).
    static let lossArguments: [LossKind: [String]] = [
        .binaryCrossentropy: ["from_logits", "label_smoothing"],
        .binaryFocalCrossentropy: ["from_logits", "label_smoothing", "gamma", "alpha", "apply_class_balancing"],
        .categoricalCrossentropy: ["from_logits", "label_smoothing"],
        .sparseCategoricalCrossentropy: ["from_logits", "ignore_class"],
        .huber: ["delta"],
    ]

    private static func lossKind(_ value: JSONValue, output: String) throws -> (LossKind, Bool, LossOptions) {
        let supported = "supported: " + LossKind.allCases.map(\.rawValue).joined(separator: ", ")
        if let name = value.string {
            guard let k = LossKind.named(name) else { throw TandemError.usage("output '\(output)': loss '\(name)' is not supported (\(supported))") }
            return (k, false, LossOptions())
        }
        try KerasConfig.refuseCustom(value, what: "the loss of output '\(output)'")
        let className = value["class_name"]?.string ?? "?"
        let config = value["config"] ?? .object([])
        if className == "function", let name = config.string ?? value["config"]?["name"]?.string {
            return try lossKind(.string(name), output: output)
        }
        guard let kind = LossKind.named(className) else {
            throw TandemError.usage("output '\(output)': loss \(className) is not supported (\(supported))")
        }
        func fail(_ key: String, _ v: JSONValue, _ rule: String) -> TandemError {
            .usage("output '\(output)': \(className) '\(key)' = \(v) is not supported (\(rule))")
        }
        let arguments = lossArguments[kind] ?? []
        for (key, v) in config.object ?? [] where !["name", "reduction", "dtype", "axis"].contains(key) && !arguments.contains(key) {
            if v.isNull || (key == "label_smoothing" && v.number == 0) || (key == "from_logits" && v.bool == false) { continue }
            let owners = lossArguments.filter { $0.value.contains(key) }.map(\.key.rawValue).sorted()
            throw TandemError.usage("output '\(output)': \(className) has no argument '\(key)'" + (owners.isEmpty ? "" : " (it belongs to \(owners.joined(separator: ", ")))"))
        }
        if let r = config["reduction"]?.string, r != "sum_over_batch_size" {
            throw fail("reduction", .string(r), "sum_over_batch_size")
        }
        if let axis = config["axis"]?.integer, axis != -1 { throw fail("axis", .int(Int64(axis)), "-1") }
        if let d = config["dtype"], !d.isNull, (d.string ?? d["config"]?["name"]?.string) != "float32" {
            throw fail("dtype", d, "float32")
        }
        func number(_ key: String, _ fallback: Double, _ valid: (Double) -> Bool, _ rule: String) throws -> Double {
            guard let v = config[key], !v.isNull else { return fallback }
            guard let x = v.number, x.isFinite, valid(x) else { throw fail(key, v, rule) }
            return x
        }
        var options = LossOptions()
        options.labelSmoothing = try number("label_smoothing", 0, { $0 >= 0 && $0 <= 1 }, "0 ≤ label_smoothing ≤ 1")
        options.delta = try number("delta", 1, { $0 > 0 }, "a positive number")
        options.gamma = try number("gamma", 2, { $0 >= 0 }, "gamma ≥ 0")
        options.alpha = try number("alpha", 0.25, { $0 >= 0 && $0 <= 1 }, "0 ≤ alpha ≤ 1")
        options.applyClassBalancing = config["apply_class_balancing"]?.bool ?? false
        if let i = config["ignore_class"], !i.isNull {
            guard let c = i.integer else { throw fail("ignore_class", i, "an integer class id or null") }
            options.ignoreClass = c
        }
        let fromLogits = config["from_logits"]?.bool ?? false
        return (kind, fromLogits, options)
    }

    private static func accuracy(_ value: JSONValue?, output: String, outputWidth: Int, targetWidth: Int) throws -> Head.Accuracy? {
        guard let value, !value.isNull else { return nil }
        let items = value.array ?? [value]
        var found: Head.Accuracy?
        for item in items {
            let name: String, kind: AccuracyKind
            if let s = item.string {
                switch s {
                case "accuracy", "acc": name = s; kind = AccuracyKind.resolving(outputWidth: outputWidth, targetWidth: targetWidth)
                case "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy": name = s; kind = AccuracyKind(rawValue: s)!
                default:
                    throw TandemError.usage("output '\(output)': metric '\(s)' is not supported yet (accuracy, binary_accuracy, categorical_accuracy, sparse_categorical_accuracy; more come with the metrics issue)")
                }
            } else {
                try KerasConfig.refuseCustom(item, what: "a metric of output '\(output)'")
                let c = item["class_name"]?.string ?? "?", config = item["config"] ?? .object([])
                switch c {
                case "BinaryAccuracy":
                    if let t = config["threshold"]?.number, t != 0.5 { throw TandemError.usage("output '\(output)': BinaryAccuracy threshold \(t) is not supported yet (0.5)") }
                    kind = .binary
                case "CategoricalAccuracy": kind = .categorical
                case "SparseCategoricalAccuracy": kind = .sparseCategorical
                case "MeanMetricWrapper" where config["fn"]?.string.flatMap(AccuracyKind.init(rawValue:)) != nil:
                    kind = AccuracyKind(rawValue: config["fn"]!.string!)!
                default:
                    throw TandemError.usage("output '\(output)': metric \(c) is not supported yet (accuracy metrics; more come with the metrics issue)")
                }
                name = config["name"]?.string ?? kind.rawValue
            }
            if found != nil && found!.kind != kind {
                throw TandemError.usage("output '\(output)': more than one kind of accuracy is not supported yet")
            }
            found = Head.Accuracy(name: name, kind: kind)
        }
        return found
    }

    /// An optimizer object or name (Keras's defaults for what is absent).
    static func optimizer(_ value: JSONValue) throws -> OptimizerConfig {
        let className: String, config: JSONValue
        if let s = value.string { className = s; config = .object([]) } else {
            try KerasConfig.refuseCustom(value, what: "the optimizer")
            className = value["class_name"]?.string ?? "?"; config = value["config"] ?? .object([])
        }
        guard let kind = OptimizerConfig.Kind(rawValue: className.lowercased()) else {
            throw TandemError.usage("optimizer \(className) is not supported (SGD, Adam, AdamW, RMSprop, Adagrad, Adamax, Nadam)")
        }
        func fail(_ key: String, _ v: JSONValue, _ supported: String) -> TandemError {
            .usage("optimizer \(className): '\(key)' = \(v) is not supported (\(supported))")
        }
        for key in ["loss_scale_factor", "gradient_accumulation_steps", "ema_overwrite_frequency"] {
            if let v = config[key], !v.isNull { throw fail(key, v, "null") }
        }
        if let v = config["use_ema"], v.bool == true { throw fail("use_ema", v, "false") }
        var o = OptimizerConfig(kind: kind)
        if let lr = config["learning_rate"], !lr.isNull {
            if lr.object != nil {
                try KerasConfig.refuseCustom(lr, what: "the learning-rate schedule")
                o.schedule = try LearningRateSchedule.keras(lr)
                o.learningRate = o.schedule!.initial
            } else {
                guard let x = lr.number, x > 0, x.isFinite else { throw fail("learning_rate", lr, "a positive number or a schedule") }
                o.learningRate = x
            }
        }
        func number(_ key: String, into target: inout Double) throws {
            if let v = config[key], !v.isNull {
                guard let x = v.number, x.isFinite else { throw fail(key, v, "a number") }
                target = x
            }
        }
        func optional(_ key: String) throws -> Double? {
            guard let v = config[key], !v.isNull else { return nil }
            guard let x = v.number, x.isFinite else { throw fail(key, v, "a number or null") }
            return x
        }
        func flag(_ key: String) throws -> Bool {
            guard let v = config[key], !v.isNull else { return false }
            guard let b = v.bool else { throw fail(key, v, "true or false") }
            return b
        }
        if config["weight_decay"] != nil { o.weightDecay = try optional("weight_decay") }
        o.clipnorm = try optional("clipnorm"); o.globalClipnorm = try optional("global_clipnorm"); o.clipvalue = try optional("clipvalue")
        try number("epsilon", into: &o.epsilon)
        switch kind {
        case .sgd:
            try number("momentum", into: &o.momentum)
            o.nesterov = try flag("nesterov")
        case .adam, .adamw:
            try number("beta_1", into: &o.beta1); try number("beta_2", into: &o.beta2)
            o.amsgrad = try flag("amsgrad")
        case .rmsprop:
            try number("rho", into: &o.rho); try number("momentum", into: &o.momentum)
            o.centered = try flag("centered")
        case .adagrad:
            try number("initial_accumulator_value", into: &o.initialAccumulatorValue)
        case .adamax, .nadam:
            try number("beta_1", into: &o.beta1); try number("beta_2", into: &o.beta2)
        }
        try o.validate()
        return o
    }
}
