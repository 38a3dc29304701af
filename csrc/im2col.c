/* im2col and col2im, the layout of torch.nn.functional.unfold/fold: row
 * (c, ki, kj) of the column matrix holds, for every output position p = oh*OW
 * + ow, the input element under kernel tap (ki, kj), or 0 in the padding.
 *
 * The block forms work on a range [p0, p1) of output positions so that
 * convolution can keep a cache-sized slice of the column matrix per thread. */
#ifndef FNN_TEMPLATE
#define FNN_TEMPLATE
#include <omp.h>
#include <string.h>
#include "fastnn.h"

#define T float
#define SFX(name) name##_f32
#define VEC(op) fnn_vec->op##_f32
#include "im2col.c"
#undef T
#undef SFX
#undef VEC

#define T double
#define SFX(name) name##_f64
#define VEC(op) fnn_vec->op##_f64
#include "im2col.c"

#else

/* One walk over a block serves both directions: for every (row of the column
 * matrix, output row segment) it finds the taps that land inside the input;
 * im2col gathers them and zeroes the rest, col2im adds them back (padding taps
 * have nowhere to go). The branch is per segment, not per element. */
static void SFX(walk_block)(const fnn_conv_shape *s, T *x, T *cols, int64_t channels,
                            int64_t p0, int64_t p1, int64_t ldc, int to_cols) {
    const int64_t ow_n = s->out_w, sw = s->stride_w;
    for (int64_t c = 0; c < channels; c++)
        for (int64_t ki = 0; ki < s->kernel_h; ki++)
            for (int64_t kj = 0; kj < s->kernel_w; kj++) {
                int64_t row = ((c * s->kernel_h + ki) * s->kernel_w + kj) * ldc - p0;
                int64_t off_w = kj * s->dilation_w - s->pad_w, lo, hi;
                fnn_valid_range(off_w, sw, s->in_w, ow_n, &lo, &hi);
                for (int64_t oh = p0 / ow_n; oh * ow_n < p1; oh++) {
                    int64_t q0 = oh * ow_n; /* position of (oh, 0) */
                    int64_t a = q0 < p0 ? p0 - q0 : 0, b = q0 + ow_n > p1 ? p1 - q0 : ow_n;
                    int64_t ih = oh * s->stride_h - s->pad_h + ki * s->dilation_h;
                    int64_t va = lo > a ? lo : a, vb = hi < b ? hi : b;
                    int64_t seg = row + q0; /* index of (oh, ow = 0) in cols */
                    if (ih < 0 || ih >= s->in_h || va >= vb) {
                        if (to_cols) memset(cols + seg + a, 0, (size_t)(b - a) * sizeof(T));
                        continue;
                    }
                    T *xseg = x + (c * s->in_h + ih) * s->in_w + off_w + va * sw;
                    if (to_cols) {
                        memset(cols + seg + a, 0, (size_t)(va - a) * sizeof(T));
                        VEC(gather)(vb - va, xseg, sw, cols + seg + va);
                        memset(cols + seg + vb, 0, (size_t)(b - vb) * sizeof(T));
                    } else {
                        VEC(scatter_add)(vb - va, cols + seg + va, sw, xseg);
                    }
                }
            }
}

/* Columns [0, p1 - p0) of `cols` (row stride ldc) get positions [p0, p1) of the
 * first `channels` channels of one image `x`. */
void SFX(fnn_im2col_block)(const fnn_conv_shape *s, const T *x, int64_t channels, int64_t p0,
                           int64_t p1, T *cols, int64_t ldc) {
    SFX(walk_block)(s, (T *)x, cols, channels, p0, p1, ldc, 1);
}

/* The adjoint: adds the block's columns into the image `x`, overlaps summed. */
void SFX(fnn_col2im_block_add)(const fnn_conv_shape *s, const T *cols, int64_t channels,
                               int64_t p0, int64_t p1, int64_t ldc, T *x) {
    SFX(walk_block)(s, x, (T *)cols, channels, p0, p1, ldc, 0);
}

/* Whole batch, one (image, channel) plane per work item: planes are independent,
 * so the result does not depend on the thread count. */
int SFX(fnn_im2col)(const fnn_conv_shape *s, const T *x, T *cols) {
    int64_t kk = s->kernel_h * s->kernel_w, L = s->out_h * s->out_w;
    int64_t planes = s->batch * s->in_channels;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < planes; i++)
        SFX(fnn_im2col_block)(s, x + i * s->in_h * s->in_w, 1, 0, L, cols + i * kk * L, L);
    return FNN_OK;
}

int SFX(fnn_col2im)(const fnn_conv_shape *s, const T *cols, T *x) {
    int64_t kk = s->kernel_h * s->kernel_w, L = s->out_h * s->out_w, hw = s->in_h * s->in_w;
    int64_t planes = s->batch * s->in_channels;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < planes; i++)
        SFX(fnn_col2im_block_add)(s, cols + i * kk * L, 1, 0, L, L, x + i * hw);
    return FNN_OK;
}

#endif
