// Keras's Masking layer and the two operations its mask is saved as (keras/src/layers/core/masking.py):
// Masking(v) gives x·any(x ≠ v, axis −1) on [B, T, F], zeroing the steps whose every feature is v; Keras 3
// records the mask it passes on as `ops.not_equal(x, v)` then `ops.any(…, axis=−1)`, handed to the layers
// that read a mask (the recurrent layers, GlobalAveragePooling1D) as their `mask` argument. The mask is
// 0/1 floats [B, T], as SequenceMask's; neither operation has a gradient (a comparison's is zero).

import Foundation

/// A layer whose output is a [B, T] mask of 0/1 that the mask readers take (SequenceMask, AnyMask).
package protocol MaskProducer: Layer {}
extension SequenceMask: MaskProducer {}

package final class MaskingLayer: Layer {
    public let name: String
    package let inputs: [Layer]
    public let output: Node
    package let maskValue: Float
    /// Per step, whether any feature differs from the mask value (set by forward, read by backward).
    private var keep: UnsafeMutablePointer<Float>!

    package init(name: String, maskValue: Float, input: Layer) {
        precondition(input.output.shape.count == 2)
        self.name = name
        self.maskValue = maskValue
        inputs = [input]
        output = Node(shape: input.output.shape)
    }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (batch * output.width + batch * output.shape[0], batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
        keep = workspace.take(batch * output.shape[0])
    }

    public func forward(batch: Int, training: Bool) {
        let x = inputs[0].output.values!
        let y = output.values!
        let F = output.features
        for s in 0..<(batch * output.shape[0]) {
            let row = x + s * F
            var any = false
            for f in 0..<F where row[f] != maskValue {
                any = true
                break
            }
            keep[s] = any ? 1 : 0
            for f in 0..<F { y[s * F + f] = row[f] * keep[s] }
        }
    }

    package func backward(batch: Int) {
        guard inputs[0].wantsGradient else { return }
        let dx = inputs[0].output.gradients!
        let dy = output.gradients!
        let F = output.features
        for s in 0..<(batch * output.shape[0]) where keep[s] != 0 {
            for f in 0..<F { dx[s * F + f] += dy[s * F + f] }
        }
    }
}

/// `ops.not_equal(x, v)` on a float tensor: 1 where x ≠ v, else 0. No gradient.
package final class ValueMask: Layer {
    public let name: String
    package let inputs: [Layer]
    public let output: Node
    package let value: Float

    package init(name: String, value: Float, input: Layer) {
        self.name = name
        self.value = value
        inputs = [input]
        output = Node(shape: input.output.shape)
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
        for i in 0..<(batch * output.width) { output.values[i] = x[i] != value ? 1 : 0 }
    }

    package func backward(batch: Int) {}
}

/// `ops.any(m, axis=−1)` on a 0/1 tensor [B, T, F]: the [B, T] mask. No gradient.
/// The OR of two masks (1 kept, 0 masked), step by step.
package final class MaskOr: MaskProducer {
    public let name: String
    package let inputs: [Layer]
    public let output: Node

    package init(name: String, inputs: [Layer]) {
        self.name = name
        self.inputs = inputs
        output = Node(shape: inputs[0].output.shape)
    }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (batch * output.width, batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    public func forward(batch: Int, training: Bool) {
        let (a, b) = (inputs[0].output.values!, inputs[1].output.values!)
        for i in 0..<(batch * output.width) { output.values[i] = a[i] != 0 || b[i] != 0 ? 1 : 0 }
    }

    package func backward(batch: Int) {}
}

package final class AnyMask: MaskProducer {
    public let name: String
    package let inputs: [Layer]
    public let output: Node

    package init(name: String, input: Layer) {
        precondition(input.output.shape.count == 2)
        self.name = name
        inputs = [input]
        output = Node(shape: [input.output.shape[0]])
    }

    package func workspaceSize(batch: Int) -> (values: Int, gradients: Int) {
        (batch * output.width, batch * output.width)
    }

    package func bind(workspace: inout WorkspaceCursor, batch: Int) {
        output.values = workspace.take(batch * output.width)
        output.gradients = workspace.takeGradient(batch * output.width)
    }

    public func forward(batch: Int, training: Bool) {
        let m = inputs[0].output.values!
        let F = inputs[0].output.features
        for s in 0..<(batch * output.width) {
            var any: Float = 0
            for f in 0..<F where m[s * F + f] != 0 {
                any = 1
                break
            }
            output.values[s] = any
        }
    }

    package func backward(batch: Int) {}
}

// MARK: - Keras Masking, and the Any operation of its saved mask: the layer table's entries
// (KerasLayerKind.swift) and their builders.

extension KerasLayerKind {
    static let masking = KerasLayerKind(
        classNames: ["Masking"],
        build: { a, inputs, _ in
            let source = try LayerRegistry.single(a, inputs)
            guard source.output.shape.count == 2 else {
                throw a.fail(
                    "needs a sequence [batch, steps, features] (got [batch, \(source.output.shape.map(String.init).joined(separator: ", "))]; on a [batch, features] input Keras's mask would drop whole samples from the loss, which Tandem does not do)"
                )
            }
            let value = a.config["mask_value"] ?? .double(0)
            guard let v = value.number, v.isFinite else { throw a.fail("'mask_value' must be a number") }
            return MaskingLayer(name: a.node.id, maskValue: Float(v), input: source)
        })

    /// Keras 3.15's Add, Subtract, … combine their inputs' masks with ops.logical_or (base_merge.py), which
    /// the file saves as a LogicalOr op between two masks.
    static let maskOr = KerasLayerKind(
        classNames: ["LogicalOr"], listed: false,
        build: { a, inputs, _ in
            guard inputs.count == 2, inputs.allSatisfy({ $0 is MaskProducer }),
                inputs[0].output.shape == inputs[1].output.shape
            else {
                throw a.fail("combines two masks of one shape only (what a merge layer saves)")
            }
            return MaskOr(name: a.node.id, inputs: inputs)
        })

    static let anyMask = KerasLayerKind(
        classNames: ["Any"], listed: false,
        build: { a, inputs, _ in
            let source = try LayerRegistry.single(a, inputs)
            guard source is ValueMask, source.output.shape.count == 2 else {
                throw a.fail("reduces the not_equal of a [batch, steps, features] sequence only (Masking's mask)")
            }
            return AnyMask(name: a.node.id, input: source)
        })
}
