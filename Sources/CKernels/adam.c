// See ckernels.h. Three builds of one loop body; the widest the CPU has runs.
#include "ckernels.h"
#include <math.h>

#pragma clang fp contract(off)

// With clear, g is zeroed in the same pass (a second pass would stream it again).
#define ADAM_LOOP(CLEAR)                                                   \
    for (size_t i = 0; i < n; i++) {                                       \
        float gi = g[i];                                                   \
        float mi = m[i] + (gi - m[i]) * b1;                                \
        float vi = v[i] + (gi * gi - v[i]) * b2;                           \
        m[i] = mi;                                                         \
        v[i] = vi;                                                         \
        w[i] = w[i] - alpha * mi / (__builtin_sqrtf(vi) + eps);            \
        CLEAR                                                              \
    }
#define ADAM_BODY                                                          \
    if (clear) { ADAM_LOOP(g[i] = 0.0f;) } else { ADAM_LOOP() }

#define ZERO_BODY                                                          \
    for (size_t i = 0; i < n; i++) {                                       \
        float mi = m[i] + (0.0f - m[i]) * b1;                              \
        float vi = v[i] + (0.0f * 0.0f - v[i]) * b2;                       \
        m[i] = mi;                                                         \
        v[i] = vi;                                                         \
        w[i] = w[i] - alpha * mi / (__builtin_sqrtf(vi) + eps);            \
    }

typedef void (*adam_fn)(float *restrict, float *restrict, float *restrict, float *restrict, size_t,
                        float, float, float, float, int);
typedef void (*zero_fn)(float *restrict, float *restrict, float *restrict, size_t, float, float, float, float);

static void adam_base(float *restrict w, float *restrict g, float *restrict m, float *restrict v, size_t n,
                      float alpha, float b1, float b2, float eps, int clear) { ADAM_BODY }
__attribute__((target("avx2")))
static void adam_avx2(float *restrict w, float *restrict g, float *restrict m, float *restrict v, size_t n,
                      float alpha, float b1, float b2, float eps, int clear) { ADAM_BODY }
__attribute__((target("avx512f")))
static void adam_avx512(float *restrict w, float *restrict g, float *restrict m, float *restrict v, size_t n,
                        float alpha, float b1, float b2, float eps, int clear) { ADAM_BODY }

static void zero_base(float *restrict w, float *restrict m, float *restrict v, size_t n,
                      float alpha, float b1, float b2, float eps) { ZERO_BODY }
__attribute__((target("avx2")))
static void zero_avx2(float *restrict w, float *restrict m, float *restrict v, size_t n,
                      float alpha, float b1, float b2, float eps) { ZERO_BODY }
__attribute__((target("avx512f")))
static void zero_avx512(float *restrict w, float *restrict m, float *restrict v, size_t n,
                        float alpha, float b1, float b2, float eps) { ZERO_BODY }

int tandem_isa_level(void) {
    static int level = -1;
    if (level < 0) {
        __builtin_cpu_init();
        // Level 1 needs FMA too: the recurrent kernels' polynomials are fused multiply-adds.
        level = __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
    }
    return level;
}

void tandem_adam(float *w, float *g, float *m, float *v, size_t n, float alpha, float b1, float b2, float eps, int clear) {
    static const adam_fn table[3] = {adam_base, adam_avx2, adam_avx512};
    table[tandem_isa_level()](w, g, m, v, n, alpha, b1, b2, eps, clear);
}

void tandem_adam_zero_gradient(float *w, float *m, float *v, size_t n, float alpha, float b1, float b2, float eps) {
    static const zero_fn table[3] = {zero_base, zero_avx2, zero_avx512};
    table[tandem_isa_level()](w, m, v, n, alpha, b1, b2, eps);
}

const char *tandem_kernel_isa(void) {
    static const char *names[3] = {"sse2", "avx2+fma", "avx512f"};
    return names[tandem_isa_level()];
}
