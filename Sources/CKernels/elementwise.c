// See ckernels.h. Element-wise loops Swift leaves scalar (it cannot prove the
// buffers apart); here the compiler vectorises them.
#include "ckernels.h"

void tandem_relu_backward(const float *dy, const float *z, float *dz, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float d = dy[i];  // read unconditionally: a select, not a branch per element
        dz[i] = z[i] > 0.0f ? d : 0.0f;
    }
}

uint32_t tandem_bits_and_exponent(const float *x, size_t n, uint32_t *any) {
    const uint32_t *bits = (const uint32_t *)x;
    uint32_t seen = 0, top = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t b = bits[i], e = b & 0x7F800000u;
        seen |= b;
        top = e > top ? e : top;
    }
    *any = seen;
    return top;
}
