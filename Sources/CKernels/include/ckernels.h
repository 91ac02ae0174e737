// Element-wise kernels that Swift does not vectorise by itself (its SIMD
// square root runs lane by lane). Plain C loops over restrict pointers, built
// for the baseline and, chosen at run time, for AVX2 and AVX-512. Floating-
// point contraction is off, so every path gives the same bits.
#ifndef TANDEM_CKERNELS_H
#define TANDEM_CKERNELS_H
#include <stddef.h>
#include <stdint.h>

/// Adam on n elements (Keras 3 rule, docs/SPEC.md §3):
///   m += (g − m)·b1;  v += (g² − v)·b2;  w −= alpha·m / (√v + eps)
/// with b1 = 1 − β1, b2 = 1 − β2. With clear != 0, g is set to zero.
void tandem_adam(float *w, float *g, float *m, float *v, size_t n,
                 float alpha, float b1, float b2, float eps, int clear);

/// The same update with g = 0 (a deferred row's replay), without reading g.
void tandem_adam_zero_gradient(float *w, float *m, float *v, size_t n,
                               float alpha, float b1, float b2, float eps);

/// Reproducible mode: acc[i] += rint(g[i] · scale) for every non-zero g[i] with
/// |g[i]| ≤ bound, then g[i] = 0. Returns in *largest the largest |g[i]| seen
/// (max with its value on entry); sets flags bit 0 when some |g| > bound (not
/// added), bit 1 when some g is NaN or ±Inf (not added).
void tandem_fixed_accumulate(float *g, long long *acc, size_t n, double scale, double bound,
                             float *largest, int *flags);

/// exp, sigmoid and tanh as the LSTM kernels compute them (for tests).
float tandem_exp(float x);
float tandem_sigmoid(float x);
float tandem_tanh(float x);

/// One LSTM step for one sample, U units. z [4U] + x [4U] are the pre-activations
/// (gate order i, f, c, o); z receives the activations i, f, g, o; then
/// c = f·c_prev + i·g, tc = tanh(c) (kept for the backward) and h = o·tc.
/// x (the input projection, when not already in z) and c_prev (zero state) may be NULL.
void tandem_lstm_step_forward(float *z, const float *x, const float *c_prev, float *c, float *tc, float *h, int units);  // units ≤ 4096

/// Its backward: from the activations a [4U], tc = tanh(c), c_prev (may be NULL),
/// dh and the running dc (updated to dc·f for the previous step), writes dz [4U].
void tandem_lstm_step_backward(const float *a, const float *tc, const float *c_prev,
                               const float *dh, float *dc, float *dz, int units);

/// One GRU step (reset_after) for one sample, U units: x [3U] the input projection
/// (input bias in), rec [3U] h̃·R plus the recurrent bias; writes the activations
/// a = z, r, hh [3U] and h = z·before + (1 − z)·hh, before being the previous state.
void tandem_gru_step_forward(const float *x, const float *rec, float *a, const float *before, float *h, int units);

/// Its backward from dh: keep = dh·z (the state's direct path), dx [3U] the input
/// projection's gradient and dr [3U] the recurrent product's (and its bias').
void tandem_gru_step_backward(const float *a, const float *rec, const float *before, const float *dh,
                              float *keep, float *dx, float *dr, int units);

/// dz = dy where z > 0, else 0 (ReLU's backward; the same values as the scalar rule).
void tandem_relu_backward(const float *dy, const float *z, float *dz, size_t n);

/// y = min(max(z, 0), 6), and dz = dy where 0 < z < 6, else 0 (ReLU6, MobileNet's activation).
void tandem_relu6(const float *z, float *y, size_t n);
void tandem_relu6_backward(const float *dy, const float *z, float *dz, size_t n);

/// dx += ReLU's (max 0 then 0, max 6 then 6) backward: the activation layers' one pass.
void tandem_relu_backward_add(const float *dy, const float *z, float *dx, size_t n, float top);
/// dx = the same (the first write of dx in a backward pass).
void tandem_relu_backward_bounded(const float *dy, const float *z, float *dx, size_t n, float top);

/// The largest exponent field (bits 23–30) among n floats (0x7F800000: some NaN or ±Inf),
/// and in *any the OR of all their bits (non-zero when any value, −0 included, is set).
uint32_t tandem_bits_and_exponent(const float *x, size_t n, uint32_t *any);

/// BatchNormalization's passes over rows × channels (row-major), each channel's
/// Double sums in row order: sum = Σx, sq = Σx² (set, not added to).
void tandem_bn_sums(const float *x, size_t rows, int channels, double *sum, double *sq);

/// y = xhat·gamma + beta with xhat = (x − mean)·inv, per channel; with top > 0, y is then a ReLU's
/// output, clamped to [0, top] as the ReLU kernels do (top = +∞ for a plain ReLU, 6 for ReLU6).
/// xhat is not stored: the two passes below compute it again from x, mean and inv (the same bits).
void tandem_bn_apply(const float *x, size_t rows, int channels, const float *mean, const float *inv,
                     const float *gamma, const float *beta, float *y, float top);

/// sdy = Σdy, sdyx = Σ(dy·xhat) (the product in float, as the scalar rule), set. With a != NULL, dy is
/// the gradient of a ReLU's output a = clamp(y, 0, top) and the ReLU's backward is taken on the way:
/// dy where 0 < a < top, else 0 (likewise in tandem_bn_backward).
void tandem_bn_gradient_sums(const float *dy, const float *a, float top, const float *x, const float *mean,
                             const float *inv, size_t rows, int channels, double *sdy, double *sdyx);

/// dx += scale·(dy − mean_dy − xhat·mean_dyx), scale = γ/√(σ² + ε) per channel; dx = the same
/// when accumulate is 0 (the first write of dx in a backward pass).
void tandem_bn_backward(const float *dy, const float *a, float top, const float *x, const float *mean,
                        const float *inv, size_t rows, int channels, const float *scale, const float *mean_dy,
                        const float *mean_dyx, float *dx, int accumulate);

/// Attention's softmax over one row of n scores in place: the keys [lo, hi) with keep[s] != 0 (keep may be
/// NULL) share the probability, the others get 0 (attention.c).
void tandem_softmax_row(float *row, int n, int lo, int hi, const float *keep);
/// dp = p ⊙ (dp − Σ dp·p) over one row of n, in place.
void tandem_softmax_row_backward(const float *p, float *dp, int n);

/// LayerNormalization over rows × features: per row μ, σ² (biased), inv = 1/√(σ² + ε),
/// xhat = (x − μ)·inv, y = xhat·gamma + beta. Row sums run in 16 lanes (same bits on every build).
void tandem_ln_forward(const float *x, size_t rows, int features, float epsilon, const float *gamma,
                       const float *beta, float *xhat, float *inv, float *y);

/// Its backward: dgamma += Σ dy·xhat and dbeta += Σ dy (either may be NULL), and with
/// g = dy·gamma, dx += (g − mean g − xhat·mean(g·xhat))·inv.
void tandem_ln_backward(const float *dy, const float *xhat, const float *inv, size_t rows, int features,
                        const float *gamma, float *dgamma, float *dbeta, float *dx);

/// 0 baseline, 1 AVX2 with FMA, 2 AVX-512F: which build of each kernel runs on this CPU.
int tandem_isa_level(void);

/// The name of the instruction set the kernels use on this CPU.
const char *tandem_kernel_isa(void);

/// The widest OpenBLAS kernel family (an OPENBLAS_CORETYPE value) this CPU can
/// run: "SkylakeX" with AVX-512 F/CD/BW/DQ/VL, "Haswell" with AVX2 and FMA,
/// else NULL.
const char *tandem_blas_core_for_cpu(void);

/// Returns the C heap's free memory to the system (malloc_trim): large scratch
/// freed before training would otherwise stay resident.
void tandem_release_free_memory(void);

/// count zeroed floats for activations, or NULL when they cannot be had; with huge != 0, 2 MB
/// aligned, mapped only where touched, and advised as transparent huge pages (a recurrent
/// layer's step reads B rows a page apart: on 4 KB pages each is a TLB miss). Free with
/// tandem_free_workspace and the same `huge`.
float *tandem_allocate_workspace(size_t count, int huge);
void tandem_free_workspace(float *p, int huge);
#endif
