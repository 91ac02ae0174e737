// Element-wise kernels that Swift does not vectorise by itself (its SIMD
// square root runs lane by lane). Plain C loops over restrict pointers, built
// for the baseline and, chosen at run time, for AVX2 and AVX-512. Floating-
// point contraction is off, so every path gives the same bits.
#ifndef TANDEM_CKERNELS_H
#define TANDEM_CKERNELS_H
#include <stddef.h>
#include <stdint.h>

/// Adam on n elements (Keras 3 rule, SPEC §3):
///   m += (g − m)·b1;  v += (g² − v)·b2;  w −= alpha·m / (√v + eps)
/// with b1 = 1 − β1, b2 = 1 − β2. With clear != 0, g is set to zero.
void tandem_adam(float *w, float *g, float *m, float *v, size_t n,
                 float alpha, float b1, float b2, float eps, int clear);

/// The same update with g = 0 (a deferred row's replay), without reading g.
void tandem_adam_zero_gradient(float *w, float *m, float *v, size_t n,
                               float alpha, float b1, float b2, float eps);

/// Reproducible mode: acc[i] += rint(g[i] · scale) for every non-zero g[i] with
/// |g[i]| ≤ bound, then g[i] = 0. Returns in *largest the largest |g[i]| seen
/// (max with its value on entry); sets flags bit 0 when some |g| > bound (not
/// added), bit 1 when some g is NaN or ±Inf (not added).
void tandem_fixed_accumulate(float *g, long long *acc, size_t n, double scale, double bound,
                             float *largest, int *flags);

/// The name of the instruction set the kernels use on this CPU.
const char *tandem_kernel_isa(void);
#endif
