// Keras's Softmax layer over axes other than the last alone (keras/src/layers/activations/softmax.py):
// one axis of a sequence [B, T, F] (axis 1: over the steps, per feature) or several adjacent axes
// (axis (1, 2): over every element of a sample), exp(x − max) / Σ exp(x − max) in float32 as XLA's
// softmax. The last axis alone is the Activation path (Merge.swift). Backward ACCUMULATES
// dx = y·(dy − Σ dy·y) over each group.

import Foundation

package final class AxisSoftmax: Layer {
    public let name: String
    package let inputs: [Layer]
    public let output: Node
    /// A sample's elements as [outer, n, inner]: each softmax group is n elements `inner` apart.
    let outer: Int, n: Int, inner: Int

    /// `axes`: adjacent axes of the per-sample shape (0-based, without the batch axis).
    package init(name: String, axes: ClosedRange<Int>, input: Layer) {
        let shape = input.output.shape
        precondition(axes.lowerBound >= 0 && axes.upperBound < shape.count)
        self.name = name
        inputs = [input]
        output = Node(shape: shape)
        outer = shape[..<axes.lowerBound].reduce(1, *)
        n = shape[axes].reduce(1, *)
        inner = shape[(axes.upperBound + 1)...].reduce(1, *)
    }

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
        for o in 0..<(batch * outer) {
            for i in 0..<inner {
                let base = o * n * inner + i
                var top = -Float.infinity
                for k in 0..<n { top = max(top, x[base + k * inner]) }
                var sum: Float = 0
                for k in 0..<n {
                    let e = expf(x[base + k * inner] - top)
                    y[base + k * inner] = e
                    sum += e
                }
                for k in 0..<n { y[base + k * inner] /= sum }
            }
        }
    }

    package func backward(batch: Int) {
        guard inputs[0].wantsGradient else { return }
        let y = output.values!
        let dy = output.gradients!
        let dx = inputs[0].output.gradients!
        for o in 0..<(batch * outer) {
            for i in 0..<inner {
                let base = o * n * inner + i
                var dot: Float = 0
                for k in 0..<n { dot += dy[base + k * inner] * y[base + k * inner] }
                for k in 0..<n { dx[base + k * inner] += y[base + k * inner] * (dy[base + k * inner] - dot) }
            }
        }
    }
}

extension LayerRegistry {
    /// Softmax's `axis` (an int or a list; negative counts from the end; the batch axis refused) as
    /// adjacent axes of the per-sample shape; nil for the last axis alone (the Activation path).
    static func softmaxAxes(_ a: LayerArguments, _ source: Layer) throws -> ClosedRange<Int>? {
        let rank = source.output.shape.count + 1
        let value = a.config["axis"] ?? .int(-1)
        let listed = value.array ?? [value]
        var axes: [Int] = []
        for v in listed {
            guard let k = v.integer, k >= -rank && k < rank else {
                throw a.fail("'axis' = \(value) is not supported (axes of the input, which has \(rank))")
            }
            axes.append(k < 0 ? k + rank : k)
        }
        axes = Array(Set(axes)).sorted()
        guard let first = axes.first, first >= 1, axes.last! - first + 1 == axes.count else {
            throw a.fail(
                "'axis' = \(value) is not supported (non-batch axes, adjacent when several; the batch axis would mix samples)"
            )
        }
        if axes == [rank - 1] { return nil }
        return (first - 1)...(axes.last! - 1)
    }
}
