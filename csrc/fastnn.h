/* fastnn internal header: status codes, shapes and the kernel entry points.
 *
 * Kernels take raw pointers to C-contiguous arrays plus a shape; they assert
 * preconditions but never validate user input (the Python layer does that).
 * float32 and float64 variants come from one templated source per family
 * (each .c file includes itself once per dtype). */
#ifndef FASTNN_H
#define FASTNN_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    FNN_OK = 0,
    FNN_ENOMEM = 1,   /* a workspace allocation failed */
    FNN_EINVAL = 2    /* a size the caller should have rejected */
} fnn_status;

/* Geometry of one 2-d convolution (conv1d is the case in_h = kernel_h = out_h = 1).
 * pad_h/pad_w are the top/left padding; the bottom/right padding is implied by
 * out_h/out_w, which is how asymmetric 'same' padding needs no padded copy. */
typedef struct {
    int64_t batch, in_channels, in_h, in_w;
    int64_t out_channels, kernel_h, kernel_w;
    int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
    int64_t groups, out_h, out_w;
} fnn_conv_shape;

/* Integer helpers of the kernels' work planning. */
static inline int64_t fnn_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static inline int64_t fnn_min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t fnn_max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* runtime.c: one-time setup, threads, configuration strings. */
void fnn_init(void);
void fnn_set_num_threads(int n);
int fnn_get_num_threads(void);
/* The calling thread's own OpenMP count only (fnn_set_num_threads' cap stays):
 * for a thread that shares the cores with another running kernels. */
void fnn_set_own_threads(int n);
const char *fnn_simd_name(void);
/* The convolution algorithm FASTNN_CONV asks for: gemm (im2col + GEMM
 * always) or winograd (wherever it applies); else chosen by shape. */
enum { FNN_CONV_AUTO, FNN_CONV_GEMM, FNN_CONV_WINOGRAD };
int fnn_conv_algorithm(void);
/* Bytes of one core's level-1 data cache or level-2 cache, as the system
 * reports them at fnn_init (32 KB and 1 MB where it does not). */
int64_t fnn_cache_bytes(int level);
const char *fnn_compiler(void);
const char *fnn_blas_config(void);
const char *fnn_blas_core(void);
/* Large blocks of memory (uninitialized; NULL when out of memory or when
 * `bytes` overflows), on small pages or (FNN_BLOCK_HUGE) transparent huge
 * pages: kernels' workspaces, and the Python layer's large outputs. Released
 * with fnn_block_free, they are cached (up to 256 MB) for the next request of
 * about their size. */
enum { FNN_BLOCK_SMALL, FNN_BLOCK_HUGE };
void *fnn_block_alloc(size_t bytes, int kind);
void fnn_block_free(void *p);
void fnn_block_release_cached(void); /* frees every cached block */

/* im2col.c: the per-block kernels, one implementation per instruction set,
 * chosen once by fnn_init (FASTNN_SIMD=portable|avx2 forces one). All work on
 * output positions [p0, p1) of one image.
 * - im2col_block fills columns [0, p1 - p0) of `cols` (row stride ldc) from the
 *   first `channels` channels of x; col2im_block_add adds such columns back.
 * - direct_*: a direct convolution of one input channel x (a plane) with the
 *   kH*kW taps w of one output channel: y += conv (forward), dx += its transpose
 *   applied to dy, dw += the correlation of dy with x.
 * - taps_forward_block: y (mg output channels, rows ldy apart) = bias + the
 *   stride-1 convolution of one input channel x with each channel's
 *   kH*kW <= FNN_TAPS_MAX taps (w: mg x kH*kW), the taps held in vector
 *   registers across the channels; `scratch` holds FNN_TAPS_SCRATCH(s).
 * - taps_input_grad_rows: rows [ih0, ih1) of the input gradient of such a
 *   convolution (dx: the input channel's plane, written), from the group's mg
 *   channels of dy (planes out_h*out_w apart); `scratch` holds
 *   FNN_TAPS_DX_SCRATCH(s, mg, ih1 - ih0).
 * - taps_weight_grad_block: dw (mg x kH*kW) += the correlation of such a
 *   convolution's dy (mg channels, rows ldy apart, positions [p0, p1) of one
 *   image) with x, and db (unless NULL) += the sums of dy; `scratch` holds
 *   FNN_TAPS_DW_SCRATCH(s, p1 - p0). */
#define FNN_TAPS_MAX 16
#define FNN_TAPS_SCRATCH(s)                                                                  \
    ((s)->kernel_h * ((s)->out_w + 16 + ((s)->kernel_w - 1) * (s)->dilation_w))
#define FNN_TAPS_DW_SCRATCH(s, positions)                                                    \
    (((positions) / (s)->out_w + 2 + ((s)->kernel_h - 1) * (s)->dilation_h) *                  \
     ((s)->out_w + 16 + ((s)->kernel_w - 1) * (s)->dilation_w))
#define FNN_TAPS_DX_SCRATCH(s, mg, rows)                                                     \
    ((mg) * ((rows) + ((s)->kernel_h - 1) * (s)->dilation_h) *                               \
     ((s)->in_w + 16 + ((s)->kernel_w - 1) * (s)->dilation_w))
#define FNN_BLOCK_OPS(T, SFX)                                                                \
    void (*im2col_block_##SFX)(const fnn_conv_shape *s, const T *x, int64_t channels,        \
                               int64_t p0, int64_t p1, T *cols, int64_t ldc);
#define FNN_BLOCK_ADD_OPS(T, SFX)                                                            \
    void (*col2im_block_add_##SFX)(const fnn_conv_shape *s, const T *cols, int64_t channels, \
                                   int64_t p0, int64_t p1, int64_t ldc, T *x);
#define FNN_DIRECT_OPS(T, SFX)                                                               \
    void (*direct_forward_block_##SFX)(const fnn_conv_shape *s, const T *x, const T *w,      \
                                       int64_t p0, int64_t p1, T *y);
#define FNN_DIRECT_DX_OPS(T, SFX)                                                            \
    void (*direct_input_grad_block_##SFX)(const fnn_conv_shape *s, const T *dy, const T *w,  \
                                          int64_t p0, int64_t p1, T *dx);
#define FNN_DIRECT_DW_OPS(T, SFX)                                                            \
    void (*direct_weight_grad_block_##SFX)(const fnn_conv_shape *s, const T *x, const T *dy, \
                                           int64_t p0, int64_t p1, T *dw);
#define FNN_TAPS_OPS(T, SFX)                                                                 \
    void (*taps_forward_block_##SFX)(const fnn_conv_shape *s, const T *x, const T *w,        \
                                     const T *bias, int64_t mg, int64_t p0, int64_t p1,      \
                                     T *y, int64_t ldy, T *scratch);
#define FNN_TAPS_DW_OPS(T, SFX)                                                              \
    void (*taps_weight_grad_block_##SFX)(const fnn_conv_shape *s, const T *x, const T *dy,   \
                                         int64_t ldy, int64_t mg, int64_t p0, int64_t p1,    \
                                         T *dw, T *db, T *scratch);
#define FNN_TAPS_DX_OPS(T, SFX)                                                              \
    void (*taps_input_grad_rows_##SFX)(const fnn_conv_shape *s, const T *dy, const T *w,     \
                                       int64_t mg, int64_t ih0, int64_t ih1, T *dx,          \
                                       T *scratch);
typedef struct {
    const char *name;
    FNN_BLOCK_OPS(float, f32) FNN_BLOCK_OPS(double, f64)
    FNN_BLOCK_ADD_OPS(float, f32) FNN_BLOCK_ADD_OPS(double, f64)
    FNN_DIRECT_OPS(float, f32) FNN_DIRECT_OPS(double, f64)
    FNN_DIRECT_DX_OPS(float, f32) FNN_DIRECT_DX_OPS(double, f64)
    FNN_DIRECT_DW_OPS(float, f32) FNN_DIRECT_DW_OPS(double, f64)
    FNN_TAPS_OPS(float, f32) FNN_TAPS_OPS(double, f64)
    FNN_TAPS_DX_OPS(float, f32) FNN_TAPS_DX_OPS(double, f64)
    FNN_TAPS_DW_OPS(float, f32) FNN_TAPS_DW_OPS(double, f64)
} fnn_simd_ops;
#undef FNN_BLOCK_OPS
#undef FNN_BLOCK_ADD_OPS
#undef FNN_DIRECT_OPS
#undef FNN_DIRECT_DX_OPS
#undef FNN_DIRECT_DW_OPS
#undef FNN_TAPS_OPS
#undef FNN_TAPS_DX_OPS
#undef FNN_TAPS_DW_OPS

extern const fnn_simd_ops fnn_simd_portable, fnn_simd_avx2, fnn_simd_avx512;
extern const fnn_simd_ops *fnn_simd;

/* The instruction set in use as an index, 0 portable, 1 AVX2, 2 AVX-512 (as
 * FNN_ISA_LEVEL in isa_builds.h): the other kernel files pick their own
 * per-set tables with it, so FASTNN_SIMD applies to every file. */
static inline int fnn_simd_level(void) {
    return fnn_simd == &fnn_simd_avx512 ? 2 : fnn_simd == &fnn_simd_avx2 ? 1 : 0;
}

/* Whole batches: cols (N, C*kH*kW, L) and x (N, C, H, W). */
int fnn_im2col_f32(const fnn_conv_shape *s, const float *x, float *cols);
int fnn_im2col_f64(const fnn_conv_shape *s, const double *x, double *cols);
int fnn_col2im_f32(const fnn_conv_shape *s, const float *cols, float *x);
int fnn_col2im_f64(const fnn_conv_shape *s, const double *cols, double *x);

/* conv.c: any of dx, dw, db may be NULL (that gradient is not computed). */
#define FNN_DECLARE_CONV(T, SFX)                                                       \
    int fnn_conv2d_forward_##SFX(const fnn_conv_shape *s, const T *x, const T *w,      \
                                 const T *bias, T *y);                                 \
    int fnn_conv2d_backward_##SFX(const fnn_conv_shape *s, const T *dy, const T *x,    \
                                  const T *w, T *dx, T *dw, T *db);
FNN_DECLARE_CONV(float, f32)
FNN_DECLARE_CONV(double, f64)

/* winograd.c: F(2x2, 3x3) for the 3x3, stride-1, undilated, ungrouped
 * convolutions with padding up to 2 (fnn_winograd_applies). flip: w is the
 * weight of the convolution whose input gradient this one is, shaped
 * (in_channels, out_channels, 3, 3), and read rotated by 180 degrees. */
int fnn_winograd_applies(const fnn_conv_shape *s);
#define FNN_DECLARE_WINOGRAD(T, SFX)                                                   \
    int fnn_winograd_forward_##SFX(const fnn_conv_shape *s, const T *x, const T *w,    \
                                   const T *bias, int flip, T *y);
FNN_DECLARE_WINOGRAD(float, f32)
FNN_DECLARE_WINOGRAD(double, f64)

/* Geometry of one 2-d pooling (1-d pooling is in_h = kernel_h = out_h = 1).
 * pad_h/pad_w are the top/left padding; out_h/out_w (ceil_mode included) imply
 * the rest. Adaptive pooling uses only the sizes. */
typedef struct {
    int64_t batch, channels, in_h, in_w, out_h, out_w;
    int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
} fnn_pool_shape;

/* pool.c. idx (int64 flat positions in each input plane) may be NULL in the max
 * forwards. Backward passes overwrite dx (each plane is zeroed, then added to); the max
 * backward (plain and adaptive) returns FNN_EINVAL when an index lies outside
 * its plane (those are skipped). divisor_override 0 means none.
 * Spatial pyramid pooling: adaptive pooling of every plane to `levels` grids
 * at once (out_hw = {h_0, w_0, h_1, w_1, ...}; one level is adaptive pooling);
 * level j of plane p = n*C + c goes to y[n*C*S + C*off_j + c*L_j + bin], with
 * L_j = h_j*w_j, off_j = L_0 + ... + L_{j-1}, S = all of them: per image, the
 * flattened levels one after the other. idx as for max pooling (NULL: none;
 * ignored for average). The backward overwrites dx (max: scatter by idx).
 * Adaptive max pooling is such a pyramid of one level. */
#define FNN_DECLARE_POOL(T, SFX)                                                               \
    int fnn_max_pool2d_forward_##SFX(const fnn_pool_shape *s, const T *x, T *y, int64_t *idx); \
    int fnn_max_pool2d_backward_##SFX(const fnn_pool_shape *s, const T *dy, const int64_t *idx,\
                                      T *dx);                                                  \
    int fnn_avg_pool2d_forward_##SFX(const fnn_pool_shape *s, const T *x, T *y,               \
                                     int count_include_pad, int64_t divisor_override);         \
    int fnn_avg_pool2d_backward_##SFX(const fnn_pool_shape *s, const T *dy, T *dx,            \
                                      int count_include_pad, int64_t divisor_override);        \
    int fnn_adaptive_avg_pool2d_forward_##SFX(const fnn_pool_shape *s, const T *x, T *y);     \
    int fnn_adaptive_avg_pool2d_backward_##SFX(const fnn_pool_shape *s, const T *dy, T *dx);   \
    int fnn_pyramid_pool_forward_##SFX(const fnn_pool_shape *s, int64_t levels,               \
                                       const int64_t *out_hw, int is_max, const T *x, T *y,    \
                                       int64_t *idx);                                          \
    int fnn_pyramid_pool_backward_##SFX(const fnn_pool_shape *s, int64_t levels,              \
                                        const int64_t *out_hw, int is_max, const T *dy,        \
                                        const int64_t *idx, T *dx);
FNN_DECLARE_POOL(float, f32)
FNN_DECLARE_POOL(double, f64)

/* gemm.c: c[i] (m, n) = a (m, k) @ b[i] (k, n) for i < batch, in parallel. */
int fnn_gemm_batch_f32(int64_t batch, int64_t m, int64_t n, int64_t k, const float *a,
                       const float *b, float *c);
int fnn_gemm_batch_f64(int64_t batch, int64_t m, int64_t n, int64_t k, const double *a,
                       const double *b, double *c);

/* gemm_packed.c: C = A @ B with B packed once and reused by many calls (the recurrent
 * weight of an LSTM/GRU step loop). B (k x n) is stored in panels of fnn_packed_nr
 * columns (that of the instruction set in use), the last panel padded with zeros.
 * - fnn_pack_b: B[p][j] = b[p*ldb + j] (trans_b = 0) or b[j*ldb + p] (trans_b = 1:
 *   b is an n x k weight W and B = W^T), into fnn_packed_size elements at bp.
 * - fnn_gemm_packed: c[i*ldc + j] = (accumulate ? c[i*ldc + j] : 0) + sum_p a[i*lda + p] *
 *   B[p][j] for i < m and n0 <= j < n1, n0 a multiple of fnn_packed_nr; flags are
 *   FNN_PACKED_ACCUMULATE (without it, c is only written), FNN_PACKED_PREFETCH (the
 *   caller's panels do not stay in L2 from call to call: fetch them ahead) and
 *   FNN_PACKED_TRANS_A (A is stored transposed: a[p*lda + i] in place of a[i*lda + p]).
 *   Single-threaded, re-entrant, allocates nothing: one thread per column range. Element (i, j) does not
 *   depend on n0, n1, m or the prefetch, so ranges split over threads give the bits of
 *   one call.
 * - fnn_gemm_rows: the same for all n columns of a row-major B = b (ldb) read in place,
 *   with no packing (the caller lays it out as the tiles read it: im2col's columns),
 *   without FNN_PACKED_ACCUMULATE starting row i's sums from bias[i] (bias NULL: 0);
 *   nothing past column n of b is read. */
enum { FNN_PACKED_ACCUMULATE = 1, FNN_PACKED_PREFETCH = 2, FNN_PACKED_TRANS_A = 4 };
#define FNN_DECLARE_PACKED(T, SFX)                                                             \
    int64_t fnn_packed_nr_##SFX(void);                                                         \
    int64_t fnn_packed_size_##SFX(int64_t k, int64_t n);                                       \
    void fnn_pack_b_##SFX(int64_t k, int64_t n, const T *b, int64_t ldb, int trans_b, T *bp);  \
    void fnn_gemm_packed_##SFX(int64_t m, int64_t n0, int64_t n1, int64_t k, const T *a,       \
                               int64_t lda, const T *bp, int flags, T *c, int64_t ldc);        \
    void fnn_gemm_rows_##SFX(int64_t m, int64_t n, int64_t k, const T *a, int64_t lda,         \
                             const T *b, int64_t ldb, const T *bias, int flags, T *c,           \
                             int64_t ldc);
FNN_DECLARE_PACKED(float, f32)
FNN_DECLARE_PACKED(double, f64)

/* One layer and one direction of a recurrence over a whole sequence (rnn.c).
 * x, dx (T, N, I) and y, dy (T, N, H) are contiguous. Row n is active
 * at step t iff t < lengths[n] (lengths NULL: always): an inactive row keeps
 * its state and outputs 0, so with reverse the row starts at its own last step.
 * Row n of x, dx, lengths and the training buffers is row rows[n] of h0, c0,
 * y, h_n, c_n and of dy, dh_n, dc_n, dh0, dc0 (rows NULL: row n): the caller
 * sorts the rows longest first without copying those. The forward's x_rows
 * does the same for x (row n of the kernel is x's row x_rows[n]; NULL: row n),
 * so that inference copies nothing.
 * Training: gates (T, N, G) with G = 4H (LSTM: i f g o; GRU: r z n and
 * W_hn h + b_hn) or H (RNN), hs (T + 1, N, H) and, for LSTM, cs keep the
 * activations and states the backward reads, hs/cs holding the state before
 * step t at slot t (forward) or t + 1 (reverse). Inference: all three NULL.
 * Biases, and their gradients, may be NULL; so may dy, dh_n and dc_n (zero).
 * The backward overwrites its outputs, and `gates` with the gate gradients
 * (so it runs once per forward); it ignores dy on padded steps. */
enum { FNN_RNN_LSTM = 0, FNN_RNN_GRU = 1, FNN_RNN_TANH = 2, FNN_RNN_RELU = 3 };
typedef struct {
    int64_t steps, batch, input_size, hidden_size;
    int mode, reverse;
} fnn_rnn_shape;

#define FNN_DECLARE_RNN(T, SFX)                                                                 \
    int fnn_rnn_forward_##SFX(const fnn_rnn_shape *s, const T *x, const T *w_ih, const T *w_hh, \
                              const T *b_ih, const T *b_hh, const int64_t *lengths,             \
                              const int64_t *rows, const int64_t *x_rows, const T *h0,        \
                              const T *c0, T *y, T *h_n, T *c_n, T *gates, T *hs, T *cs);       \
    int fnn_rnn_backward_##SFX(const fnn_rnn_shape *s, const T *x, const T *w_ih,               \
                               const T *w_hh, const int64_t *lengths, const int64_t *rows,      \
                               T *gates, const T *hs, const T *cs, const T *dy, const T *dh_n,  \
                               const T *dc_n, T *dx, T *dh0, T *dc0, T *dw_ih, T *dw_hh,        \
                               T *db_ih, T *db_hh);
FNN_DECLARE_RNN(float, f32)
FNN_DECLARE_RNN(double, f64)

/* Floor division and the range of output positions o with 0 <= o*stride + offset < in_size. */
static inline int64_t fnn_floordiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static inline void fnn_valid_range(int64_t offset, int64_t stride, int64_t in_size,
                                   int64_t out_size, int64_t *lo, int64_t *hi) {
    int64_t a = -fnn_floordiv(offset, stride);            /* ceil(-offset / stride) */
    int64_t b = fnn_floordiv(in_size - 1 - offset, stride) + 1;
    *lo = a < 0 ? 0 : (a > out_size ? out_size : a);
    *hi = b < *lo ? *lo : (b > out_size ? out_size : b);
}

#endif
