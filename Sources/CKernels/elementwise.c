// See ckernels.h. Element-wise loops Swift leaves scalar (it cannot prove the
// buffers apart); here the compiler vectorises them.
#include "ckernels.h"

void tandem_relu_backward(const float *dy, const float *z, float *dz, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float d = dy[i];  // read unconditionally: a select, not a branch per element
        dz[i] = z[i] > 0.0f ? d : 0.0f;
    }
}

void tandem_relu6(const float *z, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = z[i] > 0.0f ? z[i] : 0.0f;
        y[i] = v < 6.0f ? v : 6.0f;
    }
}

void tandem_relu6_backward(const float *dy, const float *z, float *dz, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float d = dy[i], v = z[i];
        dz[i] = (v > 0.0f) & (v < 6.0f) ? d : 0.0f;
    }
}

void tandem_relu_backward_bounded(const float *dy, const float *z, float *dx, size_t n, float top) {
    for (size_t i = 0; i < n; i++) {
        float d = dy[i], v = z[i];
        dx[i] = (v > 0.0f) & (v < top) ? d : 0.0f;
    }
}

void tandem_relu_backward_add(const float *dy, const float *z, float *dx, size_t n, float top) {
    for (size_t i = 0; i < n; i++) {
        float d = dy[i], v = z[i];
        dx[i] += (v > 0.0f) & (v < top) ? d : 0.0f;
    }
}

// OR and max are exact in any order, so 32 lanes (two AVX-512 registers) each
// keep their own; every build gives the same result.
#define BITS_BODY                                                              \
    const uint32_t *bits = (const uint32_t *)x;                                \
    uint32_t seen[32] = {0}, top[32] = {0};                                    \
    size_t i = 0;                                                              \
    for (; i + 32 <= n; i += 32)                                               \
        for (int l = 0; l < 32; l++) {                                         \
            uint32_t b = bits[i + l], e = b & 0x7F800000u;                     \
            seen[l] |= b;                                                      \
            top[l] = e > top[l] ? e : top[l];                                  \
        }                                                                      \
    for (; i < n; i++) {                                                       \
        uint32_t b = bits[i], e = b & 0x7F800000u;                             \
        seen[0] |= b;                                                          \
        top[0] = e > top[0] ? e : top[0];                                      \
    }                                                                          \
    uint32_t s = 0, t = 0;                                                     \
    for (int l = 0; l < 32; l++) { s |= seen[l]; t = top[l] > t ? top[l] : t; } \
    *any = s;                                                                  \
    return t;

typedef uint32_t (*bits_fn)(const float *, size_t, uint32_t *);
static uint32_t bits_base(const float *x, size_t n, uint32_t *any) { BITS_BODY }
__attribute__((target("avx2")))
static uint32_t bits_avx2(const float *x, size_t n, uint32_t *any) { BITS_BODY }
__attribute__((target("avx512f")))
static uint32_t bits_avx512(const float *x, size_t n, uint32_t *any) { BITS_BODY }

uint32_t tandem_bits_and_exponent(const float *x, size_t n, uint32_t *any) {
    static const bits_fn table[3] = {bits_base, bits_avx2, bits_avx512};
    return table[tandem_isa_level()](x, n, any);
}
