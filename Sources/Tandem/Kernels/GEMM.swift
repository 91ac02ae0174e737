// Matrix products: the one place Tandem calls cblas_sgemm.
// Row-major throughout. A naive reference kernel stays beside the fast one;
// tests use it as the oracle. Not a tensor library: pointers and sizes only.

import CBLAS

/// Whether an operand of `gemm` is read transposed.
public enum Transpose: Sendable {
    case none, transposed
    var cblas: CBLAS_TRANSPOSE { self == .none ? CblasNoTrans : CblasTrans }
}

/// C[M,N] = alpha · op(A)[M,K] · op(B)[K,N] + beta · C, row-major.
///
/// `lda`, `ldb`, `ldc` are row strides of the stored matrices (the stored A is
/// [M,K] when not transposed, [K,M] when transposed). beta = 1 accumulates,
/// which every backward pass relies on.
@inline(__always)
public func gemm(_ transA: Transpose, _ transB: Transpose,
                 m: Int, n: Int, k: Int, alpha: Float = 1,
                 a: UnsafePointer<Float>, lda: Int,
                 b: UnsafePointer<Float>, ldb: Int,
                 beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if m == 0 || n == 0 { return }
    if k == 0 {  // BLAS would leave C alone only when beta == 1; make it explicit.
        if beta != 1 {
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] *= beta } }
        }
        return
    }
    cblas_sgemm(CblasRowMajor, transA.cblas, transB.cblas,
                Int32(m), Int32(n), Int32(k), alpha,
                a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// The same contract as `gemm`, computed by three loops in Double. Slow; the oracle.
public func gemmReference(_ transA: Transpose, _ transB: Transpose,
                          m: Int, n: Int, k: Int, alpha: Float = 1,
                          a: UnsafePointer<Float>, lda: Int,
                          b: UnsafePointer<Float>, ldb: Int,
                          beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
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
public func setBLASThreads(_ count: Int) {
    openblas_set_num_threads(Int32(count))
}

/// The number of threads OpenBLAS uses now.
public func blasThreads() -> Int { Int(openblas_get_num_threads()) }
