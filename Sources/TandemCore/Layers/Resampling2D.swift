// Layers that move or resample the cells of channels-last images [B, H, W, C].
//   ZeroPadding2D, Cropping2D, CenterCrop (cropping), UpSampling2D and Resizing with "nearest":
//   each output cell is one input cell (or zero) — an IndexMap (IndexMap.swift).
//   UpSampling2D and Resizing with "bilinear": Resample2D below, jax.image.resize's linear method
//   as Keras's JAX backend calls it. Per axis, output o samples input position
//   f = (o + ½)·(in/out) − ½ (half-pixel centres); input i weighs max(0, 1 − |f − i|/k), k = 1, or
//   max(in/out, 1) with antialias; the weights are divided by their sum, and an f outside
//   [−½, in − ½] weighs nothing. Rows are resampled first, then columns. Everything is computed in
//   float32, as JAX computes it, so the weights are JAX's to the bit.

/// The weights one output position along one axis takes from input positions.
package struct ResampleAxis: Sendable {
    /// Per output position, its (input position, weight) pairs.
    package let taps: [[(index: Int, weight: Float)]]

    /// jax.image.resize's "linear" weights from `input` positions (starting at `offset`, for a crop)
    /// to `output` positions.
    package static func linear(input: Int, output: Int, offset: Int = 0, antialias: Bool) -> ResampleAxis {
        let invScale = Float(1.0 / (Double(output) / Double(input)))
        let kernelScale: Float = antialias ? max(invScale, 1) : 1
        var taps: [[(index: Int, weight: Float)]] = []
        for o in 0..<output {
            let f = (Float(o) + 0.5) * invScale - 0.5
            var row: [(index: Int, weight: Float)] = []
            guard f >= -0.5 && f <= Float(input) - 0.5 else {
                taps.append(row)
                continue
            }
            var total: Float = 0
            for i in 0..<input {
                let w = max(0, 1 - abs(f - Float(i)) / kernelScale)
                if w > 0 { row.append((i + offset, w)) }
                total += w
            }
            if abs(total) > 1000 * Float.ulpOfOne {
                row = row.map { ($0.index, $0.weight / total) }
            } else {
                row = []
            }
            taps.append(row)
        }
        return ResampleAxis(taps: taps)
    }

    /// jax.image.resize's "nearest": output o reads ⌊(o + ½)·in/out⌋, in float32.
    package static func nearest(input: Int, output: Int) -> [Int] {
        (0..<output).map { o in min(Int(((Float(o) + 0.5) * Float(input) / Float(output)).rounded(.down)), input - 1) }
    }
}

/// y[oy, ox, c] = Σ wy·wx·x[iy, ix, c] over each axis's taps (UpSampling2D / Resizing, bilinear).
package final class Resample2D: Layer {
    public let name: String
    package let inputs: [Layer]
    public let output: Node
    let rows: ResampleAxis, columns: ResampleAxis
    let height: Int, width: Int, channels: Int
    /// The rows-resampled image [B, Ho, W, C] and its gradient.
    private var middle: UnsafeMutablePointer<Float>!, dMiddle: UnsafeMutablePointer<Float>!

    package init(name: String, input: Layer, rows: ResampleAxis, columns: ResampleAxis) {
        let shape = input.output.shape
        precondition(shape.count == 3)
        (height, width, channels) = (shape[0], shape[1], shape[2])
        self.name = name
        inputs = [input]
        self.rows = rows
        self.columns = columns
        output = Node(shape: [rows.taps.count, columns.taps.count, channels])
    }

    private var middleWidth: Int { rows.taps.count * width * channels }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (2 * batch * middleWidth + batch * output.width, batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        middle = workspace.take(batch * middleWidth)
        dMiddle = workspace.take(batch * middleWidth)
        output.values = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    public func forward(batch: Int, training: Bool) {
        let x = inputs[0].output.values!
        let C = channels
        let lineIn = width * C
        let outWidth = columns.taps.count
        middle.update(repeating: 0, count: batch * middleWidth)
        output.values.update(repeating: 0, count: batch * output.width)
        for b in 0..<batch {
            let image = x + b * height * lineIn
            let mid = middle + b * middleWidth
            for (oy, taps) in rows.taps.enumerated() {
                let to = mid + oy * lineIn
                for (i, w) in taps {
                    let from = image + i * lineIn
                    for k in 0..<lineIn { to[k] += w * from[k] }
                }
            }
            let y = output.values + b * output.width
            for oy in 0..<rows.taps.count {
                for (ox, taps) in columns.taps.enumerated() {
                    let to = y + (oy * outWidth + ox) * C
                    for (i, w) in taps {
                        let from = mid + (oy * width + i) * C
                        for c in 0..<C { to[c] += w * from[c] }
                    }
                }
            }
        }
    }

    package func backward(batch: Int) {
        let dx = inputs[0].output.gradients!
        let C = channels
        let lineIn = width * C
        let outWidth = columns.taps.count
        dMiddle.update(repeating: 0, count: batch * middleWidth)
        for b in 0..<batch {
            let g = output.gradients + b * output.width
            let dMid = dMiddle + b * middleWidth
            for oy in 0..<rows.taps.count {
                for (ox, taps) in columns.taps.enumerated() {
                    let from = g + (oy * outWidth + ox) * C
                    for (i, w) in taps {
                        let to = dMid + (oy * width + i) * C
                        for c in 0..<C { to[c] += w * from[c] }
                    }
                }
            }
            let image = dx + b * height * lineIn
            for (oy, taps) in rows.taps.enumerated() {
                let from = dMid + oy * lineIn
                for (i, w) in taps {
                    let to = image + i * lineIn
                    for k in 0..<lineIn { to[k] += w * from[k] }
                }
            }
        }
    }
}

extension IndexMap {
    /// The map of an [H, W, C] sample whose output cell (i, j) of `out` reads input cell `cell(i, j)`
    /// (nil: zeros).
    static func cells(_ shape: [Int], out: (Int, Int), cell: (Int, Int) -> (Int, Int)?) -> (shape: [Int], map: [Int32])
    {
        let (w, c) = (shape[1], shape[2])
        var map = [Int32](repeating: -1, count: out.0 * out.1 * c)
        for i in 0..<out.0 {
            for j in 0..<out.1 {
                guard let (r, s) = cell(i, j) else { continue }
                for k in 0..<c { map[(i * out.1 + j) * c + k] = Int32((r * w + s) * c + k) }
            }
        }
        return ([out.0, out.1, c], map)
    }
}

// MARK: - Keras ZeroPadding2D, Cropping2D, UpSampling2D, Resizing and CenterCrop: the layer table's entries
// (KerasLayerKind.swift) and their builders, which read a call's config and refuse every argument Tandem
// does not implement by name.

extension KerasLayerKind {
    static let resampling2D = KerasLayerKind(
        classNames: ["ZeroPadding2D", "Cropping2D", "UpSampling2D", "Resizing", "CenterCrop"],
        build: { a, inputs, _ in try LayerRegistry.resampling2D(a, inputs) })
}

extension LayerRegistry {
    static func resampling2D(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let source = try single(a, inputs)
        let (h, w) = try a.spatial(source, rank: 2)
        let shape = source.output.shape
        try a.channelsLast()
        /// ((top, bottom), (left, right)) from an int, a pair of ints or a pair of pairs.
        func margins(_ key: String) throws -> ((Int, Int), (Int, Int)) {
            let v = a.config[key] ?? .int(1)
            if let n = v.integer, n >= 0 { return ((n, n), (n, n)) }
            if let list = v.array, list.count == 2 {
                let pairs = list.map { item -> [Int]? in
                    if let n = item.integer { return [n, n] }
                    return item.array?.compactMap(\.integer)
                }
                if let y = pairs[0], let x = pairs[1], y.count == 2, x.count == 2, (y + x).allSatisfy({ $0 >= 0 }) {
                    return ((y[0], y[1]), (x[0], x[1]))
                }
            }
            throw a.fail("'\(key)' = \(v) is not supported (an int ≥ 0, two of them, or two pairs)")
        }
        let built: (shape: [Int], map: [Int32])
        switch a.node.className {
        case "ZeroPadding2D":
            let ((top, bottom), (left, right)) = try margins("padding")
            built = IndexMap.cells(shape, out: (h + top + bottom, w + left + right)) { i, j in
                i >= top && i < top + h && j >= left && j < left + w ? (i - top, j - left) : nil
            }
        case "Cropping2D":
            let ((top, bottom), (left, right)) = try margins("cropping")
            guard top + bottom < h && left + right < w else {
                throw a.fail(
                    "cropping ((\(top), \(bottom)), (\(left), \(right))) leaves nothing of its \(h)×\(w) input")
            }
            built = IndexMap.cells(shape, out: (h - top - bottom, w - left - right)) { i, j in (i + top, j + left) }
        case "CenterCrop":
            let (th, tw) = (try a.int("height"), try a.int("width"))
            guard th <= h && tw <= w else {
                throw a.fail(
                    "a \(th)×\(tw) crop of a \(h)×\(w) input would resize it first; only crops no larger than the input are supported"
                )
            }
            let (top, left) = ((h - th) / 2, (w - tw) / 2)
            built = IndexMap.cells(shape, out: (th, tw)) { i, j in (i + top, j + left) }
        case "UpSampling2D":
            let (sy, sx) = try a.sizes("size", rank: 2, default: 2)
            let method = try a.string("interpolation", default: "nearest")
            switch method {
            case "nearest":
                built = IndexMap.cells(shape, out: (h * sy, w * sx)) { i, j in (i / sy, j / sx) }
            case "bilinear":
                return Resample2D(
                    name: a.node.id, input: source, rows: .linear(input: h, output: h * sy, antialias: false),
                    columns: .linear(input: w, output: w * sx, antialias: false))
            default:
                throw a.fail("interpolation '\(method)' is not supported (nearest, bilinear)")
            }
        default:  // Resizing
            let (th, tw) = (try a.int("height"), try a.int("width"))
            let method = try a.string("interpolation", default: "bilinear")
            try a.require("pad_to_aspect_ratio", is: .bool(false), supported: "false")
            let antialias = try a.bool("antialias", default: false)
            // crop_to_aspect_ratio: the largest centred window of the target's aspect, then resized.
            var (cropH, cropW, top, left) = (h, w, 0, 0)
            if try a.bool("crop_to_aspect_ratio", default: false) {
                cropH = max(min(h, Int(Double(w * th) / Double(tw))), 1)
                cropW = max(min(w, Int(Double(h * tw) / Double(th))), 1)
                (top, left) = (Int(Double(h - cropH) / 2), Int(Double(w - cropW) / 2))
            }
            switch method {
            case "nearest":
                let rows = ResampleAxis.nearest(input: cropH, output: th)
                let columns = ResampleAxis.nearest(input: cropW, output: tw)
                built = IndexMap.cells(shape, out: (th, tw)) { i, j in (rows[i] + top, columns[j] + left) }
            case "bilinear":
                return Resample2D(
                    name: a.node.id, input: source,
                    rows: .linear(input: cropH, output: th, offset: top, antialias: antialias),
                    columns: .linear(input: cropW, output: tw, offset: left, antialias: antialias))
            default:
                throw a.fail("interpolation '\(method)' is not supported (bilinear, nearest)")
            }
        }
        return IndexMap(name: a.node.id, input: source, shape: built.shape, map: built.map)
    }
}
