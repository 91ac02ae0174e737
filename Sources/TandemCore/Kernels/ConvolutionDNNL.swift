// Convolutions through oneDNN (Sources/CDNNL): Conv2D's fast path, beside its im2col + GEMM plain
// path (Layers/Conv2D.swift), which stays the tests' oracle. oneDNN picks its kernels at run time
// from the CPU's instruction sets (AVX-512, AVX2, …), not from a table of CPU models. One primitive
// set per batch size; with one thread a primitive is deterministic for its shape, which is what
// reproducible mode's canonical micro-batches need.
import CDNNL
import Foundation

/// Which kernels Conv2D runs.
package enum ConvolutionKernels: String, Sendable {
    /// oneDNN's direct convolutions (the default).
    case oneDNN = "onednn"
    /// im2col + the GEMM layer: the plain path.
    case im2col

    /// What new layers use: oneDNN unless TANDEM_CONVOLUTION=im2col (to measure one against the other).
    package static let preferred: ConvolutionKernels = {
        let chosen = getenv("TANDEM_CONVOLUTION").map { String(cString: $0) }
        return chosen.flatMap(ConvolutionKernels.init(rawValue:)) ?? .oneDNN
    }()

    /// "oneDNN 2.6.3 (avx512_core)", for the start-up report and `tandem bench`.
    package static var oneDNNVersion: String {
        var text = [CChar](repeating: 0, count: 96)
        tandem_dnnl_version(&text, text.count)
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Threads each oneDNN primitive may use (1 under MPI, as BLAS).
public func setConvolutionThreads(_ count: Int) { tandem_dnnl_set_threads(Int32(count)) }

/// oneDNN's forward, backward-data and backward-weights convolution for one shape.
package final class DNNLConvolution {
    private let handle: OpaquePointer

    /// nil when oneDNN has no implementation for the shape (the layer then runs its plain path).
    package init?(geometry g: WindowGeometry, batch: Int, channels: Int, filters: Int, groups: Int) {
        var shape = tandem_conv_shape(
            batch: Int32(batch), height: Int32(g.imageHeight), width: Int32(g.imageWidth),
            channels: Int32(channels), out_height: Int32(g.gridHeight), out_width: Int32(g.gridWidth),
            filters: Int32(filters), groups: Int32(groups), kernel_height: Int32(g.kernelHeight),
            kernel_width: Int32(g.kernelWidth), stride_y: Int32(g.strideY), stride_x: Int32(g.strideX),
            dilation_y: Int32(g.dilationY), dilation_x: Int32(g.dilationX), top: Int32(g.top), left: Int32(g.left))
        var error = [CChar](repeating: 0, count: 256)
        guard let h = tandem_dnnl_conv_create(&shape, &error, error.count) else { return nil }
        handle = h
    }

    deinit { tandem_dnnl_conv_destroy(handle) }

    /// z = x ⊛ kernel, overwritten.
    package func forward(_ x: UnsafePointer<Float>, kernel: UnsafePointer<Float>, into z: UnsafeMutablePointer<Float>) {
        check(tandem_dnnl_conv_forward(handle, x, kernel, z), "forward")
    }

    /// dx += ∂z/∂x · dz, or dx = it when `overwriting` (the first write of dx in a backward pass).
    package func backwardData(
        _ dz: UnsafePointer<Float>, kernel: UnsafePointer<Float>, addingTo dx: UnsafeMutablePointer<Float>,
        overwriting: Bool = false
    ) {
        check(tandem_dnnl_conv_backward_data(handle, dz, kernel, dx, overwriting ? 0 : 1), "backward data")
    }

    /// dkernel += ∂z/∂kernel · dz.
    package func backwardWeights(
        _ x: UnsafePointer<Float>, _ dz: UnsafePointer<Float>, addingTo dkernel: UnsafeMutablePointer<Float>
    ) {
        check(tandem_dnnl_conv_backward_weights(handle, x, dz, dkernel), "backward weights")
    }

    /// oneDNN's implementation names: forward, backward data, backward weights.
    package var implementations: [String] {
        (0..<3).map { String(cString: tandem_dnnl_conv_implementation(handle, Int32($0))) }
    }

    private func check(_ status: Int32, _ what: String) {
        // A primitive that was created runs; a failure here is a bug, not bad input.
        precondition(status == 0, "oneDNN convolution \(what) failed with status \(status)")
    }
}

/// A layer's oneDNN primitives, one set per batch size, made when first needed (binding the workspace
/// makes the bound batch's). Empty on the plain path.
package final class ConvolutionPrimitives {
    package let kernels: ConvolutionKernels
    private let shape: (geometry: WindowGeometry, channels: Int, filters: Int, groups: Int)
    private let layer: String
    private var made: [Int: DNNLConvolution] = [:]

    package init(
        _ kernels: ConvolutionKernels, layer: String, geometry: WindowGeometry, channels: Int, filters: Int,
        groups: Int
    ) {
        self.kernels = kernels
        self.layer = layer
        shape = (geometry, channels, filters, groups)
    }

    /// The primitives for `batch` samples; nil on the plain path.
    package func callAsFunction(batch: Int) -> DNNLConvolution? {
        guard kernels == .oneDNN else { return nil }
        if let p = made[batch] { return p }
        guard
            let p = DNNLConvolution(
                geometry: shape.geometry, batch: batch, channels: shape.channels, filters: shape.filters,
                groups: shape.groups)
        else {
            // The plain path's buffers were not bound; TANDEM_CONVOLUTION=im2col runs it everywhere.
            preconditionFailure("\(layer): oneDNN made no convolution for this shape (TANDEM_CONVOLUTION=im2col)")
        }
        made[batch] = p
        return p
    }
}

extension Model {
    /// The kernels this model's convolutions (Conv2D, depthwise) run, for the start-up report and `tandem bench`:
    /// "oneDNN 2.6.3 (avx512_core): brgconv:avx512_core forward, jit:avx512_core backward data, …"; nil
    /// without one.
    public var convolutionKernels: String? {
        let convolutions = layers.compactMap { ($0 as? Conv2D)?.primitives ?? ($0 as? DepthwiseConv)?.primitives }
        guard !convolutions.isEmpty else { return nil }
        guard convolutions.contains(where: { $0.kernels == .oneDNN }) else { return "im2col + GEMM" }
        var names: [[String]] = [[], [], []]
        for primitives in convolutions {
            guard let p = primitives(batch: maxBatch) else { continue }
            for (k, name) in p.implementations.enumerated() where !names[k].contains(name) { names[k].append(name) }
        }
        let parts = zip(names, ["forward", "backward data", "backward weights"]).map {
            "\($0.0.joined(separator: "/")) \($0.1)"
        }
        return "\(ConvolutionKernels.oneDNNVersion): " + parts.joined(separator: ", ")
    }
}

/// Runs one small convolution forward and backward, so that oneDNN's engine and code are resident before
/// `tandem bench` measures the fixed runtime (as the sgemm peak does for BLAS).
public func warmConvolutions() {
    let g = WindowGeometry.forward(image: (8, 8), kernel: (3, 3), stride: (1, 1), same: true)
    guard let conv = DNNLConvolution(geometry: g, batch: 2, channels: 16, filters: 16, groups: 1) else { return }
    let x = [Float](repeating: 0.5, count: 2 * 64 * 16)
    let w = [Float](repeating: 0.1, count: 9 * 16 * 16)
    var z = x
    var dx = x
    var dw = w
    conv.forward(x, kernel: w, into: &z)
    conv.backwardData(z, kernel: w, addingTo: &dx)
    conv.backwardWeights(x, z, addingTo: &dw)
}
