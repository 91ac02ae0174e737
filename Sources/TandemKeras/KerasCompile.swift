// The compile config (docs/KERAS-FORMAT.md §2) → heads and optimizer: each output's
// loss (a name, a loss object, a list by output position or a dict by output
// name), loss weights (list or dict), metrics ("accuracy" resolved from the
// output and target as Keras does), and the optimizer (object or name) with
// its arguments. What Tandem does not implement is refused by name, with
// what is supported; the overrides of the command line apply afterwards.

import Foundation
import TandemCore

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
        let weightedMetrics = try perOutput(
            compile["weighted_metrics"] ?? .null, outputs: outputs, what: "weighted_metrics", listIsShared: true)
        var heads: [Head] = []
        // The output shapes (layers only; no arenas). None axes take a nominal length here: an
        // output's shape does not depend on it (Keras itself refuses a Dense after a None axis).
        var probe = d
        if probe.dataShapes.isEmpty { probe.takeLength(1000) }
        let graph = try probe.layerGraph()
        for (o, name) in outputs.enumerated() {
            guard let l = losses[o], !l.isNull else { continue }  // an output without a loss is not trained
            let (kind, fromLogits, options) = try lossKind(l, output: name)
            let reduction = try reductionOf(l, output: name)
            var weight = 1.0
            if let w = weights[o], !w.isNull {
                guard let x = w.number, x.isFinite, x >= 0 else {
                    throw TandemError.usage("output '\(name)': loss weight \(w) is not a non-negative number")
                }
                weight = x
            }
            let layer = graph[d.outputs[o]]!
            var head = Head(output: d.outputs[o], loss: kind, weight: weight, fromLogits: fromLogits)
            head.options = options
            head.reduction = reduction
            // An output with spatial or time axes is one element per token or pixel: the metrics read
            // each element's last axis.
            try head.check(layer)
            if layer.output.shape.count > 1 {
                head.elementMask = try elementMask(of: d.outputs[o], in: d.nodes, output: name)
                if head.elementMask != nil && layer.output.shape.count != 2 {
                    throw TandemError.usage(
                        "output '\(name)': a Keras mask reaches this output of \(layer.output.shape.count) axes; masks are followed to outputs [batch, steps, features] only"
                    )
                }
            }
            let (width, targetWidth) = { e in (e.columns, e.targetColumns) }(head.elements(of: layer))
            // The first plain accuracy takes the accuracy figures; every other metric its sums.
            var plain = try metricList(
                metrics[o], weighted: false, output: name, outputWidth: width, targetWidth: targetWidth)
            if let first = plain.firstIndex(where: { Head.Accuracy(metric: $0) != nil }) {
                head.accuracy = Head.Accuracy(metric: plain.remove(at: first))
            }
            var used = Set(([head.accuracy?.name].compactMap { $0 }) + plain.map(\.name))
            var weighted = try metricList(
                weightedMetrics[o], weighted: true, output: name, outputWidth: width, targetWidth: targetWidth)
            for i in weighted.indices where used.contains(weighted[i].name) {
                weighted[i].name = "weighted_" + weighted[i].name
            }
            used.formUnion(weighted.map(\.name))
            if !weighted.isEmpty && options.ignoreClass != nil {
                throw TandemError.usage(
                    "output '\(name)': weighted_metrics together with ignore_class are not supported (the loss's mask is not the metrics' weight)"
                )
            }
            head.metrics = plain + weighted
            heads.append(head)
        }
        d.heads = heads
        if let opt = compile["optimizer"], !opt.isNull { d.optimizer = try optimizer(opt) }
    }

    /// The per-output entries of a loss / loss_weights / metrics value.
    private static func perOutput(_ value: JSONValue, outputs: [String], what: String, listIsShared: Bool = false)
        throws -> [JSONValue?]
    {
        let n = outputs.count
        if value.isNull { return Array(repeating: nil, count: n) }
        if let fields = value.object, value["class_name"] == nil {  // a dict by output name
            for (key, _) in fields where !outputs.contains(key) {
                throw TandemError.usage(
                    "compile config: \(what) names '\(key)', which is not an output (outputs: \(outputs.joined(separator: ", ")))"
                )
            }
            return outputs.map { name in fields.first { $0.0 == name }?.1 }
        }
        if let items = value.array {
            if n == 1 { return [listIsShared ? value : (items.count == 1 ? items[0] : value)] }
            guard items.count == n else {
                throw TandemError.usage(
                    "compile config: \(what) is a list of \(items.count) entries for \(n) outputs (give one per output, in output order, or a dict)"
                )
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
        .categoricalFocalCrossentropy: ["from_logits", "label_smoothing", "gamma", "alpha"],
        .tversky: ["alpha", "beta"],
        .categoricalGeneralizedCrossEntropy: ["q"],
        .circle: ["gamma", "margin", "remove_diagonal"],
    ]

    /// Keras 3.15 losses Tandem refuses, with the reason.
    static let refusedLosses: [String: String] = [
        "CTC": "connectionist temporal classification needs label sequences and alignment, which Tandem does not have",
        "ctc": "connectionist temporal classification needs label sequences and alignment, which Tandem does not have",
    ]

    /// A loss object's reduction as a head's (checked by lossKind): the mean over the global batch,
    /// the weighted mean (`mean_with_sample_weight`: Σ w·ℓ / Σ w, Tandem's `labeled`), or the sum.
    private static func reductionOf(_ value: JSONValue, output: String) throws -> Head.Reduction {
        switch value["config"]?["reduction"]?.string {
        case "sum": return .sum
        case "mean_with_sample_weight": return .labeled
        default: return .batch
        }
    }

    /// What an axis value of Dice or Tversky means: per sample (its own columns) or over the whole batch.
    private static func perSample(_ axis: JSONValue?) -> Bool {
        guard let axis, !axis.isNull else { return false }
        let values = axis.array?.compactMap(\.integer) ?? axis.integer.map { [$0] } ?? []
        return values == [-1] || values == [1]
    }

    private static func lossKind(_ value: JSONValue, output: String) throws -> (LossKind, Bool, LossOptions) {
        let supported = "supported: " + LossKind.allCases.map(\.rawValue).joined(separator: ", ")
        if let name = value.string {
            if let reason = refusedLosses[name] {
                throw TandemError.usage("output '\(output)': loss '\(name)' is not supported: \(reason)")
            }
            guard let k = LossKind.named(name) else {
                throw TandemError.usage("output '\(output)': loss '\(name)' is not supported (\(supported))")
            }
            var options = LossOptions()
            // The functions dice and tversky sum over the whole batch (their axis is None).
            if k == .dice || k == .tversky { options.batchAxis = true }
            return (k, false, options)
        }
        try KerasJSON.refuseCustom(value, what: "the loss of output '\(output)'")
        let className = value["class_name"]?.string ?? "?"
        let config = value["config"] ?? .object([])
        if className == "function", let name = config.string ?? value["config"]?["name"]?.string {
            return try lossKind(.string(name), output: output)
        }
        if let reason = refusedLosses[className] {
            throw TandemError.usage("output '\(output)': loss \(className) is not supported: \(reason)")
        }
        guard let kind = LossKind.named(className) else {
            throw TandemError.usage("output '\(output)': loss \(className) is not supported (\(supported))")
        }
        func fail(_ key: String, _ v: JSONValue, _ rule: String) -> TandemError {
            .usage("output '\(output)': \(className) '\(key)' = \(v) is not supported (\(rule))")
        }
        let arguments = lossArguments[kind] ?? []
        for (key, v) in config.object ?? []
        where !["name", "reduction", "dtype", "axis"].contains(key) && !arguments.contains(key) {
            if v.isNull || (key == "label_smoothing" && v.number == 0) || (key == "from_logits" && v.bool == false) {
                continue
            }
            let owners = lossArguments.filter { $0.value.contains(key) }.map(\.key.rawValue).sorted()
            throw TandemError.usage(
                "output '\(output)': \(className) has no argument '\(key)'"
                    + (owners.isEmpty ? "" : " (it belongs to \(owners.joined(separator: ", ")))"))
        }
        // "mean" is Keras's other name for sum_over_batch_size (losses/loss.py reduce_values).
        let reduction = config["reduction"]
        if reduction?.isNull == true || reduction?.string == "none" {
            throw fail(
                "reduction", reduction!,
                "sum_over_batch_size, mean, sum or mean_with_sample_weight; with none the loss is a vector per sample, which Keras's fit cannot differentiate either"
            )
        }
        if let r = reduction?.string, !["sum_over_batch_size", "mean", "sum", "mean_with_sample_weight"].contains(r) {
            throw fail("reduction", .string(r), "sum_over_batch_size, mean, sum or mean_with_sample_weight")
        }
        var options = LossOptions()
        if kind == .dice || kind == .tversky {
            // axis None: over the whole batch (Losses+Batch.swift); -1: per sample.
            let axis = config["axis"]
            if axis == nil || axis!.isNull {
                options.batchAxis = true
            } else if !perSample(axis) {
                throw fail("axis", axis!, "-1 (per sample) or None (over the whole batch)")
            }
        } else if let axis = config["axis"]?.integer, axis != -1 {
            throw fail("axis", .int(Int64(axis)), "-1")
        }
        // The IoU family counts in integers by default (Keras casts the weights to them).
        let dtypes = className.hasSuffix("IoU") ? ["int32", "float32"] : ["float32"]
        if let d = config["dtype"], !d.isNull, !dtypes.contains(d.string ?? d["config"]?["name"]?.string ?? "?") {
            throw fail("dtype", d, dtypes.joined(separator: " or "))
        }
        func number(_ key: String, _ fallback: Double, _ valid: (Double) -> Bool, _ rule: String) throws -> Double {
            guard let v = config[key], !v.isNull else { return fallback }
            guard let x = v.number, x.isFinite, valid(x) else { throw fail(key, v, rule) }
            return x
        }
        if kind == .circle {
            options.circleGamma = try number("gamma", 80, { $0 > 0 }, "a positive number")
            options.margin = try number("margin", 0.4, { $0 >= 0 && $0 < 1 }, "0 ≤ margin < 1")
            if let v = config["remove_diagonal"], !v.isNull {
                guard let b = v.bool else { throw fail("remove_diagonal", v, "true or false") }
                options.keepDiagonal = !b
            }
            if config["reduction"]?.string == "mean_with_sample_weight" {
                throw fail(
                    "reduction", config["reduction"]!,
                    "sum_over_batch_size, mean or sum for Circle (its masked rows and the weights' sum are not built together)"
                )
            }
            return (kind, false, options)
        }
        options.labelSmoothing = try number("label_smoothing", 0, { $0 >= 0 && $0 <= 1 }, "0 ≤ label_smoothing ≤ 1")
        options.delta = try number("delta", 1, { $0 > 0 }, "a positive number")
        options.gamma = try number("gamma", 2, { $0 >= 0 }, "gamma ≥ 0")
        options.alpha = try number("alpha", kind == .tversky ? 0.5 : 0.25, { $0 >= 0 && $0 <= 1 }, "0 ≤ alpha ≤ 1")
        if kind == .tversky { options.beta = try number("beta", 0.5, { $0 >= 0 && $0 <= 1 }, "0 ≤ beta ≤ 1") }
        if kind == .categoricalGeneralizedCrossEntropy {
            options.q = try number("q", 0.5, { $0 > 0 && $0 < 1 }, "0 < q < 1")
        }
        options.applyClassBalancing = config["apply_class_balancing"]?.bool ?? false
        if let i = config["ignore_class"], !i.isNull {
            guard let c = i.integer else { throw fail("ignore_class", i, "an integer class id or null") }
            options.ignoreClass = c
        }
        let fromLogits = config["from_logits"]?.bool ?? false
        return (kind, fromLogits, options)
    }

    /// A metrics entry of one output (a name, an object, or a list of them) as Tandem's metrics.
    private static func metricList(
        _ value: JSONValue?, weighted: Bool, output: String, outputWidth: Int, targetWidth: Int
    ) throws -> [Metric] {
        guard let value, !value.isNull else { return [] }
        return try (value.array ?? [value]).map { item in
            try metric(item, weighted: weighted, output: output, outputWidth: outputWidth, targetWidth: targetWidth)
        }
    }

    static let metricNames =
        "accuracy, binary_accuracy, categorical_accuracy, sparse_categorical_accuracy, top_k_categorical_accuracy, sparse_top_k_categorical_accuracy, auc, precision, recall, mae, mse, mape, msle, root_mean_squared_error (and their classes), MeanIoU, IoU, OneHotMeanIoU, OneHotIoU, BinaryIoU"

    /// One metric: Keras's compile names a string metric after the string, an object after its `name`.
    private static func metric(_ item: JSONValue, weighted: Bool, output: String, outputWidth: Int, targetWidth: Int)
        throws -> Metric
    {
        let className: String
        let config: JSONValue
        let name: String
        if let s = item.string {
            className = s
            config = .object([])
            name = s
        } else {
            try KerasJSON.refuseCustom(item, what: "a metric of output '\(output)'")
            className = item["class_name"]?.string ?? "?"
            config = item["config"] ?? .object([])
            name = config["name"]?.string ?? KerasJSON.snakeCase(className)
        }
        func fail(_ key: String, _ v: JSONValue, _ rule: String) -> TandemError {
            .usage("output '\(output)': metric \(className) '\(key)' = \(v) is not supported (\(rule))")
        }
        func refuseSet(_ keys: [String]) throws {
            for key in keys { if let v = config[key], !v.isNull, v.bool != false { throw fail(key, v, "null") } }
        }
        func threshold(_ key: String) throws -> Double {
            guard let v = config[key], !v.isNull else { return 0.5 }
            guard let x = v.number ?? (v.array?.count == 1 ? v.array![0].number : nil), x.isFinite else {
                throw fail(key, v, "one threshold")
            }
            return x
        }
        func k() throws -> Int {
            guard let v = config["k"], !v.isNull else { return 5 }
            guard let x = v.integer, x >= 1 else { throw fail("k", v, "a positive integer") }
            return x
        }
        let kind: MetricKind
        switch className {
        case "accuracy", "acc":
            switch AccuracyKind.resolving(outputWidth: outputWidth, targetWidth: targetWidth) {
            case .binary: kind = .binaryAccuracy(threshold: 0.5)
            case .categorical: kind = .categoricalAccuracy
            case .sparseCategorical: kind = .sparseCategoricalAccuracy
            }
        case "binary_accuracy", "BinaryAccuracy": kind = .binaryAccuracy(threshold: try threshold("threshold"))
        case "categorical_accuracy", "CategoricalAccuracy": kind = .categoricalAccuracy
        case "sparse_categorical_accuracy", "SparseCategoricalAccuracy": kind = .sparseCategoricalAccuracy
        case "top_k_categorical_accuracy", "TopKCategoricalAccuracy": kind = .topK(k: try k(), sparse: false)
        case "sparse_top_k_categorical_accuracy", "SparseTopKCategoricalAccuracy":
            try refuseSet(["from_sorted_ids"])
            kind = .topK(k: try k(), sparse: true)
        case "mae", "mean_absolute_error", "MeanAbsoluteError": kind = .meanAbsoluteError
        case "mse", "mean_squared_error", "MeanSquaredError": kind = .meanSquaredError
        case "mape", "mean_absolute_percentage_error", "MeanAbsolutePercentageError":
            kind = .meanAbsolutePercentageError
        case "msle", "mean_squared_logarithmic_error", "MeanSquaredLogarithmicError":
            kind = .meanSquaredLogarithmicError
        case "root_mean_squared_error", "RootMeanSquaredError": kind = .rootMeanSquaredError
        case "precision", "Precision", "recall", "Recall":
            try refuseSet(["top_k", "class_id"])
            let t = try threshold("thresholds")
            kind = className.lowercased() == "precision" ? .precision(threshold: t) : .recall(threshold: t)
        case "auc", "AUC":
            try refuseSet(["multi_label", "num_labels", "label_weights", "thresholds"])
            var n = 200
            if let v = config["num_thresholds"], !v.isNull {
                guard let x = v.integer, x > 1, x <= 100_000 else {
                    throw fail("num_thresholds", v, "an integer in 2…100000")
                }
                n = x
            }
            guard let curve = MetricKind.Curve(rawValue: config["curve"]?.string ?? "ROC") else {
                throw fail("curve", config["curve"]!, "ROC or PR")
            }
            guard let summation = MetricKind.Summation(rawValue: config["summation_method"]?.string ?? "interpolation")
            else {
                throw fail("summation_method", config["summation_method"]!, "interpolation, minoring or majoring")
            }
            kind = .auc(
                curve: curve, thresholds: n, summation: summation, fromLogits: config["from_logits"]?.bool ?? false)
        case "MeanIoU", "IoU", "OneHotMeanIoU", "OneHotIoU", "BinaryIoU":
            kind = try iou(className, config, fail: fail, outputWidth: outputWidth, targetWidth: targetWidth)
        case "MeanMetricWrapper":
            guard let fn = config["fn"]?.string else {
                throw fail("fn", config["fn"] ?? .null, "a Keras metric function")
            }
            var m = try metric(
                .string(fn), weighted: weighted, output: output, outputWidth: outputWidth, targetWidth: targetWidth)
            m.name = name
            m.keras = item.serialized()
            return m
        default:
            throw TandemError.usage("output '\(output)': metric \(className) is not supported (\(metricNames))")
        }
        // The IoU family counts in integers by default (Keras casts the weights to them).
        let dtypes = className.hasSuffix("IoU") ? ["int32", "float32"] : ["float32"]
        if let d = config["dtype"], !d.isNull, !dtypes.contains(d.string ?? d["config"]?["name"]?.string ?? "?") {
            throw fail("dtype", d, dtypes.joined(separator: " or "))
        }
        return Metric(name: name, kind: kind, weighted: weighted, keras: item.serialized())
    }

    /// An IoU-family metric's arguments (keras/src/metrics/iou_metrics.py): the one-hot forms take the
    /// argmax of the target, BinaryIoU thresholds a one-column prediction into classes 0 and 1.
    private static func iou(
        _ className: String, _ config: JSONValue, fail: (String, JSONValue, String) -> TandemError,
        outputWidth: Int, targetWidth: Int
    ) throws -> MetricKind {
        let binary = className == "BinaryIoU"
        var classes = 2
        if !binary {
            guard let v = config["num_classes"], let n = v.integer, n >= 1, n <= 4096 else {
                throw fail("num_classes", config["num_classes"] ?? .null, "an integer in 1…4096")
            }
            classes = n
        }
        var targets = Array(0..<classes)
        if className == "IoU" || className == "OneHotIoU" || binary, let v = config["target_class_ids"], !v.isNull {
            guard let ids = v.array?.compactMap(\.integer), ids.count == v.array!.count, !ids.isEmpty,
                ids.allSatisfy({ (0..<classes).contains($0) })
            else { throw fail("target_class_ids", v, "class ids in [0, \(classes))") }
            targets = ids
        }
        let oneHot = className.hasPrefix("OneHot")
        let sparseTrue = binary || (!oneHot && (config["sparse_y_true"]?.bool ?? true))
        let sparsePred = binary || (config["sparse_y_pred"]?.bool ?? !oneHot)
        if let v = config["axis"], !v.isNull, v.integer != -1 { throw fail("axis", v, "-1, the last axis") }
        var threshold: Double?
        if binary {
            threshold = config["threshold"]?.number ?? 0.5
            guard outputWidth == 1 else {
                throw fail("threshold", .int(Int64(outputWidth)), "BinaryIoU reads one output column")
            }
        } else if sparsePred && outputWidth != 1 {
            // Keras flattens the output's every value against one id per element: a shape mismatch.
            throw fail(
                "sparse_y_pred", .bool(true),
                "false for an output of \(outputWidth) classes per element: its argmax is the prediction")
        }
        if sparseTrue && targetWidth != 1 {
            throw fail("sparse_y_true", .bool(true), "false for one-hot targets of \(targetWidth) columns")
        }
        var ignore: Int?
        if let v = config["ignore_class"], !v.isNull {
            guard let c = v.integer else { throw fail("ignore_class", v, "an integer") }
            ignore = c
        }
        let dtype = config["dtype"].flatMap { $0.string ?? $0["config"]?["name"]?.string } ?? "int32"
        return .iou(
            classes: classes, targetClasses: targets, sparseTrue: sparseTrue, sparsePred: sparsePred,
            threshold: threshold, ignoreClass: ignore, integerWeights: dtype != "float32")
    }

    /// An optimizer object or name (Keras's defaults for what is absent).
    static func optimizer(_ value: JSONValue) throws -> OptimizerConfig {
        let className: String
        let config: JSONValue
        if let s = value.string {
            className = s
            config = .object([])
        } else {
            try KerasJSON.refuseCustom(value, what: "the optimizer")
            className = value["class_name"]?.string ?? "?"
            config = value["config"] ?? .object([])
        }
        if className == "LossScaleOptimizer" {
            // A wrapper: the inner optimizer does the work; its two counters are kept (OptimizerConfig.lossScale).
            guard let inner = config["inner_optimizer"], !inner.isNull else {
                throw TandemError.usage("optimizer LossScaleOptimizer: 'inner_optimizer' is missing")
            }
            var o = try optimizer(inner)
            guard o.lossScale == nil else {
                throw TandemError.usage(
                    "optimizer LossScaleOptimizer: a LossScaleOptimizer inside another is not supported")
            }
            var l = OptimizerConfig.LossScale()
            if let v = config["initial_scale"], !v.isNull {
                guard let x = v.number else {
                    throw TandemError.usage("optimizer LossScaleOptimizer: 'initial_scale' = \(v) is not a number")
                }
                l.initialScale = x
            }
            if let v = config["dynamic_growth_steps"], !v.isNull {
                guard let n = v.integer else {
                    throw TandemError.usage(
                        "optimizer LossScaleOptimizer: 'dynamic_growth_steps' = \(v) is not an integer")
                }
                l.growthSteps = n
            }
            o.lossScale = l
            try o.validate()
            return o
        }
        guard let kind = OptimizerConfig.Kind(rawValue: className.lowercased()) else {
            throw TandemError.usage(
                "optimizer \(className) is not supported (SGD, Adam, AdamW, RMSprop, Adagrad, Adamax, Nadam, Adadelta, Lion, Ftrl, Adafactor, Lamb, Muon, ScheduleFreeAdamW, and LossScaleOptimizer around any of them; MultiOptimizer gives each variable its own optimizer, which Tandem's one optimizer does not)"
            )
        }
        func fail(_ key: String, _ v: JSONValue, _ supported: String) -> TandemError {
            .usage("optimizer \(className): '\(key)' = \(v) is not supported (\(supported))")
        }
        if let v = config["loss_scale_factor"], !v.isNull { throw fail("loss_scale_factor", v, "null") }
        var o = OptimizerConfig(kind: kind)
        if let v = config["use_ema"], !v.isNull {
            guard let b = v.bool else { throw fail("use_ema", v, "true or false") }
            o.useEMA = b
        }
        if o.useEMA {
            if let v = config["ema_momentum"], !v.isNull {
                guard let m = v.number else { throw fail("ema_momentum", v, "a number in [0, 1]") }
                o.emaMomentum = m
            }
            if let v = config["ema_overwrite_frequency"], !v.isNull {
                guard let f = v.integer else { throw fail("ema_overwrite_frequency", v, "an integer ≥ 1 or null") }
                o.emaOverwriteFrequency = f
            }
        }
        if let lr = config["learning_rate"], !lr.isNull {
            if lr.object != nil {
                try KerasJSON.refuseCustom(lr, what: "the learning-rate schedule")
                o.schedule = try LearningRateSchedule.keras(lr)
                o.learningRate = o.schedule!.initial
            } else {
                guard let x = lr.number, x > 0, x.isFinite else {
                    throw fail("learning_rate", lr, "a positive number or a schedule")
                }
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
        o.clipnorm = try optional("clipnorm")
        o.globalClipnorm = try optional("global_clipnorm")
        o.clipvalue = try optional("clipvalue")
        if let v = config["gradient_accumulation_steps"], !v.isNull {
            guard let n = v.integer, n >= 2 else {
                throw fail("gradient_accumulation_steps", v, "an integer ≥ 2, or null")
            }
            o.gradientAccumulationSteps = n
        }
        try number("epsilon", into: &o.epsilon)
        switch kind {
        case .sgd:
            try number("momentum", into: &o.momentum)
            o.nesterov = try flag("nesterov")
        case .adam, .adamw:
            try number("beta_1", into: &o.beta1)
            try number("beta_2", into: &o.beta2)
            o.amsgrad = try flag("amsgrad")
        case .rmsprop:
            try number("rho", into: &o.rho)
            try number("momentum", into: &o.momentum)
            o.centered = try flag("centered")
        case .adagrad:
            try number("initial_accumulator_value", into: &o.initialAccumulatorValue)
        case .adamax, .nadam, .lion, .lamb, .scheduleFreeAdamW:
            try number("beta_1", into: &o.beta1)
            try number("beta_2", into: &o.beta2)
            if kind == .scheduleFreeAdamW, let v = config["warmup_steps"], !v.isNull {
                guard let n = v.integer, n >= 0 else { throw fail("warmup_steps", v, "an integer ≥ 0") }
                o.warmupSteps = n
            }
        case .adafactor:
            try number("beta_2_decay", into: &o.beta2Decay)
            try number("epsilon_1", into: &o.epsilon1)
            try number("epsilon_2", into: &o.epsilon2)
            try number("clip_threshold", into: &o.clipThreshold)
            if config["relative_step"] != nil { o.relativeStep = try flag("relative_step") }
        case .muon:
            try number("adam_beta_1", into: &o.beta1)
            try number("adam_beta_2", into: &o.beta2)
            try number("muon_a", into: &o.muonA)
            try number("muon_b", into: &o.muonB)
            try number("muon_c", into: &o.muonC)
            try number("adam_lr_ratio", into: &o.adamLearningRateRatio)
            try number("momentum", into: &o.momentum)
            if config["nesterov"] != nil { o.nesterov = try flag("nesterov") }
            if config["exclude_embeddings"] != nil { o.excludeEmbeddings = try flag("exclude_embeddings") }
            if config["adam_weight_decay"] != nil { o.adamWeightDecay = try optional("adam_weight_decay") }
            if config["rms_rate"] != nil { o.rmsRate = try optional("rms_rate") }
            if let v = config["ns_steps"], !v.isNull {
                guard let n = v.integer else { throw fail("ns_steps", v, "an integer") }
                o.newtonSchulzSteps = n
            }
            if let v = config["exclude_layers"], !v.isNull {
                guard let list = v.array, let names = Optional(list.compactMap(\.string)), names.count == list.count
                else {
                    throw fail("exclude_layers", v, "a list of regular expressions")
                }
                o.excludeLayers = names
            }
        case .adadelta:
            try number("rho", into: &o.rho)
        case .ftrl:
            try number("learning_rate_power", into: &o.learningRatePower)
            try number("initial_accumulator_value", into: &o.initialAccumulatorValue)
            try number("l1_regularization_strength", into: &o.l1Strength)
            try number("l2_regularization_strength", into: &o.l2Strength)
            try number("l2_shrinkage_regularization_strength", into: &o.l2ShrinkageStrength)
            try number("beta", into: &o.ftrlBeta)
        }
        try o.validate()
        return o
    }
}
