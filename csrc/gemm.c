/* A batch of plain GEMMs sharing the left operand, c[i] = a @ b[i], split over
 * OpenMP threads like the convolution splits its work (images, then column
 * chunks when the batch is small). It is the yardstick the benchmarks hold the
 * convolutions to: the same M, N, K with no im2col and no col2im. */
#ifndef FNN_TEMPLATE
#define FNN_TEMPLATE
#include <omp.h>
#include "blas.h"
#include "fastnn.h"

#define FNN_GEMM_MIN_ITEMS 8

#define T float
#define SFX(name) name##_f32
#define GEMM fnn_gemm_f32
#include "gemm.c"
#undef T
#undef SFX
#undef GEMM

#define T double
#define SFX(name) name##_f64
#define GEMM fnn_gemm_f64
#include "gemm.c"

#else

int SFX(fnn_gemm_batch)(int64_t batch, int64_t m, int64_t n, int64_t k, const T *a, const T *b,
                        T *c) {
    int64_t chunks = (FNN_GEMM_MIN_ITEMS + batch - 1) / batch;
    if (chunks > n) chunks = n;
#pragma omp parallel for schedule(static) num_threads(fnn_get_num_threads())
    for (int64_t it = 0; it < batch * chunks; it++) {
        int64_t i = it / chunks, j = it % chunks;
        int64_t c0 = n * j / chunks, c1 = n * (j + 1) / chunks;
        GEMM(0, 0, m, c1 - c0, k, 1, a, k, b + i * k * n + c0, n, 0, c + i * m * n + c0, n);
    }
    return FNN_OK;
}

#endif
