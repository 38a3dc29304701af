/* Convolution as im2col + GEMM, forward and backward (conv1d is in_h = 1).
 *
 * Work is split into items (image, block of output positions, chunk of output
 * channels), and every split depends on the shape only, never on the thread
 * count, so results are bit-identical whatever the number of threads:
 * - a block is a cache-sized slice of one image's column matrix
 *   (FNN_COL_BLOCK_BYTES), so im2col writes and the GEMM reads it from cache, and
 *   each thread owns one such buffer, never a buffer for the whole batch;
 * - when the batch has too few blocks to keep FNN_MIN_ITEMS threads busy,
 *   output channels are split too (batch 1 still runs in parallel);
 * - the weight gradient sums over a fixed number of parts of the batch, each into
 *   its own buffer, added in a fixed order; the input gradient is col2im'd in two
 *   phases (even blocks, then odd blocks), blocks being tall enough that blocks
 *   i and i + 2 never touch the same input row, so no two threads add to the same
 *   element at once and every element gets its terms in the same order. */
#ifndef FNN_TEMPLATE
#define FNN_TEMPLATE
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "blas.h"
#include "fastnn.h"

#define FNN_COL_BLOCK_BYTES ((int64_t)512 * 1024)
#define FNN_MIN_ITEMS 8
#define FNN_MIN_BLOCK_POSITIONS 64
#define FNN_MIN_CHUNK_ROWS 16
#define FNN_DW_PARTS 8
#define FNN_DW_PARTS_BYTES ((int64_t)64 << 20)

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Blocks of output positions: whole output rows, or columns when there is one
 * row (conv1d). Block i covers units [i*units/blocks, (i+1)*units/blocks). */
typedef struct {
    int64_t unit;   /* positions in one unit: a whole output row, or 1 */
    int64_t units;  /* units in one image */
    int64_t blocks; /* blocks in one image */
} fnn_blocking;

static fnn_blocking plan_blocks(const fnn_conv_shape *s, int64_t col_rows, int64_t elem) {
    int by_rows = s->out_h > 1;
    int64_t k = by_rows ? s->kernel_h : s->kernel_w;
    int64_t d = by_rows ? s->dilation_h : s->dilation_w;
    int64_t st = by_rows ? s->stride_h : s->stride_w;
    fnn_blocking b = {by_rows ? s->out_w : 1, by_rows ? s->out_h : s->out_w, 1};
    /* two-phase col2im: blocks i and i + 2 are disjoint in the input when the
     * block between them spans at least (k - 1) * d input rows */
    int64_t min_units = max64(1, ceil_div((k - 1) * d, st));
    int64_t fit = FNN_COL_BLOCK_BYTES / (col_rows * elem * b.unit);
    int64_t balance = ceil_div(b.units, ceil_div(FNN_MIN_ITEMS, s->batch));
    int64_t per = max64(min64(fit, balance),
                        max64(min_units, ceil_div(FNN_MIN_BLOCK_POSITIONS, b.unit)));
    b.blocks = max64(1, b.units / per);
    return b;
}

static void block_range(const fnn_blocking *b, int64_t i, int64_t *p0, int64_t *p1) {
    *p0 = b->units * i / b->blocks * b->unit;
    *p1 = b->units * (i + 1) / b->blocks * b->unit;
}

static int64_t block_max_positions(const fnn_blocking *b) {
    return ceil_div(b->units, b->blocks) * b->unit;
}

/* Enough chunks of `rows` for FNN_MIN_ITEMS items, none under min_rows rows. */
static int64_t plan_chunks(int64_t items, int64_t rows, int64_t min_rows) {
    return max64(1, min64(ceil_div(FNN_MIN_ITEMS, items), rows / min_rows));
}

static void chunk_range(int64_t rows, int64_t chunks, int64_t j, int64_t *r0, int64_t *r1) {
    *r0 = rows * j / chunks;
    *r1 = rows * (j + 1) / chunks;
}

/* A 1x1, stride-1, unpadded convolution is a plain GEMM on the input itself. */
static int is_pointwise(const fnn_conv_shape *s) {
    return s->kernel_h == 1 && s->kernel_w == 1 && s->stride_h == 1 && s->stride_w == 1 &&
           s->pad_h == 0 && s->pad_w == 0 && s->out_h == s->in_h && s->out_w == s->in_w;
}

#define T float
#define SFX(name) name##_f32
#define GEMM fnn_gemm_f32
#define VEC(op) fnn_vec->op##_f32
#include "conv.c"
#undef T
#undef SFX
#undef GEMM
#undef VEC

#define T double
#define SFX(name) name##_f64
#define GEMM fnn_gemm_f64
#define VEC(op) fnn_vec->op##_f64
#include "conv.c"

#else

/* The sizes every kernel below needs, derived once. */
typedef struct {
    int64_t G, Cg, Mg, Kg, kk, L, HW;
    int pointwise;
    fnn_blocking b;
    int64_t ws_per_thread;
} SFX(conv_dims);

static SFX(conv_dims) SFX(conv_dims_of)(const fnn_conv_shape *s) {
    SFX(conv_dims) d;
    d.G = s->groups;
    d.Cg = s->in_channels / s->groups;
    d.Mg = s->out_channels / s->groups;
    d.kk = s->kernel_h * s->kernel_w;
    d.Kg = d.Cg * d.kk;
    d.L = s->out_h * s->out_w;
    d.HW = s->in_h * s->in_w;
    d.pointwise = is_pointwise(s);
    d.b = plan_blocks(s, d.Kg, (int64_t)sizeof(T));
    d.ws_per_thread = d.Kg * block_max_positions(&d.b);
    return d;
}

static T *SFX(alloc_workspace)(const SFX(conv_dims) *d) {
    size_t n = (size_t)omp_get_max_threads() * (size_t)d->ws_per_thread;
    return (T *)malloc(n * sizeof(T));
}

/* The column matrix of (image n, block blk, group g), or the input itself for a
 * pointwise convolution; `cached` skips an im2col this thread has just done. */
static const T *SFX(columns)(const fnn_conv_shape *s, const SFX(conv_dims) *d, const T *x,
                             int64_t n, int64_t blk, int64_t g, T *cols, int64_t *cached,
                             int64_t *ldb) {
    int64_t p0, p1;
    block_range(&d->b, blk, &p0, &p1);
    const T *xg = x + (n * s->in_channels + g * d->Cg) * d->HW;
    if (d->pointwise) {
        *ldb = d->L;
        return xg + p0;
    }
    int64_t key = (n * d->b.blocks + blk) * d->G + g;
    if (*cached != key) {
        SFX(fnn_im2col_block)(s, xg, d->Cg, p0, p1, cols, p1 - p0);
        *cached = key;
    }
    *ldb = p1 - p0;
    return cols;
}

int SFX(fnn_conv2d_forward)(const fnn_conv_shape *s, const T *x, const T *w, const T *bias,
                            T *y) {
    const SFX(conv_dims) d = SFX(conv_dims_of)(s);
    const int64_t chunks = plan_chunks(s->batch * d.b.blocks, d.Mg, FNN_MIN_CHUNK_ROWS);
    const int64_t items = s->batch * d.b.blocks * chunks;
    T *ws = d.pointwise ? NULL : SFX(alloc_workspace)(&d);
    if (!d.pointwise && !ws) return FNN_ENOMEM;

#pragma omp parallel
    {
        T *cols = ws ? ws + omp_get_thread_num() * d.ws_per_thread : NULL;
        int64_t cached = -1;
#pragma omp for schedule(static)
        for (int64_t it = 0; it < items; it++) {
            int64_t j = it % chunks, blk = it / chunks % d.b.blocks, n = it / chunks / d.b.blocks;
            int64_t p0, p1, m0, m1, ldb;
            block_range(&d.b, blk, &p0, &p1);
            chunk_range(d.Mg, chunks, j, &m0, &m1);
            for (int64_t g = 0; g < d.G; g++) {
                const T *B = SFX(columns)(s, &d, x, n, blk, g, cols, &cached, &ldb);
                int64_t m = g * d.Mg + m0;
                T *yb = y + (n * s->out_channels + m) * d.L + p0;
                GEMM(0, 0, m1 - m0, p1 - p0, d.Kg, 1, w + m * d.Kg, d.Kg, B, ldb, 0, yb, d.L);
                if (bias)
                    for (int64_t r = 0; r < m1 - m0; r++)
                        VEC(add_scalar)(p1 - p0, bias[m + r], yb + r * d.L);
            }
        }
    }
    free(ws);
    return FNN_OK;
}

/* dw (M, Kg) += dy (M, L) @ cols^T over every (image, block) of part p. */
static void SFX(weight_grad_part)(const fnn_conv_shape *s, const SFX(conv_dims) *d,
                                  const T *dy, const T *x, int64_t item0, int64_t item1,
                                  int64_t m0, int64_t m1, T *dw, T *cols, int64_t *cached) {
    for (int64_t g = 0; g < d->G; g++) {
        int64_t m = g * d->Mg + m0;
        T *dwg = dw + m * d->Kg;
        memset(dwg, 0, (size_t)((m1 - m0) * d->Kg) * sizeof(T));
        for (int64_t it = item0; it < item1; it++) {
            int64_t n = it / d->b.blocks, blk = it % d->b.blocks, p0, p1, ldb;
            block_range(&d->b, blk, &p0, &p1);
            const T *B = SFX(columns)(s, d, x, n, blk, g, cols, cached, &ldb);
            GEMM(0, 1, m1 - m0, d->Kg, p1 - p0, 1, dy + (n * s->out_channels + m) * d->L + p0,
                 d->L, B, ldb, 1, dwg, d->Kg);
        }
    }
}

/* dx[n, channels c0..c1 of group g] += col2im(W^T @ dy) over one block. */
static void SFX(input_grad_block)(const fnn_conv_shape *s, const SFX(conv_dims) *d,
                                  const T *dy, const T *w, int64_t n, int64_t blk, int64_t c0,
                                  int64_t c1, T *dx, T *cols) {
    int64_t p0, p1;
    block_range(&d->b, blk, &p0, &p1);
    for (int64_t g = 0; g < d->G; g++) {
        const T *wg = w + g * d->Mg * d->Kg + c0 * d->kk;
        const T *dyb = dy + (n * s->out_channels + g * d->Mg) * d->L + p0;
        T *dxg = dx + (n * s->in_channels + g * d->Cg + c0) * d->HW;
        int64_t rows = (c1 - c0) * d->kk;
        if (d->pointwise) {
            GEMM(1, 0, rows, p1 - p0, d->Mg, 1, wg, d->Kg, dyb, d->L, 0, dxg + p0, d->HW);
        } else {
            GEMM(1, 0, rows, p1 - p0, d->Mg, 1, wg, d->Kg, dyb, d->L, 0, cols, p1 - p0);
            SFX(fnn_col2im_block_add)(s, cols, c1 - c0, p0, p1, p1 - p0, dxg);
        }
    }
}

int SFX(fnn_conv2d_backward)(const fnn_conv_shape *s, const T *dy, const T *x, const T *w,
                             T *dx, T *dw, T *db) {
    const SFX(conv_dims) d = SFX(conv_dims_of)(s);
    const int64_t nb = s->batch * d.b.blocks;
    const int64_t w_size = s->out_channels * d.Kg;
    /* weight gradient: a fixed number of parts of the (image, block) items */
    int64_t parts = min64(nb, FNN_DW_PARTS);
    parts = max64(1, min64(parts, FNN_DW_PARTS_BYTES / (w_size * (int64_t)sizeof(T))));
    const int64_t w_chunks = plan_chunks(parts, d.Mg, FNN_MIN_CHUNK_ROWS);
    const int64_t x_chunks = plan_chunks(nb, d.Cg, (FNN_MIN_CHUNK_ROWS + d.kk - 1) / d.kk);
    T *ws = d.pointwise ? NULL : SFX(alloc_workspace)(&d);
    T *partial = (dw && parts > 1) ? (T *)malloc((size_t)((parts - 1) * w_size) * sizeof(T)) : NULL;
    if ((!d.pointwise && !ws) || (dw && parts > 1 && !partial)) {
        free(ws);
        free(partial);
        return FNN_ENOMEM;
    }

#pragma omp parallel
    {
        T *cols = ws ? ws + omp_get_thread_num() * d.ws_per_thread : NULL;
        int64_t cached = -1;
        if (db) {
#pragma omp for schedule(static) nowait
            for (int64_t m = 0; m < s->out_channels; m++) {
                T acc = 0;
                for (int64_t n = 0; n < s->batch; n++)
                    acc += VEC(sum)(d.L, dy + (n * s->out_channels + m) * d.L);
                db[m] = acc;
            }
        }
        if (dw) {
#pragma omp for schedule(static)
            for (int64_t u = 0; u < parts * w_chunks; u++) {
                int64_t p = u / w_chunks, m0, m1;
                chunk_range(d.Mg, w_chunks, u % w_chunks, &m0, &m1);
                SFX(weight_grad_part)(s, &d, dy, x, nb * p / parts, nb * (p + 1) / parts, m0, m1,
                                      p == 0 ? dw : partial + (p - 1) * w_size, cols, &cached);
            }
#pragma omp for schedule(static)
            for (int64_t e = 0; e < w_size; e++)
                for (int64_t p = 1; p < parts; p++) dw[e] += partial[(p - 1) * w_size + e];
        }
        if (dx) {
            if (!d.pointwise) {
#pragma omp for schedule(static)
                for (int64_t n = 0; n < s->batch; n++)
                    memset(dx + n * s->in_channels * d.HW, 0,
                           (size_t)(s->in_channels * d.HW) * sizeof(T));
            }
            for (int64_t phase = 0; phase < 2; phase++) {
                int64_t per_image = (d.b.blocks + 1 - phase) / 2;
#pragma omp for schedule(static)
                for (int64_t it = 0; it < s->batch * per_image * x_chunks; it++) {
                    int64_t j = it % x_chunks, i = it / x_chunks;
                    int64_t c0, c1;
                    chunk_range(d.Cg, x_chunks, j, &c0, &c1);
                    SFX(input_grad_block)(s, &d, dy, w, i / per_image, 2 * (i % per_image) + phase,
                                          c0, c1, dx, cols);
                }
            }
        }
    }
    free(ws);
    free(partial);
    return FNN_OK;
}

#endif
