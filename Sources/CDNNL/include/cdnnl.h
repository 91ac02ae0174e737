// oneDNN's convolutions behind four calls, for Conv2D's fast path (Kernels/ConvolutionDNNL.swift), and its sgemm.
// Images are channels-last [B, H, W, C] and kernels Keras's [kh, kw, C/groups, F], both as Tandem
// stores them: oneDNN reads and writes them in place, and only the kernel is reordered into the
// layout oneDNN's kernels prefer (it changes every step, and it is small).
#ifndef TANDEM_CDNNL_H
#define TANDEM_CDNNL_H

#include <stddef.h>

/// One convolution's shape: the input image, the output grid and the window map
/// (ConvWindows.swift's WindowGeometry: `top`/`left` cells of padding before, dilation ≥ 1).
typedef struct {
    int batch, height, width, channels;
    int out_height, out_width, filters, groups;
    int kernel_height, kernel_width, stride_y, stride_x, dilation_y, dilation_x;
    int top, left;
} tandem_conv_shape;

typedef struct tandem_dnnl_conv tandem_dnnl_conv;

/// The three primitives for one shape (and their buffers), or NULL with `error` filled.
tandem_dnnl_conv *tandem_dnnl_conv_create(const tandem_conv_shape *shape, char *error, size_t error_size);
void tandem_dnnl_conv_destroy(tandem_dnnl_conv *conv);

/// z = x ⊛ kernel (no bias: the layer adds it as its plain path does). Returns 0, or a dnnl status.
int tandem_dnnl_conv_forward(tandem_dnnl_conv *conv, const float *x, const float *kernel, float *z);
/// dx += the input's gradient from dz; with accumulate 0, dx = it (written in place, no scratch).
int tandem_dnnl_conv_backward_data(tandem_dnnl_conv *conv, const float *dz, const float *kernel, float *dx,
                                   int accumulate);
/// dkernel += the kernel's gradient from x and dz.
int tandem_dnnl_conv_backward_weights(tandem_dnnl_conv *conv, const float *x, const float *dz, float *dkernel);

/// oneDNN's name for the implementation of primitive 0 (forward), 1 (backward data) or 2 (backward weights).
const char *tandem_dnnl_conv_implementation(const tandem_dnnl_conv *conv, int which);

/// C[m,n] = alpha·op(A)·op(B) + beta·C, row-major (dnnl_sgemm on the calling thread's thread count).
/// Returns 0, or a dnnl status.
int tandem_dnnl_sgemm(
    int trans_a, int trans_b, long m, long n, long k, float alpha, const float *a, long lda, const float *b, long ldb,
    float beta, float *c, long ldc);

/// Threads each primitive may use (oneDNN here runs on OpenMP; 1 under MPI, as BLAS).
void tandem_dnnl_set_threads(int count);
int tandem_dnnl_threads(void);
/// "oneDNN 2.6.3 (avx512_core)" into `out`.
void tandem_dnnl_version(char *out, size_t size);

#endif
