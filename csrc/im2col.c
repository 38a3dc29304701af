/* im2col and col2im, the layout of torch.nn.functional.unfold/fold: row
 * (c, ki, kj) of the column matrix holds, for every output position p = oh*OW
 * + ow, the input element under kernel tap (ki, kj), or 0 in the padding; and,
 * walking the same taps, the direct convolution of one input channel that
 * depthwise convolutions use instead of im2col + GEMM.
 *
 * The block forms work on a range [p0, p1) of output positions so that
 * convolution can keep a cache-sized slice of the column matrix per thread.
 * They are compiled once per instruction set (portable, AVX2, AVX-512) from one
 * body, so that the compiler vectorizes the short row loops inline for each
 * target; runtime.c picks one set at import and kernels call it per block.
 *
 * This file includes itself: once per instruction set, and within each once
 * per dtype. */
#if !defined(FNN_ISA) /* ---- top level: the instruction sets ---- */
#include <immintrin.h>
#include <omp.h>
#include <string.h>
#include "fastnn.h"

/* What a walk over a block does with each in-bounds row segment of a tap. The
 * first two move data between the image and a column matrix; the last three are
 * a direct convolution of one input channel, where every tap reads or writes
 * the same row (ldc = 0) and carries a weight. */
enum {
    FNN_WALK_IM2COL,  /* cols[tap][p] = x[...], zero in the padding */
    FNN_WALK_COL2IM,  /* x[...] += cols[tap][p] */
    FNN_WALK_AXPY,    /* row[p] += w[tap] * x[...] */
    FNN_WALK_SCATTER, /* x[...] += w[tap] * row[p] */
    FNN_WALK_DOT      /* w[tap] += sum_p row[p] * x[...] */
};

#define FNN_ISA_SOURCE "im2col.c"
#include "isa_builds.h"

#define FNN_OPS_OF(name, isa) name##_##isa##_f32, name##_##isa##_f64
#define FNN_DEFINE_OPS(isa)                                                                   \
    const fnn_simd_ops fnn_simd_##isa = {#isa,                                                \
                                         FNN_OPS_OF(im2col_block, isa),                       \
                                         FNN_OPS_OF(col2im_block_add, isa),                   \
                                         FNN_OPS_OF(direct_forward_block, isa),               \
                                         FNN_OPS_OF(direct_input_grad_block, isa),            \
                                         FNN_OPS_OF(direct_weight_grad_block, isa),           \
                                         FNN_OPS_OF(taps_forward_block, isa),                 \
                                         FNN_OPS_OF(taps_input_grad_rows, isa),               \
                                         FNN_OPS_OF(taps_weight_grad_block, isa)};
FNN_DEFINE_OPS(portable)
FNN_DEFINE_OPS(avx2)
FNN_DEFINE_OPS(avx512)

/* Whole batch, one (image, channel) plane per work item: planes are independent,
 * so the result does not depend on the thread count. */
#define FNN_DEFINE_BATCH(T, SFX)                                                              \
    int fnn_im2col_##SFX(const fnn_conv_shape *s, const T *x, T *cols) {                      \
        int64_t kk = s->kernel_h * s->kernel_w, L = s->out_h * s->out_w;                       \
        int64_t hw = s->in_h * s->in_w, planes = s->batch * s->in_channels;                    \
        _Pragma("omp parallel for schedule(static) num_threads(fnn_get_num_threads())")       \
        for (int64_t i = 0; i < planes; i++)                                                   \
            fnn_simd->im2col_block_##SFX(s, x + i * hw, 1, 0, L, cols + i * kk * L, L);        \
        return FNN_OK;                                                                         \
    }                                                                                          \
    int fnn_col2im_##SFX(const fnn_conv_shape *s, const T *cols, T *x) {                      \
        int64_t kk = s->kernel_h * s->kernel_w, L = s->out_h * s->out_w;                       \
        int64_t hw = s->in_h * s->in_w, planes = s->batch * s->in_channels;                    \
        _Pragma("omp parallel for schedule(static) num_threads(fnn_get_num_threads())")       \
        for (int64_t i = 0; i < planes; i++) {                                                 \
            memset(x + i * hw, 0, (size_t)hw * sizeof(T));                                     \
            fnn_simd->col2im_block_add_##SFX(s, cols + i * kk * L, 1, 0, L, L, x + i * hw);    \
        }                                                                                      \
        return FNN_OK;                                                                         \
    }
FNN_DEFINE_BATCH(float, f32)
FNN_DEFINE_BATCH(double, f64)

#elif !defined(T) /* ---- one instruction set: the dtypes ---- */

#define FNN_DTYPE_SOURCE "im2col.c"
#include "dtype_builds.h"
#undef FNN_DTYPE_SOURCE

#else /* ---- body: one instruction set, one dtype ---- */

#if FNN_ISA_LEVEL == 2 && FNN_F32
/* dst[2 j] += src[j] with AVX-512: each vector of src spread over the even
 * lanes of two vectors of dst (odd lanes neither read nor written), the row's
 * tail in one masked step. GCC's own loop for the short rows of a convolution
 * (28-112 values) ran 1.1-1.7x slower, most of it in a scalar tail; for
 * float64 (8 lanes) and for the gather of im2col a masked version was no
 * faster (0.75-1.0x), so those stay GCC's. Masked loads
 * read only the elements used: a row may end the array. */
static inline __mmask16 FNN_NAME(first_lanes)(int64_t n) {
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
}

static inline void FNN_NAME(scatter_add_s2)(int64_t n, const float *src, float *dst) {
    const __m512i spread_lo = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i spread_hi =
        _mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    for (int64_t j = 0; j < n; j += 16) {
        const int64_t m = n - j < 16 ? n - j : 16, used = 2 * m - 1; /* of dst */
        const __mmask16 lo = FNN_NAME(first_lanes)(used) & 0x5555;
        const __mmask16 hi = FNN_NAME(first_lanes)(used - 16) & 0x5555;
        const __m512 v = _mm512_maskz_loadu_ps(FNN_NAME(first_lanes)(m), src + j);
        float *d = dst + 2 * j;
        const __m512 dlo = _mm512_maskz_loadu_ps(lo, d), dhi = _mm512_maskz_loadu_ps(hi, d + 16);
        _mm512_mask_storeu_ps(d, lo, _mm512_add_ps(dlo, _mm512_permutexvar_ps(spread_lo, v)));
        _mm512_mask_storeu_ps(d + 16, hi, _mm512_add_ps(dhi, _mm512_permutexvar_ps(spread_hi, v)));
    }
}
#endif

/* Strides 1 and 2 (nearly every strided convolution) get loops with a constant
 * stride, which the compiler vectorizes (with permutes for 2; by hand above for
 * one case); other strides fall back to a scalar loop. */
static inline void FNN_NAME(gather)(int64_t n, const T *src, int64_t stride, T *dst) {
    if (stride == 1)
        for (int64_t j = 0; j < n; j++) dst[j] = src[j];
    else if (stride == 2)
        for (int64_t j = 0; j < n; j++) dst[j] = src[2 * j];
    else
        for (int64_t j = 0; j < n; j++) dst[j] = src[j * stride];
}

static inline void FNN_NAME(scatter_add)(int64_t n, const T *src, int64_t stride, T *dst) {
    if (stride == 1)
        for (int64_t j = 0; j < n; j++) dst[j] += src[j];
    else if (stride == 2)
#if FNN_ISA_LEVEL == 2 && FNN_F32
        FNN_NAME(scatter_add_s2)(n, src, dst);
#else
        for (int64_t j = 0; j < n; j++) dst[2 * j] += src[j];
#endif
    else
        for (int64_t j = 0; j < n; j++) dst[j * stride] += src[j];
}

static inline void FNN_NAME(zero)(int64_t n, T *dst) {
    for (int64_t j = 0; j < n; j++) dst[j] = 0;
}

/* sum_j a[j] * b[j * stride], in eight partial sums (a fixed order) */
static inline T FNN_NAME(dot)(int64_t n, const T *a, const T *b, int64_t stride) {
    T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    if (stride == 1)
        for (; j + 8 <= n; j += 8)
            for (int k = 0; k < 8; k++) acc[k] += a[j + k] * b[j + k];
    for (; j < n; j++) acc[j & 7] += a[j] * b[j * stride];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

static inline void FNN_NAME(axpy)(int64_t n, T alpha, const T *src, int64_t stride, T *dst) {
    if (stride == 1)
        for (int64_t j = 0; j < n; j++) dst[j] += alpha * src[j];
    else
        for (int64_t j = 0; j < n; j++) dst[j] += alpha * src[j * stride];
}

static inline void FNN_NAME(scatter_axpy)(int64_t n, T alpha, const T *src, int64_t stride,
                                          T *dst) {
    if (stride == 1)
        for (int64_t j = 0; j < n; j++) dst[j] += alpha * src[j];
    else
        for (int64_t j = 0; j < n; j++) dst[j * stride] += alpha * src[j];
}

/* One walk serves all five: for every (tap row, output row segment) it finds
 * the part that lands inside the input; the branch on `mode` is per segment and
 * folds away, since every caller passes a constant. */
static inline void FNN_NAME(walk_block)(const fnn_conv_shape *s, T *x, T *cols, T *w,
                                        int64_t channels, int64_t p0, int64_t p1, int64_t ldc,
                                        int mode) {
    const int64_t ow_n = s->out_w, sw = s->stride_w;
    for (int64_t c = 0; c < channels; c++)
        for (int64_t ki = 0; ki < s->kernel_h; ki++)
            for (int64_t kj = 0; kj < s->kernel_w; kj++) {
                int64_t tap = (c * s->kernel_h + ki) * s->kernel_w + kj;
                int64_t row = tap * ldc - p0;
                int64_t off_w = kj * s->dilation_w - s->pad_w, lo, hi;
                fnn_valid_range(off_w, sw, s->in_w, ow_n, &lo, &hi);
                for (int64_t oh = p0 / ow_n; oh * ow_n < p1; oh++) {
                    int64_t q0 = oh * ow_n; /* position of (oh, 0) */
                    int64_t a = q0 < p0 ? p0 - q0 : 0, b = q0 + ow_n > p1 ? p1 - q0 : ow_n;
                    int64_t ih = oh * s->stride_h - s->pad_h + ki * s->dilation_h;
                    int64_t va = lo > a ? lo : a, vb = hi < b ? hi : b;
                    int64_t seg = row + q0; /* index of (oh, ow = 0) in cols */
                    if (ih < 0 || ih >= s->in_h || va >= vb) {
                        if (mode == FNN_WALK_IM2COL) FNN_NAME(zero)(b - a, cols + seg + a);
                        continue;
                    }
                    T *xseg = x + (c * s->in_h + ih) * s->in_w + off_w + va * sw;
                    switch (mode) {
                    case FNN_WALK_IM2COL:
                        FNN_NAME(zero)(va - a, cols + seg + a);
                        FNN_NAME(gather)(vb - va, xseg, sw, cols + seg + va);
                        FNN_NAME(zero)(b - vb, cols + seg + vb);
                        break;
                    case FNN_WALK_COL2IM:
                        FNN_NAME(scatter_add)(vb - va, cols + seg + va, sw, xseg);
                        break;
                    case FNN_WALK_AXPY:
                        FNN_NAME(axpy)(vb - va, w[tap], xseg, sw, cols + seg + va);
                        break;
                    case FNN_WALK_SCATTER:
                        FNN_NAME(scatter_axpy)(vb - va, w[tap], cols + seg + va, sw, xseg);
                        break;
                    default:
                        w[tap] += FNN_NAME(dot)(vb - va, cols + seg + va, xseg, sw);
                    }
                }
            }
}

static void FNN_NAME(im2col_block)(const fnn_conv_shape *s, const T *x, int64_t channels,
                                   int64_t p0, int64_t p1, T *cols, int64_t ldc) {
    FNN_NAME(walk_block)(s, (T *)x, cols, NULL, channels, p0, p1, ldc, FNN_WALK_IM2COL);
}

static void FNN_NAME(col2im_block_add)(const fnn_conv_shape *s, const T *cols, int64_t channels,
                                       int64_t p0, int64_t p1, int64_t ldc, T *x) {
    FNN_NAME(walk_block)(s, x, (T *)cols, NULL, channels, p0, p1, ldc, FNN_WALK_COL2IM);
}

static void FNN_NAME(direct_forward_block)(const fnn_conv_shape *s, const T *x, const T *w,
                                           int64_t p0, int64_t p1, T *y) {
    FNN_NAME(walk_block)(s, (T *)x, y, (T *)w, 1, p0, p1, 0, FNN_WALK_AXPY);
}

static void FNN_NAME(direct_input_grad_block)(const fnn_conv_shape *s, const T *dy, const T *w,
                                              int64_t p0, int64_t p1, T *dx) {
    FNN_NAME(walk_block)(s, dx, (T *)dy, (T *)w, 1, p0, p1, 0, FNN_WALK_SCATTER);
}

static void FNN_NAME(direct_weight_grad_block)(const fnn_conv_shape *s, const T *x, const T *dy,
                                               int64_t p0, int64_t p1, T *dw) {
    FNN_NAME(walk_block)(s, (T *)x, (T *)dy, dw, 1, p0, p1, 0, FNN_WALK_DOT);
}


/* Vectors of the instruction set (GCC vector types) for the taps kernels. */
#if FNN_ISA_LEVEL == 0
#define FNN_VBYTES 16
#elif FNN_ISA_LEVEL == 1
#define FNN_VBYTES 32
#else
#define FNN_VBYTES 64
#endif
#define FNN_LANES ((int64_t)(FNN_VBYTES / sizeof(T)))
#define FNN_TAPS_TILE_ROWS 4
typedef T FNN_NAME(vec) __attribute__((vector_size(FNN_VBYTES)));
typedef T FNN_NAME(vec_u) __attribute__((vector_size(FNN_VBYTES), aligned(sizeof(T)), may_alias));

/* dst[j] = src[j] for j in [lo, hi), else 0, for j < width (all 0 without
 * src): inline loops, as the rows are short and libc calls cost more than the
 * copy (-fno-tree-loop-distribute-patterns keeps them loops). */
static inline void FNN_NAME(pad_row)(const T *src, int64_t lo, int64_t hi, int64_t width,
                                     T *dst) {
    if (!src) lo = hi = width;
    for (int64_t j = 0; j < lo && j < width; j++) dst[j] = 0;
    for (int64_t j = lo; j < hi; j++) dst[j] = src[j];
    for (int64_t j = hi > lo ? hi : lo; j < width; j++) dst[j] = 0;
}

/* Output channels [m, m + R) at positions ow .. ow + PV * FNN_LANES of one
 * row: bias + sum over taps k of w[k] * the tap's input vector (xv[v *
 * FNN_TAPS_MAX + k] for vector v; the sums run over k in order, whatever R, PV
 * and KK). Inlined with constants R, PV and KK (or KK 0: kk at run time), so
 * that the accumulators and taps live in registers. */
static inline __attribute__((always_inline)) void FNN_NAME(taps_tile)(
    const int R, const int PV, const int KK, int64_t kk, const FNN_NAME(vec) *xv, const T *w,
    const T *bias, T *y, int64_t ldy) {
    const int64_t n = KK ? KK : kk;
    FNN_NAME(vec) acc[FNN_TAPS_TILE_ROWS][2];
    for (int i = 0; i < R; i++)
        for (int v = 0; v < PV; v++) acc[i][v] = (FNN_NAME(vec)){0} + (bias ? bias[i] : 0);
#pragma GCC unroll 16
    for (int64_t k = 0; k < n; k++)
        for (int i = 0; i < R; i++) {
            const T wk = w[i * n + k];
            for (int v = 0; v < PV; v++) acc[i][v] += wk * xv[v * FNN_TAPS_MAX + k];
        }
    for (int i = 0; i < R; i++)
        for (int v = 0; v < PV; v++)
            *(FNN_NAME(vec_u) *)(y + i * ldy + v * FNN_LANES) = acc[i][v];
}

/* Every output channel's taps at PV vectors of positions from ow (taps_tile). */
static inline __attribute__((always_inline)) void FNN_NAME(taps_channels)(
    const int PV, const int KK, int64_t kk, const FNN_NAME(vec) *xv, const T *w, const T *bias,
    int64_t mg, T *y, int64_t ldy) {
    const int64_t n = KK ? KK : kk;
    for (int64_t m = 0; m < mg; m += FNN_TAPS_TILE_ROWS) {
        const T *bm = bias ? bias + m : NULL;
        if (mg - m >= FNN_TAPS_TILE_ROWS)
            FNN_NAME(taps_tile)(FNN_TAPS_TILE_ROWS, PV, KK, kk, xv, w + m * n, bm, y + m * ldy,
                                ldy);
        else
            for (int64_t i = m; i < mg; i++)
                FNN_NAME(taps_tile)(1, PV, KK, kk, xv, w + i * n, bm ? bm + i - m : NULL,
                                    y + i * ldy, ldy);
    }
}

/* The taps of one row segment [a, b) for every output channel, KK as in
 * taps_tile; rows: the kernel's rows of input, padded (width apart). A vector
 * may run past b, up to `limit`, into the next output row, which is computed
 * after it and overwrites those values: whole vectors there, instead of a
 * copy of the last few values of every row (36% of a 1->32 convolution on
 * 28x28, with 16 lanes). With 3x3 taps and AVX-512's 32 registers, two
 * vectors at a time: each weight loaded serves two fused multiply-adds (a
 * 1->32 3x3 forward on 28x28 at batch 64, 1.18-1.20x; depthwise 3x3 on
 * (8,128,56,56), 1.19-1.21x). */
static inline __attribute__((always_inline)) void FNN_NAME(taps_row)(
    const int KK, int64_t kk, int64_t KW, int64_t dw, const T *rows, int64_t width,
    const T *w, const T *bias, int64_t mg, int64_t a, int64_t b, int64_t limit, T *y,
    int64_t ldy) {
    const int64_t n = KK ? KK : kk;
    const int pair = FNN_ISA_LEVEL == 2 && KK == 9;
    T tail[FNN_TAPS_TILE_ROWS][2 * 16];
    for (int64_t ow = a, pv; ow < b; ow += pv * FNN_LANES) {
        pv = pair && ow + FNN_LANES < b ? 2 : 1;
        FNN_NAME(vec) xv[2 * FNN_TAPS_MAX];
        for (int64_t v = 0; v < pv; v++)
#pragma GCC unroll 16
            for (int64_t k = 0; k < n; k++)
                xv[v * FNN_TAPS_MAX + k] = *(const FNN_NAME(vec_u) *)(
                    rows + (k / KW) * width + ow + v * FNN_LANES + (k % KW) * dw);
        if (ow + pv * FNN_LANES <= limit) {
            if (pv == 2)
                FNN_NAME(taps_channels)(2, KK, kk, xv, w, bias, mg, y + ow, ldy);
            else
                FNN_NAME(taps_channels)(1, KK, kk, xv, w, bias, mg, y + ow, ldy);
            continue;
        }
        /* the block's last vectors: through `tail`, FNN_TAPS_TILE_ROWS channels at a time */
        for (int64_t m = 0; m < mg; m += FNN_TAPS_TILE_ROWS) {
            const int64_t r = mg - m < FNN_TAPS_TILE_ROWS ? mg - m : FNN_TAPS_TILE_ROWS;
            const T *bm = bias ? bias + m : NULL;
            if (pv == 2)
                FNN_NAME(taps_channels)(2, KK, kk, xv, w + m * n, bm, r, &tail[0][0], 32);
            else
                FNN_NAME(taps_channels)(1, KK, kk, xv, w + m * n, bm, r, &tail[0][0], 32);
            for (int64_t i = 0; i < r; i++)
                for (int64_t j = 0; j < b - ow; j++) y[(m + i) * ldy + ow + j] = tail[i][j];
        }
    }
}

static void FNN_NAME(taps_forward_block)(const fnn_conv_shape *s, const T *x, const T *w,
                                         const T *bias, int64_t mg, int64_t p0, int64_t p1,
                                         T *y, int64_t ldy, T *scratch) {
    const int64_t OW = s->out_w, KH = s->kernel_h, KW = s->kernel_w, kk = KH * KW;
    const int64_t dw = s->dilation_w, width = OW + 16 + (KW - 1) * dw; /* of a padded row */
    /* input columns [lo, hi) of a padded row r (r[j] = x[ih][j - pad_w]) exist */
    const int64_t lo = s->pad_w, hi = s->in_w + s->pad_w < width ? s->in_w + s->pad_w : width;
    for (int64_t oh = p0 / OW; oh * OW < p1; oh++) {
        const int64_t q0 = oh * OW, a = q0 < p0 ? p0 - q0 : 0, b = q0 + OW > p1 ? p1 - q0 : OW;
        for (int64_t kh = 0; kh < KH; kh++) {
            const int64_t ih = oh - s->pad_h + kh * s->dilation_h;
            T *r = scratch + kh * width;
            FNN_NAME(pad_row)(ih >= 0 && ih < s->in_h ? x + ih * s->in_w - lo : NULL, lo, hi,
                              width, r);
        }
        T *yrow = y + q0 - p0;
        if (kk == 9 && KW == 3)
            FNN_NAME(taps_row)(9, kk, 3, dw, scratch, width, w, bias, mg, a, b, p1 - q0, yrow, ldy);
        else
            FNN_NAME(taps_row)(0, kk, KW, dw, scratch, width, w, bias, mg, a, b, p1 - q0, yrow,
                               ldy);
    }
}

static void FNN_NAME(taps_input_grad_rows)(const fnn_conv_shape *s, const T *dy, const T *w,
                                           int64_t mg, int64_t ih0, int64_t ih1, T *dx,
                                           T *scratch) {
    const int64_t OH = s->out_h, OW = s->out_w, L = OH * OW, IW = s->in_w;
    const int64_t KH = s->kernel_h, KW = s->kernel_w, kk = KH * KW;
    const int64_t dh = s->dilation_h, dwl = s->dilation_w, reach = (KW - 1) * dwl;
    const int64_t width = IW + 16 + reach, rows = ih1 - ih0 + (KH - 1) * dh;
    const int64_t o0 = ih0 + s->pad_h - (KH - 1) * dh; /* dy row of padded row 0 */
    /* padded row r of channel m: p[j] = dy[m][o0 + r][j + pad_w - reach], 0 outside */
    const int64_t shift = s->pad_w - reach;
    const int64_t lo = shift < 0 ? -shift : 0, hi = OW - shift < width ? OW - shift : width;
    for (int64_t m = 0; m < mg; m++)
        for (int64_t r = 0; r < rows; r++) {
            T *p = scratch + (m * rows + r) * width;
            const int64_t oh = o0 + r;
            FNN_NAME(pad_row)(oh >= 0 && oh < OH ? dy + m * L + oh * OW + shift : NULL, lo, hi,
                              width, p);
        }
    /* dx[ih][iw] = sum over m, kh, kw of w[m][kh][kw] * p_m[ih - ih0 + (KH-1-kh) dh]
     * [iw + (KW-1-kw) dw]: four chains (channels m % 4 of each group of four,
     * the rest into the first), added in a fixed order */
    const int64_t limit = (ih1 - ih0) * IW; /* a vector may run into the next rows */
    for (int64_t ih = ih0; ih < ih1; ih++)
        for (int64_t iw = 0; iw < IW; iw += FNN_LANES) {
            FNN_NAME(vec) acc[4] = {{0}, {0}, {0}, {0}};
            const T *p0 = scratch + (ih - ih0 + (KH - 1) * dh) * width + iw + reach;
            int64_t m = 0;
            for (; m + 4 <= mg; m += 4) /* channels m .. m + 3, one chain each */
                for (int64_t kh = 0; kh < KH; kh++)
                    for (int64_t kw = 0; kw < KW; kw++) {
                        const int64_t k = kh * KW + kw, at = -kh * dh * width - kw * dwl;
#pragma GCC unroll 4
                        for (int i = 0; i < 4; i++)
                            acc[i] += w[(m + i) * kk + k] *
                                      *(const FNN_NAME(vec_u) *)(p0 + (m + i) * rows * width + at);
                    }
            for (; m < mg; m++)
                for (int64_t kh = 0; kh < KH; kh++)
                    for (int64_t kw = 0; kw < KW; kw++)
                        acc[0] += w[m * kk + kh * KW + kw] *
                                  *(const FNN_NAME(vec_u) *)(p0 + m * rows * width -
                                                            kh * dh * width - kw * dwl);
            FNN_NAME(vec) sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
            T *out = dx + ih * IW + iw;
            if ((ih - ih0) * IW + iw + FNN_LANES <= limit) {
                *(FNN_NAME(vec_u) *)out = sum;
            } else {
                T tail[16];
                *(FNN_NAME(vec_u) *)tail = sum;
                for (int64_t j = 0; j < IW - iw; j++) out[j] = tail[j];
            }
        }
}

/* Channels [m, m + R) of taps_weight_grad_block, R and KK constants (KK 0:
 * kk at run time) so that the R * kk + R accumulators live in registers. */
static inline __attribute__((always_inline)) void FNN_NAME(taps_dw_rows)(
    const int R, const int KK, const fnn_conv_shape *s, const T *dy, int64_t ldy, int64_t kk,
    int64_t p0, int64_t p1, const T *slab, int64_t width, T *dw, T *db) {
    const int64_t OW = s->out_w, KW = s->kernel_w, oh0 = p0 / OW;
    const int64_t n = KK ? KK : kk, dh = s->dilation_h, dwl = s->dilation_w;
    FNN_NAME(vec) acc[2][FNN_TAPS_MAX], sum[2];
    for (int i = 0; i < R; i++) {
        sum[i] = (FNN_NAME(vec)){0};
        for (int64_t k = 0; k < n; k++) acc[i][k] = (FNN_NAME(vec)){0};
    }
    for (int64_t oh = oh0; oh * OW < p1; oh++) {
        const int64_t q0 = oh * OW, a = q0 < p0 ? p0 - q0 : 0, b = q0 + OW > p1 ? p1 - q0 : OW;
        const T *row = slab + (oh - oh0) * width;
        for (int64_t ow = a; ow < b; ow += FNN_LANES) {
            FNN_NAME(vec) d[2];
            for (int i = 0; i < R; i++) {
                const T *src = dy + i * ldy + q0 + ow - p0;
                if (ow + FNN_LANES <= b) {
                    d[i] = *(const FNN_NAME(vec_u) *)src;
                } else { /* the row's last values, zeros after them */
                    T part[16] = {0};
                    for (int64_t j = 0; j < b - ow; j++) part[j] = src[j];
                    d[i] = *(const FNN_NAME(vec_u) *)part;
                }
                sum[i] += d[i];
            }
#pragma GCC unroll 16
            for (int64_t k = 0; k < n; k++) {
                const FNN_NAME(vec) xk =
                    *(const FNN_NAME(vec_u) *)(row + (k / KW) * dh * width + ow + (k % KW) * dwl);
                for (int i = 0; i < R; i++) acc[i][k] += d[i] * xk;
            }
        }
    }
    for (int i = 0; i < R; i++) { /* lanes added in order */
        T lanes[16];
        for (int64_t k = 0; k < n; k++) {
            *(FNN_NAME(vec_u) *)lanes = acc[i][k];
            T t = 0;
            for (int64_t j = 0; j < FNN_LANES; j++) t += lanes[j];
            dw[i * n + k] += t;
        }
        if (db) {
            *(FNN_NAME(vec_u) *)lanes = sum[i];
            T t = 0;
            for (int64_t j = 0; j < FNN_LANES; j++) t += lanes[j];
            db[i] += t;
        }
    }
}

static void FNN_NAME(taps_weight_grad_block)(const fnn_conv_shape *s, const T *x, const T *dy,
                                             int64_t ldy, int64_t mg, int64_t p0, int64_t p1,
                                             T *dw, T *db, T *scratch) {
    const int64_t OW = s->out_w, KH = s->kernel_h, KW = s->kernel_w, kk = KH * KW;
    const int64_t width = OW + 16 + (KW - 1) * s->dilation_w, oh0 = p0 / OW;
    const int64_t rows = (p1 - 1) / OW + 1 - oh0 + (KH - 1) * s->dilation_h;
    /* slab row r: input row oh0 - pad_h + r, padded as in the forward */
    const int64_t lo = s->pad_w, hi = s->in_w + s->pad_w < width ? s->in_w + s->pad_w : width;
    for (int64_t r = 0; r < rows; r++) {
        const int64_t ih = oh0 - s->pad_h + r;
        FNN_NAME(pad_row)(ih >= 0 && ih < s->in_h ? x + ih * s->in_w - lo : NULL, lo, hi, width,
                          scratch + r * width);
    }
    int64_t m = 0;
    if (kk == 9 && KW == 3)
        for (; m + 2 <= mg; m += 2)
            FNN_NAME(taps_dw_rows)(2, 9, s, dy + m * ldy, ldy, kk, p0, p1, scratch, width,
                                   dw + m * kk, db ? db + m : NULL);
    for (; m < mg; m++)
        FNN_NAME(taps_dw_rows)(1, 0, s, dy + m * ldy, ldy, kk, p0, p1, scratch, width,
                               dw + m * kk, db ? db + m : NULL);
}

#undef FNN_VBYTES
#undef FNN_LANES
#undef FNN_TAPS_TILE_ROWS

#endif
