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

#define BN_APPLY_BODY                                                               \
    for (size_t r = 0; r < rows; r++) {                                             \
        const float *xr = x + r * (size_t)C;                                        \
        float *nr = xhat + r * (size_t)C, *yr = y + r * (size_t)C;                  \
        for (int c = 0; c < C; c++) {                                               \
            float n = (xr[c] - mean[c]) * inv[c];                                   \
            nr[c] = n; yr[c] = n * gamma[c] + beta[c];                              \
        }                                                                           \
    }

#define BN_GRADIENT_SUMS_BODY                                                       \
    for (int c = 0; c < C; c++) { sdy[c] = 0; sdyx[c] = 0; }                        \
    for (size_t r = 0; r < rows; r++) {                                             \
        const float *d = dy + r * (size_t)C, *nr = xhat + r * (size_t)C;            \
        for (int c = 0; c < C; c++) { sdy[c] += (double)d[c]; sdyx[c] += (double)(d[c] * nr[c]); } \
    }

#define BN_BACKWARD_BODY                                                            \
    for (size_t r = 0; r < rows; r++) {                                             \
        const float *d = dy + r * (size_t)C, *nr = xhat + r * (size_t)C;            \
        float *to = dx + r * (size_t)C;                                             \
        for (int c = 0; c < C; c++) to[c] += scale[c] * (d[c] - mean_dy[c] - nr[c] * mean_dyx[c]); \
    }

#define BN_KERNELS(suffix, target)                                                                       \
    target static void bn_sums_##suffix(const float *restrict x, size_t rows, int C, double *restrict sum, \
                                        double *restrict sq) { BN_SUMS_BODY }                            \
    target static void bn_apply_##suffix(const float *restrict x, size_t rows, int C,                    \
                                         const float *restrict mean, const float *restrict inv,          \
                                         const float *restrict gamma, const float *restrict beta,        \
                                         float *restrict xhat, float *restrict y) { BN_APPLY_BODY }      \
    target static void bn_gradient_sums_##suffix(const float *restrict dy, const float *restrict xhat,   \
                                                 size_t rows, int C, double *restrict sdy,               \
                                                 double *restrict sdyx) { BN_GRADIENT_SUMS_BODY }        \
    target static void bn_backward_##suffix(const float *restrict dy, const float *restrict xhat,        \
                                            size_t rows, int C, const float *restrict scale,             \
                                            const float *restrict mean_dy, const float *restrict mean_dyx, \
                                            float *restrict dx) { BN_BACKWARD_BODY }

BN_KERNELS(base, )
BN_KERNELS(avx2, __attribute__((target("avx2"))))
BN_KERNELS(avx512, __attribute__((target("avx512f"))))

void tandem_bn_sums(const float *x, size_t rows, int channels, double *sum, double *sq) {
    static void (*const table[3])(const float *, size_t, int, double *, double *) = {bn_sums_base, bn_sums_avx2, bn_sums_avx512};
    table[tandem_isa_level()](x, rows, channels, sum, sq);
}

void tandem_bn_apply(const float *x, size_t rows, int channels, const float *mean, const float *inv,
                     const float *gamma, const float *beta, float *xhat, float *y) {
    static void (*const table[3])(const float *, size_t, int, const float *, const float *, const float *, const float *,
                                  float *, float *) = {bn_apply_base, bn_apply_avx2, bn_apply_avx512};
    table[tandem_isa_level()](x, rows, channels, mean, inv, gamma, beta, xhat, y);
}

void tandem_bn_gradient_sums(const float *dy, const float *xhat, size_t rows, int channels, double *sdy, double *sdyx) {
    static void (*const table[3])(const float *, const float *, size_t, int, double *, double *) = {
        bn_gradient_sums_base, bn_gradient_sums_avx2, bn_gradient_sums_avx512};
    table[tandem_isa_level()](dy, xhat, rows, channels, sdy, sdyx);
}

void tandem_bn_backward(const float *dy, const float *xhat, size_t rows, int channels, const float *scale,
                        const float *mean_dy, const float *mean_dyx, float *dx) {
    static void (*const table[3])(const float *, const float *, size_t, int, const float *, const float *, const float *,
                                  float *) = {bn_backward_base, bn_backward_avx2, bn_backward_avx512};
    table[tandem_isa_level()](dy, xhat, rows, channels, scale, mean_dy, mean_dyx, dx);
}
