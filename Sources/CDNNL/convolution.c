// oneDNN convolution primitives for one shape (cdnnl.h). Activations stay channels-last in the
// caller's buffers; the kernel is reordered from Keras's layout into the one each primitive asked
// for (format "any"), and the weight gradient back. Primitives overwrite their outputs, Tandem's
// backward passes add into theirs: the gradients land in a buffer first. That buffer and oneDNN's
// scratchpad are the calling thread's, shared by every convolution it runs (a rank runs its layers one
// at a time on one thread), grown to the largest a primitive asked for: made when the primitive is
// made and again on a thread's first call (a thread rank may run a model another thread built).
#include "cdnnl.h"

#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// libgomp's (oneDNN's threading runtime here); the ICV is per thread, so it is set before each call.
extern void omp_set_num_threads(int count);

static int thread_count = 1;
static dnnl_engine_t engine;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static dnnl_status_t engine_status;

static void make_engine(void) { engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0); }

void tandem_dnnl_set_threads(int count) { thread_count = count > 0 ? count : 1; }
int tandem_dnnl_threads(void) { return thread_count; }

void tandem_dnnl_version(char *out, size_t size) {
    const dnnl_version_t *v = dnnl_version();
    const char *isa = "unknown ISA";
    switch (dnnl_get_effective_cpu_isa()) {
        case dnnl_cpu_isa_sse41: isa = "sse41"; break;
        case dnnl_cpu_isa_avx: isa = "avx"; break;
        case dnnl_cpu_isa_avx2: isa = "avx2"; break;
        case dnnl_cpu_isa_avx2_vnni: isa = "avx2_vnni"; break;
        case dnnl_cpu_isa_avx512_core: isa = "avx512_core"; break;
        case dnnl_cpu_isa_avx512_core_vnni: isa = "avx512_core_vnni"; break;
        case dnnl_cpu_isa_avx512_core_bf16: isa = "avx512_core_bf16"; break;
        case dnnl_cpu_isa_avx512_core_amx: isa = "avx512_core_amx"; break;
        default: break;
    }
    snprintf(out, size, "oneDNN %d.%d.%d (%s)", v->major, v->minor, v->patch, isa);
}

// The calling thread's scratch: oneDNN's scratchpad and a gradient before it is added to the caller's.
struct scratch {
    void *pad, *gradient;
    size_t pad_bytes, gradient_bytes;
};
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void free_scratch(void *p) {
    struct scratch *s = p;
    free(s->pad);
    free(s->gradient);
    free(s);
}
static void make_scratch_key(void) { pthread_key_create(&scratch_key, free_scratch); }

static void *aligned(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    return p;
}

static int grow(void **buffer, size_t *have, size_t want) {
    if (*have >= want) return 1;
    void *p = aligned(want);
    if (!p) return 0;
    free(*buffer);
    *buffer = p;
    *have = want;
    return 1;
}

// This thread's scratch, at least `pad` and `gradient` bytes; NULL when out of memory.
static struct scratch *thread_scratch(size_t pad, size_t gradient) {
    pthread_once(&scratch_once, make_scratch_key);
    struct scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s || pthread_setspecific(scratch_key, s) != 0) {
            free(s);
            return NULL;
        }
    }
    if (!grow(&s->pad, &s->pad_bytes, pad) || !grow(&s->gradient, &s->gradient_bytes, gradient)) return NULL;
    return s;
}

struct tandem_dnnl_conv {
    dnnl_stream_t stream;
    dnnl_primitive_desc_t pd[3];  // forward, backward data, backward weights
    dnnl_primitive_t primitive[3];
    // The caller's buffers (handles set per call).
    dnnl_memory_t src, dst, user_kernel;
    // The kernel (or its gradient) in each primitive's layout, and the reorder to or from Keras's.
    dnnl_memory_t kernel[3];
    dnnl_primitive_t reorder[3];
    dnnl_memory_t scratch[3];  // over the thread's scratchpad
    void *kernel_buffers[3];
    size_t pad_bytes, dx_count, kernel_count;
    dnnl_memory_t dx_memory, dkernel_memory;  // over the thread's gradient buffer
};

#define CHECK(call)                                            \
    do {                                                       \
        dnnl_status_t status_ = (call);                        \
        if (status_ != dnnl_success) {                         \
            snprintf(error, error_size, "%s: status %d", #call, (int)status_); \
            goto fail;                                         \
        }                                                      \
    } while (0)

// A memory in `md` over a buffer of its own when `md` differs from the caller's kernel layout
// (and a reorder between them), else the caller's kernel memory itself.
static dnnl_status_t kernel_in_layout(
    struct tandem_dnnl_conv *c, int i, const dnnl_memory_desc_t *md, const dnnl_memory_desc_t *user, int to_user) {
    if (dnnl_memory_desc_equal(md, user)) return dnnl_success;
    c->kernel_buffers[i] = aligned(dnnl_memory_desc_get_size(md));
    if (!c->kernel_buffers[i]) return dnnl_out_of_memory;
    dnnl_status_t s = dnnl_memory_create(&c->kernel[i], md, engine, c->kernel_buffers[i]);
    if (s != dnnl_success) return s;
    dnnl_primitive_desc_t rpd;
    s = to_user ? dnnl_reorder_primitive_desc_create(&rpd, md, engine, user, engine, NULL)
                : dnnl_reorder_primitive_desc_create(&rpd, user, engine, md, engine, NULL);
    if (s != dnnl_success) return s;
    s = dnnl_primitive_create(&c->reorder[i], rpd);
    dnnl_primitive_desc_destroy(rpd);
    return s;
}

static size_t gradient_bytes(const struct tandem_dnnl_conv *c) {
    return sizeof(float) * (c->dx_count > c->kernel_count ? c->dx_count : c->kernel_count);
}

// This thread's scratch for `c`, its memories pointed at it; NULL when out of memory.
static struct scratch *scratch_for(tandem_dnnl_conv *c) {
    struct scratch *s = thread_scratch(c->pad_bytes, gradient_bytes(c));
    if (!s) return NULL;
    for (int i = 0; i < 3; i++) dnnl_memory_set_data_handle(c->scratch[i], s->pad);
    dnnl_memory_set_data_handle(c->dx_memory, s->gradient);
    dnnl_memory_set_data_handle(c->dkernel_memory, s->gradient);
    return s;
}

tandem_dnnl_conv *tandem_dnnl_conv_create(const tandem_conv_shape *g, char *error, size_t error_size) {
    // oneDNN splits a primitive's work by the thread count it sees when the primitive is made.
    omp_set_num_threads(thread_count);
    pthread_once(&engine_once, make_engine);
    if (engine_status != dnnl_success) {
        snprintf(error, error_size, "dnnl_engine_create: status %d", (int)engine_status);
        return NULL;
    }
    struct tandem_dnnl_conv *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(error, error_size, "out of memory");
        return NULL;
    }
    const int G = g->groups;
    dnnl_memory_desc_t src_md, dst_md, user_md, any_md;
    dnnl_dims_t src_dims = {g->batch, g->channels, g->height, g->width};
    dnnl_dims_t dst_dims = {g->batch, g->filters, g->out_height, g->out_width};
    CHECK(dnnl_memory_desc_init_by_tag(&src_md, 4, src_dims, dnnl_f32, dnnl_nhwc));
    CHECK(dnnl_memory_desc_init_by_tag(&dst_md, 4, dst_dims, dnnl_f32, dnnl_nhwc));
    if (G == 1) {
        dnnl_dims_t w = {g->filters, g->channels, g->kernel_height, g->kernel_width};
        CHECK(dnnl_memory_desc_init_by_tag(&user_md, 4, w, dnnl_f32, dnnl_hwio));
        CHECK(dnnl_memory_desc_init_by_tag(&any_md, 4, w, dnnl_f32, dnnl_format_tag_any));
    } else {
        // Keras's [kh, kw, C/G, F] with filter g·F/G + o: oneDNN's hwigo.
        dnnl_dims_t w = {G, g->filters / G, g->channels / G, g->kernel_height, g->kernel_width};
        CHECK(dnnl_memory_desc_init_by_tag(&user_md, 5, w, dnnl_f32, dnnl_hwigo));
        CHECK(dnnl_memory_desc_init_by_tag(&any_md, 5, w, dnnl_f32, dnnl_format_tag_any));
    }
    int span_y = g->dilation_y * (g->kernel_height - 1) + 1, span_x = g->dilation_x * (g->kernel_width - 1) + 1;
    int after_y = (g->out_height - 1) * g->stride_y + span_y - g->height - g->top;
    int after_x = (g->out_width - 1) * g->stride_x + span_x - g->width - g->left;
    dnnl_dims_t strides = {g->stride_y, g->stride_x};
    dnnl_dims_t dilates = {g->dilation_y - 1, g->dilation_x - 1};
    dnnl_dims_t before = {g->top, g->left};
    // A "valid" grid that leaves cells unread: no padding after (oneDNN's size rule floors).
    dnnl_dims_t after = {after_y > 0 ? after_y : 0, after_x > 0 ? after_x : 0};

    dnnl_primitive_attr_t attr;
    CHECK(dnnl_primitive_attr_create(&attr));
    CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    dnnl_convolution_desc_t desc;
    CHECK(dnnl_dilated_convolution_forward_desc_init(
        &desc, dnnl_forward_training, dnnl_convolution_direct, &src_md, &any_md, NULL, &dst_md, strides, dilates,
        before, after));
    CHECK(dnnl_primitive_desc_create(&c->pd[0], &desc, attr, engine, NULL));
    CHECK(dnnl_dilated_convolution_backward_data_desc_init(
        &desc, dnnl_convolution_direct, &src_md, &any_md, &dst_md, strides, dilates, before, after));
    CHECK(dnnl_primitive_desc_create(&c->pd[1], &desc, attr, engine, c->pd[0]));
    CHECK(dnnl_dilated_convolution_backward_weights_desc_init(
        &desc, dnnl_convolution_direct, &src_md, &any_md, NULL, &dst_md, strides, dilates, before, after));
    CHECK(dnnl_primitive_desc_create(&c->pd[2], &desc, attr, engine, c->pd[0]));
    dnnl_primitive_attr_destroy(attr);

    for (int i = 0; i < 3; i++) {
        size_t s = dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(c->pd[i], dnnl_query_scratchpad_md, 0));
        if (s > c->pad_bytes) c->pad_bytes = s;
    }
    c->dx_count = (size_t)g->batch * g->height * g->width * g->channels;
    c->kernel_count = dnnl_memory_desc_get_size(&user_md) / sizeof(float);
    if (!thread_scratch(c->pad_bytes, gradient_bytes(c))) {
        snprintf(error, error_size, "out of memory");
        goto fail;
    }
    for (int i = 0; i < 3; i++) {
        CHECK(dnnl_primitive_create(&c->primitive[i], c->pd[i]));
        CHECK(dnnl_memory_create(
            &c->scratch[i], dnnl_primitive_desc_query_md(c->pd[i], dnnl_query_scratchpad_md, 0), engine,
            DNNL_MEMORY_NONE));
        const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(
            c->pd[i], i == 2 ? dnnl_query_diff_weights_md : dnnl_query_weights_md, 0);
        CHECK(kernel_in_layout(c, i, md, &user_md, i == 2));
    }
    CHECK(dnnl_memory_create(&c->src, &src_md, engine, DNNL_MEMORY_NONE));
    CHECK(dnnl_memory_create(&c->dst, &dst_md, engine, DNNL_MEMORY_NONE));
    CHECK(dnnl_memory_create(&c->user_kernel, &user_md, engine, DNNL_MEMORY_NONE));
    CHECK(dnnl_memory_create(&c->dx_memory, &src_md, engine, DNNL_MEMORY_NONE));
    CHECK(dnnl_memory_create(&c->dkernel_memory, &user_md, engine, DNNL_MEMORY_NONE));
    CHECK(dnnl_stream_create(&c->stream, engine, dnnl_stream_default_flags));
    return c;
fail:
    tandem_dnnl_conv_destroy(c);
    return NULL;
}

void tandem_dnnl_conv_destroy(tandem_dnnl_conv *c) {
    if (!c) return;
    for (int i = 0; i < 3; i++) {
        if (c->primitive[i]) dnnl_primitive_destroy(c->primitive[i]);
        if (c->pd[i]) dnnl_primitive_desc_destroy(c->pd[i]);
        if (c->reorder[i]) dnnl_primitive_destroy(c->reorder[i]);
        if (c->kernel[i]) dnnl_memory_destroy(c->kernel[i]);
        if (c->scratch[i]) dnnl_memory_destroy(c->scratch[i]);
        free(c->kernel_buffers[i]);
    }
    dnnl_memory_t memories[] = {c->src, c->dst, c->user_kernel, c->dx_memory, c->dkernel_memory};
    for (size_t i = 0; i < sizeof memories / sizeof *memories; i++)
        if (memories[i]) dnnl_memory_destroy(memories[i]);
    if (c->stream) dnnl_stream_destroy(c->stream);
    free(c);
}

static int run(tandem_dnnl_conv *c, dnnl_primitive_t p, int count, const dnnl_exec_arg_t *args) {
    dnnl_status_t s = dnnl_primitive_execute(p, c->stream, count, args);
    return s == dnnl_success ? (int)dnnl_stream_wait(c->stream) : (int)s;
}

// The kernel in primitive i's layout: the caller's memory, or its reorder.
static int kernel_for(tandem_dnnl_conv *c, int i, const float *kernel, dnnl_memory_t *out) {
    dnnl_memory_set_data_handle(c->user_kernel, (void *)kernel);
    if (!c->reorder[i]) {
        *out = c->user_kernel;
        return 0;
    }
    dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, c->user_kernel}, {DNNL_ARG_TO, c->kernel[i]}};
    *out = c->kernel[i];
    return run(c, c->reorder[i], 2, args);
}

int tandem_dnnl_conv_forward(tandem_dnnl_conv *c, const float *x, const float *kernel, float *z) {
    omp_set_num_threads(thread_count);
    if (!scratch_for(c)) return dnnl_out_of_memory;
    dnnl_memory_t w;
    int s = kernel_for(c, 0, kernel, &w);
    if (s) return s;
    dnnl_memory_set_data_handle(c->src, (void *)x);
    dnnl_memory_set_data_handle(c->dst, z);
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, c->src}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, c->dst}, {DNNL_ARG_SCRATCHPAD, c->scratch[0]}};
    return run(c, c->primitive[0], 4, args);
}

int tandem_dnnl_conv_backward_data(tandem_dnnl_conv *c, const float *dz, const float *kernel, float *dx,
                                   int accumulate) {
    omp_set_num_threads(thread_count);
    struct scratch *scratch = scratch_for(c);
    if (!scratch) return dnnl_out_of_memory;
    dnnl_memory_t w;
    int s = kernel_for(c, 1, kernel, &w);
    if (s) return s;
    dnnl_memory_set_data_handle(c->dst, (void *)dz);
    if (!accumulate) dnnl_memory_set_data_handle(c->dx_memory, dx);  // written outright: no scratch, no add
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_DIFF_DST, c->dst}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DIFF_SRC, c->dx_memory},
        {DNNL_ARG_SCRATCHPAD, c->scratch[1]}};
    s = run(c, c->primitive[1], 4, args);
    if (s || !accumulate) return s;
    const float *from = scratch->gradient;
    for (size_t i = 0; i < c->dx_count; i++) dx[i] += from[i];
    return 0;
}

int tandem_dnnl_conv_backward_weights(tandem_dnnl_conv *c, const float *x, const float *dz, float *dkernel) {
    omp_set_num_threads(thread_count);
    struct scratch *scratch = scratch_for(c);
    if (!scratch) return dnnl_out_of_memory;
    dnnl_memory_set_data_handle(c->src, (void *)x);
    dnnl_memory_set_data_handle(c->dst, (void *)dz);
    dnnl_memory_t dw = c->reorder[2] ? c->kernel[2] : c->dkernel_memory;
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, c->src}, {DNNL_ARG_DIFF_DST, c->dst}, {DNNL_ARG_DIFF_WEIGHTS, dw},
        {DNNL_ARG_SCRATCHPAD, c->scratch[2]}};
    int s = run(c, c->primitive[2], 4, args);
    if (s) return s;
    if (c->reorder[2]) {
        dnnl_exec_arg_t r[] = {{DNNL_ARG_FROM, c->kernel[2]}, {DNNL_ARG_TO, c->dkernel_memory}};
        s = run(c, c->reorder[2], 2, r);
        if (s) return s;
    }
    const float *from = scratch->gradient;
    for (size_t i = 0; i < c->kernel_count; i++) dkernel[i] += from[i];
    return 0;
}

const char *tandem_dnnl_conv_implementation(const tandem_dnnl_conv *c, int which) {
    const char *name = "?";
    if (which >= 0 && which < 3) dnnl_primitive_desc_query(c->pd[which], dnnl_query_impl_info_str, 0, &name);
    return name;
}
