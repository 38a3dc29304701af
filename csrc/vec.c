/* Row primitives under im2col/col2im and the bias terms, compiled once per
 * instruction set from one body (this file includes itself per ISA and dtype)
 * so the compiler vectorizes each for its target; runtime.c picks one set at
 * import. The loops are simple on purpose: they are memory-bound, and what
 * matters is the vector width the compiler may use. */
#ifndef FNN_VEC_BODY
#define FNN_VEC_BODY
#include <string.h>
#include "fastnn.h"

#define FNN_CAT3_(a, b, c) a##_##b##_##c
#define FNN_CAT3(a, b, c) FNN_CAT3_(a, b, c)
#define FNN_OPS_(isa) fnn_vec_##isa
#define FNN_OPS(isa) FNN_OPS_(isa)


#define ISA portable
#define T float
#define SFX f32
#include "vec.c"
#undef T
#undef SFX
#define T double
#define SFX f64
#include "vec.c"
#undef T
#undef SFX
#undef ISA

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define ISA avx2
#define T float
#define SFX f32
#include "vec.c"
#undef T
#undef SFX
#define T double
#define SFX f64
#include "vec.c"
#undef T
#undef SFX
#undef ISA
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,prefer-vector-width=512")
#define ISA avx512
#define T float
#define SFX f32
#include "vec.c"
#undef T
#undef SFX
#define T double
#define SFX f64
#include "vec.c"
#undef T
#undef SFX
#undef ISA
#pragma GCC pop_options

#define FNN_DEFINE_OPS(isa)                                                 \
    const fnn_vec_ops FNN_OPS(isa) = {                                      \
        #isa,                                                               \
        FNN_CAT3(gather, isa, f32), FNN_CAT3(gather, isa, f64),             \
        FNN_CAT3(scatter_add, isa, f32), FNN_CAT3(scatter_add, isa, f64),   \
        FNN_CAT3(add_scalar, isa, f32), FNN_CAT3(add_scalar, isa, f64),     \
        FNN_CAT3(sum, isa, f32), FNN_CAT3(sum, isa, f64),                   \
    };
FNN_DEFINE_OPS(portable)
FNN_DEFINE_OPS(avx2)
FNN_DEFINE_OPS(avx512)

#else /* body: one ISA, one dtype */

/* Strides 1 and 2 (nearly every strided convolution) get loops with a constant
 * stride, which the compiler vectorizes (with permutes for 2); other strides
 * fall back to a scalar loop. */
static void FNN_CAT3(gather, ISA, SFX)(int64_t n, const T *src, int64_t stride, T *dst) {
    if (stride == 1) {
        memcpy(dst, src, (size_t)n * sizeof(T));
    } else if (stride == 2) {
        for (int64_t j = 0; j < n; j++) dst[j] = src[2 * j];
    } else {
        for (int64_t j = 0; j < n; j++) dst[j] = src[j * stride];
    }
}

static void FNN_CAT3(scatter_add, ISA, SFX)(int64_t n, const T *src, int64_t stride, T *dst) {
    if (stride == 1) {
        for (int64_t j = 0; j < n; j++) dst[j] += src[j];
    } else if (stride == 2) {
        for (int64_t j = 0; j < n; j++) dst[2 * j] += src[j];
    } else {
        for (int64_t j = 0; j < n; j++) dst[j * stride] += src[j];
    }
}

static void FNN_CAT3(add_scalar, ISA, SFX)(int64_t n, T value, T *dst) {
    for (int64_t j = 0; j < n; j++) dst[j] += value;
}

/* Eight independent partial sums: vectorizable without -ffast-math, and more
 * accurate than one running sum. The order is fixed, so results do not depend
 * on threads (they may differ between instruction sets by rounding). */
static T FNN_CAT3(sum, ISA, SFX)(int64_t n, const T *src) {
    T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) acc[k] += src[j + k];
    for (; j < n; j++) acc[j & 7] += src[j];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

#endif
