/* Convolution as im2col + GEMM, forward and backward (conv1d is in_h = 1).
 *
 * The output positions of the whole batch, image after image, are cut into
 * blocks of whole output rows (columns when there is one row, as in conv1d);
 * a block holds several whole images when images are small, so that the GEMM
 * still has enough columns to amortize OpenBLAS's packing of the weight. Work
 * items are (block, chunk of output channels), and every split depends on the
 * shape only, never on the thread count, so results are bit-identical whatever
 * the number of threads:
 * - a block's column matrix lives in a per-thread buffer of about
 *   FNN_COL_BLOCK_BYTES (never a buffer for the whole batch), written by im2col
 *   and read by the GEMM while it is still in cache;
 * - when there are too few blocks to keep FNN_MIN_ITEMS threads busy (batch 1),
 *   output channels are split too;
 * - the weight gradient sums over a fixed number of parts of the blocks, each
 *   into its own buffer, added in a fixed order; the input gradient is col2im'd
 *   in two phases (even blocks, then odd blocks), blocks being tall enough that
 *   blocks i and i + 2 never touch the same input row, so no two threads add to
 *   one element at once and every element gets its terms in the same order. */
#ifndef FNN_TEMPLATE
#define FNN_TEMPLATE
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "blas.h"
#include "fastnn.h"

/* Tuned on the ResNet-18 shapes (bench/report.py): 256 KB and 4 MB blocks, and
 * 768 or 1568 positions at least, were each 5-25% slower on some 3x3 shape. */
#define FNN_COL_BLOCK_BYTES ((int64_t)1 << 20)
#define FNN_MIN_BLOCK_POSITIONS 384
#define FNN_MIN_ITEMS 8 /* work items to aim for: enough to balance up to 8 threads */
#define FNN_MIN_CHUNK_ROWS 16
#define FNN_DW_PARTS 8
#define FNN_DW_PARTS_BYTES ((int64_t)64 << 20)
#define FNN_DW_SUM_ROWS 32
#define FNN_DW_SUM_BYTES 64
#define FNN_TILES_DW_MIN_POSITIONS 192
#define FNN_DIRECT_MAX_MG 4
#define FNN_TAPS_DX_BYTES ((int64_t)128 << 10)


/* Blocks of the batch's output positions: either several blocks per image,
 * each a run of whole output rows (or of positions when there is a single row),
 * or, when one image has too few positions for an efficient GEMM, several
 * whole images per block. */
typedef struct {
    int64_t unit;      /* positions in one unit: an output row, or one position */
    int64_t units;     /* units in one image */
    int64_t per_image; /* blocks in one image (images == 1) */
    int64_t images;    /* images in one block (per_image == 1) */
    int64_t blocks, batch, L;
} fnn_blocking;

/* Enough chunks of `rows` for FNN_MIN_ITEMS items, none under min_rows rows. */
static int64_t plan_chunks(int64_t items, int64_t rows, int64_t min_rows) {
    return fnn_max64(1, fnn_min64(fnn_ceil_div(FNN_MIN_ITEMS, items), rows / min_rows));
}

/* With too few images to keep FNN_MIN_ITEMS threads busy, each image is split
 * into blocks and output channels into chunks; OpenBLAS packs both operands on
 * every call, which costs about 1/N + 1/M of the work of an (M, N) product, so
 * pick the split that minimizes that, among blocks that fit the cache budget
 * and are tall enough for the two-phase col2im. */
static int64_t blocks_for_small_batch(const fnn_conv_shape *s, int64_t units, int64_t unit,
                                      int64_t min_units, int64_t fit) {
    int64_t best = fnn_max64(1, fnn_min64(units / min_units, fnn_ceil_div(units, fit)));
    double best_cost = 1e300;
    for (int64_t nb = best; nb <= fnn_min64(FNN_MIN_ITEMS, units / min_units); nb++) {
        int64_t chunks = plan_chunks(s->batch * nb, s->out_channels, FNN_MIN_CHUNK_ROWS);
        double cost = (double)nb / (double)(units * unit) +
                      (double)chunks / (double)s->out_channels;
        if (cost < best_cost) {
            best_cost = cost;
            best = nb;
        }
    }
    return best;
}

static fnn_blocking plan_blocks(const fnn_conv_shape *s, int64_t col_rows, int64_t elem) {
    int by_rows = s->out_h > 1;
    int64_t k = by_rows ? s->kernel_h : s->kernel_w;
    int64_t d = by_rows ? s->dilation_h : s->dilation_w;
    int64_t st = by_rows ? s->stride_h : s->stride_w;
    int64_t unit = by_rows ? s->out_w : 1, L = s->out_h * s->out_w;
    fnn_blocking b = {unit, L / unit, 1, 1, s->batch, s->batch, L};
    /* two-phase col2im: blocks i and i + 2 of an image are disjoint in the input
     * when the block between them spans at least (k - 1) * d input rows */
    int64_t min_units = fnn_max64(1, fnn_ceil_div((k - 1) * d, st));
    int64_t fit = fnn_max64(1, FNN_COL_BLOCK_BYTES / col_rows / elem / unit);
    int64_t balance = fnn_ceil_div(s->batch * b.units, FNN_MIN_ITEMS);
    int64_t wide = fnn_ceil_div(FNN_MIN_BLOCK_POSITIONS, unit);
    int64_t per = fnn_max64(fnn_min64(fit, balance), fnn_max64(min_units, wide));
    if (L >= FNN_MIN_BLOCK_POSITIONS || s->batch == 1) {
        b.per_image = fnn_max64(1, b.units / per);
        if (s->batch * b.per_image < FNN_MIN_ITEMS)
            b.per_image = blocks_for_small_batch(s, b.units, unit, min_units, fit);
        b.blocks = s->batch * b.per_image;
    } else {
        b.images = fnn_min64(s->batch, fnn_max64(fnn_ceil_div(FNN_MIN_BLOCK_POSITIONS, L),
                                                 per / b.units));
        b.blocks = fnn_ceil_div(s->batch, b.images);
    }
    return b;
}

/* Global positions [q0, q1) of block i (position q is q % L of image q / L). */
static void block_range(const fnn_blocking *b, int64_t i, int64_t *q0, int64_t *q1) {
    if (b->images > 1) {
        *q0 = i * b->images * b->L;
        *q1 = fnn_min64(i * b->images + b->images, b->batch) * b->L;
        return;
    }
    int64_t n = i / b->per_image, j = i % b->per_image;
    *q0 = n * b->L + b->units * j / b->per_image * b->unit;
    *q1 = n * b->L + b->units * (j + 1) / b->per_image * b->unit;
}

static int64_t block_max_positions(const fnn_blocking *b) {
    return b->images > 1 ? b->images * b->L : fnn_ceil_div(b->units, b->per_image) * b->unit;
}

/* The part of [q0, q1) in image n: local positions [p0, p1) at column offset `at`. */
typedef struct {
    int64_t n, p0, p1, at;
} fnn_segment;

static int next_segment(const fnn_blocking *b, int64_t q0, int64_t q1, fnn_segment *seg) {
    int64_t q = seg->n < 0 ? q0 : seg->n * b->L + seg->p1;
    if (q >= q1) return 0;
    seg->n = q / b->L;
    seg->p0 = q - seg->n * b->L;
    seg->p1 = fnn_min64(q1 - seg->n * b->L, b->L);
    seg->at = q - q0;
    return 1;
}
#define FOR_EACH_SEGMENT(b, q0, q1, seg) \
    for (fnn_segment seg = {-1, 0, 0, 0}; next_segment(b, q0, q1, &seg);)

static void chunk_range(int64_t rows, int64_t chunks, int64_t j, int64_t *r0, int64_t *r1) {
    *r0 = rows * j / chunks;
    *r1 = rows * (j + 1) / chunks;
}

/* The groups that channels [c0, c1) touch (groups of `per` channels), and in
 * each the channels [r0, r1) of the range that lie in it. */
#define FOR_EACH_GROUP(c0, c1, per, g, r0, r1)                                      \
    for (int64_t g = (c0) / (per), r0, r1; g * (per) < (c1); g++)                     \
        if (r0 = fnn_max64(c0, g * (per)), r1 = fnn_min64(c1, (g + 1) * (per)), r0 < r1)

/* A 1x1, stride-1, unpadded convolution is a plain GEMM on the input itself. */
static int is_pointwise(const fnn_conv_shape *s) {
    return s->kernel_h == 1 && s->kernel_w == 1 && s->stride_h == 1 && s->stride_w == 1 &&
           s->pad_h == 0 && s->pad_w == 0 && s->out_h == s->in_h && s->out_w == s->in_w;
}

/* No two windows overlap (stride >= the dilated kernel, as in a 1x1 stride-2
 * downsampling): every input element gets at most one term of the input
 * gradient, so each block zeroes the input rows it owns just before adding its
 * columns, while they are in cache, in place of a pass zeroing the whole dx
 * first (8% of a 1x1 stride-2 forward+backward, then read back from memory). */
static int is_disjoint(const fnn_conv_shape *s) {
    return (s->kernel_h - 1) * s->dilation_h < s->stride_h &&
           (s->kernel_w - 1) * s->dilation_w < s->stride_w;
}

/* With disjoint windows, the input indices [*i0, *i1) that outputs [o0, o1) of
 * `out` own along one axis: from the first one's window to the next one's, the
 * first and last taking the edges, so that consecutive ranges tile the axis. */
static void owned_range(int64_t o0, int64_t o1, int64_t out, int64_t in, int64_t stride,
                        int64_t pad, int64_t *i0, int64_t *i1) {
    *i0 = o0 == 0 ? 0 : fnn_min64(in, fnn_max64(0, o0 * stride - pad));
    *i1 = o1 == out ? in : fnn_min64(in, fnn_max64(0, o1 * stride - pad));
}

/* Groups of one input channel with few output channels each (depthwise): a
 * direct convolution beats im2col + a GEMM with M = Mg and K = kH*kW, which
 * writes and reads kH*kW copies of the input for 2*Mg flops each (measured on
 * (8,128,56,56) 3x3: 25-35% faster; with Mg = 32 the GEMM is 2x faster). */
static int is_direct(const fnn_conv_shape *s) {
    return s->in_channels == s->groups && s->out_channels / s->groups <= FNN_DIRECT_MAX_MG;
}

/* One input channel per group, stride 1 and few taps: the forward keeps a
 * position's taps in vector registers and computes every output channel of the
 * group from them (taps_forward_block), with no column matrix. The backward
 * the same way (taps_input_grad_rows, taps_weight_grad_block) only for a few
 * output channels per group: on depthwise 3x3, forward+backward 1.13-1.14x
 * (input gradient) and 1.16-1.21x more (weight gradient) against the direct
 * walk, but with 32 channels (1->32 on 28x28) 0.62-0.69x and 0.94x the GEMM
 * path, whose register tiles reuse each loaded value many more times. */
static int is_taps(const fnn_conv_shape *s) {
    return s->in_channels == s->groups && s->stride_h == 1 && s->stride_w == 1 &&
           s->kernel_h * s->kernel_w <= FNN_TAPS_MAX;
}

/* Winograd where it applies and pays (FASTNN_CONV forces either way). It
 * transforms the whole weight on every call, so it needs enough tiles to
 * spread that over: measured against im2col + GEMM (forward, 1 thread), it is
 * 1.28-1.38x faster on the ResNet-18 3x3 shapes at batch 16 and at batch 1
 * down to 256x14x14 (49 tiles, 1.08-1.14x), but 0.58-0.67x at 512x7x7 batch 1
 * (16 tiles); with one input channel (1->32 on 28x28) 0.16-0.24x. */
#define FNN_WINOGRAD_MIN_TILES 32
#define FNN_WINOGRAD_MIN_CHANNELS 32
/* Its transformed weight is 16/9 of the weight, allocated per call: up to
 * 1024 x 1024 channels (64 MB in float32). */
#define FNN_WINOGRAD_MAX_CHANNEL_PAIRS ((int64_t)1 << 20)
static int use_winograd(const fnn_conv_shape *s) {
    if (!fnn_winograd_applies(s) || fnn_conv_algorithm() == FNN_CONV_GEMM) return 0;
    if (fnn_conv_algorithm() == FNN_CONV_WINOGRAD) return 1;
    int64_t tiles = s->batch * ((s->out_h + 1) / 2) * ((s->out_w + 1) / 2);
    return s->in_channels >= FNN_WINOGRAD_MIN_CHANNELS &&
           s->out_channels >= FNN_WINOGRAD_MIN_CHANNELS && tiles >= FNN_WINOGRAD_MIN_TILES &&
           s->in_channels * s->out_channels <= FNN_WINOGRAD_MAX_CHANNEL_PAIRS;
}

/* The convolution whose forward is the input gradient of a stride-1,
 * undilated one: dy against the rotated weight, padding k - 1 - pad. */
static fnn_conv_shape input_grad_shape(const fnn_conv_shape *s) {
    fnn_conv_shape t = *s;
    t.in_channels = s->out_channels;
    t.out_channels = s->in_channels;
    t.in_h = s->out_h;
    t.in_w = s->out_w;
    t.out_h = s->in_h;
    t.out_w = s->in_w;
    t.pad_h = s->kernel_h - 1 - s->pad_h;
    t.pad_w = s->kernel_w - 1 - s->pad_w;
    return t;
}

#define T float
#define SFX(name) name##_f32
#define GEMM fnn_gemm_f32
#define GEMV_ADD fnn_gemv_add_f32
#define GEMM_ROWS fnn_gemm_rows_f32
#define SIMD(op) fnn_simd->op##_f32
#include "conv.c"
#undef T
#undef SFX
#undef GEMM
#undef GEMV_ADD
#undef GEMM_ROWS
#undef SIMD

#define T double
#define SFX(name) name##_f64
#define GEMM fnn_gemm_f64
#define GEMV_ADD fnn_gemv_add_f64
#define GEMM_ROWS fnn_gemm_rows_f64
#define SIMD(op) fnn_simd->op##_f64
#include "conv.c"

#else

/* The bias, written where the sums then accumulate: with the GEMM's beta = 1
 * this replaces OpenBLAS's zeroing of C (beta = 0) and a second pass to add
 * the bias (together 18% of a 1x1 stride-2 convolution's forward). */
static void SFX(fill)(int64_t n, T value, T *dst) {
    for (int64_t j = 0; j < n; j++) dst[j] = value;
}

/* Eight independent partial sums: vectorizable without -ffast-math, and more
 * accurate than one running sum; the order is fixed, whatever the threads. */
static T SFX(sum)(int64_t n, const T *src) {
    T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) acc[k] += src[j + k];
    for (; j < n; j++) acc[j & 7] += src[j];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* The row length of a column matrix of n positions: whole panels of
 * fnn_gemm_rows, an odd number of them, so that its rows, which the GEMM's
 * tiles read a panel at a time, spread over all the sets of L1 (rows a
 * multiple of 4 KB apart would all fall in the same few). */
static int64_t SFX(cols_ld)(int64_t n) {
    const int64_t nr = SFX(fnn_packed_nr)();
    return (fnn_ceil_div(n, nr) | 1) * nr;
}

/* The sizes every kernel below needs, derived once. */
typedef struct {
    int64_t G, Cg, Mg, Kg, kk, L, HW;
    int pointwise, direct, taps, taps_backward, disjoint;
    int64_t taps_dx_rows;  /* input rows per item of the taps input gradient */
    fnn_blocking b;
    int64_t P;             /* most positions in one block */
    int64_t ld;            /* a column matrix's row length for P positions (cols_ld) */
    int64_t ws_per_thread; /* a (Kg, ld) column matrix and an (Mg, P) row matrix, or
                              the taps kernels' rows, whichever is larger */
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
    d.direct = is_direct(s);
    d.taps = is_taps(s);
    d.disjoint = is_disjoint(s);
    d.b = plan_blocks(s, d.Kg, (int64_t)sizeof(T));
    d.P = block_max_positions(&d.b);
    d.ld = SFX(cols_ld)(d.P);
    d.ws_per_thread = d.direct ? 0 : d.Kg * d.ld + d.Mg * d.P;
    d.taps_backward = d.taps && d.Mg <= FNN_DIRECT_MAX_MG;
    if (d.taps) d.ws_per_thread = fnn_max64(d.ws_per_thread, FNN_TAPS_SCRATCH(s));
    if (d.taps_backward) {
        /* the rows' share of dy, padded, within FNN_TAPS_DX_BYTES; enough items */
        int64_t one = FNN_TAPS_DX_SCRATCH(s, d.Mg, 1) * (int64_t)sizeof(T);
        int64_t fit = fnn_max64(1, FNN_TAPS_DX_BYTES / one - (s->kernel_h - 1) * s->dilation_h);
        int64_t chunks = fnn_max64(fnn_ceil_div(s->in_h, fit),
                                   fnn_ceil_div(FNN_MIN_ITEMS, s->batch * d.G));
        d.taps_dx_rows = fnn_ceil_div(s->in_h, fnn_min64(chunks, s->in_h));
        d.ws_per_thread = fnn_max64(d.ws_per_thread, FNN_TAPS_DW_SCRATCH(s, d.P));
        d.ws_per_thread = fnn_max64(d.ws_per_thread, FNN_TAPS_DX_SCRATCH(s, d.Mg, d.taps_dx_rows));
    }
    /* 256 bytes more per thread, so that no two threads write one cache line
     * (or, with the adjacent-line prefetch, one pair of lines), whatever the
     * alignment of the workspace: the forward's small taps rows showed it */
    d.ws_per_thread += 256 / (int64_t)sizeof(T);
    return d;
}

/* One workspace for each of `threads`, then `extra` values shared; NULL
 * (reported as FNN_ENOMEM) when the size overflows. */
static T *SFX(alloc_workspace)(const SFX(conv_dims) *d, int nt, int64_t extra) {
    size_t threads = (size_t)nt, per = (size_t)d->ws_per_thread, most = SIZE_MAX / sizeof(T);
    if (per > most / threads || (size_t)extra > most - threads * per) return NULL;
    return (T *)fnn_block_alloc((threads * per + (size_t)extra) * sizeof(T), FNN_BLOCK_HUGE);
}

/* Rows [m, m + rows) of a (N, channels, L) tensor over the positions [q0, q1):
 * a view into the tensor when they lie in one image (*ld = L), else NULL. */
static T *SFX(block_view)(const SFX(conv_dims) *d, int64_t q0, int64_t q1, T *t,
                          int64_t channels, int64_t m, int64_t *ld) {
    int64_t n = q0 / d->L;
    if ((q1 - 1) / d->L != n) return NULL;
    *ld = d->L;
    return t + (n * channels + m) * d->L + (q0 - n * d->L);
}

/* Moves those rows between the tensor and a (rows, q1 - q0) matrix, both ways. */
static void SFX(block_copy)(const SFX(conv_dims) *d, int64_t q0, int64_t q1, T *t,
                            int64_t channels, int64_t m, int64_t rows, T *mat, int to_mat) {
    FOR_EACH_SEGMENT(&d->b, q0, q1, seg) {
        size_t bytes = (size_t)(seg.p1 - seg.p0) * sizeof(T);
        for (int64_t r = 0; r < rows; r++) {
            T *tp = t + (seg.n * channels + m + r) * d->L + seg.p0;
            T *mp = mat + r * (q1 - q0) + seg.at;
            memcpy(to_mat ? mp : tp, to_mat ? tp : mp, bytes);
        }
    }
}

/* The column matrix of (block, group) for the group's input channels [c0, c1),
 * its rows cols_ld apart, or the input itself for a pointwise convolution
 * within one image; `cached` skips an im2col this thread just did. */
static const T *SFX(columns)(const fnn_conv_shape *s, const SFX(conv_dims) *d, const T *x,
                             int64_t blk, int64_t g, int64_t c0, int64_t c1, T *cols,
                             int64_t *cached, int64_t *ldb) {
    int64_t q0, q1, key = (blk * d->G + g) * d->Cg + c0;
    block_range(&d->b, blk, &q0, &q1);
    if (d->pointwise) {
        T *view = SFX(block_view)(d, q0, q1, (T *)x, s->in_channels, g * d->Cg + c0, ldb);
        if (view) return view;
    }
    const int64_t n = q1 - q0, ld = SFX(cols_ld)(n);
    if (*cached != key) {
        FOR_EACH_SEGMENT(&d->b, q0, q1, seg)
            SIMD(im2col_block)(s, x + (seg.n * s->in_channels + g * d->Cg + c0) * d->HW,
                               c1 - c0, seg.p0, seg.p1, cols + seg.at, ld);
        *cached = key;
    }
    *ldb = ld;
    return cols;
}

/* dy rows [m, m + rows) over a block, as a matrix (a view, or gathered into `buf`). */
static const T *SFX(dy_rows)(const SFX(conv_dims) *d, const fnn_conv_shape *s, const T *dy,
                             int64_t q0, int64_t q1, int64_t m, int64_t rows, T *buf,
                             int64_t *ld) {
    T *view = SFX(block_view)(d, q0, q1, (T *)dy, s->out_channels, m, ld);
    if (view) return view;
    SFX(block_copy)(d, q0, q1, (T *)dy, s->out_channels, m, rows, buf, 1);
    *ld = q1 - q0;
    return buf;
}

/* y rows [m0, m1) (all in group g) over block blk. */
static void SFX(forward_rows)(const fnn_conv_shape *s, const SFX(conv_dims) *d, const T *x,
                              const T *w, const T *bias, int64_t blk, int64_t g, int64_t m0,
                              int64_t m1, T *y, T *cols, T *rows, int64_t *cached) {
    int64_t q0, q1, ldb, ldo;
    block_range(&d->b, blk, &q0, &q1);
    if (d->taps) {
        FOR_EACH_SEGMENT(&d->b, q0, q1, seg)
            SIMD(taps_forward_block)(s, x + (seg.n * s->in_channels + g) * d->HW, w + m0 * d->kk,
                                     bias ? bias + m0 : NULL, m1 - m0, seg.p0, seg.p1,
                                     y + (seg.n * s->out_channels + m0) * d->L + seg.p0, d->L,
                                     cols);
        return;
    }
    if (d->direct) {
        FOR_EACH_SEGMENT(&d->b, q0, q1, seg)
            for (int64_t m = m0; m < m1; m++) {
                T *yrow = y + (seg.n * s->out_channels + m) * d->L + seg.p0;
                SFX(fill)(seg.p1 - seg.p0, bias ? bias[m] : 0, yrow);
                SIMD(direct_forward_block)(s, x + (seg.n * s->in_channels + g) * d->HW,
                                           w + m * d->kk, seg.p0, seg.p1, yrow);
            }
        return;
    }
    const T *B = SFX(columns)(s, d, x, blk, g, 0, d->Cg, cols, cached, &ldb);
    T *out = SFX(block_view)(d, q0, q1, y, s->out_channels, m0, &ldo);
    if (!out) {
        out = rows;
        ldo = q1 - q0;
    }
    if (B == cols) { /* our tiles on the columns as they are: no packing */
        GEMM_ROWS(m1 - m0, q1 - q0, d->Kg, w + m0 * d->Kg, d->Kg, B, ldb, bias ? bias + m0 : NULL,
                  0, out, ldo);
    } else {
        for (int64_t r = 0; bias && r < m1 - m0; r++)
            SFX(fill)(q1 - q0, bias[m0 + r], out + r * ldo);
        GEMM(0, 0, m1 - m0, q1 - q0, d->Kg, 1, w + m0 * d->Kg, d->Kg, B, ldb, bias ? 1 : 0, out,
             ldo);
    }
    if (out == rows) SFX(block_copy)(d, q0, q1, y, s->out_channels, m0, m1 - m0, rows, 0);
}

int SFX(fnn_conv2d_forward)(const fnn_conv_shape *s, const T *x, const T *w, const T *bias,
                            T *y) {
    /* without the memory for Winograd's workspace, the GEMM path's smaller one */
    if (use_winograd(s)) {
        int status = SFX(fnn_winograd_forward)(s, x, w, bias, 0, y);
        if (status != FNN_ENOMEM) return status;
    }
    const SFX(conv_dims) d = SFX(conv_dims_of)(s);
    const int64_t chunks = plan_chunks(d.b.blocks, s->out_channels, FNN_MIN_CHUNK_ROWS);
    const int nt = fnn_get_num_threads(); /* once: it sizes the workspace */
    T *ws = SFX(alloc_workspace)(&d, nt, 0);
    if (!ws) return FNN_ENOMEM;

#pragma omp parallel num_threads(nt)
    {
        T *cols = ws + omp_get_thread_num() * d.ws_per_thread, *rows = cols + d.Kg * d.ld;
        int64_t cached = -1;
#pragma omp for schedule(static)
        for (int64_t it = 0; it < d.b.blocks * chunks; it++) {
            int64_t m0, m1;
            chunk_range(s->out_channels, chunks, it % chunks, &m0, &m1);
            FOR_EACH_GROUP(m0, m1, d.Mg, g, r0, r1)
                SFX(forward_rows)(s, &d, x, w, bias, it / chunks, g, r0, r1, y, cols, rows,
                                  &cached);
        }
    }
    fnn_block_free(ws);
    return FNN_OK;
}

/* One part of the parameter gradients: over blocks [blk0, blk1), rows [m0, m1)
 * (all in group g) and the columns of the group's input channels [c0, c1),
 * dw = sum dy @ cols^T and db = sum of dy's rows (either may be NULL; dw and db
 * point at this part's own buffers). With `packed` (one group), dw holds the
 * gradient transposed, (Kg, M), summed as cols @ dy^T by our tiles on the
 * columns as they are and dy's rows packed transposed into `packed`. */
static void SFX(param_grad_part)(const fnn_conv_shape *s, const SFX(conv_dims) *d,
                                 const T *dy, const T *x, int64_t blk0, int64_t blk1, int64_t g,
                                 int64_t m0, int64_t m1, int64_t c0, int64_t c1, T *dw, T *db,
                                 const T *ones, T *cols, T *rows, T *packed, int64_t *cached) {
    const int64_t k0 = c0 * d->kk, k = (c1 - c0) * d->kk, M = s->out_channels;
    for (int64_t m = m0; dw && !packed && m < m1; m++)
        memset(dw + m * d->Kg + k0, 0, (size_t)k * sizeof(T));
    for (int64_t r = k0; dw && packed && r < k0 + k; r++)
        memset(dw + r * M + m0, 0, (size_t)(m1 - m0) * sizeof(T));
    if (db) memset(db + m0, 0, (size_t)(m1 - m0) * sizeof(T));
    for (int64_t blk = blk0; blk < blk1; blk++) {
        int64_t q0, q1, ldb, lda;
        block_range(&d->b, blk, &q0, &q1);
        if (d->taps_backward && dw) {
            FOR_EACH_SEGMENT(&d->b, q0, q1, seg)
                SIMD(taps_weight_grad_block)(s, x + (seg.n * s->in_channels + g) * d->HW,
                                             dy + (seg.n * s->out_channels + m0) * d->L + seg.p0,
                                             d->L, m1 - m0, seg.p0, seg.p1, dw + m0 * d->kk,
                                             db ? db + m0 : NULL, cols);
            continue;
        }
        if (d->direct) {
            FOR_EACH_SEGMENT(&d->b, q0, q1, seg)
                for (int64_t m = m0; m < m1; m++) {
                    const T *dyrow = dy + (seg.n * s->out_channels + m) * d->L + seg.p0;
                    if (dw)
                        SIMD(direct_weight_grad_block)(s, x + (seg.n * s->in_channels + g) * d->HW,
                                                       dyrow, seg.p0, seg.p1, dw + m * d->kk);
                    if (db) db[m] += SFX(sum)(seg.p1 - seg.p0, dyrow);
                }
            continue;
        }
        const T *A = SFX(dy_rows)(d, s, dy, q0, q1, m0, m1 - m0, rows, &lda);
        if (dw) {
            const T *B = SFX(columns)(s, d, x, blk, g, c0, c1, cols, cached, &ldb);
            if (packed) {
                SFX(fnn_pack_b)(q1 - q0, m1 - m0, A, lda, 1, packed);
                SFX(fnn_gemm_packed)(k, 0, m1 - m0, q1 - q0, B, ldb, packed,
                                     FNN_PACKED_ACCUMULATE, dw + k0 * M + m0, M);
            } else {
                GEMM(0, 1, m1 - m0, k, q1 - q0, 1, A, lda, B, ldb, 1, dw + m0 * d->Kg + k0,
                     d->Kg);
            }
        }
        if (db) GEMV_ADD(m1 - m0, q1 - q0, A, lda, ones, db + m0);
    }
}

/* Rows [m0, m1) of dw (M, Kg) as the sum, part after part, of the parts'
 * transposed buffers (Kg, M), part_size apart: each of their rows is read
 * along its run of m, which vectorizes, and dw's rows are written a cache line
 * (FNN_DW_SUM_BYTES) at a time from a small block: written a value at a time,
 * 32 rows Kg apart (Kg = 4608 for 512 channels: only 2 sets of L1) evicted
 * each other, 8% of a 3x3 512->512 7x7 forward+backward. */
static void SFX(sum_parts_transposed)(int64_t parts, int64_t part_size, const T *partial,
                                      int64_t M, int64_t Kg, int64_t m0, int64_t m1, T *dw) {
    enum { COLS = FNN_DW_SUM_BYTES / sizeof(T) };
    T sum[FNN_DW_SUM_ROWS], block[FNN_DW_SUM_ROWS][COLS];
    for (int64_t r0 = 0; r0 < Kg; r0 += COLS) {
        const int64_t cols = Kg - r0 < COLS ? Kg - r0 : COLS;
        for (int64_t r = 0; r < cols; r++) {
            const T *src = partial + (r0 + r) * M + m0;
            for (int64_t m = 0; m < m1 - m0; m++) sum[m] = src[m];
            for (int64_t p = 1; p < parts; p++)
                for (int64_t m = 0; m < m1 - m0; m++) sum[m] += src[p * part_size + m];
            for (int64_t m = 0; m < m1 - m0; m++) block[m][r] = sum[m];
        }
        for (int64_t m = 0; m < m1 - m0; m++)
            memcpy(dw + (m0 + m) * Kg + r0, block[m], (size_t)cols * sizeof(T));
    }
}

/* Zeroes the input that a segment of output positions owns (disjoint windows),
 * channels [c0, c1) of its image in dx. */
static void SFX(zero_owned)(const fnn_conv_shape *s, const fnn_segment *seg, int64_t c0,
                            int64_t c1, T *dx) {
    int64_t h0 = 0, h1 = s->in_h, w0 = 0, w1 = s->in_w;
    if (s->out_h > 1) /* blocks of whole output rows */
        owned_range(seg->p0 / s->out_w, seg->p1 / s->out_w, s->out_h, s->in_h, s->stride_h,
                    s->pad_h, &h0, &h1);
    else
        owned_range(seg->p0, seg->p1, s->out_w, s->in_w, s->stride_w, s->pad_w, &w0, &w1);
    if (w1 - w0 == s->in_w) { /* whole rows: one run per channel */
        w1 = (h1 - h0) * s->in_w;
        h1 = h0 + 1;
    }
    for (int64_t c = c0; c < c1; c++)
        for (int64_t h = h0; h < h1; h++)
            memset(dx + ((seg->n * s->in_channels + c) * s->in_h + h) * s->in_w + w0, 0,
                   (size_t)(w1 - w0) * sizeof(T));
}

/* dx channels [c0, c1) (all in group g) += the transposed convolution of dy over
 * one block (with disjoint windows: = it, the block zeroing what it owns first).
 * Its columns W_g^T dy by our tiles, W_g read transposed and dy's rows in place:
 * against OpenBLAS forced to its AVX2 kernels on a Zen 5 (AVX-512), forward +
 * backward 1.14-1.16x (stem at batch 16, 1x1 stride 2, conv1d k3). */
static void SFX(input_grad_block)(const fnn_conv_shape *s, const SFX(conv_dims) *d,
                                  const T *dy, const T *w, int64_t blk, int64_t g, int64_t c0,
                                  int64_t c1, T *dx, T *cols, T *rows) {
    int64_t q0, q1, lda, ldc;
    block_range(&d->b, blk, &q0, &q1);
    if (d->direct) {
        FOR_EACH_SEGMENT(&d->b, q0, q1, seg) {
            if (d->disjoint) SFX(zero_owned)(s, &seg, g, g + 1, dx);
            for (int64_t m = g * d->Mg; m < (g + 1) * d->Mg; m++)
                SIMD(direct_input_grad_block)(s, dy + (seg.n * s->out_channels + m) * d->L + seg.p0,
                                              w + m * d->kk, seg.p0, seg.p1,
                                              dx + (seg.n * s->in_channels + g) * d->HW);
        }
        return;
    }
    const T *wg = w + g * d->Mg * d->Kg + (c0 - g * d->Cg) * d->kk;
    const T *A = SFX(dy_rows)(d, s, dy, q0, q1, g * d->Mg, d->Mg, rows, &lda);
    int64_t k = (c1 - c0) * d->kk;
    T *out = d->pointwise ? SFX(block_view)(d, q0, q1, dx, s->in_channels, c0, &ldc) : NULL;
    if (out) {
        GEMM_ROWS(k, q1 - q0, d->Mg, wg, d->Kg, A, lda, NULL, FNN_PACKED_TRANS_A, out, ldc);
        return;
    }
    GEMM_ROWS(k, q1 - q0, d->Mg, wg, d->Kg, A, lda, NULL, FNN_PACKED_TRANS_A, cols, q1 - q0);
    FOR_EACH_SEGMENT(&d->b, q0, q1, seg) {
        if (d->disjoint) SFX(zero_owned)(s, &seg, c0, c1, dx);
        SIMD(col2im_block_add)(s, cols + seg.at, c1 - c0, seg.p0, seg.p1, q1 - q0,
                               dx + (seg.n * s->in_channels + c0) * d->HW);
    }
}

int SFX(fnn_conv2d_backward)(const fnn_conv_shape *s, const T *dy, const T *x, const T *w,
                             T *dx, T *dw, T *db) {
    const fnn_conv_shape t = input_grad_shape(s);
    if (dx && s->stride_h == 1 && s->stride_w == 1 && use_winograd(&t)) {
        int status = SFX(fnn_winograd_forward)(&t, dy, w, NULL, 1, dx);
        if (status == FNN_OK && !dw && !db) return status;
        if (status == FNN_OK) dx = NULL; /* else the GEMM path computes it */
    }
    const SFX(conv_dims) d = SFX(conv_dims_of)(s);
    const int64_t nb = d.b.blocks, M = s->out_channels, C = s->in_channels;
    const int64_t w_size = dw ? M * d.Kg : 0, part_size = w_size + (db ? M : 0);
    /* The items of a part split dw's rows (output channels) or, when it has more
     * columns than rows (3x3 kernels and larger, one group, the GEMM path), its
     * columns by input channel: OpenBLAS packs the columns operand (Kg x block)
     * on every call, so a split by rows packs it once per chunk (5.8% of a 3x3
     * 512->512 7x7 forward+backward at batch 16; 1.05-1.07x less CPU time split
     * by channels). Like the parts, the split depends on the shape only. */
    const int by_channels = dw && d.G == 1 && !d.direct && !d.taps_backward && d.Kg > M;
    /* dw of one group on the GEMM path, on enough positions: transposed, cols @
     * dy^T, by our tiles on the columns in place (B: dy's rows, packed
     * transposed per block) into the parts' buffers (all of them), which the
     * final sum transposes back. Against OpenBLAS (CPU time, forward+backward),
     * on Sapphire Rapids: 7x7 stride-2 stem at batch 16 (200704 positions)
     * 1.06-1.075x, 3x3 64->64 56x56 at batch 16 (50176) 1.055x; but 3x3
     * 128->128 28x28 (12544) 0.96x, 256x14 (3136) 0.86x, 512x7 (784) 0.87x,
     * and with 32 output channels, half a panel, 0.64x. On Zen 5 against
     * OpenBLAS's AVX-512 kernels 0.91x (512x7, batch 16) to 1.03x, but against
     * its AVX2 ones, which OPENBLAS_CORETYPE=Haswell forces there, 1.16-1.31x
     * at batch 16 and 1.10-1.28x at batch 1 down to 196 positions (256x14;
     * 512x7, 49 positions, 0.62x); so from 192 positions on. */
    const int tiles_dw = dw && d.G == 1 && !d.direct && !d.taps_backward &&
                         s->batch * d.L >= FNN_TILES_DW_MIN_POSITIONS &&
                         M % SFX(fnn_packed_nr)() == 0;
    /* parameter gradients: a fixed number of parts of the blocks, each summed
     * into its own buffer (part 0 into dw and db themselves, but with tiles_dw);
     * one part when the columns are split and dw outweighs dy (deep layers on
     * small images), whose zeroed and then added buffers cost more than the
     * chunks' rereading of dy (a 3x3 128->128 28x28 forward+backward at batch
     * 1: 1.14-1.16x) */
    const int64_t part_bytes = fnn_max64(1, part_size * (int64_t)sizeof(T));
    const int64_t parts =
        by_channels && part_size > M * d.L * s->batch
            ? 1
            : fnn_max64(1, fnn_min64(fnn_min64(nb, FNN_DW_PARTS), FNN_DW_PARTS_BYTES / part_bytes));
    const int64_t w_chunks = by_channels
                                 ? plan_chunks(parts, C, fnn_ceil_div(FNN_MIN_CHUNK_ROWS, d.kk))
                                 : plan_chunks(parts, M, FNN_MIN_CHUNK_ROWS);
    const int64_t x_chunks = plan_chunks(nb, C, fnn_ceil_div(FNN_MIN_CHUNK_ROWS, d.kk));
    /* dx in the items of dw, after each part's blocks, while their dy is still
     * in cache, instead of a second pass over dy (a 1->32 3x3 forward+backward
     * at batch 64, 6.4 MB of dy: 1.03-1.08x less CPU time at 1 thread, the same
     * at 2; depthwise 3x3 on (8,128,56,56) 1.05-1.08x): when blocks are whole
     * images, so that no two share input, and neither gradient is split by
     * channels. */
    const int fused = dx && dw && !d.taps_backward && (d.b.images > 1 || d.b.per_image == 1) &&
                      w_chunks == 1 && x_chunks == 1;
    const int nt = fnn_get_num_threads(); /* once: it sizes the workspace */
    /* after the threads' workspaces: the parts' buffers, then (for db of a
     * block as OpenBLAS's GEMV of dy's rows against ones: 4.8% of a 1->32 3x3
     * forward+backward, where a sum of our own, this file being built for the
     * baseline instruction set, took 6.9%) a row of ones */
    const int64_t partial_size = (tiles_dw ? parts : parts - 1) * part_size;
    const int64_t pack_size = tiles_dw ? SFX(fnn_packed_size)(d.P, M) : 0;
    if (pack_size > (INT64_MAX - partial_size - d.P) / nt) return FNN_ENOMEM;
    T *ws = SFX(alloc_workspace)(&d, nt, partial_size + (db ? d.P : 0) + nt * pack_size);
    if (!ws) return FNN_ENOMEM;
    T *partial = ws + nt * d.ws_per_thread, *ones = partial + partial_size;
    T *packs = ones + (db ? d.P : 0);
    for (int64_t p = 0; db && p < d.P; p++) ones[p] = 1;

#pragma omp parallel num_threads(nt)
    {
        T *cols = ws + omp_get_thread_num() * d.ws_per_thread, *rows = cols + d.Kg * d.ld;
        T *packed = tiles_dw ? packs + omp_get_thread_num() * pack_size : NULL;
        int64_t cached = -1;
        if (part_size) {
#pragma omp for schedule(static)
            for (int64_t u = 0; u < parts * w_chunks; u++) {
                int64_t p = u / w_chunks, b0 = nb * p / parts, b1 = nb * (p + 1) / parts, i0, i1;
                T *mine = tiles_dw ? partial + p * part_size
                                   : p == 0 ? NULL : partial + (p - 1) * part_size;
                T *pdw = dw ? (mine ? mine : dw) : NULL;
                T *pdb = db ? (mine ? mine + w_size : db) : NULL;
                chunk_range(by_channels ? C : M, w_chunks, u % w_chunks, &i0, &i1);
                if (by_channels) /* db with the first chunk */
                    SFX(param_grad_part)(s, &d, dy, x, b0, b1, 0, 0, M, i0, i1, pdw,
                                         i0 == 0 ? pdb : NULL, ones, cols, rows, packed,
                                         &cached);
                else
                    FOR_EACH_GROUP(i0, i1, d.Mg, g, r0, r1)
                        SFX(param_grad_part)(s, &d, dy, x, b0, b1, g, r0, r1, 0, d.Cg, pdw, pdb,
                                             ones, cols, rows, packed, &cached);
                for (int64_t blk = b0; fused && blk < b1; blk++) {
                    int64_t q0, q1;
                    block_range(&d.b, blk, &q0, &q1);
                    if (!d.disjoint) /* its images, which no other block touches */
                        memset(dx + q0 / d.L * C * d.HW, 0,
                               (size_t)((q1 - q0) / d.L * C * d.HW) * sizeof(T));
                    FOR_EACH_GROUP(0, C, d.Cg, g, r0, r1)
                        SFX(input_grad_block)(s, &d, dy, w, blk, g, r0, r1, dx, cols, rows);
                    cached = -1; /* cols now hold the input gradient's columns */
                }
            }
            if (tiles_dw) { /* dw (M, Kg) and db: sums of the parts, in order */
#pragma omp for schedule(static) nowait
                for (int64_t m0 = 0; m0 < M; m0 += FNN_DW_SUM_ROWS)
                    SFX(sum_parts_transposed)(parts, part_size, partial, M, d.Kg, m0,
                                              fnn_min64(M, m0 + FNN_DW_SUM_ROWS), dw);
                if (db) {
#pragma omp for schedule(static) nowait
                    for (int64_t m = 0; m < M; m++) {
                        T sum = partial[w_size + m];
                        for (int64_t p = 1; p < parts; p++)
                            sum += partial[p * part_size + w_size + m];
                        db[m] = sum;
                    }
                }
            } else {
#pragma omp for schedule(static)
                for (int64_t e = 0; e < part_size; e++) {
                    T *sum = e < w_size ? dw + e : db + (e - w_size);
                    for (int64_t p = 1; p < parts; p++) *sum += partial[(p - 1) * part_size + e];
                }
            }
        }
        if (dx && d.taps_backward) {
            /* row chunks of each (image, input channel), each written once */
            const int64_t chunks = fnn_ceil_div(s->in_h, d.taps_dx_rows);
#pragma omp for schedule(static)
            for (int64_t it = 0; it < s->batch * C * chunks; it++) {
                const int64_t n = it / (C * chunks), g = it / chunks % C, j = it % chunks;
                SIMD(taps_input_grad_rows)(s, dy + (n * M + g * d.Mg) * d.L,
                                           w + g * d.Mg * d.kk, d.Mg, j * d.taps_dx_rows,
                                           fnn_min64((j + 1) * d.taps_dx_rows, s->in_h),
                                           dx + (n * C + g) * d.HW, cols);
            }
        } else if (dx && !fused) {
            /* zeroed here, in parallel, for the adds of col2im and of the direct
             * path (with disjoint windows, by each block: input_grad_block) */
            if (!d.disjoint) {
#pragma omp for schedule(static)
                for (int64_t n = 0; n < s->batch; n++)
                    memset(dx + n * C * d.HW, 0, (size_t)(C * d.HW) * sizeof(T));
            }
            for (int64_t phase = 0; phase < 2; phase++) {
                int64_t count = (nb + 1 - phase) / 2;
#pragma omp for schedule(static)
                for (int64_t it = 0; it < count * x_chunks; it++) {
                    int64_t c0, c1, blk = 2 * (it / x_chunks) + phase;
                    chunk_range(C, x_chunks, it % x_chunks, &c0, &c1);
                    FOR_EACH_GROUP(c0, c1, d.Cg, g, r0, r1)
                        SFX(input_grad_block)(s, &d, dy, w, blk, g, r0, r1, dx, cols, rows);
                }
            }
        }
    }
    fnn_block_free(ws);
    return FNN_OK;
}

#endif
