// See ckernels.h: the LSTM's per-step gate non-linearities, written so the
// compiler vectorises them (glibc's expf is a call per element). exp is
// Cephes's single-precision polynomial after Cody–Waite range reduction:
// within 2 ulp over the clamped range. Contraction stays off.
#include "ckernels.h"
#include <stdint.h>
#include <string.h>

#pragma clang fp contract(off)

static inline float exp_poly(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    // n = round(x / ln 2) by the 1.5·2^23 trick: plain adds, so it vectorises
    // on every x86-64 (floorf is a library call before SSE4.1).
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float sigmoid_poly(float x) { return 1.0f / (1.0f + exp_poly(-x)); }

static inline float tanh_poly(float x) {
    float a = __builtin_fabsf(x), x2 = x * x;
    float series = x * (1.0f - x2 * (1.0f / 3.0f - x2 * (2.0f / 15.0f - x2 * (17.0f / 315.0f - x2 * (62.0f / 2835.0f)))));
    float e = exp_poly(-2.0f * a);
    float t = (1.0f - e) / (1.0f + e);
    t = x < 0.0f ? -t : t;
    return a < 0.1f ? series : t;
}

float tandem_exp(float x) { return exp_poly(x); }
float tandem_sigmoid(float x) { return sigmoid_poly(x); }
float tandem_tanh(float x) { return tanh_poly(x); }

#define STEP_FORWARD_BODY                                                          \
    const int U = units;                                                           \
    for (int j = 0; j < U; j++) {                                                  \
        float i = sigmoid_poly(z[j]), f = sigmoid_poly(z[U + j]);                  \
        float g = tanh_poly(z[2 * U + j]), o = sigmoid_poly(z[3 * U + j]);         \
        z[j] = i; z[U + j] = f; z[2 * U + j] = g; z[3 * U + j] = o;                \
        float cell = f * c_prev[j] + i * g;                                        \
        c[j] = cell;                                                               \
        h[j] = o * tanh_poly(cell);                                                \
    }

#define STEP_BACKWARD_BODY                                                         \
    const int U = units;                                                           \
    for (int j = 0; j < U; j++) {                                                  \
        float i = a[j], f = a[U + j], g = a[2 * U + j], o = a[3 * U + j];          \
        float tc = tanh_poly(c[j]);                                                \
        float cp = c_prev[j];                                                      \
        float dcell = dc[j] + dh[j] * o * (1.0f - tc * tc);                        \
        dz[j] = dcell * g * i * (1.0f - i);                                        \
        dz[U + j] = dcell * cp * f * (1.0f - f);                                   \
        dz[2 * U + j] = dcell * i * (1.0f - g * g);                                \
        dz[3 * U + j] = dh[j] * tc * o * (1.0f - o);                               \
        dc[j] = dcell * f;                                                         \
    }

typedef void (*forward_fn)(float *restrict, const float *restrict, float *restrict, float *restrict, int);
typedef void (*backward_fn)(const float *restrict, const float *restrict, const float *restrict,
                            const float *restrict, float *restrict, float *restrict, int);

static void forward_base(float *restrict z, const float *restrict c_prev, float *restrict c, float *restrict h, int units) { STEP_FORWARD_BODY }
__attribute__((target("avx2")))
static void forward_avx2(float *restrict z, const float *restrict c_prev, float *restrict c, float *restrict h, int units) { STEP_FORWARD_BODY }
__attribute__((target("avx512f")))
static void forward_avx512(float *restrict z, const float *restrict c_prev, float *restrict c, float *restrict h, int units) { STEP_FORWARD_BODY }

static void backward_base(const float *restrict a, const float *restrict c, const float *restrict c_prev,
                          const float *restrict dh, float *restrict dc, float *restrict dz, int units) { STEP_BACKWARD_BODY }
__attribute__((target("avx2")))
static void backward_avx2(const float *restrict a, const float *restrict c, const float *restrict c_prev,
                          const float *restrict dh, float *restrict dc, float *restrict dz, int units) { STEP_BACKWARD_BODY }
__attribute__((target("avx512f")))
static void backward_avx512(const float *restrict a, const float *restrict c, const float *restrict c_prev,
                            const float *restrict dh, float *restrict dc, float *restrict dz, int units) { STEP_BACKWARD_BODY }

/// A row of zeros standing for the initial cell state (units ≤ 4096).
static const float zero_state[4096];

void tandem_lstm_step_forward(float *z, const float *c_prev, float *c, float *h, int units) {
    static const forward_fn table[3] = {forward_base, forward_avx2, forward_avx512};
    table[tandem_isa_level()](z, c_prev ? c_prev : zero_state, c, h, units);
}

void tandem_lstm_step_backward(const float *a, const float *c, const float *c_prev,
                               const float *dh, float *dc, float *dz, int units) {
    static const backward_fn table[3] = {backward_base, backward_avx2, backward_avx512};
    table[tandem_isa_level()](a, c, c_prev ? c_prev : zero_state, dh, dc, dz, units);
}
