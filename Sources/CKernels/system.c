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
    // 2 MB aligned, so whole huge pages back it; anonymous memory is zero and mapped only when
    // touched, so a large arena costs only the rows a step uses. The mapping's start and length
    // sit just before the aligned block, for tandem_free_workspace.
    size_t page = 2u << 20, length = bytes + 2 * page;
    char *base = mmap(0, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return 0;
    char *aligned = (char *)(((size_t)base + 16 + page - 1) / page * page);
    ((size_t *)aligned)[-2] = (size_t)base;
    ((size_t *)aligned)[-1] = length;
    madvise(aligned, (bytes + page - 1) / page * page, MADV_HUGEPAGE);
    return (float *)aligned;
}

void tandem_free_workspace(float *p, int huge) {
    if (!p) return;
    if (!huge) {
        free(p);
        return;
    }
    size_t *header = (size_t *)p;
    munmap((void *)header[-2], header[-1]);
}
