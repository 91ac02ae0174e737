// See ckernels.h. Element-wise loops Swift leaves scalar (it cannot prove the
// buffers apart); here the compiler vectorises them.
#include "ckernels.h"

void tandem_relu_backward(const float *dy, const float *z, float *dz, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float d = dy[i];  // read unconditionally: a select, not a branch per element
        dz[i] = z[i] > 0.0f ? d : 0.0f;
    }
}
