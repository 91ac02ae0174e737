// A dataset (docs/SPEC.md §5, §13): one array per model input and per output target, named
// after them, plus optional `<output>.sample_weight` — from a directory of .npy files, an .npz or
// a CSV (DataFiles.swift).
// Files are memory-mapped; rows are gathered (and converted) per batch, so a
// rank touches only the rows it trains on. Shapes are checked on open, values
// (token range, NaN/Inf) by `validate(rows:)`.

import Foundation
import TandemCore
import TandemKeras

/// Per head, over a set of rows: the weight factor of a labelled row and the labelled count.
public struct Labels: Sendable {
    package var scales: [Double] = []
    /// Labelled samples; with an element mask, the unmasked elements of labelled rows ÷ cells.
    public var labelled: [Double] = []
    package init() {}
}

/// The arrays of one dataset directory, matched to a model's inputs and heads.
public final class Dataset: @unchecked Sendable {
    /// Where the arrays come from (a directory, an .npz, a CSV's cache).
    package let files: DataFiles
    public let count: Int
    /// Per model input, in `model.inputs` order: arrays, or image files a CSV names.
    package let inputs: [any SampleArray]
    /// Per head: targets and optional sample weights.
    package let targets: [NPYArray]
    package let sampleWeights: [NPYArray?]
    private let vocabulary: [Int?]
    /// Per head: the number of classes when targets are class ids (sparse categorical).
    private let classes: [Int?]
    /// Per head: the class id that marks "no label" (Keras's ignore_class).
    private let ignored: [Int?]
    /// Per head: its output's elements per sample (Head.elements: tokens, pixels; 1 for [batch, features]).
    private let elements: [Head.Elements]
    /// Per head: where its output's Keras mask comes from (Head.elementMask), nil without one.
    let maskSources: [ElementMaskSource?]
    /// The heads the targets belong to (empty without targets).
    public let heads: [Head]
    /// Some head's targets hold a NaN row (a sample without that label).
    public let hasMissingLabels: Bool

    /// A dataset directory or an .npz (a CSV: `init(files:…)` with `DataFiles.open`).
    public convenience init(directory: String, model: Model, heads: [Head], requireTargets: Bool = true) throws {
        try self.init(files: DataFiles(directory), model: model, heads: heads, requireTargets: requireTargets)
    }

    /// Opens `files` for `model` and `heads`; every array's dtype and shape is checked.
    /// With `requireTargets` false (predict), targets are not needed.
    public init(files: DataFiles, model: Model, heads: [Head], requireTargets: Bool = true) throws {
        self.files = files
        func open(_ name: String, what: String) throws -> NPYArray {
            guard let array = try files.array(name) else { throw files.missing(name, what: what) }
            return array
        }
        var counts: [(String, Int)] = []
        var inputArrays: [any SampleArray] = []
        var vocab: [Int?] = []
        for input in model.inputs {
            guard let array = try files.input(input.name, sampleShape: input.output.shape) else {
                throw files.missing(input.name, what: "input '\(input.name)'")
            }
            switch input.kind {
            case .tokens:
                if array is ImageColumn {
                    throw TandemError.file(
                        array.path, "names image files, but the model's input '\(input.name)' takes token ids")
                }
                // Any integer, bool or float type: Keras's Embedding casts its ids itself, so
                // float ids are read too — each one checked to be a whole number (validate).
                let embedding = model.lookups.first { $0.inputs.first === input }
                vocab.append(embedding?.vocabulary)
            case .features:
                vocab.append(nil)
            }
            try Dataset.check(array, rowShape: input.output.shape, label: "input '\(input.name)'")
            inputArrays.append(array)
            counts.append((array.path, array.rows))
        }
        var targetArrays: [NPYArray] = []
        var weightArrays: [NPYArray?] = []
        var classCounts: [Int?] = []
        var ignoredClasses: [Int?] = []
        var headElements: [Head.Elements] = []
        var headMasks: [ElementMaskSource?] = []
        if requireTargets {
            for head in heads {
                guard let layer = model.output(named: head.output) else {
                    throw TandemError.usage("unknown output '\(head.output)'")
                }
                let array = try open(head.output, what: "output '\(head.output)'")
                let e = head.elements(of: layer)
                let cellShape = Array(layer.output.shape.dropLast())
                try Dataset.check(
                    array, rowShape: cellShape + [e.targetColumns], label: "output '\(head.output)'", targets: true)
                if head.loss == .categoricalGeneralizedCrossEntropy && array.shape.count != 1 {
                    throw TandemError.file(
                        array.path,
                        "shape \(array.shape): CategoricalGeneralizedCrossEntropy's class ids must have shape [N]; Keras one-hot encodes [N, 1] ids to [N, 1, C], which broadcasts against the [N, C] predictions into a mean over every pair of samples in the batch"
                    )
                }
                targetArrays.append(array)
                classCounts.append(head.loss == .sparseCategoricalCrossentropy ? e.columns : nil)
                ignoredClasses.append(head.options.ignoreClass)
                headElements.append(e)
                headMasks.append(
                    try head.elementMask.map { mask in
                        guard let k = model.inputs.firstIndex(where: { $0.name == mask.input }), k < inputArrays.count,
                            inputArrays[k].rowWidth % e.cells == 0
                        else {
                            throw TandemError.usage(
                                "output '\(head.output)': its mask's input '\(mask.input)' does not have one step per element"
                            )
                        }
                        return ElementMaskSource(mask: mask, array: inputArrays[k], steps: e.cells)
                    })
                counts.append((array.path, array.rows))
                if let weights = try files.array("\(head.output).sample_weight") {
                    // [N], or (Keras broadcasts and squeezes) one per element: [N, d1…dk], each optionally
                    // with a trailing axis of 1.
                    let row = Array(weights.shape.dropFirst())
                    let fits = [[], [1], cellShape, cellShape + [1]].contains(row)
                    guard fits, !weights.shape.isEmpty else {
                        let perElement =
                            cellShape.isEmpty ? "" : " or [N, \(cellShape.map(String.init).joined(separator: ", "))]"
                        throw TandemError.file(
                            weights.path, "sample weights must have shape [N]\(perElement), found \(weights.shape)")
                    }
                    weightArrays.append(weights)
                    counts.append((weights.path, weights.rows))
                } else {
                    weightArrays.append(nil)
                }
            }
        }
        let (firstPath, n) = counts[0]
        for (p, rows) in counts where rows != n {
            throw TandemError.file(p, "has \(rows) rows but \(firstPath) has \(n)")
        }
        guard n > 0 else { throw TandemError.file(firstPath, "has no samples (0 rows)") }
        count = n
        inputs = inputArrays
        targets = targetArrays
        sampleWeights = weightArrays
        vocabulary = vocab
        classes = classCounts
        ignored = ignoredClasses
        elements = headElements
        maskSources = headMasks
        self.heads = requireTargets ? heads : []
        hasMissingLabels = targetArrays.contains { array in (0..<n).contains { array.float(row: $0).isNaN } }
    }

    /// Per head over `rows` (a global batch, or a whole evaluated set; docs/SPEC.md §10): the factor a
    /// labelled element's weight takes, and how many rows have a label (a target that is not NaN).
    /// An element is a sample of an output [batch, features], or one of its tokens or pixels
    /// (Head.elements); the figures divide by the rows' elements, `rows.count · cells`.
    /// - `batch` reduction: 1, or with ignore_class Keras's mask weight: elements / not-ignored
    ///   (0 when all are ignored, as divide_no_nan); a NaN row simply weighs 0.
    /// - `labeled`: elements / Σ effective weight of the labelled, not-ignored elements (0 when
    ///   there are none), so the loss is the weighted mean over labelled elements.
    /// - `sum`: elements, so the loss is the batch's sum (ignored and unlabelled elements weigh 0).
    /// Every rank reads the same targets, so no collective is needed.
    /// `maskedMetrics` (evaluation, as Keras's evaluate): the labelled count of a head whose output a
    /// Keras mask reaches counts its unmasked elements; else (training, as Keras's fit) every element.
    public func labels<S: Collection>(rows: S, maskedMetrics: Bool = false) -> Labels where S.Element == Int {
        var value = [Float](repeating: 0, count: targets.map(\.rowWidth).max() ?? 1)
        var weight = [Float](repeating: 1, count: elements.map(\.cells).max() ?? 1)
        var masked = [Bool](repeating: false, count: elements.map(\.cells).max() ?? 1)
        var result = Labels()
        for (h, head) in heads.enumerated() {
            let (cells, tw) = (elements[h].cells, elements[h].targetColumns)
            let mask = maskSources[h]
            var labelled = 0.0
            var ignoredElements = 0
            var weightSum = 0.0
            for r in rows {
                let first = targets[h].float(row: r)
                if first.isNaN { continue }
                guard head.options.ignoreClass != nil || head.reduction == .labeled || mask != nil else {
                    labelled += 1
                    continue
                }
                targets[h].readFloats(row: r, into: &value)
                if head.reduction == .labeled {
                    readWeights(h, row: r, into: &weight)
                    value.withUnsafeBufferPointer {
                        head.applyClassWeights(targets: $0.baseAddress!, columns: tw, rows: cells, weights: &weight)
                    }
                }
                if let mask { masked.withUnsafeMutableBufferPointer { mask.read(row: r, into: $0.baseAddress!) } }
                var unmasked = 0
                for k in 0..<cells {
                    if mask != nil && masked[k] {
                        ignoredElements += 1  // Keras's mask on the loss: as an ignored element
                        continue
                    }
                    unmasked += 1
                    if let c = head.options.ignoreClass, value[k * tw] == Float(c) {
                        ignoredElements += 1
                    } else {
                        weightSum += Double(weight[k])
                    }
                }
                labelled += maskedMetrics ? Double(unmasked) / Double(cells) : 1
            }
            let count = Double(rows.count * cells)
            let scale: Double
            switch head.reduction {
            case .labeled: scale = weightSum > 0 ? count / weightSum : 0
            case .sum: scale = count  // the figures divide by the batch's elements: undone here
            case .batch:
                let valid = count - Double(ignoredElements)
                scale = head.options.ignoreClass == nil && mask == nil ? 1 : valid == 0 ? 0 : count / valid
            }
            result.scales.append(scale)
            result.labelled.append(labelled)
        }
        return result
    }

    /// The image inputs (ImageColumn): their files are decoded as rows are read.
    package var imageColumns: [ImageColumn] { inputs.compactMap { $0 as? ImageColumn } }

    /// Rows this rank reads next: their image files are decoded ahead, in the background.
    package func prefetch<S: Sequence<Int>>(_ rows: S) {
        for column in imageColumns { column.prefetch(rows) }
    }

    /// Throws when an image failed to decode since the last call (its file changed after start-up).
    package func checkLoaded() throws {
        for column in imageColumns { if let failure = column.takeFailure() { throw failure } }
    }

    /// Head h's sample weights of `row`, one per element (a weight per sample is repeated); 1 without any.
    private func readWeights(_ h: Int, row: Int, into w: inout [Float]) {
        let cells = elements[h].cells
        guard let sw = sampleWeights[h] else {
            for k in 0..<cells { w[k] = 1 }
            return
        }
        w.withUnsafeMutableBufferPointer { readElementWeights(sw, row: row, cells: cells, into: $0.baseAddress!) }
    }

    /// [N, shape…] as the model has it; [N] for one column. Targets (`targets`) may leave out a last axis
    /// of 1, as Keras's losses squeeze it: class ids [N, H, W] for an output [N, H, W, C].
    static func check(_ array: any SampleArray, rowShape: [Int], label: String, targets: Bool = false) throws {
        let width = rowShape.reduce(1, *)
        let row = Array(array.shape.dropFirst())
        let squeezed = targets && rowShape.count > 1 && rowShape.last == 1 ? Array(rowShape.dropLast()) : nil
        let ok = row == rowShape || row == squeezed || (array.shape.count == 1 && width == 1)
        guard ok, array.shape.count >= 1 else {
            let alternative = squeezed.map { " or [N, \($0.map(String.init).joined(separator: ", "))]" } ?? ""
            throw TandemError.file(
                array.path,
                "shape \(array.shape) does not fit the model's \(label), which needs [N, \(rowShape.map(String.init).joined(separator: ", "))]\(alternative)"
            )
        }
    }

    /// Checks the values of `rows`: token ids in [0, vocab), every float finite.
    /// Returns the first problem as an error naming the file, row and column.
    public func validate(rows: Range<Int>) -> TandemError? {
        var tokens = [Int32](repeating: 0, count: inputs.map(\.rowWidth).max() ?? 1)
        var floats = [Float](repeating: 0, count: (inputs + targets).map(\.rowWidth).max() ?? 1)
        for row in rows {
            for (array, vocab) in zip(inputs, vocabulary) {
                if let vocab {
                    if let bad = tokens.withUnsafeMutableBufferPointer({
                        array.readTokens(row: row, limit: vocab, into: $0.baseAddress!)
                    }) {
                        let problem =
                            bad.value.rounded() == bad.value
                            ? "is outside the vocabulary [0, \(vocab))"
                            : "is not a whole number (token ids are cast to integers, never truncated)"
                        return .file(
                            array.path, "row \(row), column \(bad.column): token id \(formatted(bad.value)) \(problem)")
                    }
                } else if let images = array as? ImageColumn {
                    if let error = images.problem(row: row) { return error }  // decoded once, here
                } else if let error = checkFinite(array, row, &floats) {
                    return error
                }
            }
            for array in sampleWeights.compactMap({ $0 }) {
                if let error = checkFinite(array, row, &floats) { return error }
            }
            for array in targets {
                if let error = checkTarget(array, row, &floats) { return error }
            }
            for (array, (count, skip)) in zip(targets, zip(classes, ignored)) {
                guard let count else { continue }
                array.readFloats(row: row, into: &floats)
                if floats[0].isNaN { continue }  // no label for this head (docs/SPEC.md §10)
                // One id per element (a token's, a pixel's): the row's every value.
                for k in 0..<array.rowWidth {
                    let id = floats[k]
                    if let skip, id == Float(skip) { continue }  // "no label" (ignore_class)
                    if id.rounded() != id || id < 0 || Int(id) >= count {
                        let position = array.rowWidth == 1 ? "" : ", element \(k)"
                        return .file(
                            array.path,
                            "row \(row)\(position): class id \(id) is not a whole number in [0, \(count)) (the model's output has \(count) classes\(skip.map { "; \($0) is ignored" } ?? ""))"
                        )
                    }
                }
            }
        }
        return nil
    }

    /// A target row is finite, or NaN in every column (no label for that head).
    private func checkTarget(_ array: NPYArray, _ row: Int, _ scratch: inout [Float]) -> TandemError? {
        scratch.withUnsafeMutableBufferPointer { buffer in
            array.readFloats(row: row, into: buffer.baseAddress!)
            let missing = buffer[0].isNaN
            for j in 0..<array.rowWidth where missing ? !buffer[j].isNaN : !buffer[j].isFinite {
                if missing || buffer[j].isNaN {
                    return .file(
                        array.path,
                        "row \(row): a missing label must be NaN in every column, but column \(missing ? j : 0) is \(missing ? buffer[j] : buffer[0]) and column \(missing ? 0 : j) is NaN"
                    )
                }
                return .file(
                    array.path,
                    "row \(row), column \(j): value \(buffer[j]) is not finite (NaN in every column marks a missing label)"
                )
            }
            return nil
        }
    }

    private func checkFinite(_ array: any SampleArray, _ row: Int, _ scratch: inout [Float]) -> TandemError? {
        scratch.withUnsafeMutableBufferPointer { buffer in
            array.readFloats(row: row, into: buffer.baseAddress!)
            for j in 0..<array.rowWidth where !buffer[j].isFinite {
                return .file(array.path, "row \(row), column \(j): value \(buffer[j]) is not finite")
            }
            return nil
        }
    }

    private func formatted(_ v: Double) -> String { v.rounded() == v && abs(v) < 1e15 ? String(Int64(v)) : String(v) }
}

/// One sample's weights for `cells` elements from a sample-weight array of one per sample (repeated)
/// or one per element.
func readElementWeights(_ sw: NPYArray, row: Int, cells: Int, into w: UnsafeMutablePointer<Float>) {
    sw.readFloats(row: row, into: w)
    if sw.rowWidth == 1 && cells > 1 { (w + 1).update(repeating: w[0], count: cells - 1) }
}
