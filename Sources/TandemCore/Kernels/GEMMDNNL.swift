// Matrix products through oneDNN's sgemm (Sources/CDNNL/matmul.c), and which library runs each product.
//
// OpenBLAS picks its kernels once, from a table of CPU models or from OPENBLAS_CORETYPE; oneDNN picks them
// from the instruction sets the CPU reports when it runs. Where OpenBLAS runs narrower kernels than the CPU
// has (a site that sets OPENBLAS_CORETYPE=Haswell on an AVX-512 machine, or a CPU the release does not
// know), oneDNN takes every product but the narrowest; where OpenBLAS runs the CPU's widest kernels, only the
// shape class oneDNN measured faster on goes to it. `tandem bench --gemm` measures both at a model's shapes.
//
// Determinism: the choice is a function of the shape and of the process's start-up (the CPU, OpenBLAS's
// kernels, TANDEM_GEMM), so within a process a shape always runs the same kernel with the same blocking
// (one thread per rank; oneDNN's sgemm, like OpenBLAS's, splits no sum on one thread), and reproducible
// mode's micro-batches have the same shapes at any rank count.

import CDNNL
import Foundation

/// `gemm` through oneDNN's sgemm (m, n, k > 0).
@inline(__always)
package func gemmOneDNN(
    _ transA: Transpose, _ transB: Transpose,
    m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    let status = tandem_dnnl_sgemm(
        transA == .none ? 0 : 1, transB == .none ? 0 : 1, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    // Only invalid arguments fail (the shapes are checked by the caller's construction): a bug, not an input.
    precondition(status == 0, "oneDNN sgemm failed (status \(status)) at m \(m) n \(n) k \(k)")
}

/// The library that runs a matrix product.
public enum GEMMLibrary: String, Sendable, CaseIterable {
    case openBLAS = "OpenBLAS"
    case oneDNN = "oneDNN"
}

/// Which library runs each product, decided once per process.
public enum GEMMKernels {
    /// How products are assigned: TANDEM_GEMM=openblas or onednn runs every product on one library (for
    /// measuring one against the other); unset or `auto`, by shape.
    public enum Policy: String, Sendable {
        case auto, openblas, onednn
    }

    package static let policy: Policy = Policy(rawValue: variable.lowercased()) ?? .auto
    private static var variable: String { ProcessInfo.processInfo.environment["TANDEM_GEMM"] ?? "auto" }

    /// A TANDEM_GEMM that names no policy, refused at start-up (a typo must not measure the wrong library).
    public static func checkEnvironment() throws {
        guard Policy(rawValue: variable.lowercased()) != nil else {
            throw TandemError.usage("TANDEM_GEMM=\(variable): use auto, openblas or onednn")
        }
    }

    /// Whether OpenBLAS runs the widest kernels this CPU has (its AVX-512 families on an AVX-512 CPU,
    /// Haswell's or wider on an AVX2 one).
    package static let openBLASIsNative: Bool = {
        let core = BLASKernels.coreName
        switch BLASKernels.coreTypeForCPU {
        case "SkylakeX": return avx512Cores.contains(core)
        case "Haswell": return core == "Haswell" || core == "Zen" || avx512Cores.contains(core)
        default: return true  // a CPU without AVX2: nothing wider to run
        }
    }()
    static let avx512Cores: Set<String> = ["SkylakeX", "Cooperlake", "SapphireRapids"]

    /// The library for one product of this shape.
    @inline(__always)
    package static func library(m: Int, n: Int, k: Int) -> GEMMLibrary {
        switch policy {
        case .openblas: return .openBLAS
        case .onednn: return .oneDNN
        case .auto: return byShape(m: m, n: n, k: k, openBLASIsNative: openBLASIsNative)
        }
    }

    /// `auto`'s rule. Measured with `tandem bench --gemm` on every bench family at batch 32 and 256 (AMD EPYC
    /// Zen 4, one thread; OpenBLAS 0.3.21's Cooperlake kernels against oneDNN 2.6.3's avx512_core sgemm): oneDNN
    /// is 1.1–1.45× faster on the large products (weight gradients over a whole sequence, m·n·k ≥ 2²⁰) and
    /// 0.4–0.9× on the small per-step ones and on products under 8 columns. The rule is within 1% of the
    /// faster library per shape in every family, and takes 10–15% off the products' time of all-OpenBLAS.
    /// When OpenBLAS runs narrower kernels than the CPU has, oneDNN takes everything but the narrow products.
    @inline(__always)
    package static func byShape(m: Int, n: Int, k: Int, openBLASIsNative: Bool) -> GEMMLibrary {
        if n < 8 { return .openBLAS }
        guard openBLASIsNative else { return .oneDNN }
        return m * n * k < 1 << 20 ? .openBLAS : .oneDNN
    }

    /// "OpenBLAS 0.3.21 (Cooperlake kernels) for every product", or which products go where.
    public static var description: String {
        let blas = BLASKernels.description
        switch policy {
        case .openblas: return "\(blas) for every product (TANDEM_GEMM=openblas)"
        case .onednn: return "\(ConvolutionKernels.oneDNNVersion) sgemm for every product (TANDEM_GEMM=onednn)"
        case .auto:
            return openBLASIsNative
                ? "\(ConvolutionKernels.oneDNNVersion) sgemm for products of m·n·k ≥ 2²⁰ and 8 columns or more, "
                    + "\(blas) for the rest"
                : "\(ConvolutionKernels.oneDNNVersion) sgemm (\(BLASKernels.coreName) is narrower than this CPU), "
                    + "\(blas) for products under 8 columns"
        }
    }
}

/// One product's shape, as `gemm` is called.
public struct GEMMShape: Hashable, Sendable, Comparable {
    public let transA: Bool, transB: Bool, m: Int, n: Int, k: Int
    package init(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int) {
        (self.transA, self.transB, self.m, self.n, self.k) = (transA == .transposed, transB == .transposed, m, n, k)
    }
    public static func < (a: GEMMShape, b: GEMMShape) -> Bool {
        (a.m, a.n, a.k, a.transA ? 1 : 0, a.transB ? 1 : 0) < (b.m, b.n, b.k, b.transA ? 1 : 0, b.transB ? 1 : 0)
    }
    /// "256×512×128 NT" (m×n×k, A then B transposed or not).
    public var text: String { "\(m)×\(n)×\(k) \(transA ? "T" : "N")\(transB ? "T" : "N")" }
}

/// The shapes `gemm` is called with while a log is current, and how often (for `tandem bench --gemm`).
public final class GEMMShapeLog {
    /// Set by the one thread that measures; nil otherwise (one load and a compare per product).
    nonisolated(unsafe) package static var current: GEMMShapeLog?
    public private(set) var counts: [GEMMShape: Int] = [:]
    public init() {}
    func add(_ shape: GEMMShape) { counts[shape, default: 0] += 1 }
}

/// GFLOP/s of one library at one shape (median of `rounds` rounds of about `seconds`/`rounds` each),
/// accumulating into C as the backward passes do; also the largest difference from OpenBLAS's result.
public func measureGEMM(
    _ shape: GEMMShape, library: GEMMLibrary, seconds: Double = 0.2, rounds: Int = 5
) -> (gflops: Double, largestDifference: Float) {
    let (m, n, k) = (shape.m, shape.n, shape.k)
    let a = UnsafeMutablePointer<Float>.allocate(capacity: m * k)
    let b = UnsafeMutablePointer<Float>.allocate(capacity: k * n)
    let c = UnsafeMutablePointer<Float>.allocate(capacity: m * n)
    let check = UnsafeMutablePointer<Float>.allocate(capacity: m * n)
    defer { for p in [a, b, c, check] { p.deallocate() } }
    var rng = SeededGenerator(seed: 7)
    for i in 0..<(m * k) { a[i] = Float(rng.uniform(-1, 1)) }
    for i in 0..<(k * n) { b[i] = Float(rng.uniform(-1, 1)) }
    let ta: Transpose = shape.transA ? .transposed : .none
    let tb: Transpose = shape.transB ? .transposed : .none
    let (lda, ldb) = (shape.transA ? m : k, shape.transB ? k : n)
    func run(_ lib: GEMMLibrary, into out: UnsafeMutablePointer<Float>) {
        switch lib {
        case .openBLAS: gemmOpenBLAS(ta, tb, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: 1, c: out, ldc: n)
        case .oneDNN: gemmOneDNN(ta, tb, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: 1, c: out, ldc: n)
        }
    }
    check.update(repeating: 0, count: m * n)
    c.update(repeating: 0, count: m * n)
    run(.openBLAS, into: check)
    run(library, into: c)
    var worst: Float = 0
    for i in 0..<(m * n) { worst = max(worst, abs(c[i] - check[i])) }
    let flops = 2 * Double(m * n * k)
    // Calls per round from one timed call, so each round lasts about seconds / rounds.
    var t = monotonicSeconds()
    run(library, into: c)
    let once = max(monotonicSeconds() - t, 1e-7)
    let calls = max(1, Int(seconds / Double(rounds) / once))
    var rates: [Double] = []
    for _ in 0..<rounds {
        t = monotonicSeconds()
        for _ in 0..<calls { run(library, into: c) }
        rates.append(flops * Double(calls) / (monotonicSeconds() - t) / 1e9)
    }
    return (rates.sorted()[rounds / 2], worst)
}
