// See ckernels.h: what Tandem asks of the CPU and the C library.
#include "ckernels.h"
#include <malloc.h>

const char *tandem_blas_core_for_cpu(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return "Haswell";
    return 0;
}

void tandem_release_free_memory(void) { malloc_trim(0); }
