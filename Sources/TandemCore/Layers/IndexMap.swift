// Layers that move a sample's values to other places (keras/src/layers/reshaping/): each output
// element is one input element of the same sample, or a zero. One map of source indices per
// sample shape serves forward (y[i] = x[map[i]], 0 where map[i] < 0) and backward
// (dx[map[i]] += dy[i]), so a repeated source (UpSampling1D) gathers every copy's gradient.
//   Permute(dims): the sample's axes in the order `dims` gives (1-based, as Keras numbers them).
//   ZeroPadding1D((a, b)): a zero steps before the sequence, b after.
//   Cropping1D((a, b)): the sequence without its first a and last b steps.
//   UpSampling1D(size): each step repeated `size` times.
// A map made of long runs of consecutive sources (padding and cropping of images: whole rows of channels)
// moves each run as one block copy and one vector add instead of an index per element: the same values
// and, in backward, the same additions to each dx element in the same order.

package final class IndexMap: Layer {
    public let name: String
    package let inputs: [Layer]
    public let output: Node
    /// Per output element of a sample, its source element in the input sample (−1: zero).
    package let map: [Int32]

    package init(name: String, input: Layer, shape: [Int], map: [Int32]) {
        precondition(map.count == shape.reduce(1, *))
        self.name = name
        inputs = [input]
        output = Node(shape: shape)
        self.map = map
        var runs: [Run] = []
        for (i, source) in map.enumerated() {
            if let last = runs.last, last.output + last.count == i,
                (last.source < 0 && source < 0) || (last.source >= 0 && last.source + last.count == Int(source))
            {
                runs[runs.count - 1].count += 1
            } else {
                runs.append(Run(output: i, source: source < 0 ? -1 : Int(source), count: 1))
            }
        }
        // Runs pay off when they are long; a permutation's are one element each.
        self.runs = runs.count * 8 <= map.count ? runs : nil
    }

    /// `count` outputs from `output` on that read the inputs from `source` on (−1: zeros).
    struct Run {
        let output: Int, source: Int
        var count: Int
    }
    private let runs: [Run]?
    /// Whether forward and backward move runs (the tests hold them to the per-element rule).
    package var movesRuns: Bool { runs != nil }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (batch * output.width, batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    public func forward(batch: Int, training: Bool) {
        let x = inputs[0].output.values!
        let y = output.values!
        let inWidth = inputs[0].output.width
        let outWidth = output.width
        if let runs {
            for b in 0..<batch {
                let source = x + b * inWidth
                let target = y + b * outWidth
                for r in runs {
                    if r.source < 0 {
                        (target + r.output).update(repeating: 0, count: r.count)
                    } else {
                        (target + r.output).update(from: source + r.source, count: r.count)
                    }
                }
            }
            return
        }
        map.withUnsafeBufferPointer { m in
            for b in 0..<batch {
                let source = x + b * inWidth
                let target = y + b * outWidth
                for i in 0..<outWidth { target[i] = m[i] < 0 ? 0 : source[Int(m[i])] }
            }
        }
    }

    package func backward(batch: Int) {
        let dx = inputs[0].output.gradients!
        let dy = output.gradients!
        let inWidth = inputs[0].output.width
        let outWidth = output.width
        if let runs {
            for b in 0..<batch {
                let target = dx + b * inWidth
                let source = dy + b * outWidth
                for r in runs where r.source >= 0 {
                    let (t, s) = (target + r.source, source + r.output)
                    for i in 0..<r.count { t[i] += s[i] }
                }
            }
            return
        }
        map.withUnsafeBufferPointer { m in
            for b in 0..<batch {
                let target = dx + b * inWidth
                let source = dy + b * outWidth
                for i in 0..<outWidth where m[i] >= 0 { target[Int(m[i])] += source[i] }
            }
        }
    }

    /// Per element of a `shape` sample, the element of a `from` sample (same rank, each axis equal or 1)
    /// that broadcasting reads.
    package static func broadcast(from: [Int], to shape: [Int]) -> [Int32] {
        precondition(from.count == shape.count)
        var strides = [Int](repeating: 0, count: from.count)
        var step = 1
        for k in stride(from: from.count - 1, through: 0, by: -1) {
            strides[k] = from[k] == 1 ? 0 : step
            step *= from[k]
        }
        var map = [Int32](repeating: 0, count: shape.reduce(1, *))
        var index = [Int](repeating: 0, count: shape.count)
        for o in map.indices {
            map[o] = Int32(zip(index, strides).reduce(0) { $0 + $1.0 * $1.1 })
            var k = shape.count - 1
            while k >= 0 {
                index[k] += 1
                if index[k] < shape[k] { break }
                index[k] = 0
                k -= 1
            }
        }
        return map
    }

    /// The map that puts the input sample's axes in `order` (0-based sample axes).
    static func permutation(_ shape: [Int], order: [Int]) -> (shape: [Int], map: [Int32]) {
        let outShape = order.map { shape[$0] }
        var strides = [Int](repeating: 1, count: shape.count)
        for k in stride(from: shape.count - 2, through: 0, by: -1) { strides[k] = strides[k + 1] * shape[k + 1] }
        let count = outShape.reduce(1, *)
        var map = [Int32](repeating: 0, count: count)
        var index = [Int](repeating: 0, count: outShape.count)
        for o in 0..<count {
            var source = 0
            for (axis, i) in index.enumerated() { source += i * strides[order[axis]] }
            map[o] = Int32(source)
            var k = outShape.count - 1
            while k >= 0 {
                index[k] += 1
                if index[k] < outShape[k] { break }
                index[k] = 0
                k -= 1
            }
        }
        return (outShape, map)
    }

    /// The map of a [T, F] sample whose output step t reads input step `step(t)` (nil: zeros).
    static func steps(_ shape: [Int], outSteps: Int, step: (Int) -> Int?) -> (shape: [Int], map: [Int32]) {
        let f = shape[1]
        var map = [Int32](repeating: -1, count: outSteps * f)
        for t in 0..<outSteps {
            guard let s = step(t) else { continue }
            for j in 0..<f { map[t * f + j] = Int32(s * f + j) }
        }
        return ([outSteps, f], map)
    }
}

// MARK: - Keras Permute, ZeroPadding1D, Cropping1D and UpSampling1D: the layer table's entries
// (KerasLayerKind.swift) and their builders, which read a call's config and refuse what they lack.

extension KerasLayerKind {
    static let indexMaps = KerasLayerKind(
        classNames: ["Permute", "ZeroPadding1D", "Cropping1D", "UpSampling1D"],
        build: { a, inputs, _ in
            let source = try LayerRegistry.single(a, inputs)
            let shape = source.output.shape
            func pair(_ key: String, default value: Int) throws -> (Int, Int) {
                guard let v = a.config[key], !v.isNull else { return (value, value) }
                if let n = v.integer, n >= 0 { return (n, n) }
                guard let list = v.array?.compactMap(\.integer), list.count == 2, list.allSatisfy({ $0 >= 0 }) else {
                    throw a.fail("'\(key)' = \(v) is not supported (a number ≥ 0 or a pair of them)")
                }
                return (list[0], list[1])
            }
            if a.node.className == "Permute" {
                guard let dims = a.config["dims"]?.array?.compactMap(\.integer),
                    dims.sorted() == Array(1...max(shape.count, 1)), dims.count == shape.count
                else {
                    throw a.fail(
                        "'dims' must order the sample's axes 1…\(shape.count), got \(a.config["dims"] ?? .null)")
                }
                let (outShape, map) = IndexMap.permutation(shape, order: dims.map { $0 - 1 })
                return IndexMap(name: a.node.id, input: source, shape: outShape, map: map)
            }
            guard shape.count == 2 else {
                throw a.fail("needs [batch, steps, features], got \(LayerRegistry.shapeText(source))")
            }
            if let format = a.config["data_format"]?.string, format != "channels_last" {
                throw a.fail("'data_format' = \(format) is not supported (channels_last)")
            }
            let t = shape[0]
            let built: (shape: [Int], map: [Int32])
            switch a.node.className {
            case "ZeroPadding1D":
                let (before, after) = try pair("padding", default: 1)
                built = IndexMap.steps(shape, outSteps: t + before + after) { s in
                    s >= before && s < before + t ? s - before : nil
                }
            case "Cropping1D":
                let (first, last) = try pair("cropping", default: 1)
                guard first + last < t else {
                    throw a.fail("cropping (\(first), \(last)) leaves no step of the \(t) the data has")
                }
                built = IndexMap.steps(shape, outSteps: t - first - last) { s in s + first }
            default:  // UpSampling1D
                let size = try a.int("size")
                built = IndexMap.steps(shape, outSteps: t * size) { s in s / size }
            }
            return IndexMap(name: a.node.id, input: source, shape: built.shape, map: built.map)
        })
}
