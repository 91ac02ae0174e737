// See ckernels.h: BatchNormalization's four passes over the rows, vectorised
// across channels. Each channel's sums still run over the rows in row order and
// contraction stays off, so every build gives the scalar rule's bits.
#include "ckernels.h"
#pragma clang fp contract(off)

#define BN_SUMS_BODY                                                                \
    for (int c = 0; c < C; c++) { sum[c] = 0; sq[c] = 0; }                          \
    for (size_t r = 0; r < rows; r++) {                                             \
        const float *row = x + r * (size_t)C;                                       \
        for (int c = 0; c < C; c++) { double v = row[c]; sum[c] += v; sq[c] += v * v; } \
    }

// x̂ = (x − μ)·inv is not kept: backward computes it again from x with the same two operations
// (the same bits), which saves a write of every activation in forward and its memory.
#define BN_APPLY_BODY                                                               \
    for (size_t r = 0; r < rows; r++) {                                             \
        const float *xr = x + r * (size_t)C;                                        \
        float *yr = y + r * (size_t)C;                                              \
        if (top > 0.0f)                                                             \
            for (int c = 0; c < C; c++) {                                           \
                float n = (xr[c] - mean[c]) * inv[c], v = n * gamma[c] + beta[c];   \
                v = v > 0.0f ? v : 0.0f;                                            \
                yr[c] = v < top ? v : top;                                          \
            }                                                                       \
        else                                                                        \
            for (int c = 0; c < C; c++) yr[c] = (xr[c] - mean[c]) * inv[c] * gamma[c] + beta[c]; \
    }

// With a ReLU fused after the normalisation (a != NULL), dy is the ReLU's: da where its output
// a passed (0 < a < top, exactly where its input did), else 0 — the ReLU's own backward pass.
// Each loop is written twice (masked, plain) so neither tests `a` per element.
#define BN_MASKED(i) ((a[i] > 0.0f) & (a[i] < top) ? dy[i] : 0.0f)
#define BN_PLAIN(i) dy[i]

#define BN_GRADIENT_SUMS_LOOP(DY)                                                   \
    for (size_t r = 0; r < rows; r++) {                                             \
        const float *xr = x + r * (size_t)C;                                        \
        size_t o = r * (size_t)C;                                                   \
        for (int c = 0; c < C; c++) {                                               \
            float d = DY(o + c), n = (xr[c] - mean[c]) * inv[c];                    \
            sdy[c] += (double)d; sdyx[c] += (double)(d * n);                        \
        }                                                                           \
    }
#define BN_GRADIENT_SUMS_BODY                                                       \
    for (int c = 0; c < C; c++) { sdy[c] = 0; sdyx[c] = 0; }                        \
    if (a) { BN_GRADIENT_SUMS_LOOP(BN_MASKED) } else { BN_GRADIENT_SUMS_LOOP(BN_PLAIN) }

#define BN_BACKWARD_LOOP(DY, OP)                                                    \
    for (size_t r = 0; r < rows; r++) {                                             \
        const float *xr = x + r * (size_t)C;                                        \
        float *to = dx + r * (size_t)C;                                             \
        size_t o = r * (size_t)C;                                                   \
        for (int c = 0; c < C; c++)                                                 \
            to[c] OP scale[c] * (DY(o + c) - mean_dy[c] - (xr[c] - mean[c]) * inv[c] * mean_dyx[c]); \
    }
#define BN_BACKWARD_BODY                                                            \
    if (a) {                                                                        \
        if (accumulate) { BN_BACKWARD_LOOP(BN_MASKED, +=) } else { BN_BACKWARD_LOOP(BN_MASKED, =) } \
    } else {                                                                        \
        if (accumulate) { BN_BACKWARD_LOOP(BN_PLAIN, +=) } else { BN_BACKWARD_LOOP(BN_PLAIN, =) } \
    }

#define BN_KERNELS(suffix, target)                                                                       \
    target static void bn_sums_##suffix(const float *restrict x, size_t rows, int C, double *restrict sum, \
                                        double *restrict sq) { BN_SUMS_BODY }                            \
    target static void bn_apply_##suffix(const float *restrict x, size_t rows, int C,                    \
                                         const float *restrict mean, const float *restrict inv,          \
                                         const float *restrict gamma, const float *restrict beta,        \
                                         float *restrict y, float top) { BN_APPLY_BODY }                 \
    target static void bn_gradient_sums_##suffix(const float *restrict dy, const float *restrict a, float top, \
                                                 const float *restrict x, const float *restrict mean,    \
                                                 const float *restrict inv, size_t rows, int C,          \
                                                 double *restrict sdy, double *restrict sdyx) {          \
        BN_GRADIENT_SUMS_BODY                                                                            \
    }                                                                                                    \
    target static void bn_backward_##suffix(const float *restrict dy, const float *restrict a, float top, \
                                            const float *restrict x, const float *restrict mean,         \
                                            const float *restrict inv, size_t rows, int C,               \
                                            const float *restrict scale, const float *restrict mean_dy,  \
                                            const float *restrict mean_dyx, float *restrict dx, int accumulate) { \
        BN_BACKWARD_BODY                                                                                 \
    }

BN_KERNELS(base, )
BN_KERNELS(avx2, __attribute__((target("avx2"))))
BN_KERNELS(avx512, __attribute__((target("avx512f"))))

void tandem_bn_sums(const float *x, size_t rows, int channels, double *sum, double *sq) {
    static void (*const table[3])(const float *, size_t, int, double *, double *) = {bn_sums_base, bn_sums_avx2, bn_sums_avx512};
    table[tandem_isa_level()](x, rows, channels, sum, sq);
}

void tandem_bn_apply(const float *x, size_t rows, int channels, const float *mean, const float *inv,
                     const float *gamma, const float *beta, float *y, float top) {
    static void (*const table[3])(const float *, size_t, int, const float *, const float *, const float *, const float *,
                                  float *, float) = {bn_apply_base, bn_apply_avx2, bn_apply_avx512};
    table[tandem_isa_level()](x, rows, channels, mean, inv, gamma, beta, y, top);
}

void tandem_bn_gradient_sums(const float *dy, const float *a, float top, const float *x, const float *mean,
                             const float *inv, size_t rows, int channels, double *sdy, double *sdyx) {
    static void (*const table[3])(const float *, const float *, float, const float *, const float *, const float *,
                                  size_t, int, double *, double *) = {
        bn_gradient_sums_base, bn_gradient_sums_avx2, bn_gradient_sums_avx512};
    table[tandem_isa_level()](dy, a, top, x, mean, inv, rows, channels, sdy, sdyx);
}

void tandem_bn_backward(const float *dy, const float *a, float top, const float *x, const float *mean,
                        const float *inv, size_t rows, int channels, const float *scale, const float *mean_dy,
                        const float *mean_dyx, float *dx, int accumulate) {
    static void (*const table[3])(const float *, const float *, float, const float *, const float *, const float *,
                                  size_t, int, const float *, const float *, const float *, float *, int) = {
        bn_backward_base, bn_backward_avx2, bn_backward_avx512};
    table[tandem_isa_level()](dy, a, top, x, mean, inv, rows, channels, scale, mean_dy, mean_dyx, dx, accumulate);
}

// LayerNormalization: one pass over the rows, each row's sums and outputs while it is in
// L1. A row's sums run in 16 lanes (then the lanes in order), so they vectorise: the
// same bits on every ISA build, not the bits of one running sum.
#define LANES 16
#define LANE_SUM(n, term, out)                                                      \
    do {                                                                            \
        float lane[LANES] = {0};                                                    \
        int j = 0;                                                                  \
        for (; j + LANES <= (n); j += LANES)                                        \
            for (int k = 0; k < LANES; k++) { int q = j + k; lane[k] += (term); }   \
        for (int k = 0; j + k < (n); k++) { int q = j + k; lane[k] += (term); }     \
        float total = 0;                                                            \
        for (int k = 0; k < LANES; k++) total += lane[k];                           \
        (out) = total;                                                              \
    } while (0)

#define LN_FORWARD_BODY                                                             \
    for (size_t r = 0; r < rows; r++) {                                             \
        const float *xr = x + r * (size_t)F;                                        \
        float *nr = xhat + r * (size_t)F, *yr = y + r * (size_t)F;                  \
        float mean, variance;                                                       \
        LANE_SUM(F, xr[q], mean);                                                   \
        mean /= (float)F;                                                           \
        LANE_SUM(F, (xr[q] - mean) * (xr[q] - mean), variance);                     \
        variance /= (float)F;                                                       \
        float s = 1.0f / __builtin_sqrtf(variance + epsilon);                       \
        inv[r] = s;                                                                 \
        for (int j = 0; j < F; j++) {                                               \
            float n = (xr[j] - mean) * s;                                           \
            nr[j] = n; yr[j] = n * gamma[j] + beta[j];                              \
        }                                                                           \
    }

#define LN_BACKWARD_BODY                                                            \
    for (size_t r = 0; r < rows; r++) {                                             \
        const float *d = dy + r * (size_t)F, *nr = xhat + r * (size_t)F;            \
        float *to = dx + r * (size_t)F;                                             \
        if (dgamma) for (int j = 0; j < F; j++) dgamma[j] += d[j] * nr[j];          \
        if (dbeta) for (int j = 0; j < F; j++) dbeta[j] += d[j];                    \
        float mean_g, mean_gn;                                                      \
        LANE_SUM(F, d[q] * gamma[q], mean_g);                                       \
        LANE_SUM(F, d[q] * gamma[q] * nr[q], mean_gn);                              \
        mean_g /= (float)F; mean_gn /= (float)F;                                    \
        for (int j = 0; j < F; j++) to[j] += (d[j] * gamma[j] - mean_g - nr[j] * mean_gn) * inv[r]; \
    }

#define LN_KERNELS(suffix, target)                                                                       \
    target static void ln_forward_##suffix(const float *restrict x, size_t rows, int F, float epsilon,    \
                                           const float *restrict gamma, const float *restrict beta,      \
                                           float *restrict xhat, float *restrict inv, float *restrict y) \
    { LN_FORWARD_BODY }                                                                                  \
    target static void ln_backward_##suffix(const float *restrict dy, const float *restrict xhat,        \
                                            const float *restrict inv, size_t rows, int F,               \
                                            const float *restrict gamma, float *restrict dgamma,         \
                                            float *restrict dbeta, float *restrict dx) { LN_BACKWARD_BODY }

LN_KERNELS(base, )
LN_KERNELS(avx2, __attribute__((target("avx2"))))
LN_KERNELS(avx512, __attribute__((target("avx512f"))))

void tandem_ln_forward(const float *x, size_t rows, int features, float epsilon, const float *gamma,
                       const float *beta, float *xhat, float *inv, float *y) {
    static void (*const table[3])(const float *, size_t, int, float, const float *, const float *, float *, float *,
                                  float *) = {ln_forward_base, ln_forward_avx2, ln_forward_avx512};
    table[tandem_isa_level()](x, rows, features, epsilon, gamma, beta, xhat, inv, y);
}

void tandem_ln_backward(const float *dy, const float *xhat, const float *inv, size_t rows, int features,
                        const float *gamma, float *dgamma, float *dbeta, float *dx) {
    static void (*const table[3])(const float *, const float *, const float *, size_t, int, const float *, float *,
                                  float *, float *) = {ln_backward_base, ln_backward_avx2, ln_backward_avx512};
    table[tandem_isa_level()](dy, xhat, inv, rows, features, gamma, dgamma, dbeta, dx);
}
