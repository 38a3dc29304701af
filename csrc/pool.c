/* Pooling, forward and backward: max, average and adaptive (average and max)
 * over the (H, W) planes of an (N, C, H, W) batch; 1-d pooling is the case
 * in_h = kernel_h = out_h = 1.
 *
 * Every (image, channel) plane is independent, so work is split over planes
 * (forward: over runs of output rows of a plane) and the result never depends
 * on the thread count. Backward passes zero one plane of grad_input per work
 * item and add into it, so overlapping windows are summed without races and
 * in a fixed order.
 *
 * The numbers are PyTorch's CPU kernels', including its corner rules:
 * - max: a value is taken when it is greater than the running maximum or NaN,
 *   visiting the window in row-major order from -inf with the index of the
 *   first in-bounds tap; so ties keep the first maximum, a NaN wins and the
 *   last NaN is kept, and a window of -inf reports its first in-bounds tap.
 * - average: the divisor counts the window clipped to the padded input
 *   (count_include_pad) or to the input itself, or is divisor_override; in
 *   ceil_mode the last window may hang over the bottom/right padding and is
 *   clipped there, as PyTorch does.
 * - adaptive: bin i of n over size L is [floor(i*L/n), ceil((i+1)*L/n)).
 *
 * Max and average pooling are separable: per output row, the window's input
 * rows are reduced first (long contiguous loops), then each output reduces
 * its columns of that, tap after tap over all the outputs a tap reaches, so
 * that the inner loops are plain strided loops the compiler vectorizes. Like
 * im2col.c, this file includes itself: once per instruction set (portable,
 * AVX2, AVX-512; the one im2col.c chose at import is used), and within each
 * once per dtype. */
#if !defined(FNN_ISA) /* ---- top level: the instruction sets and the entry points ---- */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "fastnn.h"

/* The per-row and per-plane kernels of one instruction set. */
#define FNN_POOL_OPS(T, SFX)                                                                  \
    void (*max_rows_##SFX)(const fnn_pool_shape *s, const T *x, int64_t oh0, int64_t oh1,    \
                           T *y, int64_t *idx, void *work);                                   \
    void (*avg_rows_##SFX)(const fnn_pool_shape *s, const T *x, int64_t oh0, int64_t oh1,    \
                           T *y, int cip, int64_t divisor, void *work);                       \
    void (*avg_backward_plane_##SFX)(const fnn_pool_shape *s, const T *dy, T *dx, int cip,   \
                                     int64_t divisor, void *work);                            \
    int (*max_backward_plane_##SFX)(const fnn_pool_shape *s, const T *dy,                    \
                                    const int64_t *idx, T *dx);                               \
    void (*adaptive_avg_rows_##SFX)(const fnn_pool_shape *s, const T *x, int64_t oh0,        \
                                    int64_t oh1, T *y, void *work);                           \
    void (*adaptive_max_rows_##SFX)(const fnn_pool_shape *s, const T *x, int64_t oh0,        \
                                    int64_t oh1, T *y, int64_t *idx, void *work);             \
    void (*adaptive_avg_backward_plane_##SFX)(const fnn_pool_shape *s, const T *dy, T *dx);   \
    void (*pyramid_tile_##SFX)(const fnn_pool_shape *s, int64_t levels, const int64_t *out_hw, \
                               int is_max, const T *x, int64_t p0, T *y, int64_t *idx,        \
                               void *work);                                                   \
    void (*global_avg_##SFX)(int64_t planes, int64_t h, int64_t w, const T *x, T *y);
typedef struct {
    FNN_POOL_OPS(float, f32)
    FNN_POOL_OPS(double, f64)
} fnn_pool_ops;
#undef FNN_POOL_OPS

/* First in-bounds tap of a window starting at `start` (PyTorch steps a start
 * in the padding forward by whole dilations). */
static inline int64_t fnn_first_tap(int64_t start, int64_t dilation) {
    return start >= 0 ? start : start + ((-start + dilation - 1) / dilation) * dilation;
}

/* Adaptive bins: [floor(i*size/out), ceil((i+1)*size/out)). */
static inline int64_t fnn_bin_start(int64_t i, int64_t out, int64_t size) {
    return out == 1 ? 0 : i * size / out; /* global pooling skips the division */
}
static inline int64_t fnn_bin_end(int64_t i, int64_t out, int64_t size) {
    return out == 1 ? size : ((i + 1) * size + out - 1) / out;
}

/* Average pooling's window along one axis, as PyTorch clips it: `full` is its
 * extent inside the padded input (count_include_pad), [*lo, *hi) inside the
 * input itself. */
static inline int64_t fnn_avg_extent(int64_t o, int64_t stride, int64_t pad, int64_t k,
                                     int64_t size, int64_t *lo, int64_t *hi) {
    int64_t a = o * stride - pad, b = a + k;
    if (b > size + pad) b = size + pad;
    *lo = a < 0 ? 0 : a;
    *hi = b > size ? size : b;
    return b - a;
}

/* Spatial pyramid pooling: planes with at most FNN_TILE_MAX_HW pixels go
 * FNN_TILE at a time through a tile whose rows hold one pixel of FNN_TILE
 * planes side by side, so that every step of every bin of every level is one
 * vector operation over FNN_TILE planes (small planes give the per-plane
 * loops only a few elements per row, which vectorize poorly); each lane still
 * visits its bin in PyTorch's row-major order. Other planes (and pyramids of
 * more than FNN_TILE_MAX_OUT outputs, whose tile of outputs would be large)
 * go one at a time through the adaptive row kernels, level by level. */
#define FNN_TILE 16
#define FNN_TILE_MAX_HW 4096
#define FNN_TILE_MAX_OUT 4096
/* Global average pooling: planes per call of the kernel (a call per plane
 * costs about as much as pooling a 7x7 plane). */
#define FNN_GLOBAL_BLOCK 64

/* Total outputs of the levels, S = sum of out_h*out_w. */
static int64_t fnn_pyramid_size(int64_t levels, const int64_t *out_hw) {
    int64_t total = 0;
    for (int64_t j = 0; j < levels; j++) total += out_hw[2 * j] * out_hw[2 * j + 1];
    return total;
}

/* Where level j's outputs of plane p start: y[n*C*S + C*off_j + c*L_j]. */
static int64_t fnn_pyramid_offset(const fnn_pool_shape *s, int64_t S, int64_t off_j, int64_t L_j,
                                  int64_t p) {
    int64_t n = p / s->channels, c = p % s->channels;
    return n * s->channels * S + s->channels * off_j + c * L_j;
}

/* The sizes of level j as a pooling shape for the adaptive row kernels. */
static fnn_pool_shape fnn_level_shape(const fnn_pool_shape *s, const int64_t *out_hw, int64_t j) {
    fnn_pool_shape l = *s;
    l.out_h = out_hw[2 * j];
    l.out_w = out_hw[2 * j + 1];
    return l;
}

/* Whether a pyramid goes through tiles, and the work buffer it needs: the tile
 * and its outputs if so, and the rows of the adaptive row kernels. */
static int fnn_pyramid_tiled(const fnn_pool_shape *s, int64_t S) {
    return s->in_h * s->in_w <= FNN_TILE_MAX_HW && S <= FNN_TILE_MAX_OUT &&
           s->batch * s->channels >= FNN_TILE;
}
#define FNN_PYRAMID_WORK_BYTES(T, s, S, max_ow, tiled)                                       \
    ((tiled) ? (size_t)((s)->in_h * (s)->in_w * FNN_TILE) * sizeof(T) +                      \
                   (size_t)((S) * FNN_TILE) * (sizeof(T) + sizeof(int64_t))                   \
             : 0) +                                                                           \
        (size_t)((s)->in_w + 2 * (max_ow)) * (sizeof(T) + sizeof(int64_t))

#define FNN_ISA_SOURCE "pool.c"
#include "isa_builds.h"

#define FNN_POOL_OPS_OF(name, isa) name##_##isa##_f32
#define FNN_POOL_OPS_OF64(name, isa) name##_##isa##_f64
#define FNN_POOL_LIST(isa, OF)                                                                \
    OF(max_rows, isa), OF(avg_rows, isa), OF(avg_backward_plane, isa),                        \
        OF(max_backward_plane, isa), OF(adaptive_avg_rows, isa), OF(adaptive_max_rows, isa),  \
        OF(adaptive_avg_backward_plane, isa), OF(pyramid_tile, isa), OF(global_avg, isa)
#define FNN_DEFINE_POOL_OPS(isa)                                                              \
    static const fnn_pool_ops fnn_pool_##isa = {FNN_POOL_LIST(isa, FNN_POOL_OPS_OF),          \
                                                FNN_POOL_LIST(isa, FNN_POOL_OPS_OF64)};
FNN_DEFINE_POOL_OPS(portable)
FNN_DEFINE_POOL_OPS(avx2)
FNN_DEFINE_POOL_OPS(avx512)

/* The set runtime.c chose (fnn_simd_level). */
static const fnn_pool_ops *fnn_pool_ops_now(void) {
    static const fnn_pool_ops *const sets[] = {&fnn_pool_portable, &fnn_pool_avx2, &fnn_pool_avx512};
    return sets[fnn_simd_level()];
}

/* Forward passes: work items are runs of output rows of one plane; each plane is
 * cut into enough runs for FNN_POOL_MIN_ITEMS items even when there are few
 * planes (the split depends on the shape only). Backward passes: one item per
 * plane, since windows of neighbouring output rows overlap in the input; each
 * zeroes its plane of dx first, then adds into it while it is in cache (a
 * zero-filled dx from calloc cost a page fault per 4 KB in the kernel, and the
 * faults did not get faster with a second thread). */
#define FNN_POOL_MIN_ITEMS 32

/* Below this many input and output elements a call runs on one thread: waking
 * the others costs more than the work (and far more when another process holds
 * their cores: 0.7 ms against 0.02 ms for a 2x5x6 input, measured). */
#define FNN_POOL_PARALLEL_MIN ((int64_t)1 << 15)
static int fnn_pool_threads(const fnn_pool_shape *s) {
    int64_t planes = s->batch * s->channels;
    return planes * (s->in_h * s->in_w + s->out_h * s->out_w) >= FNN_POOL_PARALLEL_MIN
               ? fnn_get_num_threads()
               : 1;
}
static int64_t fnn_row_chunks(const fnn_pool_shape *s) {
    int64_t planes = s->batch * s->channels;
    int64_t chunks = (FNN_POOL_MIN_ITEMS + planes - 1) / planes;
    return chunks < s->out_h ? chunks : s->out_h;
}

/* A forward pass: runs of output rows as work items, each thread with a work
 * buffer of a few rows (FNN_WORK_BYTES) for the row kernels. */
#define FNN_WORK_BYTES(T, s) ((size_t)((s)->in_w + 2 * (s)->out_w) * (sizeof(T) + sizeof(int64_t)))
#define FNN_FORWARD_ROWS(T, s, CALL)                                                          \
    int64_t hw = (s)->in_h * (s)->in_w, L = (s)->out_h * (s)->out_w;                         \
    int64_t chunks = fnn_row_chunks(s), items = (s)->batch * (s)->channels * chunks;         \
    int status = FNN_OK;                                                                      \
    _Pragma("omp parallel num_threads(fnn_pool_threads(s))")                                  \
    {                                                                                         \
        void *work = malloc(FNN_WORK_BYTES(T, s));                                            \
        if (!work) {                                                                          \
            _Pragma("omp atomic write") status = FNN_ENOMEM;                                  \
        }                                                                                     \
        _Pragma("omp for schedule(static)")                                                   \
        for (int64_t r = 0; r < items; r++) {                                                 \
            /* integer divisions cost more than a small plane's pooling: none when \
             * a plane is one item */                                                       \
            int64_t p = r, oh0 = 0, oh1 = (s)->out_h;                                         \
            if (chunks > 1) {                                                                 \
                p = r / chunks;                                                               \
                oh0 = r % chunks * (s)->out_h / chunks;                                       \
                oh1 = (r % chunks + 1) * (s)->out_h / chunks;                                 \
            }                                                                                 \
            if (work) CALL;                                                                   \
        }                                                                                     \
        free(work);                                                                           \
    }                                                                                         \
    return status;

#define FNN_DEFINE_POOL(T, SFX)                                                               \
    int fnn_max_pool2d_forward_##SFX(const fnn_pool_shape *s, const T *x, T *y,              \
                                     int64_t *idx) {                                          \
        const fnn_pool_ops *ops = fnn_pool_ops_now();                                         \
        FNN_FORWARD_ROWS(T, s, ops->max_rows_##SFX(s, x + p * hw, oh0, oh1, y + p * L,        \
                                                   idx ? idx + p * L : NULL, work))           \
    }                                                                                         \
    int fnn_avg_pool2d_forward_##SFX(const fnn_pool_shape *s, const T *x, T *y,              \
                                     int count_include_pad, int64_t divisor_override) {       \
        const fnn_pool_ops *ops = fnn_pool_ops_now();                                         \
        FNN_FORWARD_ROWS(T, s, ops->avg_rows_##SFX(s, x + p * hw, oh0, oh1, y + p * L,        \
                                                   count_include_pad, divisor_override, work))\
    }                                                                                         \
    int fnn_adaptive_avg_pool2d_forward_##SFX(const fnn_pool_shape *s, const T *x, T *y) {   \
        const fnn_pool_ops *ops = fnn_pool_ops_now();                                         \
        if (s->out_h == 1 && s->out_w == 1) { /* global: runs of whole planes */              \
            int64_t planes = s->batch * s->channels, hw = s->in_h * s->in_w;                 \
            int64_t blocks = (planes + FNN_GLOBAL_BLOCK - 1) / FNN_GLOBAL_BLOCK;              \
            _Pragma("omp parallel for schedule(static) num_threads(fnn_pool_threads(s))")     \
            for (int64_t b = 0; b < blocks; b++) {                                            \
                int64_t p0 = b * FNN_GLOBAL_BLOCK;                                            \
                int64_t n = planes - p0 < FNN_GLOBAL_BLOCK ? planes - p0 : FNN_GLOBAL_BLOCK;  \
                ops->global_avg_##SFX(n, s->in_h, s->in_w, x + p0 * hw, y + p0);              \
            }                                                                                 \
            return FNN_OK;                                                                    \
        }                                                                                     \
        FNN_FORWARD_ROWS(T, s, ops->adaptive_avg_rows_##SFX(s, x + p * hw, oh0, oh1,          \
                                                            y + p * L, work))                 \
    }                                                                                         \
    int fnn_max_pool2d_backward_##SFX(const fnn_pool_shape *s, const T *dy,                  \
                                      const int64_t *idx, T *dx) {                            \
        const fnn_pool_ops *ops = fnn_pool_ops_now();                                         \
        int64_t hw = s->in_h * s->in_w, L = s->out_h * s->out_w;                              \
        int64_t planes = s->batch * s->channels;                                             \
        int bad = 0;                                                                          \
        _Pragma("omp parallel for schedule(static) reduction(|:bad) num_threads(fnn_pool_threads(s))")\
        for (int64_t p = 0; p < planes; p++)                                                  \
        {                                                                                     \
            memset(dx + p * hw, 0, (size_t)hw * sizeof(T));                                   \
            bad |= ops->max_backward_plane_##SFX(s, dy + p * L, idx + p * L, dx + p * hw);    \
        }                                                                                     \
        return bad ? FNN_EINVAL : FNN_OK;                                                     \
    }                                                                                         \
    int fnn_avg_pool2d_backward_##SFX(const fnn_pool_shape *s, const T *dy, T *dx,           \
                                      int count_include_pad, int64_t divisor_override) {      \
        const fnn_pool_ops *ops = fnn_pool_ops_now();                                         \
        int64_t hw = s->in_h * s->in_w, L = s->out_h * s->out_w;                              \
        int64_t planes = s->batch * s->channels;                                             \
        int status = FNN_OK;                                                                  \
        _Pragma("omp parallel num_threads(fnn_pool_threads(s))")                              \
        {                                                                                     \
            void *work = malloc(FNN_WORK_BYTES(T, s));                                        \
            if (!work) {                                                                      \
                _Pragma("omp atomic write") status = FNN_ENOMEM;                              \
            }                                                                                 \
            _Pragma("omp for schedule(static)")                                               \
            for (int64_t p = 0; p < planes; p++) {                                            \
                memset(dx + p * hw, 0, (size_t)hw * sizeof(T));                               \
                if (work)                                                                     \
                    ops->avg_backward_plane_##SFX(s, dy + p * L, dx + p * hw,                 \
                                                  count_include_pad, divisor_override, work); \
            }                                                                                 \
            free(work);                                                                       \
        }                                                                                     \
        return status;                                                                        \
    }                                                                                         \
    int fnn_adaptive_avg_pool2d_backward_##SFX(const fnn_pool_shape *s, const T *dy, T *dx) {\
        const fnn_pool_ops *ops = fnn_pool_ops_now();                                         \
        int64_t hw = s->in_h * s->in_w, L = s->out_h * s->out_w;                              \
        int64_t planes = s->batch * s->channels;                                             \
        _Pragma("omp parallel for schedule(static) num_threads(fnn_pool_threads(s))")         \
        for (int64_t p = 0; p < planes; p++)                                                  \
        {                                                                                     \
            memset(dx + p * hw, 0, (size_t)hw * sizeof(T));                                   \
            ops->adaptive_avg_backward_plane_##SFX(s, dy + p * L, dx + p * hw);               \
        }                                                                                     \
        return FNN_OK;                                                                        \
    }                                                                                         \
    int fnn_pyramid_pool_forward_##SFX(const fnn_pool_shape *s, int64_t levels,              \
                                       const int64_t *out_hw, int is_max, const T *x, T *y,   \
                                       int64_t *idx) {                                        \
        const fnn_pool_ops *ops = fnn_pool_ops_now();                                         \
        int64_t hw = s->in_h * s->in_w, planes = s->batch * s->channels;                     \
        int64_t S = fnn_pyramid_size(levels, out_hw), max_ow = 1;                             \
        for (int64_t j = 0; j < levels; j++)                                                  \
            if (out_hw[2 * j + 1] > max_ow) max_ow = out_hw[2 * j + 1];                       \
        int tiled = fnn_pyramid_tiled(s, S);                                                  \
        int64_t groups = tiled ? planes / FNN_TILE : 0;                                       \
        int64_t items = groups + (planes - groups * FNN_TILE);                               \
        fnn_pool_shape big = *s;                                                              \
        big.out_h = 1;                                                                        \
        big.out_w = S;                                                                        \
        int status = FNN_OK;                                                                  \
        _Pragma("omp parallel num_threads(fnn_pool_threads(&big))")                           \
        {                                                                                     \
            void *work = malloc(FNN_PYRAMID_WORK_BYTES(T, s, S, max_ow, tiled));              \
            if (!work) {                                                                      \
                _Pragma("omp atomic write") status = FNN_ENOMEM;                              \
            }                                                                                 \
            _Pragma("omp for schedule(static)")                                               \
            for (int64_t i = 0; i < items; i++) {                                             \
                if (!work) continue;                                                          \
                if (i < groups) {                                                             \
                    ops->pyramid_tile_##SFX(s, levels, out_hw, is_max, x, i * FNN_TILE, y,    \
                                            idx, work);                                       \
                    continue;                                                                 \
                }                                                                             \
                int64_t p = groups * FNN_TILE + (i - groups), off = 0;                       \
                for (int64_t j = 0; j < levels; j++) {                                        \
                    fnn_pool_shape l = fnn_level_shape(s, out_hw, j);                         \
                    int64_t Lj = l.out_h * l.out_w, o = fnn_pyramid_offset(s, S, off, Lj, p);\
                    if (is_max)                                                               \
                        ops->adaptive_max_rows_##SFX(&l, x + p * hw, 0, l.out_h, y + o,       \
                                                     idx ? idx + o : NULL, work);             \
                    else                                                                      \
                        ops->adaptive_avg_rows_##SFX(&l, x + p * hw, 0, l.out_h, y + o, work);\
                    off += Lj;                                                                \
                }                                                                             \
            }                                                                                 \
            free(work);                                                                       \
        }                                                                                     \
        return status;                                                                        \
    }                                                                                         \
    int fnn_pyramid_pool_backward_##SFX(const fnn_pool_shape *s, int64_t levels,             \
                                        const int64_t *out_hw, int is_max, const T *dy,       \
                                        const int64_t *idx, T *dx) {                          \
        const fnn_pool_ops *ops = fnn_pool_ops_now();                                         \
        int64_t hw = s->in_h * s->in_w, planes = s->batch * s->channels;                     \
        int64_t S = fnn_pyramid_size(levels, out_hw);                                         \
        fnn_pool_shape big = *s;                                                              \
        big.out_h = 1;                                                                        \
        big.out_w = S;                                                                        \
        int bad = 0;                                                                          \
        _Pragma("omp parallel for schedule(static) reduction(|:bad) num_threads(fnn_pool_threads(&big))")\
        for (int64_t p = 0; p < planes; p++) {                                                \
            int64_t off = 0;                                                                  \
            memset(dx + p * hw, 0, (size_t)hw * sizeof(T));                                   \
            for (int64_t j = 0; j < levels; j++) {                                            \
                fnn_pool_shape l = fnn_level_shape(s, out_hw, j);                             \
                int64_t Lj = l.out_h * l.out_w, o = fnn_pyramid_offset(s, S, off, Lj, p);    \
                if (is_max)                                                                   \
                    bad |= ops->max_backward_plane_##SFX(&l, dy + o, idx + o, dx + p * hw);   \
                else                                                                          \
                    ops->adaptive_avg_backward_plane_##SFX(&l, dy + o, dx + p * hw);          \
                off += Lj;                                                                    \
            }                                                                                 \
        }                                                                                     \
        return bad ? FNN_EINVAL : FNN_OK;                                                     \
    }
FNN_DEFINE_POOL(float, f32)
FNN_DEFINE_POOL(double, f64)

#elif !defined(T) /* ---- one instruction set: the dtypes ---- */

/* TI: an integer as wide as T, for positions selected lane by lane along with
 * the values (max_update, max_combine, pyramid_tile) */
#define T float
#define TI int32_t
#define SFX f32
#include "pool.c"
#undef T
#undef TI
#undef SFX
#define T double
#define TI int64_t
#define SFX f64
#include "pool.c"
#undef T
#undef TI
#undef SFX

#else /* ---- body: one instruction set, one dtype ---- */

/* m[j] = max(m[j], src[j*stride]) by PyTorch's rule (greater, or NaN), and its
 * flat position i0 + j*stride in mi when mi is given. Strides 1 and 2 get
 * loops with a constant stride, which the compiler vectorizes. Positions in
 * work buffers are TI, as wide as T (planes are below 2^31 pixels, which
 * _validate checks), so that values and positions share one mask per vector. */
#define FNN_MAX_STEP(J, S)                                                                    \
    do {                                                                                      \
        T v = src[(J) * (S)];                                                                 \
        int take = (v > m[J]) | (v != v);                                                     \
        m[J] = take ? v : m[J];                                                               \
        mi[J] = take ? b0 + (J) * (S) : mi[J];                                                \
    } while (0)
static inline void FNN_NAME(max_update)(int64_t n, const T *restrict src, int64_t stride,
                                        T *restrict m, TI *restrict mi, int64_t i0) {
    if (mi) {
        /* positions counted in TI, so the vector of them is as wide as the values' */
        const TI b0 = (TI)i0, tn = (TI)n, ts = (TI)stride;
        if (stride == 1)
            for (TI j = 0; j < tn; j++) FNN_MAX_STEP(j, 1);
        else if (stride == 2)
            for (TI j = 0; j < tn; j++) FNN_MAX_STEP(j, 2);
        else
            for (TI j = 0; j < tn; j++) FNN_MAX_STEP(j, ts);
    } else {
        /* Values only: the greater of the two, the new one when they are unordered
         * (x86's max instruction, exactly), unless a NaN is already there. Written
         * as one select on a mask the compiler made a masked load of, which ran 2x
         * slower on random data than on constant data. */
#define FNN_MAX_VALUE(J, S)                                                                   \
    do {                                                                                      \
        T v = src[(J) * (S)], c = m[J];                                                       \
        T r = c > v ? c : v;                                                                  \
        m[J] = c != c ? c : r;                                                                \
    } while (0)
        if (stride == 1)
            for (int64_t j = 0; j < n; j++) FNN_MAX_VALUE(j, 1);
        else if (stride == 2)
            for (int64_t j = 0; j < n; j++) FNN_MAX_VALUE(j, 2);
        else
            for (int64_t j = 0; j < n; j++) FNN_MAX_VALUE(j, stride);
#undef FNN_MAX_VALUE
    }
}
#undef FNN_MAX_STEP

/* dst[j*stride] += src[j] */
static inline void FNN_NAME(add_strided)(int64_t n, const T *restrict src, int64_t stride,
                                         T *restrict dst) {
    if (stride == 1)
        for (int64_t j = 0; j < n; j++) dst[j] += src[j];
    else if (stride == 2)
        for (int64_t j = 0; j < n; j++) dst[2 * j] += src[j];
    else
        for (int64_t j = 0; j < n; j++) dst[j * stride] += src[j];
}

/* dst[j] += src[j*stride] */
static inline void FNN_NAME(gather_add)(int64_t n, const T *restrict src, int64_t stride,
                                        T *restrict dst) {
    if (stride == 1)
        for (int64_t j = 0; j < n; j++) dst[j] += src[j];
    else if (stride == 2)
        for (int64_t j = 0; j < n; j++) dst[j] += src[2 * j];
    else
        for (int64_t j = 0; j < n; j++) dst[j] += src[j * stride];
}

/* For each kernel column kj, the run [lo, hi) of output columns whose tap kj
 * lands inside the input: the same for every output row, so it is computed
 * once per call (in a fixed buffer for kernels up to FNN_TAPS_MAX wide, and
 * per use beyond that) rather than once per row and tap: its two divisions
 * cost more than the short runs of a small image. */
#ifndef FNN_TAPS_MAX
#define FNN_TAPS_MAX 32
#endif
typedef struct {
    int64_t lo[FNN_TAPS_MAX], hi[FNN_TAPS_MAX];
    int64_t a, b; /* the interior: outputs [a, b) have every tap inside the input */
} FNN_NAME(col_runs);

static inline void FNN_NAME(runs_get)(const fnn_pool_shape *s, const FNN_NAME(col_runs) *r,
                                      int64_t kj, int64_t *lo, int64_t *hi);

static inline void FNN_NAME(runs_init)(const fnn_pool_shape *s, FNN_NAME(col_runs) *r) {
    for (int64_t kj = 0; kj < s->kernel_w && kj < FNN_TAPS_MAX; kj++)
        fnn_valid_range(kj * s->dilation_w - s->pad_w, s->stride_w, s->in_w, s->out_w,
                        &r->lo[kj], &r->hi[kj]);
    r->a = 0;
    r->b = s->out_w;
    for (int64_t kj = 0; kj < s->kernel_w; kj++) {
        int64_t lo, hi;
        FNN_NAME(runs_get)(s, r, kj, &lo, &hi);
        r->a = lo > r->a ? lo : r->a;
        r->b = hi < r->b ? hi : r->b;
    }
    if (r->a > r->b) r->a = r->b = 0; /* no interior: every output is an edge */
}

static inline void FNN_NAME(runs_get)(const fnn_pool_shape *s, const FNN_NAME(col_runs) *r,
                                      int64_t kj, int64_t *lo, int64_t *hi) {
    if (kj < FNN_TAPS_MAX) {
        *lo = r->lo[kj];
        *hi = r->hi[kj];
    } else {
        fnn_valid_range(kj * s->dilation_w - s->pad_w, s->stride_w, s->in_w, s->out_w, lo, hi);
    }
}

/* Combine candidate (v, vi) into the running (*m, *mi) by the order-free form
 * of PyTorch's rule (see max_combine). */
static inline void FNN_NAME(max_pick)(T v, TI vi, T *m, TI *mi) {
    int take = (v > *m) | ((v == *m) & (vi < *mi)) | ((v != v) & ((*m == *m) | (vi > *mi)));
    *m = take ? v : *m;
    *mi = take ? vi : *mi;
}

/* The horizontal step of max pooling with indices: candidates (sv, si) taken
 * every `stride` columns meet the running (m, mi) of each output. The
 * vertical step has kept, per column, PyTorch's choice among the window's
 * rows; across columns the order of visits is not PyTorch's (row-major), so
 * the rule is applied in the form that does not depend on it: a NaN beats a
 * number and the later (larger index) of two NaNs wins; between numbers the
 * greater wins and, when equal, the earlier (smaller index), which is the
 * first one in row-major order since ih*W + iw grows with it. */
#define FNN_MAX_COMBINE(J, S)                                                                 \
    do {                                                                                      \
        T v = sv[(J) * (S)], cur = m[J];                                                      \
        TI vi = si[(J) * (S)], ci = mi[J];                                                    \
        int take = (v > cur) | ((v == cur) & (vi < ci)) |                                     \
                   ((v != v) & ((cur == cur) | (vi > ci)));                                   \
        m[J] = take ? v : cur;                                                                \
        mi[J] = take ? vi : ci;                                                               \
    } while (0)
static inline void FNN_NAME(max_combine)(int64_t n, const T *restrict sv,
                                         const TI *restrict si, int64_t stride,
                                         T *restrict m, TI *restrict mi) {
    if (stride == 1)
        for (int64_t j = 0; j < n; j++) FNN_MAX_COMBINE(j, 1);
    else if (stride == 2)
        for (int64_t j = 0; j < n; j++) FNN_MAX_COMBINE(j, 2);
    else
        for (int64_t j = 0; j < n; j++) FNN_MAX_COMBINE(j, stride);
}
#undef FNN_MAX_COMBINE

/* Output rows [oh0, oh1) of max pooling on plane x: y (and idx, if not NULL)
 * are whole output planes; `work` holds in_w values and in_w + 2*out_w TI.
 *
 * Separable, as a max is: for each output row, first the maximum of the
 * window's rows for every input column (tv, with its position in ti), long
 * contiguous loops; then, for each output, the maximum of its window's
 * columns of that. Walking the window's taps one by one for every output
 * costs about three times as much for a 3x3 window. Positions are kept as TI
 * (see max_update) in tr and widened to int64 when a row is done. */
static void FNN_NAME(max_rows)(const fnn_pool_shape *s, const T *x, int64_t oh0, int64_t oh1,
                               T *y, int64_t *idx, void *work) {
    const int64_t W = s->in_w, OW = s->out_w, sw = s->stride_w, dw = s->dilation_w;
    TI *restrict tr = work; /* the output row's positions, as TI */
    TI *restrict c0 = tr + OW; /* each output's first in-bounds column */
    TI *restrict ti = c0 + OW;
    T *restrict tv = (T *)(ti + W);
    FNN_NAME(col_runs) runs;
    FNN_NAME(runs_init)(s, &runs);
    if (idx)
        for (int64_t ow = 0; ow < OW; ow++) c0[ow] = (TI)fnn_first_tap(ow * sw - s->pad_w, dw);
    for (int64_t oh = oh0; oh < oh1; oh++) {
        T *restrict yr = y + oh * OW;
        int64_t *restrict out_i = idx ? idx + oh * OW : NULL;
        TI *restrict ir = idx ? tr : NULL;
        const int64_t h0 = oh * s->stride_h - s->pad_h;
        int rows = 0;
        for (int64_t ki = 0; ki < s->kernel_h; ki++) {
            int64_t ih = h0 + ki * s->dilation_h;
            if (ih < 0 || ih >= s->in_h) continue;
            const T *xr = x + ih * W;
            if (rows++ == 0) {
                for (int64_t w = 0; w < W; w++) tv[w] = xr[w];
                if (ir)
                    for (int64_t w = 0; w < W; w++) ti[w] = (TI)(ih * W + w);
            } else {
                FNN_NAME(max_update)(W, xr, 1, tv, ir ? ti : NULL, ih * W);
            }
        }
        /* -inf and the first in-bounds tap, PyTorch's start (and its answer for
         * a window of -inf) */
        for (int64_t ow = 0; ow < OW; ow++) yr[ow] = -INFINITY;
        if (ir) {
            const int64_t first_row = fnn_first_tap(h0, s->dilation_h) * W;
            for (int64_t ow = 0; ow < OW; ow++) ir[ow] = (TI)first_row + c0[ow];
        }
        /* The interior [a, b), tap after tap over the same outputs: each pass then
         * reloads exactly the vectors the previous one stored (passes over runs
         * shifted by one, as the padding makes them, defeat store-to-load
         * forwarding and ran 3x slower). The few edge outputs go one by one. */
        const int64_t a = runs.a, b = rows ? runs.b : 0;
        for (int64_t kj = 0; kj < s->kernel_w && a < b; kj++) {
            int64_t first = kj * dw - s->pad_w + a * sw; /* column of output a's tap */
            if (ir)
                FNN_NAME(max_combine)(b - a, tv + first, ti + first, sw, yr + a, ir + a);
            else
                FNN_NAME(max_update)(b - a, tv + first, sw, yr + a, NULL, 0);
        }
        for (int64_t e = 0; rows && e < a + (OW - b); e++) { /* edges: [0, a), [b, OW) */
            const int64_t ow = e < a ? e : b + (e - a);
            for (int64_t kj = 0; kj < s->kernel_w; kj++) {
                int64_t iw = ow * sw + kj * dw - s->pad_w;
                if (iw < 0 || iw >= W) continue;
                if (ir) {
                    FNN_NAME(max_pick)(tv[iw], ti[iw], &yr[ow], &ir[ow]);
                } else {
                    T v = tv[iw];
                    yr[ow] = ((v > yr[ow]) | (v != v)) ? v : yr[ow];
                }
            }
        }
        if (out_i)
            for (int64_t ow = 0; ow < OW; ow++) out_i[ow] = ir[ow];
    }
}

/* Average pooling's divisor parts along a row: for each output column its
 * window's width inside the padded input (wfull) and inside the input (wcount),
 * as floating-point numbers (exact: small integers). */
static inline void FNN_NAME(avg_widths)(const fnn_pool_shape *s, T *restrict wfull,
                                        T *restrict wcount) {
    for (int64_t ow = 0; ow < s->out_w; ow++) {
        int64_t lo, hi;
        wfull[ow] = (T)fnn_avg_extent(ow, s->stride_w, s->pad_w, s->kernel_w, s->in_w, &lo, &hi);
        wcount[ow] = (T)(hi - lo);
    }
}

/* The 2x2 window with stride 2 and no padding, every window inside the input
 * (DenseNet's transitions, most average pooling): its divisor is 4 (or the
 * override) everywhere, and each output is its four pixels in one loop, with
 * neither the separable passes' row buffer nor their per-pass overhead. */
static inline int FNN_NAME(avg_is_2x2)(const fnn_pool_shape *s) {
    return s->kernel_h == 2 && s->kernel_w == 2 && s->stride_h == 2 && s->stride_w == 2 &&
           s->pad_h == 0 && s->pad_w == 0 && 2 * s->out_h <= s->in_h &&
           2 * s->out_w <= s->in_w;
}

/* Output rows [oh0, oh1) of average pooling; `work` holds in_w + 2*out_w values.
 * Separable: the window's input rows are summed first (tv, long contiguous
 * loops), then each output sums its columns of that and divides by PyTorch's
 * divisor (an empty window gives 0). */
static void FNN_NAME(avg_rows)(const fnn_pool_shape *s, const T *x, int64_t oh0, int64_t oh1,
                               T *y, int cip, int64_t divisor, void *work) {
    const int64_t W = s->in_w, OW = s->out_w, sw = s->stride_w;
    if (FNN_NAME(avg_is_2x2)(s)) {
        const T d = divisor ? (T)divisor : 4;
        for (int64_t oh = oh0; oh < oh1; oh++) {
            const T *restrict r0 = x + 2 * oh * W, *restrict r1 = r0 + W;
            T *restrict yr = y + oh * OW;
            for (int64_t ow = 0; ow < OW; ow++) /* row-major, as PyTorch sums */
                yr[ow] = (((r0[2 * ow] + r0[2 * ow + 1]) + r1[2 * ow]) + r1[2 * ow + 1]) / d;
        }
        return;
    }
    T *restrict tv = work;
    T *restrict wfull = tv + W, *restrict wcount = wfull + OW;
    FNN_NAME(avg_widths)(s, wfull, wcount);
    FNN_NAME(col_runs) runs;
    FNN_NAME(runs_init)(s, &runs);
    for (int64_t oh = oh0; oh < oh1; oh++) {
        T *restrict yr = y + oh * OW;
        int64_t hlo, hhi, hfull = fnn_avg_extent(oh, s->stride_h, s->pad_h, s->kernel_h,
                                                 s->in_h, &hlo, &hhi);
        for (int64_t ow = 0; ow < OW; ow++) yr[ow] = 0;
        if (hlo >= hhi) continue;
        for (int64_t w = 0; w < W; w++) tv[w] = x[hlo * W + w];
        for (int64_t ih = hlo + 1; ih < hhi; ih++)
            for (int64_t w = 0; w < W; w++) tv[w] += x[ih * W + w];
        /* interior and edges as in max_rows */
        const int64_t a = runs.a, b = runs.b;
        for (int64_t kj = 0; kj < s->kernel_w && a < b; kj++)
            FNN_NAME(gather_add)(b - a, tv + kj - s->pad_w + a * sw, sw, yr + a);
        for (int64_t e = 0; e < a + (OW - b); e++) { /* edges: [0, a) and [b, OW) */
            const int64_t ow = e < a ? e : b + (e - a);
            for (int64_t kj = 0; kj < s->kernel_w; kj++) {
                int64_t iw = ow * sw + kj - s->pad_w;
                if (iw >= 0 && iw < W) yr[ow] += tv[iw];
            }
        }
        if (divisor) {
            const T d = (T)divisor;
            for (int64_t ow = 0; ow < OW; ow++) yr[ow] /= d;
        } else if (cip) {
            const T hf = (T)hfull;
            for (int64_t ow = 0; ow < OW; ow++) yr[ow] /= hf * wfull[ow];
        } else {
            const T hc = (T)(hhi - hlo);
            for (int64_t ow = 0; ow < OW; ow++)
                yr[ow] = wcount[ow] > 0 ? yr[ow] / (hc * wcount[ow]) : 0;
        }
    }
}

/* Plane gradient of average pooling: each output's gradient over its divisor,
 * added to every input element of its window. Separable like the forward: one
 * output row's shares are spread along an input row (er), which is then added
 * to each input row of the window. `work` holds in_w + 3*out_w values. */
static void FNN_NAME(avg_backward_plane)(const fnn_pool_shape *s, const T *dy, T *dx, int cip,
                                         int64_t divisor, void *work) {
    const int64_t W = s->in_w, OW = s->out_w, sw = s->stride_w;
    if (FNN_NAME(avg_is_2x2)(s)) { /* windows do not overlap: each pixel is set once */
        const T d = divisor ? (T)divisor : 4;
        for (int64_t oh = 0; oh < s->out_h; oh++) {
            T *restrict r0 = dx + 2 * oh * W, *restrict r1 = r0 + W;
            const T *restrict g = dy + oh * OW;
            for (int64_t ow = 0; ow < OW; ow++) {
                T v = g[ow] / d;
                r0[2 * ow] = r0[2 * ow + 1] = r1[2 * ow] = r1[2 * ow + 1] = v;
            }
        }
        return;
    }
    T *restrict er = work;
    T *restrict share = er + W, *restrict wfull = share + OW, *restrict wcount = wfull + OW;
    FNN_NAME(avg_widths)(s, wfull, wcount);
    FNN_NAME(col_runs) runs;
    FNN_NAME(runs_init)(s, &runs);
    for (int64_t oh = 0; oh < s->out_h; oh++) {
        int64_t hlo, hhi, hfull = fnn_avg_extent(oh, s->stride_h, s->pad_h, s->kernel_h,
                                                 s->in_h, &hlo, &hhi);
        if (hlo >= hhi) continue;
        const T *restrict g = dy + oh * OW;
        if (divisor) {
            const T d = (T)divisor;
            for (int64_t ow = 0; ow < OW; ow++) share[ow] = g[ow] / d;
        } else if (cip) {
            const T hf = (T)hfull;
            for (int64_t ow = 0; ow < OW; ow++) share[ow] = g[ow] / (hf * wfull[ow]);
        } else {
            const T hc = (T)(hhi - hlo);
            for (int64_t ow = 0; ow < OW; ow++)
                share[ow] = wcount[ow] > 0 ? g[ow] / (hc * wcount[ow]) : 0;
        }
        for (int64_t w = 0; w < W; w++) er[w] = 0;
        for (int64_t kj = 0; kj < s->kernel_w; kj++) {
            int64_t lo, hi;
            FNN_NAME(runs_get)(s, &runs, kj, &lo, &hi);
            FNN_NAME(add_strided)(hi - lo, share + lo, sw, er + kj - s->pad_w + lo * sw);
        }
        for (int64_t ih = hlo; ih < hhi; ih++)
            for (int64_t w = 0; w < W; w++) dx[ih * W + w] += er[w];
    }
}

/* Plane gradient of max pooling (plain or adaptive): scatter-add by index.
 * Returns 1 when an index lies outside the plane (nothing is written for it). */
static int FNN_NAME(max_backward_plane)(const fnn_pool_shape *s, const T *dy,
                                        const int64_t *idx, T *dx) {
    const uint64_t hw = (uint64_t)(s->in_h * s->in_w);
    const int64_t L = s->out_h * s->out_w;
    int bad = 0;
    for (int64_t p = 0; p < L; p++) {
        uint64_t i = (uint64_t)idx[p]; /* a negative index wraps to a huge one */
        if (i < hw)
            dx[i] += dy[p];
        else
            bad = 1;
    }
    return bad;
}

/* The adaptive bins of the out_w columns, [bins[2*ow], bins[2*ow + 1]),
 * computed once per call: two integer divisions per bin cost more than
 * pooling a small bin. */
static inline void FNN_NAME(col_bins)(int64_t W, int64_t OW, int64_t *restrict bins) {
    for (int64_t ow = 0; ow < OW; ow++) {
        bins[2 * ow] = fnn_bin_start(ow, OW, W);
        bins[2 * ow + 1] = fnn_bin_end(ow, OW, W);
    }
}

/* A whole bin that is one contiguous run (it spans full input rows, as in
 * global pooling): summed in 8 fixed lanes plus the tail, in a fixed order,
 * so the short rows of small planes (7x7) do not each pay a vector loop's
 * entry and exit. */
typedef T FNN_NAME(vec8) __attribute__((vector_size(8 * sizeof(T))));
static inline T FNN_NAME(sum_run)(int64_t n, const T *restrict a) {
    /* a vector type, not an array of lanes: GCC unrolled such an array's lane
     * loop and then kept the lanes as scalars on the stack */
    FNN_NAME(vec8) acc = {0, 0, 0, 0, 0, 0, 0, 0}, v;
    T tail = 0;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        memcpy(&v, a + j, sizeof v);
        acc += v;
    }
    for (; j < n; j++) tail += a[j];
    return (((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))) +
           tail;
}

/* The maximum of a contiguous run by PyTorch's rule, from -inf, and its
 * position i0 + j. A branch, not a select: a new maximum is rare, so the
 * predicted branch leaves the comparisons independent of one another, where
 * a select would chain each to the previous one (measured 10x slower on 7x7
 * planes). */
static inline T FNN_NAME(max_run)(int64_t n, const T *restrict a, int64_t i0, int64_t *where) {
    T m = -INFINITY;
    int64_t mi = 0;
    for (int64_t j = 0; j < n; j++) {
        T v = a[j];
        if (__builtin_expect((v > m) | (v != v), 0)) {
            m = v;
            mi = j;
        }
    }
    *where = i0 + mi;
    return m;
}

/* Output rows [oh0, oh1) of adaptive average pooling (sum / kh / kw, as
 * PyTorch); `work` holds in_w values. Separable: the bin's rows are summed
 * into tv (long independent adds; a single running sum would wait on each
 * add's latency), then each bin sums its columns of that. */
static void FNN_NAME(adaptive_avg_rows)(const fnn_pool_shape *s, const T *x, int64_t oh0,
                                        int64_t oh1, T *y, void *work) {
    const int64_t W = s->in_w, OW = s->out_w;
    int64_t *restrict wb = work; /* column bins: [wb[2*ow], wb[2*ow + 1]) */
    T *restrict tv = (T *)(wb + 2 * OW);
    FNN_NAME(col_bins)(W, OW, wb);
    for (int64_t oh = oh0; oh < oh1; oh++) {
        int64_t h0 = fnn_bin_start(oh, s->out_h, s->in_h);
        int64_t h1 = fnn_bin_end(oh, s->out_h, s->in_h);
        if (OW == 1) { /* the bin is rows h0..h1 whole: one contiguous run */
            y[oh] = FNN_NAME(sum_run)((h1 - h0) * W, x + h0 * W) / (T)(h1 - h0) / (T)W;
            continue;
        }
        for (int64_t w = 0; w < W; w++) tv[w] = x[h0 * W + w];
        for (int64_t ih = h0 + 1; ih < h1; ih++)
            for (int64_t w = 0; w < W; w++) tv[w] += x[ih * W + w];
        for (int64_t ow = 0; ow < OW; ow++) {
            int64_t w0 = wb[2 * ow], w1 = wb[2 * ow + 1];
            T sum = 0;
            for (int64_t iw = w0; iw < w1; iw++) sum += tv[iw];
            y[oh * OW + ow] = sum / (T)(h1 - h0) / (T)(w1 - w0);
        }
    }
}

/* Output rows [oh0, oh1) of adaptive max pooling; `work` holds 2*out_w int64,
 * in_w TI and in_w values. A bin of whole rows is one contiguous run (max_run). Otherwise
 * separable like max_rows: each column's maximum over the bin's rows
 * (PyTorch's rule, rows in order; vector loops along the row), then each bin's
 * columns combined by the order-free form of the rule (see max_combine). */
static void FNN_NAME(adaptive_max_rows)(const fnn_pool_shape *s, const T *x, int64_t oh0,
                                        int64_t oh1, T *y, int64_t *idx, void *work) {
    const int64_t W = s->in_w, OW = s->out_w;
    int64_t *restrict wb = work; /* column bins: [wb[2*ow], wb[2*ow + 1]) */
    TI *restrict ti = (TI *)(wb + 2 * OW);
    T *restrict tv = (T *)(ti + W);
    FNN_NAME(col_bins)(W, OW, wb);
    for (int64_t oh = oh0; oh < oh1; oh++) {
        int64_t h0 = fnn_bin_start(oh, s->out_h, s->in_h);
        int64_t h1 = fnn_bin_end(oh, s->out_h, s->in_h);
        if (OW == 1) {
            int64_t where;
            y[oh] = FNN_NAME(max_run)((h1 - h0) * W, x + h0 * W, h0 * W, &where);
            if (idx) idx[oh] = where;
            continue;
        }
        for (int64_t w = 0; w < W; w++) tv[w] = x[h0 * W + w];
        for (int64_t w = 0; w < W; w++) ti[w] = (TI)(h0 * W + w);
        for (int64_t ih = h0 + 1; ih < h1; ih++)
            FNN_NAME(max_update)(W, x + ih * W, 1, tv, ti, ih * W);
        for (int64_t ow = 0; ow < OW; ow++) {
            int64_t w0 = wb[2 * ow], w1 = wb[2 * ow + 1];
            T m = tv[w0];
            TI mi = ti[w0];
            for (int64_t iw = w0 + 1; iw < w1; iw++) FNN_NAME(max_pick)(tv[iw], ti[iw], &m, &mi);
            y[oh * OW + ow] = m;
            if (idx) idx[oh * OW + ow] = mi;
        }
    }
}

/* Plane gradient of adaptive average pooling: each output's gradient / kh / kw
 * added over its bin. */
static void FNN_NAME(adaptive_avg_backward_plane)(const fnn_pool_shape *s, const T *dy, T *dx) {
    const int64_t W = s->in_w, OW = s->out_w;
    for (int64_t oh = 0; oh < s->out_h; oh++) {
        int64_t h0 = fnn_bin_start(oh, s->out_h, s->in_h);
        int64_t h1 = fnn_bin_end(oh, s->out_h, s->in_h);
        for (int64_t ow = 0; ow < OW; ow++) {
            int64_t w0 = fnn_bin_start(ow, OW, W), w1 = fnn_bin_end(ow, OW, W);
            T g = dy[oh * OW + ow] / (T)(h1 - h0) / (T)(w1 - w0);
            if (w1 - w0 == W) { /* whole rows: one contiguous run */
                T *restrict d = dx + h0 * W;
                for (int64_t j = 0; j < (h1 - h0) * W; j++) d[j] += g;
                continue;
            }
            for (int64_t ih = h0; ih < h1; ih++)
                for (int64_t iw = w0; iw < w1; iw++) dx[ih * W + iw] += g;
        }
    }
}

/* FNN_TILE planes p0.. of spatial pyramid pooling through a tile (see
 * FNN_TILE): tile[e*FNN_TILE + k] is pixel e of plane p0 + k, and the outputs
 * of all levels are gathered the same way (ov, oi) before they go out. */
static void FNN_NAME(pyramid_tile)(const fnn_pool_shape *s, int64_t levels,
                                   const int64_t *out_hw, int is_max, const T *x, int64_t p0,
                                   T *y, int64_t *idx, void *work) {
    enum { K = FNN_TILE };
    const int64_t W = s->in_w, HW = s->in_h * s->in_w;
    const int64_t S = fnn_pyramid_size(levels, out_hw);
    TI *restrict oi = work; /* positions < FNN_TILE_MAX_HW: TI is wide enough */
    T *restrict tile = (T *)(oi + S * K);
    T *restrict ov = tile + HW * K;
    for (int64_t e = 0; e < HW; e++)
        for (int k = 0; k < K; k++) tile[e * K + k] = x[(p0 + k) * HW + e];
    int64_t b = 0;
    for (int64_t j = 0; j < levels; j++) {
        const int64_t OH = out_hw[2 * j], OW = out_hw[2 * j + 1];
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0 = fnn_bin_start(oh, OH, s->in_h), h1 = fnn_bin_end(oh, OH, s->in_h);
            for (int64_t ow = 0; ow < OW; ow++, b++) {
                int64_t w0 = fnn_bin_start(ow, OW, W), w1 = fnn_bin_end(ow, OW, W);
                T *restrict m = ov + b * K;
                TI *restrict mi = oi + b * K;
                if (is_max) {
                    for (int k = 0; k < K; k++) {
                        m[k] = -INFINITY;
                        mi[k] = (TI)(h0 * W + w0);
                    }
                    for (int64_t ih = h0; ih < h1; ih++)
                        for (int64_t iw = w0; iw < w1; iw++) {
                            const TI e = (TI)(ih * W + iw);
                            const T *restrict v = tile + e * K;
                            /* kept a loop (not unrolled early) so that it is vectorized */
#pragma GCC unroll 1
                            for (int k = 0; k < K; k++) {
                                int take = (v[k] > m[k]) | (v[k] != v[k]);
                                m[k] = take ? v[k] : m[k];
                                mi[k] = take ? e : mi[k];
                            }
                        }
                } else {
                    for (int k = 0; k < K; k++) m[k] = 0;
                    for (int64_t ih = h0; ih < h1; ih++)
                        for (int64_t iw = w0; iw < w1; iw++) {
                            const T *restrict v = tile + (ih * W + iw) * K;
#pragma GCC unroll 1
                            for (int k = 0; k < K; k++) m[k] += v[k];
                        }
                    const T kh = (T)(h1 - h0), kw = (T)(w1 - w0);
                    for (int k = 0; k < K; k++) m[k] = m[k] / kh / kw;
                }
            }
        }
    }
    for (int k = 0; k < K; k++) {
        int64_t off = 0;
        for (int64_t j = 0; j < levels; j++) {
            int64_t Lj = out_hw[2 * j] * out_hw[2 * j + 1];
            int64_t o = fnn_pyramid_offset(s, S, off, Lj, p0 + k);
            for (int64_t q = 0; q < Lj; q++) y[o + q] = ov[(off + q) * K + k];
            if (idx)
                for (int64_t q = 0; q < Lj; q++) idx[o + q] = oi[(off + q) * K + k];
            off += Lj;
        }
    }
}

/* Global average pooling of `planes` whole planes of h*w pixels each. Small
 * planes (7x7) make each sum a short chain of dependent vector adds, so four
 * planes are summed side by side; each in the order of sum_run, so the result
 * is the same bit for bit. */
static void FNN_NAME(global_avg)(int64_t planes, int64_t h, int64_t w, const T *x, T *y) {
    typedef FNN_NAME(vec8) V;
    const int64_t hw = h * w;
    int64_t p = 0;
    for (; p + 4 <= planes; p += 4) {
        const T *a = x + p * hw;
        V acc[4] = {{0}, {0}, {0}, {0}}, v;
        T tail[4] = {0, 0, 0, 0};
        int64_t j = 0;
        for (; j + 8 <= hw; j += 8)
            for (int r = 0; r < 4; r++) {
                memcpy(&v, a + r * hw + j, sizeof v);
                acc[r] += v;
            }
        for (; j < hw; j++)
            for (int r = 0; r < 4; r++) tail[r] += a[r * hw + j];
        for (int r = 0; r < 4; r++)
            y[p + r] = ((((acc[r][0] + acc[r][4]) + (acc[r][1] + acc[r][5])) +
                         ((acc[r][2] + acc[r][6]) + (acc[r][3] + acc[r][7]))) +
                        tail[r]) / (T)h / (T)w;
    }
    for (; p < planes; p++) y[p] = FNN_NAME(sum_run)(hw, x + p * hw) / (T)h / (T)w;
}

#endif
