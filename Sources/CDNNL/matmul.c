// oneDNN's sgemm (cdnnl.h), for the GEMM layer's kernels chosen per shape (Kernels/GEMM.swift): oneDNN
// picks its kernels from the CPU's instruction sets when it runs, where OpenBLAS picks them from a table of
// CPU models (or OPENBLAS_CORETYPE). Row-major, as Tandem's GEMM layer.
#include "cdnnl.h"

#include <oneapi/dnnl/dnnl.h>

extern void omp_set_num_threads(int count);

int tandem_dnnl_sgemm(
    int trans_a, int trans_b, long m, long n, long k, float alpha, const float *a, long lda, const float *b, long ldb,
    float beta, float *c, long ldc) {
    // libgomp's thread count is per calling thread (a thread rank is a thread), and oneDNN splits the work by it.
    omp_set_num_threads(tandem_dnnl_threads());
    return (int)dnnl_sgemm(
        trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
