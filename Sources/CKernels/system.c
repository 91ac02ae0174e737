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

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

float *tandem_allocate_workspace(size_t count, int huge) {
    size_t bytes = count * sizeof(float);
    if (!huge) return calloc(count, sizeof(float));
    // 2 MB aligned and rounded, so whole huge pages back it.
    size_t page = 2u << 20, rounded = (bytes + page - 1) / page * page;
    void *p = 0;
    if (posix_memalign(&p, page, rounded) != 0) return 0;
    madvise(p, rounded, MADV_HUGEPAGE);
    memset(p, 0, rounded);
    return p;
}

void tandem_free_workspace(float *p) { free(p); }
