// See ckernels.h: the fixed-point accumulation of reproducible mode. Scalar C:
// no vector double → int64 conversion before AVX-512DQ, and most calls are
// one embedding row; still several times faster than checked Swift.
#include "ckernels.h"
#include <math.h>

void tandem_fixed_accumulate(float *g, long long *acc, size_t n, double scale, double bound,
                             float *largest, int *flags) {
    float top = *largest;
    int f = *flags;
    for (size_t i = 0; i < n; i++) {
        float v = g[i];
        if (v == 0.0f) continue;
        g[i] = 0.0f;
        if (!isfinite(v)) { f |= 2; continue; }
        float a = fabsf(v);
        if (a > top) top = a;
        if ((double)a > bound) { f |= 1; continue; }
        acc[i] += llrint((double)v * scale);  // one cvtsd2si: round half to even
    }
    *largest = top;
    *flags = f;
}
