// See ckernels.h: the LSTM's per-step gate non-linearities (activations.h).
// Contraction stays off.
#include "ckernels.h"
#pragma clang fp contract(off)
#include "activations.h"

float tandem_exp(float x) { return exp_poly(x); }
float tandem_sigmoid(float x) { return sigmoid_poly(x); }
float tandem_tanh(float x) { return tanh_poly(x); }

#define STEP_FORWARD_BODY                                                          \
    const int U = units;                                                           \
    for (int j = 0; j < U; j++) {                                                  \
        float i = sigmoid_poly(z[j] + x[j]), f = sigmoid_poly(z[U + j] + x[U + j]); \
        float g = tanh_poly(z[2 * U + j] + x[2 * U + j]);                          \
        float o = sigmoid_poly(z[3 * U + j] + x[3 * U + j]);                       \
        z[j] = i; z[U + j] = f; z[2 * U + j] = g; z[3 * U + j] = o;                \
        float cell = f * c_prev[j] + i * g;                                        \
        float t = tanh_poly(cell);                                                 \
        c[j] = cell; tc[j] = t;                                                    \
        h[j] = o * t;                                                              \
    }

#define STEP_BACKWARD_BODY                                                         \
    const int U = units;                                                           \
    for (int j = 0; j < U; j++) {                                                  \
        float i = a[j], f = a[U + j], g = a[2 * U + j], o = a[3 * U + j];          \
        float t = tc[j];                                                           \
        float cp = c_prev[j];                                                      \
        float dcell = dc[j] + dh[j] * o * (1.0f - t * t);                          \
        dz[j] = dcell * g * i * (1.0f - i);                                        \
        dz[U + j] = dcell * cp * f * (1.0f - f);                                   \
        dz[2 * U + j] = dcell * i * (1.0f - g * g);                                \
        dz[3 * U + j] = dh[j] * t * o * (1.0f - o);                                \
        dc[j] = dcell * f;                                                         \
    }

typedef void (*forward_fn)(float *restrict, const float *restrict, const float *restrict, float *restrict, float *restrict, float *restrict, int);
typedef void (*backward_fn)(const float *restrict, const float *restrict, const float *restrict,
                            const float *restrict, float *restrict, float *restrict, int);

static void forward_base(float *restrict z, const float *restrict x, const float *restrict c_prev, float *restrict c, float *restrict tc, float *restrict h, int units) { STEP_FORWARD_BODY }
__attribute__((target("avx2,fma")))
static void forward_avx2(float *restrict z, const float *restrict x, const float *restrict c_prev, float *restrict c, float *restrict tc, float *restrict h, int units) { STEP_FORWARD_BODY }
__attribute__((target("avx512f")))
static void forward_avx512(float *restrict z, const float *restrict x, const float *restrict c_prev, float *restrict c, float *restrict tc, float *restrict h, int units) { STEP_FORWARD_BODY }

static void backward_base(const float *restrict a, const float *restrict tc, const float *restrict c_prev,
                          const float *restrict dh, float *restrict dc, float *restrict dz, int units) { STEP_BACKWARD_BODY }
__attribute__((target("avx2,fma")))
static void backward_avx2(const float *restrict a, const float *restrict tc, const float *restrict c_prev,
                          const float *restrict dh, float *restrict dc, float *restrict dz, int units) { STEP_BACKWARD_BODY }
__attribute__((target("avx512f")))
static void backward_avx512(const float *restrict a, const float *restrict tc, const float *restrict c_prev,
                            const float *restrict dh, float *restrict dc, float *restrict dz, int units) { STEP_BACKWARD_BODY }

/// A row of zeros standing for the initial cell state (units ≤ 4096) and for no x (4U ≤ 16384).
static const float zero_state[4 * 4096];

void tandem_lstm_step_forward(float *z, const float *x, const float *c_prev, float *c, float *tc, float *h, int units) {
    static const forward_fn table[3] = {forward_base, forward_avx2, forward_avx512};
    table[tandem_isa_level()](z, x ? x : zero_state, c_prev ? c_prev : zero_state, c, tc, h, units);
}

void tandem_lstm_step_backward(const float *a, const float *tc, const float *c_prev,
                               const float *dh, float *dc, float *dz, int units) {
    static const backward_fn table[3] = {backward_base, backward_avx2, backward_avx512};
    table[tandem_isa_level()](a, tc, c_prev ? c_prev : zero_state, dh, dc, dz, units);
}
