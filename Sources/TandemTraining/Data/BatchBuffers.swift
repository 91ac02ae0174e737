// The per-batch buffers a step's losses read (targets, effective weights per element, labelled and
// masked flags), sized once and filled from a Dataset's rows; and where a head's Keras mask comes from.

import TandemCore

/// Per-batch buffers for targets and effective sample weights, sized once.
package final class BatchBuffers {
    package let targets: [UnsafeMutablePointer<Float>]
    package let weights: [UnsafeMutablePointer<Float>]
    /// Per head with an element mask (Head.elementMask), per element: masked out.
    package let masked: [UnsafeMutablePointer<Bool>?]
    /// Per head and row: false when the target is NaN (no label; the target is zeroed, weight 0).
    public let labelled: [UnsafeMutablePointer<Bool>]
    package private(set) var rows = 0

    package init(model: Model, heads: [Head]) {
        targets = heads.map { head in
            let units = head.targetWidth(of: model.output(named: head.output)!)
            let p = UnsafeMutablePointer<Float>.allocate(capacity: model.maxBatch * units)
            p.initialize(repeating: 0, count: model.maxBatch * units)
            return p
        }
        weights = heads.map { head in
            let n = model.maxBatch * head.elements(of: model.output(named: head.output)!).cells
            let p = UnsafeMutablePointer<Float>.allocate(capacity: n)
            p.initialize(repeating: 1, count: n)
            return p
        }
        masked = heads.map { head in
            guard head.elementMask != nil else { return nil }
            let n = model.maxBatch * head.elements(of: model.output(named: head.output)!).cells
            let p = UnsafeMutablePointer<Bool>.allocate(capacity: n)
            p.initialize(repeating: false, count: n)
            return p
        }
        labelled = heads.map { _ in
            let p = UnsafeMutablePointer<Bool>.allocate(capacity: model.maxBatch)
            p.initialize(repeating: true, count: model.maxBatch)
            return p
        }
    }

    deinit {
        for buffer in targets + weights { buffer.deallocate() }
        for flags in labelled { flags.deallocate() }
        for flags in masked { flags?.deallocate() }
    }

    /// Copies samples `indices` into the model's input buffers and these buffers,
    /// applying class weights. Values were validated beforehand.
    /// `labels` (Dataset.labels over the global batch) gives each head's factor for the
    /// weight of a labelled row; rows without a label, or of the ignored class, weigh 0.
    package func load(
        _ indices: UnsafeBufferPointer<Int32>, from data: Dataset, model: Model,
        heads: [Head], withTargets: Bool = true, labels: Labels? = nil
    ) {
        rows = indices.count
        for (input, array) in zip(model.inputs, data.inputs) {
            let w = input.width
            for (r, sample) in indices.enumerated() {
                if let tokens = input.tokens {
                    _ = array.readTokens(row: Int(sample), limit: Int(Int32.max), into: tokens + r * w)
                } else {
                    array.readFloats(row: Int(sample), into: input.output.values + r * w)
                }
            }
        }
        guard withTargets else { return }
        for (h, head) in heads.enumerated() {
            let units = head.targetWidth(of: model.output(named: head.output)!)
            let t = targets[h]
            let w = weights[h]
            let present = labelled[h]
            let e = head.elements(of: model.output(named: head.output)!)
            for (r, sample) in indices.enumerated() {
                data.targets[h].readFloats(row: Int(sample), into: t + r * units)
                if let sw = data.sampleWeights[h] {
                    readElementWeights(sw, row: Int(sample), cells: e.cells, into: w + r * e.cells)
                } else {
                    (w + r * e.cells).update(repeating: 1, count: e.cells)
                }
                present[r] = !t[r * units].isNaN
                // A finite stand-in target keeps the (zero-weighted) loss terms finite.
                if !present[r] { (t + r * units).update(repeating: 0, count: units) }
            }
            head.applyClassWeights(targets: t, columns: e.targetColumns, rows: rows * e.cells, weights: w)
            if let flags = masked[h], let source = data.maskSources[h] {
                for (r, sample) in indices.enumerated() { source.read(row: Int(sample), into: flags + r * e.cells) }
                for k in 0..<(rows * e.cells) where flags[k] { w[k] = 0 }
            }
            let scale = Float(labels.map { $0.scales[h] } ?? 1)
            let ignored = head.options.ignoreClass.map(Float.init)
            for k in 0..<(rows * e.cells) {
                w[k] = !present[k / e.cells] || t[k * e.targetColumns] == ignored ? 0 : w[k] * scale
            }
        }
    }
}

/// Where a head's Keras mask comes from: its model input's rows, one mask flag per time step.
final class ElementMaskSource {
    let mask: Head.ElementMask
    let array: any SampleArray
    let steps: Int
    /// One row of the input (read on the loading thread only).
    private let values: UnsafeMutablePointer<Float>

    init(mask: Head.ElementMask, array: any SampleArray, steps: Int) {
        self.mask = mask
        self.array = array
        self.steps = steps
        values = .allocate(capacity: array.rowWidth)
    }

    deinit { values.deallocate() }

    /// Row `row`'s flags: true where the step is masked (a token id 0; features all Masking's value).
    func read(row: Int, into masked: UnsafeMutablePointer<Bool>) {
        let width = array.rowWidth
        array.readFloats(row: row, into: values)
        let features = width / steps
        for t in 0..<steps {
            switch mask {
            case .tokens: masked[t] = values[t] == 0
            case .features(_, let value):
                masked[t] = (0..<features).allSatisfy { values[t * features + $0] == value }
            }
        }
    }
}
