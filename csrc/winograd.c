/* Winograd F(2x2, 3x3) convolution (Lavin and Gray, 2016) for 3x3 kernels
 * with stride 1, no dilation and one group: each 2x2 tile of the output is
 * A^T [(G g G^T) . (B^T d B)] A over the 4x4 input patch d under it, so the
 * 36 multiplies per tile and channel pair of im2col + GEMM become 16, done as
 * 16 GEMMs (one per point xi of the 4x4 transform) on the packed GEMM's tiles,
 * V read in place (fnn_gemm_rows):
 *     M_xi (M x tiles) = U_xi (M x C) @ V_xi (C x tiles),
 * U = G g G^T the weights transformed once per call, V = B^T d B the input's
 * tiles transformed block by block. The transforms' coefficients are 0, +-1
 * and 1/2, exact in binary, so the result is as accurate as the direct sum
 * (measured within the convolution tests' tolerances, both dtypes).
 *
 * The output's tile rows (tw tiles of 2x2 each), image after image, are cut
 * into blocks of whole tile rows (whose V, 16 x C x tiles, stays in L2 when
 * the GEMMs stay wide enough: FNN_WINO_MIN_TILES); work items are (block,
 * chunk of output channels), every split depends on the shape only, and each
 * output element is computed by one item in a fixed order, so results are
 * bit-identical whatever the thread count.
 *
 * The input gradient of such a convolution is one too (dy against the weight
 * rotated by 180 degrees with in and out channels swapped, padding 2 - pad):
 * `flip` reads the weight that way, so conv.c runs it here unchanged. */
#if !defined(FNN_ISA) && !defined(T) /* ---- top level ---- */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "fastnn.h"

/* The transforms of a block of tile rows [r0, r1) (row r is tile row r % th
 * of image r / th; tw tiles a row), one implementation per instruction set
 * (isa_builds.h), chosen with fnn_simd_level: loops over the block's tiles on
 * contiguous arrays, which the compiler vectorizes for each set.
 * - input_block: V[xi][c][t] = (B^T d B)[xi] for the block's tiles t and the
 *   input channels c in [c0, c1) (V's rows ldv apart, slabs C * ldv); `scratch` holds
 *   FNN_WINO_SCRATCH values.
 * - output_block: the output of channels [m0, m1) under the block's tiles from
 *   their products M_xi (rows ldm apart, slabs `slab`), plus the bias.
 * - weights: U[xi][m][c] = (G g G^T)[xi] for outputs [m0, m1), g the 3x3
 *   kernel of output m and input c: w[m][c], or with flip w[c][m] rotated by
 *   180 degrees. */
#define FNN_WINO_WEIGHT_BLOCK 64
#define FNN_WINO_SCRATCH(tw, tiles) (2 * ((tw) + 1) + 16 * (tiles))
#define FNN_WINO_OPS(T, SFX)                                                                 \
    void (*input_block_##SFX)(const fnn_conv_shape *s, const T *x, int64_t c0, int64_t c1,  \
                              int64_t r0, int64_t r1, int64_t th, int64_t tw, T *V,         \
                              int64_t ldv, T *scratch);                                     \
    void (*output_block_##SFX)(const fnn_conv_shape *s, const T *Mx, int64_t ldm,           \
                               int64_t slab, const T *bias, int64_t r0, int64_t r1,         \
                               int64_t th, int64_t tw, int64_t m0, int64_t m1, T *y,        \
                               T *scratch);                                                 \
    void (*weights_##SFX)(const fnn_conv_shape *s, const T *w, int flip, int64_t m0,        \
                          int64_t m1, T *U);
typedef struct {
    FNN_WINO_OPS(float, f32)
    FNN_WINO_OPS(double, f64)
} fnn_wino_ops;
#undef FNN_WINO_OPS

#define FNN_ISA_SOURCE "winograd.c"
#include "isa_builds.h"

#define FNN_WINO_LIST(isa, sfx)                                                               \
    wino_input_block_##isa##_##sfx, wino_output_block_##isa##_##sfx, wino_weights_##isa##_##sfx
#define FNN_DEFINE_WINO_OPS(isa)                                                              \
    static const fnn_wino_ops fnn_wino_##isa = {FNN_WINO_LIST(isa, f32), FNN_WINO_LIST(isa, f64)};
FNN_DEFINE_WINO_OPS(portable)
FNN_DEFINE_WINO_OPS(avx2)
FNN_DEFINE_WINO_OPS(avx512)

static const fnn_wino_ops *fnn_wino_ops_now(void) {
    static const fnn_wino_ops *const sets[] = {&fnn_wino_portable, &fnn_wino_avx2,
                                               &fnn_wino_avx512};
    return sets[fnn_simd_level()];
}

/* V of a block within a quarter of L2 (half of it with the block's M_xi)... */
#define FNN_WINO_BLOCK_BYTES (fnn_cache_bytes(2) / 4)
/* ... unless that is under half of FNN_WINO_MIN_TILES tiles (128 channels or
 * more), then FNN_WINO_MIN_TILES: narrower GEMMs lost more than the cache
 * saved (A/B with OpenBLAS's GEMMs, which pack U_xi in every call, 256 tiles
 * against 128, batch 16: 1.05-1.15x from 128 to 512 channels; but 0.86-0.90x
 * at 64 channels, whose 128 tiles fit) */
#define FNN_WINO_MIN_TILES 256
/* Work items at least, and a multiple of it while blocks are few, so that 1,
 * 2 or 4 threads share them evenly. */
#define FNN_WINO_MIN_ITEMS 4
#define FNN_WINO_MIN_CHUNK_ROWS 16


int fnn_winograd_applies(const fnn_conv_shape *s) {
    return s->kernel_h == 3 && s->kernel_w == 3 && s->stride_h == 1 && s->stride_w == 1 &&
           s->dilation_h == 1 && s->dilation_w == 1 && s->groups == 1 && s->pad_h >= 0 &&
           s->pad_w >= 0 && s->pad_h <= 2 && s->pad_w <= 2 && s->out_h >= 1 && s->out_w >= 1;
}

/* The blocks: block b holds the tile rows [b * R / blocks, (b + 1) * R / blocks)
 * of the batch's R = N * th. */
typedef struct {
    int64_t th, tw, blocks, tiles; /* tiles: most in one block */
    int64_t ld;                    /* values between the rows of V and of M_xi */
    int64_t chunks, chunk_rows;    /* output channels per item, at most */
} fnn_wino_plan;

static fnn_wino_plan wino_plan(const fnn_conv_shape *s, int64_t elem) {
    fnn_wino_plan p;
    p.th = fnn_ceil_div(s->out_h, 2);
    p.tw = fnn_ceil_div(s->out_w, 2);
    const int64_t R = s->batch * p.th;
    const int64_t fit = FNN_WINO_BLOCK_BYTES / (16 * s->in_channels * elem);
    const int64_t want = fit >= FNN_WINO_MIN_TILES / 2 ? fit : FNN_WINO_MIN_TILES;
    p.blocks = fnn_ceil_div(R, fnn_max64(1, want / p.tw));
    if (p.blocks > 1 && p.blocks < 4 * FNN_WINO_MIN_ITEMS)
        p.blocks = fnn_min64(R, fnn_ceil_div(p.blocks, FNN_WINO_MIN_ITEMS) * FNN_WINO_MIN_ITEMS);
    p.tiles = fnn_ceil_div(R, p.blocks) * p.tw;
    /* An odd number of cache lines: the GEMM's tiles read a block of V's rows
     * from L1, where rows a power of two apart share a few sets (1 KB apart:
     * 180-190 against 230-250 GFLOP/s, Zen 5). */
    const int64_t lines = fnn_ceil_div(p.tiles * elem, 64) | 1;
    p.ld = lines * 64 / elem;
    p.chunks = fnn_max64(1, fnn_min64(fnn_ceil_div(FNN_WINO_MIN_ITEMS, p.blocks),
                                    s->out_channels / FNN_WINO_MIN_CHUNK_ROWS));
    p.chunk_rows = fnn_ceil_div(s->out_channels, p.chunks);
    return p;
}

#define FNN_DTYPE_SOURCE "winograd.c"
#include "dtype_builds.h"
#undef FNN_DTYPE_SOURCE

#elif defined(FNN_ISA) && !defined(T) /* ---- one instruction set: both dtypes ---- */

#define FNN_DTYPE_SOURCE "winograd.c"
#include "dtype_builds.h"
#undef FNN_DTYPE_SOURCE

#elif defined(FNN_ISA) /* ---- one instruction set, one dtype: the transforms ---- */

/* A row's columns 2k - pad_w (even) and 2k + 1 - pad_w (odd) for k = 0..tw,
 * zero outside the image (all zero for a row outside it: row NULL). */
static void FNN_NAME(wino_split_row)(const T *row, int64_t W, int64_t pad_w, int64_t tw,
                                     T *restrict even, T *restrict odd) {
    if (!row) {
        memset(even, 0, (size_t)(tw + 1) * sizeof(T));
        memset(odd, 0, (size_t)(tw + 1) * sizeof(T));
        return;
    }
    /* k in [lo, hi) reads columns 2k - pad_w and 2k + 1 - pad_w inside the row */
    int64_t lo = (pad_w + 1) / 2, hi = (W + pad_w) / 2;
    if (hi > tw + 1) hi = tw + 1;
    if (lo > hi) lo = hi;
    for (int64_t k = 0; k < lo; k++) {
        int64_t e = 2 * k - pad_w, o = e + 1;
        even[k] = e >= 0 && e < W ? row[e] : 0;
        odd[k] = o >= 0 && o < W ? row[o] : 0;
    }
    const T *r = row - pad_w;
    for (int64_t k = lo; k < hi; k++) {
        even[k] = r[2 * k];
        odd[k] = r[2 * k + 1];
    }
    for (int64_t k = hi; k <= tw; k++) {
        int64_t e = 2 * k - pad_w, o = e + 1;
        even[k] = e >= 0 && e < W ? row[e] : 0;
        odd[k] = o >= 0 && o < W ? row[o] : 0;
    }
}

/* The transforms' loops, as functions of their own: GCC takes restrict from
 * parameters (inlined too) but not from local pointers, and without it did
 * not vectorize the loops below (4 stores, 2-4 loads; too many pairs to check
 * at run time): the input transform ran scalar, 45% of a 3x3 64-channel
 * forward. */

/* d B for one row of d, the tiles' columns e[k], o[k], e[k + 1], o[k + 1]. */
static void FNN_NAME(wino_row_b)(int64_t n, const T *restrict e, const T *restrict o,
                                 T *restrict d0, T *restrict d1, T *restrict d2,
                                 T *restrict d3) {
    for (int64_t k = 0; k < n; k++) {
        d0[k] = e[k] - e[k + 1];
        d1[k] = o[k] + e[k + 1];
        d2[k] = e[k + 1] - o[k];
        d3[k] = o[k] - o[k + 1];
    }
}

/* B^T q for one column j of q = d B, rows q0..q3. */
static void FNN_NAME(wino_col_bt)(int64_t n, const T *restrict q0, const T *restrict q1,
                                  const T *restrict q2, const T *restrict q3, T *restrict v0,
                                  T *restrict v1, T *restrict v2, T *restrict v3) {
    for (int64_t t = 0; t < n; t++) {
        v0[t] = q0[t] - q2[t];
        v1[t] = q1[t] + q2[t];
        v2[t] = q2[t] - q1[t];
        v3[t] = q1[t] - q3[t];
    }
}

/* A^T q for one column j of the products q0..q3. */
static void FNN_NAME(wino_col_at)(int64_t n, const T *restrict q0, const T *restrict q1,
                                  const T *restrict q2, const T *restrict q3, T *restrict s0,
                                  T *restrict s1) {
    for (int64_t t = 0; t < n; t++) {
        s0[t] = q0[t] + q1[t] + q2[t];
        s1[t] = q1[t] - q2[t] - q3[t];
    }
}

static void FNN_NAME(wino_input_block)(const fnn_conv_shape *s, const T *x, int64_t c0,
                                       int64_t c1, int64_t r0, int64_t r1, int64_t th, int64_t tw,
                                       T *V, int64_t ldv, T *scratch) {
    const int64_t C = s->in_channels, H = s->in_h, W = s->in_w, HW = H * W, slab = C * ldv;
    const int64_t tiles = (r1 - r0) * tw;
    T *e = scratch, *o = e + tw + 1;
    T *db = o + tw + 1; /* d B: 16 arrays of the block's tiles, [row i][column j] */
    for (int64_t c = c0; c < c1; c++) {
        for (int64_t r = r0; r < r1; r++) {
            const T *plane = x + ((r / th) * C + c) * HW;
            for (int i = 0; i < 4; i++) {
                int64_t h = 2 * (r % th) - s->pad_h + i;
                FNN_NAME(wino_split_row)(h >= 0 && h < H ? plane + h * W : NULL, W, s->pad_w,
                                         tw, e, o);
                T *d0 = db + 4 * i * tiles + (r - r0) * tw;
                FNN_NAME(wino_row_b)(tw, e, o, d0, d0 + tiles, d0 + 2 * tiles, d0 + 3 * tiles);
            }
        }
        for (int j = 0; j < 4; j++) { /* B^T (d B), column j, all the block's tiles */
            const T *q0 = db + j * tiles;
            T *v0 = V + j * slab + c * ldv;
            FNN_NAME(wino_col_bt)(tiles, q0, q0 + 4 * tiles, q0 + 8 * tiles, q0 + 12 * tiles, v0,
                                  v0 + 4 * slab, v0 + 8 * slab, v0 + 12 * slab);
        }
    }
}

static void FNN_NAME(wino_output_block)(const fnn_conv_shape *s, const T *Mx, int64_t ldm,
                                        int64_t slab, const T *bias, int64_t r0, int64_t r1,
                                        int64_t th, int64_t tw, int64_t m0, int64_t m1, T *y,
                                        T *scratch) {
    const int64_t OH = s->out_h, OW = s->out_w, L = OH * OW, tiles = (r1 - r0) * tw;
    const int64_t pairs = OW / 2;
    T *a = scratch; /* A^T q: 8 arrays of the block's tiles, [row 0..1][column 0..3] */
    for (int64_t m = m0; m < m1; m++) {
        const T *p = Mx + (m - m0) * ldm;
        const T b = bias ? bias[m] : 0;
        for (int j = 0; j < 4; j++) {
            const T *q0 = p + j * slab;
            FNN_NAME(wino_col_at)(tiles, q0, q0 + 4 * slab, q0 + 8 * slab, q0 + 12 * slab,
                                  a + j * tiles, a + (4 + j) * tiles);
        }
        /* (A^T q) A, a tile row at a time, as pairs of columns; the last
         * column and row of the last tiles may lie outside the output */
        for (int64_t r = r0; r < r1; r++) {
            const int64_t oh = 2 * (r % th);
            T *y0 = y + ((r / th) * s->out_channels + m) * L + oh * OW;
            for (int row = 0; row < 2 && oh + row < OH; row++) {
                const T *t0 = a + 4 * row * tiles + (r - r0) * tw, *t1 = t0 + tiles,
                        *t2 = t1 + tiles, *t3 = t2 + tiles;
                T *restrict out = y0 + row * OW;
                for (int64_t k = 0; k < pairs; k++) {
                    out[2 * k] = t0[k] + t1[k] + t2[k] + b;
                    out[2 * k + 1] = t1[k] - t2[k] - t3[k] + b;
                }
                if (OW % 2) out[OW - 1] = t0[pairs] + t1[pairs] + t2[pairs] + b;
            }
        }
    }
}

/* Through a small buffer, FNN_WINO_WEIGHT_BLOCK inputs at a time: the 16
 * slabs of U lie M * C apart, often a multiple of 4 KB, and 16 interleaved
 * store streams at such a distance share one set of L1 (12 ways); written
 * directly, the transform took 30% of a 512-channel convolution. */
static void FNN_NAME(wino_weights)(const fnn_conv_shape *s, const T *w, int flip, int64_t m0,
                                   int64_t m1, T *U) {
    const int64_t M = s->out_channels, C = s->in_channels, MC = M * C;
    /* g's tap (i, j) of output m and input c is w[m * sm + c * sc + i * si + j * sj] */
    const int64_t sm = flip ? 9 : 9 * C, sc = flip ? 9 * M : 9;
    const int64_t si = flip ? -3 : 3, sj = flip ? -1 : 1, first = flip ? 8 : 0;
    T buf[16][FNN_WINO_WEIGHT_BLOCK];
    for (int64_t m = m0; m < m1; m++)
        for (int64_t c0 = 0; c0 < C; c0 += FNN_WINO_WEIGHT_BLOCK) {
            const int64_t n = C - c0 < FNN_WINO_WEIGHT_BLOCK ? C - c0 : FNN_WINO_WEIGHT_BLOCK;
            for (int64_t k = 0; k < n; k++) {
                const T *g = w + m * sm + (c0 + k) * sc + first;
                T t[4][3];
                for (int j = 0; j < 3; j++) { /* t = G g */
                    T g0 = g[j * sj], g1 = g[si + j * sj], g2 = g[2 * si + j * sj];
                    t[0][j] = g0;
                    t[1][j] = (g0 + g1 + g2) * (T)0.5;
                    t[2][j] = (g0 - g1 + g2) * (T)0.5;
                    t[3][j] = g2;
                }
                for (int i = 0; i < 4; i++) { /* U = t G^T */
                    buf[4 * i][k] = t[i][0];
                    buf[4 * i + 1][k] = (t[i][0] + t[i][1] + t[i][2]) * (T)0.5;
                    buf[4 * i + 2][k] = (t[i][0] - t[i][1] + t[i][2]) * (T)0.5;
                    buf[4 * i + 3][k] = t[i][2];
                }
            }
            for (int xi = 0; xi < 16; xi++)
                memcpy(U + xi * MC + m * C + c0, buf[xi], (size_t)n * sizeof(T));
        }
}

#else /* ---- one dtype: the entry point ---- */

#define FNN_SFX2(name, sfx) name##_##sfx
#define FNN_SFX1(name, sfx) FNN_SFX2(name, sfx)
#define FNN_T(name) FNN_SFX1(name, SFX)

int FNN_T(fnn_winograd_forward)(const fnn_conv_shape *s, const T *x, const T *w, const T *bias,
                                int flip, T *y) {
    const fnn_wino_plan p = wino_plan(s, (int64_t)sizeof(T));
    const fnn_wino_ops *ops = fnn_wino_ops_now();
    const int64_t M = s->out_channels, C = s->in_channels, R = s->batch * p.th;
    const int64_t v_size = 16 * C * p.ld, m_size = 16 * p.chunk_rows * p.ld;
    /* A single block (small batches) is transformed once, by all threads
     * (one channel each at a time), into a V they share; else each thread
     * transforms the blocks it takes into its own. */
    const int shared = p.blocks == 1;
    /* (256 bytes apart: no two threads write one cache line) */
    const int64_t per = (shared ? 0 : v_size) + m_size + FNN_WINO_SCRATCH(p.tw, p.tiles) +
                        256 / (int64_t)sizeof(T);
    const int nt = fnn_get_num_threads(); /* once: it sizes the workspace */
    /* one workspace: the transformed weight U, then the threads' parts (and V) */
    const size_t most = SIZE_MAX / sizeof(T) / (size_t)(nt + 2); /* for each of 16MC, V */
    if ((size_t)per > most || (size_t)(M * C) > most / 16 || (size_t)v_size > most)
        return FNN_ENOMEM;
    T *U = fnn_block_alloc(
        ((size_t)(16 * M * C) + (size_t)nt * (size_t)per + (size_t)(shared ? v_size : 0)) *
            sizeof(T),
        FNN_BLOCK_SMALL);
    if (!U) return FNN_ENOMEM;
    T *ws = U + 16 * M * C;

#pragma omp parallel num_threads(nt)
    {
        T *mine = ws + (shared ? v_size : 0) + omp_get_thread_num() * per;
        T *V = shared ? ws : mine, *Mx = shared ? mine : V + v_size, *scratch = Mx + m_size;
        int64_t cached = -1;
#pragma omp for schedule(static) nowait
        for (int64_t m = 0; m < M; m++) ops->FNN_T(weights)(s, w, flip, m, m + 1, U);
        if (shared) {
#pragma omp for schedule(static) nowait
            for (int64_t c = 0; c < C; c++)
                ops->FNN_T(input_block)(s, x, c, c + 1, 0, R, p.th, p.tw, V, p.ld, scratch);
            cached = 0;
        }
#pragma omp barrier
#pragma omp for schedule(static)
        for (int64_t it = 0; it < p.blocks * p.chunks; it++) {
            const int64_t blk = it / p.chunks, m0 = (it % p.chunks) * p.chunk_rows;
            const int64_t m1 = fnn_min64(m0 + p.chunk_rows, M);
            const int64_t r0 = blk * R / p.blocks, r1 = (blk + 1) * R / p.blocks;
            const int64_t tiles = (r1 - r0) * p.tw;
            if (m0 >= m1) continue;
            if (cached != blk) {
                ops->FNN_T(input_block)(s, x, 0, C, r0, r1, p.th, p.tw, V, p.ld, scratch);
                cached = blk;
            }
            for (int xi = 0; xi < 16; xi++)
                FNN_T(fnn_gemm_rows)(m1 - m0, tiles, C, U + (xi * M + m0) * C, C,
                                     V + xi * C * p.ld, p.ld, NULL, 0,
                                     Mx + xi * p.chunk_rows * p.ld, p.ld);
            ops->FNN_T(output_block)(s, Mx, p.ld, p.chunk_rows * p.ld, bias, r0, r1, p.th,
                                     p.tw, m0, m1, y, scratch);
        }
    }
    fnn_block_free(U);
    return FNN_OK;
}

#undef FNN_SFX2
#undef FNN_SFX1
#undef FNN_T
#endif
