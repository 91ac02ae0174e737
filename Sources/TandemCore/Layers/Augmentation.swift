// Keras's image augmentation layers inside a model (keras/src/layers/preprocessing/image_preprocessing/):
// RandomFlip, RandomTranslation, RandomRotation, RandomZoom, RandomContrast and RandomBrightness. They
// act in training only — evaluate and predict pass the image through, as Keras's do — and their draws
// are a pure function of (run seed, layer, epoch, the sample's position in the epoch's order), the keys
// dropout uses (Dropout.swift, docs/SPEC.md §9), so an image gets the same transform on whichever rank
// holds it. The draws' distributions are Keras's; the numbers are Tandem's own (Keras's come from its
// generator). Translation, rotation and zoom are one affine map per sample, sampled as
// keras.ops.image.affine_transform does on JAX: jax.scipy.ndimage.map_coordinates of order 0 (nearest,
// rounding half away from zero) or 1 (bilinear), with the fill modes the layers take (constant,
// nearest, wrap, reflect); the gradient flows back through the same taps. RandomCrop is refused: Keras 3.15's passes
// the image through unchanged in inference, so its output shape differs between training and inference.

import Foundation

package final class Augmentation: Layer, RandomLayer {
    package enum Fill: String, Sendable { case constant, nearest, wrap, reflect }

    package enum Kind: Sendable {
        /// One draw per sample: flipped (u ≤ ½) along each axis named, or not at all.
        case flip(horizontal: Bool, vertical: Bool)
        /// Fractions of the height and width, drawn in [lower, upper].
        case translation(height: ClosedRange<Float>, width: ClosedRange<Float>)
        /// Fractions of a full turn, drawn in [lower, upper], about the image's centre.
        case rotation(ClosedRange<Float>)
        /// 1 + a draw in [lower, upper] per axis; width nil: the height's draw for both.
        case zoom(height: ClosedRange<Float>, width: ClosedRange<Float>?)
        /// Factor in [1 − lower, 1 + upper] (Keras's arithmetic on its stored factor), about each
        /// channel's mean, then clipped to the value range.
        case contrast(lower: Float, upper: Float, range: ClosedRange<Float>)
        /// A shift of a draw in [lower, upper] times the value range's width, then clipped to it.
        case brightness(ClosedRange<Float>, range: ClosedRange<Float>)
    }

    public let name: String
    package let inputs: [Layer]
    public let output: Node
    package let kind: Kind
    package let bilinear: Bool
    package let fill: Fill
    package let fillValue: Float
    let stream: DropoutStream
    private var keys: DropoutKeys!
    private let height: Int, width: Int, channels: Int
    /// The last training pass's per-sample parameters ([B, 6]: an affine map, or a factor / shift /
    /// flip flag first), nil in inference.
    private var parameters: UnsafeMutablePointer<Float>!
    private var active = false

    package init(
        name: String, input: Layer, kind: Kind, bilinear: Bool = true, fill: Fill = .reflect, fillValue: Float = 0
    ) {
        let shape = input.output.shape
        precondition(shape.count == 3)
        self.name = name
        inputs = [input]
        output = Node(shape: shape)
        self.kind = kind
        self.bilinear = bilinear
        self.fill = fill
        self.fillValue = fillValue
        (height, width, channels) = (shape[0], shape[1], shape[2])
        stream = DropoutStream(name: name, rate: 0)
    }

    func bind(keys: DropoutKeys) { self.keys = keys }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (batch * (output.width + 6), batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        parameters = workspace.take(batch * 6)
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    /// The draws of the sample at `position` of the epoch's order, in Keras's terms (what its
    /// transformation dict holds): flip [1 or 0]; translation [dx, dy] in pixels; rotation [degrees];
    /// zoom [zx, zy]; contrast [factor]; brightness [shift].
    package func draws(position: Int) -> [Float] {
        let key = stream.sampleKey(keys, position: position)
        func uniform(_ k: Int, _ r: ClosedRange<Float>) -> Float {
            r.lowerBound + DropoutStream.unit(key, k) * (r.upperBound - r.lowerBound)
        }
        switch kind {
        case .flip: return [DropoutStream.unit(key, 0) <= 0.5 ? 1 : 0]
        case .translation(let hr, let wr): return [uniform(1, wr) * Float(width), uniform(0, hr) * Float(height)]
        case .rotation(let r): return [uniform(0, (r.lowerBound * 360)...(r.upperBound * 360))]
        case .zoom(let hr, let wr):
            let zy = 1 + uniform(0, hr)
            return [wr.map { 1 + uniform(1, $0) } ?? zy, zy]
        case .contrast(let lower, let upper, _): return [uniform(0, (1 - lower)...(1 + upper))]
        case .brightness(let r, let range): return [uniform(0, r) * (range.upperBound - range.lowerBound)]
        }
    }

    /// Sample b's parameters from its draws: an affine map [a0, a1, a2, b0, b1, b2] (float32, as
    /// Keras builds it), or the draw itself.
    private func draw(_ b: Int) {
        let d = draws(position: keys.firstPosition + b)
        let p = parameters + 6 * b
        let (h, w) = (Float(height), Float(width))
        switch kind {
        case .flip, .contrast, .brightness: p[0] = d[0]
        case .translation:
            // [[1, 0, −dx], [0, 1, −dy]]: the output at (x, y) reads the input at (x − dx, y − dy).
            (p[0], p[1], p[2], p[3], p[4], p[5]) = (1, 0, -d[0], 0, 1, -d[1])
        case .rotation:
            // _compute_affine_matrix with scale 1 and no shear, about ((W − 1)/2, (H − 1)/2).
            let angle: Float = d[0] * Float(Double.pi / 180)
            let c: Float = cos(angle)
            let s: Float = sin(angle)
            let (cx, cy) = (0.5 * (w - 1), 0.5 * (h - 1))
            (p[0], p[1], p[3], p[4]) = (c, -s, s, c)
            p[2] = cx - cx * p[0] - cy * p[1]
            p[5] = cy - cx * p[3] - cy * p[4]
        case .zoom:
            let (zx, zy) = (d[0], d[1])
            (p[0], p[1], p[2]) = (zx, 0, ((w - 1) / 2) * (1 - zx))
            (p[3], p[4], p[5]) = (0, zy, ((h - 1) / 2) * (1 - zy))
        }
    }

    public func forward(batch: Int, training: Bool) {
        let x = inputs[0].output.values!
        let y = output.values!
        let n = output.width
        active = training
        guard training else {
            y.update(from: x, count: batch * n)
            return
        }
        for b in 0..<batch {
            draw(b)
            let p = parameters + 6 * b
            let (xb, yb) = (x + b * n, y + b * n)
            switch kind {
            case .flip(let horizontal, let vertical):
                guard p[0] == 1 else {
                    yb.update(from: xb, count: n)
                    continue
                }
                for i in 0..<height {
                    for j in 0..<width {
                        let from = flipped(i, j, horizontal: horizontal, vertical: vertical)
                        (yb + (i * width + j) * channels).update(from: xb + from, count: channels)
                    }
                }
            case .translation, .rotation, .zoom:
                sample(p, xb, yb)
            case .contrast(_, _, let range):
                let f = p[0]
                for c in 0..<channels {
                    let mean = channelMean(xb, c)
                    for k in stride(from: c, to: n, by: channels) {
                        yb[k] = min(max((xb[k] - mean) * f + mean, range.lowerBound), range.upperBound)
                    }
                }
            case .brightness(_, let range):
                for k in 0..<n { yb[k] = min(max(xb[k] + p[0], range.lowerBound), range.upperBound) }
            }
        }
    }

    /// The input offset a flipped image's cell (i, j) reads.
    @inline(__always) private func flipped(_ i: Int, _ j: Int, horizontal: Bool, vertical: Bool) -> Int {
        ((vertical ? height - 1 - i : i) * width + (horizontal ? width - 1 - j : j)) * channels
    }

    /// Keras's mean over the height, then over the width, of one channel.
    private func channelMean(_ x: UnsafePointer<Float>, _ c: Int) -> Float {
        var total: Float = 0
        for j in 0..<width {
            var column: Float = 0
            for i in 0..<height { column += x[(i * width + j) * channels + c] }
            total += column / Float(height)
        }
        return total / Float(width)
    }

    /// map_coordinates' index fixer for one axis of `size`; nil: outside, in constant mode.
    @inline(__always) private func fixed(_ index: Int, _ size: Int) -> Int? {
        switch fill {
        case .constant: return index >= 0 && index < size ? index : nil
        case .nearest: return min(max(index, 0), size - 1)
        case .wrap: return ((index % size) + size) % size
        case .reflect:
            // floor_divide(mirror(2·index + 1, 2·size + 1) − 1, 2)
            let m = mirror(2 * index + 1, 2 * size + 1) - 1
            return m >= 0 ? m / 2 : (m - 1) / 2
        }
    }

    @inline(__always) private func mirror(_ index: Int, _ size: Int) -> Int {
        let s = size - 1
        guard s > 0 else { return 0 }
        return abs((((index + s) % (2 * s)) + 2 * s) % (2 * s) - s)
    }

    /// Calls `tap(outputOffset, inputOffset or nil (the fill value), weight)` for every tap of the
    /// affine map `p` (the output at column j, row i reads the input at column a0·j + a1·i + a2,
    /// row b0·j + b1·i + b2), in map_coordinates' order.
    @inline(__always) private func forEachTap(_ p: UnsafePointer<Float>, _ tap: (Int, Int?, Float) -> Void) {
        for i in 0..<height {
            for j in 0..<width {
                let (fi, fj) = (Float(i), Float(j))
                let row = fi * p[4] + fj * p[3] + p[5]
                let column = fi * p[1] + fj * p[0] + p[2]
                let out = (i * width + j) * channels
                if bilinear {
                    let (r0, c0) = (row.rounded(.down), column.rounded(.down))
                    let (wr1, wc1) = (row - r0, column - c0)
                    let (wr0, wc0) = (1 - wr1, 1 - wc1)
                    let (ri, ci) = (Int(r0), Int(c0))
                    for (dr, wr) in [(0, wr0), (1, wr1)] {
                        for (dc, wc) in [(0, wc0), (1, wc1)] {
                            let source = fixed(ri + dr, height).flatMap { r in
                                fixed(ci + dc, width).map { (r * width + $0) * channels }
                            }
                            tap(out, source, wr * wc)
                        }
                    }
                } else {
                    let (ri, ci) = (
                        Int(row.rounded(.toNearestOrAwayFromZero)), Int(column.rounded(.toNearestOrAwayFromZero))
                    )
                    tap(out, fixed(ri, height).flatMap { r in fixed(ci, width).map { (r * width + $0) * channels } }, 1)
                }
            }
        }
    }

    private func sample(_ p: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        y.update(repeating: 0, count: output.width)
        let (c, v) = (channels, fillValue)
        forEachTap(p) { out, source, weight in
            if let source {
                for k in 0..<c { y[out + k] += weight * x[source + k] }
            } else {
                for k in 0..<c { y[out + k] += weight * v }
            }
        }
    }

    package func backward(batch: Int) {
        let dx = inputs[0].output.gradients!
        let dy = output.gradients!
        let n = output.width
        guard active else {
            for i in 0..<(batch * n) { dx[i] += dy[i] }
            return
        }
        for b in 0..<batch {
            let p = parameters + 6 * b
            let (gx, gy) = (dx + b * n, UnsafePointer(dy + b * n))
            switch kind {
            case .flip(let horizontal, let vertical):
                for i in 0..<height {
                    for j in 0..<width {
                        let o = (i * width + j) * channels
                        let from = p[0] == 1 ? flipped(i, j, horizontal: horizontal, vertical: vertical) : o
                        for k in 0..<channels { gx[from + k] += gy[o + k] }
                    }
                }
            case .translation, .rotation, .zoom:
                let c = channels
                forEachTap(p) { out, source, weight in
                    guard let source else { return }
                    for k in 0..<c { gx[source + k] += weight * gy[out + k] }
                }
            case .contrast(_, _, let range):
                // y = f·x + (1 − f)·mean inside the range, flat outside it.
                let f = p[0]
                let yb = output.values! + b * n
                for ch in 0..<channels {
                    var passed: Float = 0
                    for k in stride(from: ch, to: n, by: channels) where inside(yb[k], range) {
                        gx[k] += f * gy[k]
                        passed += gy[k]
                    }
                    let share = (1 - f) * passed / Float(height * width)
                    for k in stride(from: ch, to: n, by: channels) { gx[k] += share }
                }
            case .brightness(_, let range):
                let yb = output.values! + b * n
                for k in 0..<n where inside(yb[k], range) { gx[k] += gy[k] }
            }
        }
    }

    /// Strictly inside the clip range: where jnp.clip passes the gradient.
    @inline(__always) private func inside(_ v: Float, _ range: ClosedRange<Float>) -> Bool {
        v > range.lowerBound && v < range.upperBound
    }
}

// MARK: - The layer table's entries (KerasLayerKind.swift) and their builder.

extension KerasLayerKind {
    static let augmentation = KerasLayerKind(
        classNames: [
            "RandomFlip", "RandomTranslation", "RandomRotation", "RandomZoom", "RandomContrast", "RandomBrightness",
            "RandomCrop",
        ],
        build: { a, inputs, _ in try LayerRegistry.augmentation(a, inputs) })
}

extension LayerRegistry {
    static func augmentation(_ a: LayerArguments, _ inputs: [Layer]) throws -> Layer {
        let source = try single(a, inputs)
        _ = try a.spatial(source, rank: 2)
        try a.channelsLast()
        // `seed` seeds Keras's own generator; Tandem's draws come from the run's seed (docs/SPEC.md §9).
        /// A Keras factor: a number f (→ [−f, f]) or a pair (sorted), each within `bounds`.
        func range(_ key: String, bounds: ClosedRange<Double>) throws -> ClosedRange<Float>? {
            guard let v = a.config[key], !v.isNull else { return nil }
            if let f = v.number, bounds.contains(f) { return Float(-abs(f))...Float(abs(f)) }
            if let pair = v.array?.compactMap(\.number), pair.count == 2, v.array!.count == 2,
                pair.allSatisfy({ bounds.contains($0) })
            {
                return Float(pair.min()!)...Float(pair.max()!)
            }
            throw a.fail("'\(key)' = \(v) must be a number or a pair in [\(bounds.lowerBound), \(bounds.upperBound)]")
        }
        func valueRange() throws -> ClosedRange<Float> {
            guard let v = a.config["value_range"], !v.isNull else { return 0...255 }
            guard let pair = v.array?.compactMap(\.number), pair.count == 2, pair[0] != pair[1] else {
                throw a.fail("'value_range' = \(v) must be two different numbers")
            }
            return Float(pair.min()!)...Float(pair.max()!)
        }
        func affine(_ kind: Augmentation.Kind) throws -> Layer {
            let interpolation = try a.string("interpolation", default: "bilinear")
            guard interpolation == "bilinear" || interpolation == "nearest" else {
                throw a.fail("interpolation '\(interpolation)' is not supported (bilinear, nearest)")
            }
            let mode = try a.string("fill_mode", default: "reflect")
            guard let fill = Augmentation.Fill(rawValue: mode) else {
                throw a.fail("fill_mode '\(mode)' is not supported (constant, nearest, wrap, reflect)")
            }
            let value = a.config["fill_value"]?.number ?? 0
            return Augmentation(
                name: a.node.id, input: source, kind: kind, bilinear: interpolation == "bilinear", fill: fill,
                fillValue: Float(value))
        }
        switch a.node.className {
        case "RandomFlip":
            let mode = try a.string("mode", default: "horizontal_and_vertical")
            guard ["horizontal", "vertical", "horizontal_and_vertical"].contains(mode) else {
                throw a.fail("mode '\(mode)' is not supported (horizontal, vertical, horizontal_and_vertical)")
            }
            return Augmentation(
                name: a.node.id, input: source,
                kind: .flip(horizontal: mode != "vertical", vertical: mode != "horizontal"))
        case "RandomTranslation":
            guard let h = try range("height_factor", bounds: -1...1), let w = try range("width_factor", bounds: -1...1)
            else { throw a.fail("'height_factor' and 'width_factor' must be given") }
            return try affine(.translation(height: h, width: w))
        case "RandomRotation":
            guard let r = try range("factor", bounds: -1...1) else { throw a.fail("'factor' must be given") }
            return try affine(.rotation(r))
        case "RandomZoom":
            guard let h = try range("height_factor", bounds: -0.999_999...1) else {
                throw a.fail("'height_factor' must be given")
            }
            return try affine(.zoom(height: h, width: try range("width_factor", bounds: -0.999_999...1)))
        case "RandomContrast":
            // Keras stores its factor after _set_factor: (lower, upper) with the factor drawn in
            // [1 − lower, 1 + upper]; a number f is stored as (0, f) in (0, 1) bounds.
            guard let v = a.config["factor"], !v.isNull else { throw a.fail("'factor' must be given") }
            let pair = v.array?.compactMap(\.number) ?? v.number.map { [max(-$0, 0), $0] } ?? []
            guard pair.count == 2, pair.allSatisfy({ (0...1).contains($0) }) else {
                throw a.fail("'factor' = \(v) must be a number or a pair in [0, 1]")
            }
            return Augmentation(
                name: a.node.id, input: source,
                kind: .contrast(lower: Float(pair.min()!), upper: Float(pair.max()!), range: try valueRange()))
        case "RandomBrightness":
            guard let r = try range("factor", bounds: -1...1) else { throw a.fail("'factor' must be given") }
            return Augmentation(name: a.node.id, input: source, kind: .brightness(r, range: try valueRange()))
        default:
            throw a.fail(
                "RandomCrop is not supported: Keras 3.15's passes the image through unchanged in inference, so the model's shapes differ between training and inference (crop with CenterCrop or Cropping2D, or crop the data)"
            )
        }
    }
}
