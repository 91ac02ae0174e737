// The layer contract and the activation buffers that connect layers.
// Every layer is a forward/backward pair over pointers; backward ACCUMULATES
// (+=) into its inputs' gradient buffers and its parameter gradients, so a
// value used by several consumers (the shared trunk) sums every head's pull.

import Foundation

/// One layer output: per-sample width and the value / gradient buffers for
/// up to `maxBatch` samples, laid out [B, width] (sequences as [B, T, D]).
public final class Node: @unchecked Sendable {
    public let width: Int
    public internal(set) var values: UnsafeMutablePointer<Float>!
    public internal(set) var gradients: UnsafeMutablePointer<Float>!
    init(width: Int) { self.width = width }
}

/// Hands out consecutive windows of the model's two activation arenas.
public struct WorkspaceCursor {
    var values: UnsafeMutablePointer<Float>
    var gradients: UnsafeMutablePointer<Float>
    /// A window of `count` floats of the forward arena.
    public mutating func take(_ count: Int) -> UnsafeMutablePointer<Float> {
        defer { values += count }
        return values
    }
    /// A window of the gradient arena, which is zeroed before every backward pass.
    public mutating func takeGradient(_ count: Int) -> UnsafeMutablePointer<Float> {
        defer { gradients += count }
        return gradients
    }
}

/// A layer of the functional graph.
public protocol Layer: AnyObject {
    var name: String { get }
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
    func forward(batch: Int)
    func backward(batch: Int)
}

extension Layer {
    public var parameterSpecs: [ParameterSpec] { [] }
    public func bind(parameters: ParameterStore) {}
}
