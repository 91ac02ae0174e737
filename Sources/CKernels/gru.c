// See ckernels.h: the GRU's per-step gate non-linearities (reset_after, Keras's
// default), vectorised like the LSTM's (activations.h). Contraction stays off.
#include "ckernels.h"
#pragma clang fp contract(off)
#include "activations.h"

#define GRU_FORWARD_BODY                                                           \
    const int U = units;                                                           \
    for (int j = 0; j < U; j++) {                                                  \
        float z = sigmoid_poly(x[j] + rec[j]);                                     \
        float r = sigmoid_poly(x[U + j] + rec[U + j]);                             \
        float hh = tanh_poly(x[2 * U + j] + r * rec[2 * U + j]);                   \
        a[j] = z; a[U + j] = r; a[2 * U + j] = hh;                                 \
        h[j] = z * before[j] + (1.0f - z) * hh;                                    \
    }

#define GRU_BACKWARD_BODY                                                          \
    const int U = units;                                                           \
    for (int j = 0; j < U; j++) {                                                  \
        float z = a[j], r = a[U + j], hh = a[2 * U + j], g = dh[j];                \
        float daz = g * (before[j] - hh) * z * (1.0f - z);                         \
        float dah = g * (1.0f - z) * (1.0f - hh * hh);                             \
        float dar = dah * rec[2 * U + j] * r * (1.0f - r);                         \
        keep[j] = g * z;                                                           \
        dx[j] = daz; dr[j] = daz;                                                  \
        dx[U + j] = dar; dr[U + j] = dar;                                          \
        dx[2 * U + j] = dah; dr[2 * U + j] = dah * r;                              \
    }

typedef void (*gru_forward_fn)(const float *restrict, const float *restrict, float *restrict,
                               const float *restrict, float *restrict, int);
typedef void (*gru_backward_fn)(const float *restrict, const float *restrict, const float *restrict,
                                const float *restrict, float *restrict, float *restrict, float *restrict, int);

#define GRU_FORWARD(name, target)                                                                      \
    target static void name(const float *restrict x, const float *restrict rec, float *restrict a,    \
                            const float *restrict before, float *restrict h, int units) { GRU_FORWARD_BODY }
#define GRU_BACKWARD(name, target)                                                                     \
    target static void name(const float *restrict a, const float *restrict rec, const float *restrict before, \
                            const float *restrict dh, float *restrict keep, float *restrict dx,       \
                            float *restrict dr, int units) { GRU_BACKWARD_BODY }

GRU_FORWARD(gru_forward_base, )
GRU_FORWARD(gru_forward_avx2, __attribute__((target("avx2,fma"))))
GRU_FORWARD(gru_forward_avx512, __attribute__((target("avx512f"))))
GRU_BACKWARD(gru_backward_base, )
GRU_BACKWARD(gru_backward_avx2, __attribute__((target("avx2,fma"))))
GRU_BACKWARD(gru_backward_avx512, __attribute__((target("avx512f"))))

void tandem_gru_step_forward(const float *x, const float *rec, float *a, const float *before, float *h, int units) {
    static const gru_forward_fn table[3] = {gru_forward_base, gru_forward_avx2, gru_forward_avx512};
    table[tandem_isa_level()](x, rec, a, before, h, units);
}

void tandem_gru_step_backward(const float *a, const float *rec, const float *before, const float *dh,
                              float *keep, float *dx, float *dr, int units) {
    static const gru_backward_fn table[3] = {gru_backward_base, gru_backward_avx2, gru_backward_avx512};
    table[tandem_isa_level()](a, rec, before, dh, keep, dx, dr, units);
}
