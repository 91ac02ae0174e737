// The gate non-linearities the recurrent kernels share (lstm.c, gru.c),
// written so the compiler vectorises them (glibc's expf is a call per
// element). exp is Cephes's single-precision polynomial after Cody–Waite
// range reduction: within 2 ulp over the clamped range. The polynomials are
// explicit fused multiply-adds (one rounding each: fmaf is exact IEEE, an
// instruction in the AVX2+FMA and AVX-512 builds, libm's fmaf in the baseline
// one) and contraction is off elsewhere, so every ISA build gives the same bits.
#ifndef TANDEM_ACTIVATIONS_H
#define TANDEM_ACTIVATIONS_H
#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float exp_poly(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    // n = round(x / ln 2) by the 1.5·2^23 trick: a multiply-add and a subtraction,
    // which vectorise (floorf is a library call before SSE4.1).
    float n = fmaf(x, 1.44269504088896341f, 12582912.0f) - 12582912.0f;
    float r = fmaf(-n, 0.693359375f, x);
    r = fmaf(-n, -2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p, r * r, r) + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float sigmoid_poly(float x) { return 1.0f / (1.0f + exp_poly(-x)); }

static inline float tanh_poly(float x) {
    float a = __builtin_fabsf(x), x2 = x * x;
    float series = x * fmaf(-x2, fmaf(-x2, fmaf(-x2, fmaf(-x2, 62.0f / 2835.0f, 17.0f / 315.0f), 2.0f / 15.0f), 1.0f / 3.0f), 1.0f);
    float e = exp_poly(-2.0f * a);
    float t = (1.0f - e) / (1.0f + e);
    t = x < 0.0f ? -t : t;
    return a < 0.1f ? series : t;
}

#endif
