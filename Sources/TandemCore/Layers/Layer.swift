// The layer contract and the activation buffers that connect layers.
// Every layer is a forward/backward pair over pointers; backward ACCUMULATES
// (+=) into its inputs' gradient buffers and its parameter gradients, so a
// value used by several consumers (the shared trunk) sums every head's pull.

import Foundation

/// One layer output: its per-sample shape ([features], or [time, features]
/// for a sequence) and the value / gradient buffers for up to `maxBatch`
/// samples, laid out [B, shape…] row-major.
public final class Node: @unchecked Sendable {
    /// Per-sample shape, without the batch axis.
    public let shape: [Int]
    /// Floats per sample: the product of `shape`.
    package let width: Int
    package internal(set) var values: UnsafeMutablePointer<Float>!
    package internal(set) var gradients: UnsafeMutablePointer<Float>!
    /// Set by `Model.forward` when this gradient holds the last step's values: the first layer to
    /// write it in backward writes it outright (`claimGradient`), or the model zeroes it just
    /// before a layer that only adds to it. Not set outside a model (a layer alone always adds).
    package var gradientPending = false
    init(shape: [Int]) {
        self.shape = shape
        width = shape.reduce(1, *)
    }
    convenience init(width: Int) { self.init(shape: [width]) }
    /// The last axis (features per time step for a sequence).
    package var features: Int { shape.last ?? 1 }
    /// For a layer about to write this gradient: true when the write is the first of the backward
    /// pass, so it writes `=` rather than `+=` (the buffer holds stale values, not zeros); the
    /// gradient is no longer pending after it.
    package func claimGradient() -> Bool {
        defer { gradientPending = false }
        return gradientPending
    }
}

/// A layer whose backward claims its inputs' gradients (`Node.claimGradient`) before it writes them,
/// writing a pending one outright: the model then does not zero them first — one pass over
/// the buffer fewer, and no read of it.
package protocol GradientOverwriting: Layer {}

/// A layer whose backward can leave its weight gradients for later: between a normalisation's start of
/// its global sums and its wait for them, the model runs the weight gradients it left (Model.backward),
/// so the ranks' sums travel while each core computes. Nothing read by the later part may change between.
package protocol DeferringWeightGradients: Layer {
    /// Backward but for the weight gradients; false when it ran whole (nothing left for later).
    func backwardLeavingWeights(batch: Int) -> Bool
    /// The weight gradients the last `backwardLeavingWeights` left.
    func backwardWeights(batch: Int)
}

/// A layer whose backward waits for a collective: `beginBackward` starts it, `finishBackward` waits
/// for it and completes the backward.
package protocol SplitBackward: Layer {
    /// Starts the backward; false when it ran whole (no collective under way, no finish to call).
    func beginBackward(batch: Int) -> Bool
    func finishBackward(batch: Int)
}

/// Hands out consecutive windows of the model's two activation arenas.
public struct WorkspaceCursor {
    var values: UnsafeMutablePointer<Float>
    var gradients: UnsafeMutablePointer<Float>
    /// A window of `count` floats of the forward arena.
    package mutating func take(_ count: Int) -> UnsafeMutablePointer<Float> {
        defer { values += count }
        return values
    }
    /// A window of the gradient arena: zeroed before every backward pass (a layer's output gradient:
    /// before its first writer runs, see Model.forward).
    package mutating func takeGradient(_ count: Int) -> UnsafeMutablePointer<Float> {
        defer { gradients += count }
        gradientWindows[gradients] = count
        return gradients
    }
    /// Every gradient window taken, by start: its float count (Model checks its lazy zeroing against them).
    package var gradientWindows: [UnsafeMutablePointer<Float>: Int] = [:]
    /// Forward-arena floats `takeOutput` takes for `count` outputs.
    package static func outputValues(_ count: Int, activation: Activation) -> Int {
        (activation == .linear ? 1 : 3) * count
    }
    /// The output's windows, and z (before the activation) with its gradient dz: a linear activation's z is
    /// the output and dz the output's gradient (nothing to copy either way), any other gets windows of its own.
    package mutating func takeOutput(
        _ output: Node, _ count: Int, activation: Activation
    ) -> (z: UnsafeMutablePointer<Float>, dz: UnsafeMutablePointer<Float>) {
        output.values = take(count)
        output.gradients = takeGradient(count)
        return activation == .linear ? (output.values, output.gradients) : (take(count), take(count))
    }
}

/// A layer of the functional graph: one CALL of a Keras layer. A Keras layer
/// called twice is two `Layer`s whose parameter specs carry the same names, so
/// they share one set of weights (and both calls' gradients add up in it).
public protocol Layer: AnyObject {
    /// Unique in the graph: the Keras layer's name, or "name@k" for its call k ≥ 1.
    var name: String { get }
    /// The Keras layer whose weights this call uses (its own name when not shared).
    var weightsName: String { get }
    /// Layers whose outputs this layer reads.
    var inputs: [Layer] { get }
    var output: Node { get }
    var parameterSpecs: [ParameterSpec] { get }
    /// Resolves parameter offsets once the store exists.
    func bind(parameters: ParameterStore)
    /// Floats needed in the forward and gradient arenas for `batch` samples.
    func workspaceSize(batch: Int) -> (values: Int, gradients: Int)
    /// Takes this layer's buffers (including `output`'s) from the arenas.
    func bind(workspace: inout WorkspaceCursor, batch: Int)
    /// `training` is false for evaluate and predict (dropout and batch
    /// normalisation behave differently then).
    func forward(batch: Int, training: Bool)
    func backward(batch: Int)
    /// Whether the layers reading this one form the gradient of its output (a model
    /// input's is read by no one, so training skips it; see InputLayer).
    var wantsGradient: Bool { get }
    /// Dense-equivalent FLOPs of one sample's forward (matrix products only: the benchmark's
    /// GFLOP/s; element-wise work and lookups count 0).
    var forwardFlopsPerSample: Double { get }
}

extension Layer {
    package var weightsName: String { name }
    public var wantsGradient: Bool { true }
    package var forwardFlopsPerSample: Double { 0 }
    package var parameterSpecs: [ParameterSpec] { [] }
    package func bind(parameters: ParameterStore) {}
}
