// See ckernels.h: attention's softmax over one row of scores, and its gradient, vectorised across the
// row. The allowed keys are [lo, hi) with keep[s] ≠ 0 (keep may be NULL); the others get probability 0.
// exp is exp_poly (activations.h), one formula on every ISA build.
#include "ckernels.h"
#pragma clang fp contract(off)
#include "activations.h"

#define SOFTMAX_ROW_BODY                                                                 \
    float top = -3.4028235e38f;                                                          \
    for (int s = lo; s < hi; s++) {                                                      \
        float v = (keep == 0 || keep[s] != 0.0f) ? row[s] : -3.4028235e38f;              \
        top = v > top ? v : top;                                                         \
    }                                                                                    \
    float sum = 0.0f;                                                                    \
    for (int s = 0; s < n; s++) {                                                        \
        int allowed = s >= lo && s < hi && (keep == 0 || keep[s] != 0.0f);              \
        float e = allowed ? exp_poly(row[s] - top) : 0.0f;                               \
        row[s] = e;                                                                      \
        sum += e;                                                                        \
    }                                                                                    \
    for (int s = 0; s < n; s++) row[s] = row[s] / sum;

#define SOFTMAX_BACKWARD_BODY                                                            \
    float dot = 0.0f;                                                                    \
    for (int s = 0; s < n; s++) dot += dp[s] * p[s];                                     \
    for (int s = 0; s < n; s++) dp[s] = p[s] * (dp[s] - dot);

#define ATTENTION_KERNELS(suffix, target)                                                                   \
    target static void softmax_row_##suffix(float *restrict row, int n, int lo, int hi,                     \
                                            const float *restrict keep) { SOFTMAX_ROW_BODY }                \
    target static void softmax_backward_##suffix(const float *restrict p, float *restrict dp, int n) {      \
        SOFTMAX_BACKWARD_BODY                                                                               \
    }

ATTENTION_KERNELS(base, )
ATTENTION_KERNELS(avx2, __attribute__((target("avx2,fma"))))
ATTENTION_KERNELS(avx512, __attribute__((target("avx512f,fma"))))

void tandem_softmax_row(float *row, int n, int lo, int hi, const float *keep) {
    static void (*const table[3])(float *, int, int, int, const float *) = {softmax_row_base, softmax_row_avx2,
                                                                           softmax_row_avx512};
    table[tandem_isa_level()](row, n, lo, hi, keep);
}

void tandem_softmax_row_backward(const float *p, float *dp, int n) {
    static void (*const table[3])(const float *, float *, int) = {softmax_backward_base, softmax_backward_avx2,
                                                                 softmax_backward_avx512};
    table[tandem_isa_level()](p, dp, n);
}
