// Matrix products: the one place Tandem multiplies matrices. Row-major throughout. Each product runs
// OpenBLAS's cblas_sgemm or oneDNN's sgemm, chosen by its shape (GEMMDNNL.swift); a naive reference kernel
// stays beside them as the tests' oracle. Not a tensor library: pointers and sizes only.

import CBLAS
import CKernels
import Foundation

/// Whether an operand of `gemm` is read transposed.
package enum Transpose: Sendable {
    case none, transposed
    var cblas: CBLAS_TRANSPOSE { self == .none ? CblasNoTrans : CblasTrans }
}

/// C[M,N] = alpha · op(A)[M,K] · op(B)[K,N] + beta · C, row-major.
///
/// `lda`, `ldb`, `ldc` are row strides of the stored matrices (the stored A is
/// [M,K] when not transposed, [K,M] when transposed). beta = 1 accumulates,
/// which every backward pass relies on.
@inline(__always)
package func gemm(
    _ transA: Transpose, _ transB: Transpose,
    m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    if m == 0 || n == 0 { return }
    if k == 0 {  // BLAS would leave C alone only when beta == 1; make it explicit.
        if beta != 1 {
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] *= beta } }
        }
        return
    }
    if let log = GEMMShapeLog.current { log.add(GEMMShape(transA, transB, m: m, n: n, k: k)) }
    switch GEMMKernels.library(m: m, n: n, k: k) {
    case .openBLAS:
        gemmOpenBLAS(
            transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    case .oneDNN:
        gemmOneDNN(
            transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    }
}

/// `gemm` through OpenBLAS's cblas_sgemm (m, n, k > 0): the reference library the tests compare the others with.
@inline(__always)
package func gemmOpenBLAS(
    _ transA: Transpose, _ transB: Transpose,
    m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    cblas_sgemm(
        CblasRowMajor, transA.cblas, transB.cblas,
        Int32(m), Int32(n), Int32(k), alpha,
        a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// The same contract as `gemm`, computed by three loops in Double. Slow; the oracle.
package func gemmReference(
    _ transA: Transpose, _ transB: Transpose,
    m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    for i in 0..<m {
        for j in 0..<n {
            var sum = 0.0
            for p in 0..<k {
                let av = transA == .none ? a[i * lda + p] : a[p * lda + i]
                let bv = transB == .none ? b[p * ldb + j] : b[j * ldb + p]
                sum += Double(av) * Double(bv)
            }
            let old = beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j])
            c[i * ldc + j] = Float(Double(alpha) * sum + old)
        }
    }
}

/// Limits OpenBLAS to `count` threads. Under MPI every rank uses one.
/// Σ x_i·y_i of two float vectors, accumulated in Double (BLAS dsdot).
package func dotInDouble(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count n: Int) -> Double {
    n == 0 ? 0 : cblas_dsdot(Int32(n), x, 1, y, 1)
}

/// y += α·x (BLAS saxpy).
package func addScaled(_ alpha: Float, _ x: UnsafePointer<Float>, to y: UnsafeMutablePointer<Float>, count n: Int) {
    if n > 0 && alpha != 0 { cblas_saxpy(Int32(n), alpha, x, 1, y, 1) }
}

public func setBLASThreads(_ count: Int) {
    openblas_set_num_threads(Int32(count))
}

/// The number of threads OpenBLAS uses now.
public func blasThreads() -> Int { Int(openblas_get_num_threads()) }

// MARK: Which OpenBLAS kernels run
//
// OpenBLAS built with DYNAMIC_ARCH picks its kernels by CPU model when the
// library loads. A release that does not know the model falls back to
// "Prescott" (SSE3), about 5× slower than its AVX-512 kernels on the same CPU
// (measured: 17–31 vs 135–150 GFLOP/s for 512³ on a Sapphire Rapids Xeon with
// OpenBLAS 0.3.21). OPENBLAS_CORETYPE overrides the choice, but only before
// the library loads — so the command line re-executes itself once with it set.

/// The BLAS library and the kernels it runs.
public enum BLASKernels {
    /// OpenBLAS's kernel family now in use ("SkylakeX", "Haswell", "Prescott", …).
    public static var coreName: String { String(cString: openblas_get_corename()) }

    /// OpenBLAS's build description ("OpenBLAS 0.3.21 DYNAMIC_ARCH … Prescott MAX_THREADS=64").
    public static var configuration: String { String(cString: openblas_get_config()) }

    /// Kernel families without AVX2 or FMA: what OpenBLAS falls back to for a CPU it does not know.
    package static let genericCores: Set<String> = [
        "Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Sandybridge", "Atom", "Katmai",
        "Coppermine", "Northwood", "Banias", "Athlon", "Opteron", "Opteron_SSE3", "Barcelona", "Bobcat",
    ]

    /// The OPENBLAS_CORETYPE to start with instead, when OpenBLAS chose a generic
    /// kernel family on a CPU with AVX2/FMA or AVX-512 and nobody set
    /// OPENBLAS_CORETYPE (an explicit setting is always respected); else nil.
    public static func betterCoreType(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        guard environment["OPENBLAS_CORETYPE"] == nil, genericCores.contains(coreName) else { return nil }
        return coreTypeForCPU
    }

    /// The widest kernel family this CPU runs: "SkylakeX" (AVX-512), "Haswell" (AVX2 + FMA) or nil.
    package static var coreTypeForCPU: String? { tandem_blas_core_for_cpu().map { String(cString: $0) } }

    /// The variable that tells a re-executed process which kernels OpenBLAS had picked by itself.
    public static let fallbackVariable = "TANDEM_OPENBLAS_FALLBACK"

    /// "OpenBLAS 0.3.21, SkylakeX kernels (set by Tandem: this OpenBLAS picked Prescott on this CPU)".
    public static var description: String {
        let version = configuration.split(separator: " ").prefix(2).joined(separator: " ")
        var text = "\(version), \(coreName) kernels"
        if let fallback = ProcessInfo.processInfo.environment[fallbackVariable] {
            text += " (set by Tandem: this OpenBLAS picked \(fallback) on this CPU)"
        }
        return text
    }
}
