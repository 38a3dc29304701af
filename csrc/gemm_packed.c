/* GEMM against a right operand packed once and reused by many calls: the
 * recurrent weight of an LSTM/GRU step loop, multiplied by the hidden state at
 * every step. OpenBLAS repacks it on every call (62% of its peak at M=32,
 * N=1024, K=256; DESIGN.md section 1); here the caller packs it once per
 * sequence and each call only streams the panels.
 *
 * Layout: B (k x n) is cut into panels of NR columns (the last one padded with
 * zeros), each stored k-major, NR contiguous values per p, one panel after
 * the other. A call computes a range of columns of C on one thread; a register
 * tile of up to MR rows by one panel runs over all of k (AVX-512: 4 x 64 in
 * f32, 4 x 32 in f64; AVX2: 6 x 16 and 6 x 8; portable: 4 x 8 and 4 x 4).
 *
 * Every element of C is one chain of fused multiply-adds over p = 0..k-1 in
 * order, started from 0 or from C itself; which tile, row count or column
 * range computed it never changes that chain, so splitting the columns over
 * threads gives the same bits as one call.
 *
 * Like im2col.c, this file includes itself: once per instruction set (portable,
 * AVX2, AVX-512; the one runtime.c chose at import is used), and within each
 * once per dtype. The tile is written with GCC vector types, so one body
 * serves the three sets; only the fused multiply-add differs. */
#if !defined(FNN_ISA) /* ---- top level: the instruction sets and the entry points ---- */
#include <assert.h>
#include <immintrin.h>
#include <string.h>
#include "fastnn.h"

#define FNN_CAT2(a, b) a##b
#define FNN_CAT(a, b) FNN_CAT2(a, b)

/* One instruction set's panel width and kernels. */
#define FNN_PACKED_OPS(T, SFX)                                                                \
    int64_t (*nr_##SFX)(void);                                                                \
    void (*pack_b_##SFX)(int64_t k, int64_t n, const T *b, int64_t ldb, int trans_b, T *bp); \
    void (*gemm_##SFX)(int64_t m, int64_t n0, int64_t n1, int64_t k, const T *a,            \
                       int64_t lda, const T *bp, int flags, T *c, int64_t ldc);               \
    void (*gemm_rows_##SFX)(int64_t m, int64_t n, int64_t k, const T *a, int64_t lda,       \
                            const T *b, int64_t ldb, const T *bias, int flags, T *c,         \
                            int64_t ldc);
typedef struct {
    FNN_PACKED_OPS(float, f32)
    FNN_PACKED_OPS(double, f64)
} fnn_packed_ops;
#undef FNN_PACKED_OPS

/* FNN_CHAINS (per instruction set, below): independent FMA chains a tile
 * keeps in flight at least: a tile of fewer than MR rows (batch 1 is a GEMV)
 * spans several panels to reach it. */
#define FNN_MIN(a, b) ((a) < (b) ? (a) : (b))
#define FNN_MAX(a, b) ((a) > (b) ? (a) : (b))
/* Values of p per block of the transposing pack: two cache lines of each row of
 * W (f32) at a time; 2x faster than row by row, and 16, 64, 128 were no better. */
#define FNN_PACK_BLOCK 32
/* The part of a panel that the row tiles share from L1: half of L1. A whole
 * panel of the per-step shapes (k = 256, 512: 64-128 KB in f32 with AVX-512)
 * is streamed from L2 by every 4-row tile, at 32 bytes a cycle, which bounds
 * the kernel; blocks of 32 KB took M=32, N=1024, K=256 from 110 to 142 GFLOP/s
 * and 64x2048x512 from 105 to 130 (Sapphire Rapids, 48 KB L1; 16 KB: 138, 126). */
#define FNN_KC_BYTES (fnn_cache_bytes(1) / 2)
#define FNN_GROUP(rows)                                                                       \
    FNN_MIN((FNN_CHAINS + (rows)*FNN_PANEL_VECS - 1) / ((rows)*FNN_PANEL_VECS), FNN_MR / (rows))

#define FNN_ISA_SOURCE "gemm_packed.c"
#include "isa_builds.h"

#define FNN_PACKED_OPS_OF(isa, sfx) \
    gemm_packed_nr_##isa##_##sfx, pack_b_##isa##_##sfx, gemm_packed_##isa##_##sfx, \
        gemm_rows_##isa##_##sfx
#define FNN_DEFINE_PACKED_OPS(isa)                                                            \
    static const fnn_packed_ops fnn_packed_##isa = {FNN_PACKED_OPS_OF(isa, f32),              \
                                                    FNN_PACKED_OPS_OF(isa, f64)};
FNN_DEFINE_PACKED_OPS(portable)
FNN_DEFINE_PACKED_OPS(avx2)
FNN_DEFINE_PACKED_OPS(avx512)

/* The set runtime.c chose (fnn_simd_level). */
static const fnn_packed_ops *fnn_packed_ops_now(void) {
    static const fnn_packed_ops *const sets[] = {&fnn_packed_portable, &fnn_packed_avx2, &fnn_packed_avx512};
    return sets[fnn_simd_level()];
}

#define FNN_DEFINE_PACKED(T, SFX)                                                             \
    int64_t fnn_packed_nr_##SFX(void) { return fnn_packed_ops_now()->nr_##SFX(); }           \
    int64_t fnn_packed_size_##SFX(int64_t k, int64_t n) {                                     \
        int64_t nr = fnn_packed_nr_##SFX();                                                    \
        return (n + nr - 1) / nr * nr * k;                                                     \
    }                                                                                          \
    void fnn_pack_b_##SFX(int64_t k, int64_t n, const T *b, int64_t ldb, int trans_b,         \
                          T *bp) {                                                             \
        fnn_packed_ops_now()->pack_b_##SFX(k, n, b, ldb, trans_b, bp);                         \
    }                                                                                          \
    void fnn_gemm_packed_##SFX(int64_t m, int64_t n0, int64_t n1, int64_t k, const T *a,      \
                               int64_t lda, const T *bp, int flags, T *c, int64_t ldc) {       \
        fnn_packed_ops_now()->gemm_##SFX(m, n0, n1, k, a, lda, bp, flags, c, ldc);             \
    }                                                                                          \
    void fnn_gemm_rows_##SFX(int64_t m, int64_t n, int64_t k, const T *a, int64_t lda,        \
                             const T *b, int64_t ldb, const T *bias, int flags, T *c,          \
                             int64_t ldc) {                                                    \
        fnn_packed_ops_now()->gemm_rows_##SFX(m, n, k, a, lda, b, ldb, bias, flags, c, ldc);   \
    }
FNN_DEFINE_PACKED(float, f32)
FNN_DEFINE_PACKED(double, f64)

#elif !defined(T) /* ---- one instruction set: the dtypes ---- */

/* Per instruction set: the vector size, the panel width in vectors (NR = that
 * many vectors) and MR, the rows of a tile (MR * PANEL_VECS accumulators). */
#if FNN_ISA_LEVEL == 0
/* Portable: SSE2, 16 registers of 16 bytes, 8 accumulators; no fused
 * multiply-add there. */
#define FNN_VBYTES 16
#define FNN_PANEL_VECS 2
#define FNN_MR 4
#define FNN_FMA_f32(b, a, c) ((c) + (b) * (a))
#define FNN_FMA_f64(b, a, c) ((c) + (b) * (a))
#define FNN_CHAINS 8
#elif FNN_ISA_LEVEL == 1
/* AVX2: 16 registers of 32 bytes, 12 of them accumulators. */
#define FNN_VBYTES 32
#define FNN_PANEL_VECS 2
#define FNN_MR 6
#define FNN_FMA_f32(b, a, c) ((vec_t)_mm256_fmadd_ps((__m256)(b), _mm256_set1_ps(a), (__m256)(c)))
#define FNN_FMA_f64(b, a, c) ((vec_t)_mm256_fmadd_pd((__m256d)(b), _mm256_set1_pd(a), (__m256d)(c)))
/* 16 chains (a GEMV row over 6 panels) left no register for B: 1.9x slower. */
#define FNN_CHAINS 8
#else
/* AVX-512: 32 registers of 64 bytes, 16 of them accumulators. Four vectors
 * per panel row need 8 loads (B and broadcasts of A) per 16 FMAs; two vectors
 * by 8 rows needed 10 and ran at 95 against 112 GFLOP/s (Zen 4, 32x1024x256).
 * Four rows divide the usual batch sizes. */
#define FNN_VBYTES 64
#define FNN_PANEL_VECS 4
#define FNN_MR 4
#define FNN_FMA_f32(b, a, c) ((vec_t)_mm512_fmadd_ps((__m512)(b), _mm512_set1_ps(a), (__m512)(c)))
#define FNN_FMA_f64(b, a, c) ((vec_t)_mm512_fmadd_pd((__m512d)(b), _mm512_set1_pd(a), (__m512d)(c)))
/* 16: a GEMV row streams 4 panels of W_hh from L2 at once, not 2; an LSTM and
 * a GRU at batch 1 (H = 128, W_hh 256 and 192 KB) ran 1.04-1.28x faster on
 * one thread (Zen 5), the same on two. */
#define FNN_CHAINS 16
#endif

/* out[j][i] = w[i][j] for a 4 x 4 block (rows ldw and ldo apart): the
 * transposing pack's inner step, in SSE registers (every build has them).
 * Against one value at a time, W_hh 512 x 128 packed in 9 us, not 21 (Zen 5):
 * an LSTM at batch 1 (T = 200, H = 128) 1.03x. AVX-512 gathers of 16 rows were
 * no faster than the scalar loop. */
static inline void FNN_CAT(fnn_transpose4_f32_, FNN_ISA)(const float *w, int64_t ldw, float *out,
                                                         int64_t ldo) {
    __m128 r0 = _mm_loadu_ps(w), r1 = _mm_loadu_ps(w + ldw), r2 = _mm_loadu_ps(w + 2 * ldw),
           r3 = _mm_loadu_ps(w + 3 * ldw);
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
    _mm_storeu_ps(out, r0);
    _mm_storeu_ps(out + ldo, r1);
    _mm_storeu_ps(out + 2 * ldo, r2);
    _mm_storeu_ps(out + 3 * ldo, r3);
}
static inline void FNN_CAT(fnn_transpose4_f64_, FNN_ISA)(const double *w, int64_t ldw,
                                                         double *out, int64_t ldo) {
    for (int h = 0; h < 4; h += 2) /* two column pairs */
        for (int v = 0; v < 4; v += 2) { /* two row pairs */
            __m128d a = _mm_loadu_pd(w + v * ldw + h), b = _mm_loadu_pd(w + (v + 1) * ldw + h);
            _mm_storeu_pd(out + h * ldo + v, _mm_unpacklo_pd(a, b));
            _mm_storeu_pd(out + (h + 1) * ldo + v, _mm_unpackhi_pd(a, b));
        }
}

#define FNN_DTYPE_SOURCE "gemm_packed.c"
#include "dtype_builds.h"
#undef FNN_DTYPE_SOURCE
#undef FNN_VBYTES
#undef FNN_PANEL_VECS
#undef FNN_MR
#undef FNN_FMA_f32
#undef FNN_FMA_f64
#undef FNN_CHAINS

#else /* ---- body: one instruction set, one dtype ---- */

#define FNN_LANES ((int)(FNN_VBYTES / sizeof(T)))
#define FNN_NR (FNN_PANEL_VECS * FNN_LANES)
#define FNN_FMA FNN_CAT(FNN_FMA_, SFX)
#define vec_t FNN_NAME(vec)
#define vec_u FNN_NAME(vec_u)
typedef T vec_t __attribute__((vector_size(FNN_VBYTES)));
/* for loads and stores at any element boundary */
typedef T vec_u __attribute__((vector_size(FNN_VBYTES), aligned(sizeof(T)), may_alias));

static int64_t FNN_NAME(gemm_packed_nr)(void) { return FNN_NR; }

static void FNN_NAME(pack_b)(int64_t k, int64_t n, const T *b, int64_t ldb, int trans_b,
                             T *bp) {
    for (int64_t j0 = 0; j0 < n; j0 += FNN_NR, bp += k * FNN_NR) {
        int64_t cols = n - j0 < FNN_NR ? n - j0 : FNN_NR;
        if (cols < FNN_NR) memset(bp, 0, (size_t)(k * FNN_NR) * sizeof(T));
        if (trans_b) /* a transpose by blocks of p, whose panel rows stay in L1 */
            for (int64_t p0 = 0; p0 < k; p0 += FNN_PACK_BLOCK) {
                int64_t p1 = k - p0 < FNN_PACK_BLOCK ? k : p0 + FNN_PACK_BLOCK, jj = 0;
                for (; jj + 4 <= cols; jj += 4) { /* 4 x 4 blocks, then the last p */
                    const T *w = b + (j0 + jj) * ldb;
                    int64_t p = p0;
                    for (; p + 4 <= p1; p += 4)
                        FNN_CAT(FNN_CAT(fnn_transpose4_, SFX), FNN_CAT(_, FNN_ISA))(
                            w + p, ldb, bp + p * FNN_NR + jj, FNN_NR);
                    for (; p < p1; p++)
                        for (int r = 0; r < 4; r++) bp[p * FNN_NR + jj + r] = w[r * ldb + p];
                }
                for (; jj < cols; jj++)
                    for (int64_t p = p0; p < p1; p++)
                        bp[p * FNN_NR + jj] = b[(j0 + jj) * ldb + p];
            }
        else
            for (int64_t p = 0; p < k; p++)
                for (int64_t jj = 0; jj < cols; jj++) bp[p * FNN_NR + jj] = b[p * ldb + j0 + jj];
    }
}

/* c (rows x vecs vectors) = (beta ? c : 0) + a (rows x k) @ the panels' first
 * vecs vectors (vecs: whole panels, or under one for a last, narrow one); the
 * panels lie panel_size apart, their rows ldp apart (NR when packed). Inlined
 * with constant rows and vecs, so that the accumulators live in registers. */
static inline __attribute__((always_inline)) void FNN_NAME(tile)(
    const int rows, const int vecs, const int a_trans, int64_t k, const T *a, int64_t lda,
    const T *b, int64_t panel_size, int64_t ldp, int beta, const T *bias, T *c, int64_t ldc) {
    enum { V = FNN_PANEL_VECS, W = FNN_GROUP(1) * FNN_PANEL_VECS };
    vec_t acc[FNN_MR][W];
#pragma GCC unroll 8
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 8
        for (int q = 0; q < vecs; q++)
            acc[r][q] = beta   ? (vec_t) * (const vec_u *)(c + r * ldc + q * FNN_LANES)
                        : bias ? (vec_t){0} + bias[r]
                               : (vec_t){0};
    /* Row r of A at a0 or a3 (rows 3 on) plus (r % 3) rows, addressed as
     * base + index * 1 or 2, so that all the rows' pointers take four
     * registers. The empty asm keeps GCC from turning them back into one
     * pointer plus an offset per row, which it spilled to the stack (6
     * reloads per p; 1.10-1.20x on the AVX2 recurrent shapes). With a_trans
     * (A^T stored, its rows lda apart) the rows are neighbours at a0. */
    const int64_t lda_bytes = lda * (int64_t)sizeof(T);
    const int64_t step = a_trans ? lda_bytes : (int64_t)sizeof(T);
    const char *a0 = (const char *)a, *a3 = (const char *)(rows > 3 && !a_trans ? a + 3 * lda : a);
    const char *const a0_end = a0 + k * step;
    for (; a0 != a0_end; b += ldp) {
        vec_t bv[W];
#pragma GCC unroll 8
        for (int q = 0; q < vecs; q++)
            bv[q] = *(const vec_u *)(b + (q / V) * panel_size + (q % V) * FNN_LANES);
#pragma GCC unroll 8
        for (int r = 0; r < rows; r++) {
            T ar = a_trans ? *(const T *)(a0 + r * sizeof(T))
                           : *(const T *)((r < 3 ? a0 : a3) + (r % 3) * lda_bytes);
#pragma GCC unroll 8
            for (int q = 0; q < vecs; q++) acc[r][q] = FNN_FMA(bv[q], ar, acc[r][q]);
        }
        a0 += step;
        a3 += step;
        __asm__("" : "+r"(a0), "+r"(a3));
    }
#pragma GCC unroll 8
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 8
        for (int q = 0; q < vecs; q++)
            *(vec_u *)(c + r * ldc + q * FNN_LANES) = acc[r][q];
}

/* tile() for a run-time row count; vecs is a panel's (FNN_PANEL_VECS), a group's
 * (FNN_GROUP(rows) panels) or fewer than a panel's (a last, narrow panel). */
static void FNN_NAME(tile_rows)(int rows, int vecs, int a_trans, int64_t k, const T *a,
                                int64_t lda, const T *b, int64_t panel_size, int64_t ldp,
                                int beta, const T *bias, T *c, int64_t ldc) {
    assert(rows >= 1 && rows <= FNN_MR && vecs >= 1 &&
           (vecs <= FNN_PANEL_VECS || vecs == FNN_GROUP(rows) * FNN_PANEL_VECS));
#define FNN_TILE_AS(R, VECS)                                                                  \
    (a_trans ? FNN_NAME(tile)(R, VECS, 1, k, a, lda, b, panel_size, ldp, beta, bias, c, ldc)  \
             : FNN_NAME(tile)(R, VECS, 0, k, a, lda, b, panel_size, ldp, beta, bias, c, ldc))
#if FNN_PANEL_VECS == 2
#define FNN_TILE_NARROW(R) FNN_TILE_AS(R, 1)
#elif FNN_PANEL_VECS == 4
#define FNN_TILE_NARROW(R) \
    (vecs == 1 ? FNN_TILE_AS(R, 1) : vecs == 2 ? FNN_TILE_AS(R, 2) : FNN_TILE_AS(R, 3))
#else
#error "tile_rows: add the narrow panels of FNN_PANEL_VECS"
#endif
#define FNN_TILE_CASE(R)                                                                      \
    case R:                                                                                   \
        if (vecs == FNN_PANEL_VECS)                                                           \
            FNN_TILE_AS(R, FNN_PANEL_VECS);                                                   \
        else if (vecs > FNN_PANEL_VECS)                                                       \
            FNN_TILE_AS(R, FNN_GROUP(R) * FNN_PANEL_VECS);                                    \
        else                                                                                  \
            FNN_TILE_NARROW(R);                                                               \
        break;
    switch (rows) {
        FNN_TILE_CASE(1)
        FNN_TILE_CASE(2)
        FNN_TILE_CASE(3)
        FNN_TILE_CASE(4)
#if FNN_MR >= 5
        FNN_TILE_CASE(5)
#endif
#if FNN_MR >= 6
        FNN_TILE_CASE(6)
#endif
#if FNN_MR > 6
#error "tile_rows: add the cases up to FNN_MR"
#endif
    }
#undef FNN_TILE_CASE
#undef FNN_TILE_NARROW
#undef FNN_TILE_AS
}

/* Element (i, p) of A: a[i * lda + p], or with a_trans a[p * lda + i]. */
static inline const T *FNN_NAME(a_at)(const T *a, int64_t lda, int a_trans, int64_t i,
                                      int64_t p) {
    return a_trans ? a + p * lda + i : a + i * lda + p;
}

/* How many row tiles panel_group runs one panel at a time. When m is not a
 * multiple of MR, a last short tile has few accumulators (a 4-row tail of 16
 * rows: 8 on AVX2) and its loads weigh more; so the rows are shared out
 * evenly, ceil(m / MR) tiles, as long as every tile keeps at least MR - 1 rows
 * (16 rows: 6, 5, 5). Otherwise full tiles, and the rest is panel_group's
 * tail. Which tile computes an element does not change its chain. */
static int64_t FNN_NAME(row_tiles)(int64_t m) {
    const int64_t even = (m + FNN_MR - 1) / FNN_MR;
    return m % FNN_MR && m / even >= FNN_MR - 1 ? even : m / FNN_MR;
}

/* Rows that row_tiles' tiles cover: all of m, or all but a tail under MR. */
static int64_t FNN_NAME(tiled_rows)(int64_t m) {
    return FNN_MIN(m, FNN_NAME(row_tiles)(m) * FNN_MR);
}

/* All m rows times `panels` whole panels: the row tiles one panel at a time,
 * and within a panel by blocks of FNN_KC_BYTES of it, which stay in L1 across
 * the row tiles; then the tail rows, if any, across all the panels at once,
 * over all of k (they read each panel once). A tile's accumulators go through
 * C between blocks, which leaves every element's chain unchanged. */
static void FNN_NAME(panel_group)(int64_t m, int panels, int64_t k, const T *a, int64_t lda,
                                  int a_trans, const T *b, int64_t panel_size, int64_t ldp,
                                  const T *b_end, int beta, const T *bias, T *c, int64_t ldc) {
    const int64_t kc = FNN_MAX(FNN_KC_BYTES / (FNN_NR * (int64_t)sizeof(T)), 16);
    const int64_t tiles = FNN_NAME(row_tiles)(m), full = FNN_NAME(tiled_rows)(m);
    for (int q = 0; q < panels; q++)
        for (int64_t p0 = 0; p0 < k; p0 += kc) {
            const int64_t kk = k - p0 < kc ? k - p0 : kc;
            const T *block = b + q * panel_size + p0 * ldp;
            /* With b_end, the next block (it follows this one in memory) goes
             * to L2 while the row tiles run, a share before each. */
            const char *next = (const char *)(block + kk * FNN_NR);
            const int64_t ahead = b_end ? FNN_MIN((const char *)b_end - next, FNN_KC_BYTES) : 0;
            const int64_t share = tiles ? (ahead / 64 + tiles - 1) / tiles * 64 : 0;
            for (int64_t t = 0; t < tiles; t++) {
                const int64_t i = full * t / tiles, rows = full * (t + 1) / tiles - i;
                for (int64_t off = t * share; off < FNN_MIN((t + 1) * share, ahead); off += 64)
                    __builtin_prefetch(next + off, 0, 2);
                FNN_NAME(tile_rows)((int)rows, FNN_PANEL_VECS, a_trans, kk,
                                    FNN_NAME(a_at)(a, lda, a_trans, i, p0),
                                    lda, block, panel_size, ldp, beta || p0 > 0,
                                    bias ? bias + i : NULL, c + i * ldc + q * FNN_NR, ldc);
            }
        }
    if (full < m)
        FNN_NAME(tile_rows)((int)(m - full), panels * FNN_PANEL_VECS, a_trans, k,
                            FNN_NAME(a_at)(a, lda, a_trans, full, 0), lda, b, panel_size, ldp,
                            beta, bias ? bias + full : NULL, c + full * ldc, ldc);
}

/* The last panel when only its first `cols` columns exist, C's through a
 * tile-sized buffer, with the arithmetic (and the bits) of a full panel, but
 * only the vectors that hold the columns: 4 columns of an AVX-512 f32 panel
 * cost a quarter of one (Winograd's 196-tile blocks, 3 panels and 4 columns,
 * conv1d's 400 positions: 3x3 forward 1.03-1.14x, conv1d 1.09x, Zen 5). B's
 * rows are read as wide as those vectors, in place, as far as that stays
 * within B (what lies past `cols` there only meets columns that are dropped);
 * its last rows, where it would not, through a zero-padded copy. */
static void FNN_NAME(edge_panel)(int64_t m, int64_t cols, int64_t k, const T *a, int64_t lda,
                                 int a_trans, const T *b, int64_t ldp, int beta, const T *bias,
                                 T *c, int64_t ldc) {
    const int vecs = (int)((cols + FNN_LANES - 1) / FNN_LANES);
    const int64_t width = vecs * (int64_t)FNN_LANES;
    const int64_t in_place = FNN_MAX(0, k - (width - cols + ldp - 1) / ldp);
    const size_t row_bytes = (size_t)cols * sizeof(T);
    T tail[FNN_NR * FNN_NR], buf[FNN_MR * FNN_NR] = {0}; /* tail: under NR rows */
    memset(tail, 0, (size_t)((k - in_place) * FNN_NR) * sizeof(T));
    for (int64_t p = in_place; p < k; p++)
        memcpy(tail + (p - in_place) * FNN_NR, b + p * ldp, row_bytes);
    for (int64_t i = 0; i < m; i += FNN_MR) {
        const int rows = m - i < FNN_MR ? (int)(m - i) : FNN_MR;
        const T *row_bias = bias ? bias + i : NULL;
        for (int r = 0; beta && r < rows; r++)
            memcpy(buf + r * FNN_NR, c + (i + r) * ldc, row_bytes);
        if (in_place > 0)
            FNN_NAME(tile_rows)(rows, vecs, a_trans, in_place,
                                FNN_NAME(a_at)(a, lda, a_trans, i, 0), lda, b, 0, ldp, beta,
                                row_bias, buf, FNN_NR);
        if (in_place < k)
            FNN_NAME(tile_rows)(rows, vecs, a_trans, k - in_place,
                                FNN_NAME(a_at)(a, lda, a_trans, i, in_place), lda, tail, 0, FNN_NR,
                                beta || in_place > 0, in_place > 0 ? NULL : row_bias, buf,
                                FNN_NR);
        for (int r = 0; r < rows; r++) memcpy(c + (i + r) * ldc, buf + r * FNN_NR, row_bytes);
    }
}

/* Columns [n0, n1) of c (+)= a @ B, B's panels panel_size apart and their rows
 * ldp apart, from b (panel n0 / NR); b_end: see FNN_PACKED_PREFETCH. */
static void FNN_NAME(gemm_panels)(int64_t m, int64_t n0, int64_t n1, int64_t k, const T *a,
                                  int64_t lda, int a_trans, const T *b, int64_t panel_size,
                                  int64_t ldp, const T *b_end, int beta, const T *bias, T *c,
                                  int64_t ldc) {
    const int64_t full_end = n1 - (n1 - n0) % FNN_NR;
    const int tail_rows = (int)(m - FNN_NAME(tiled_rows)(m));
    const int group = tail_rows ? FNN_GROUP(tail_rows) : 1;
    int64_t j = n0;
    for (; j + group * FNN_NR <= full_end; j += group * FNN_NR, b += group * panel_size)
        FNN_NAME(panel_group)(m, group, k, a, lda, a_trans, b, panel_size, ldp, b_end, beta, bias,
                              c + j, ldc);
    for (; j < full_end; j += FNN_NR, b += panel_size)
        FNN_NAME(panel_group)(m, 1, k, a, lda, a_trans, b, panel_size, ldp, b_end, beta, bias,
                              c + j, ldc);
    if (j < n1)
        FNN_NAME(edge_panel)(m, n1 - j, k, a, lda, a_trans, b, ldp, beta, bias, c + j, ldc);
}

static void FNN_NAME(gemm_packed)(int64_t m, int64_t n0, int64_t n1, int64_t k, const T *a,
                                  int64_t lda, const T *bp, int flags, T *c, int64_t ldc) {
    assert(n0 % FNN_NR == 0 && n0 <= n1);
    const int64_t panel_size = k * FNN_NR, full_end = n1 - (n1 - n0) % FNN_NR;
    /* Panels that do not stay in L2 come from L3, whose latency the hardware
     * prefetcher does not hide at the start of each block: prefetching took
     * an LSTM with H = 512 (W_hh 4 MB) 2-6% faster, but one with H = 256 (1 MB,
     * in L2) 1% slower on one thread and 7% on two, hence the caller's flag. */
    const T *b_end = flags & FNN_PACKED_PREFETCH ? bp + full_end / FNN_NR * panel_size : NULL;
    FNN_NAME(gemm_panels)(m, n0, n1, k, a, lda, (flags & FNN_PACKED_TRANS_A) != 0,
                          bp + n0 / FNN_NR * panel_size, panel_size, FNN_NR, b_end,
                          (flags & FNN_PACKED_ACCUMULATE) != 0, NULL, c, ldc);
}

/* The same tiles on B read in place, row-major: its panels are NR columns of
 * its rows, the rows' KC-blocks staying in L1 across the row tiles as a packed
 * panel's do. */
static void FNN_NAME(gemm_rows)(int64_t m, int64_t n, int64_t k, const T *a, int64_t lda,
                                const T *b, int64_t ldb, const T *bias, int flags, T *c,
                                int64_t ldc) {
    FNN_NAME(gemm_panels)(m, 0, n, k, a, lda, (flags & FNN_PACKED_TRANS_A) != 0, b, FNN_NR, ldb,
                          NULL, (flags & FNN_PACKED_ACCUMULATE) != 0, bias, c, ldc);
}

#undef FNN_LANES
#undef FNN_NR
#undef FNN_FMA
#undef vec_t
#undef vec_u

#endif
