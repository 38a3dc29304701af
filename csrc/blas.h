/* The one place that names the BLAS backing (scipy-openblas32, symbols prefixed
 * scipy_). Kernels call fnn_gemm_f32/f64 with row-major operands. */
#ifndef FASTNN_BLAS_H
#define FASTNN_BLAS_H

#include <assert.h>
#include <stdint.h>
#include <cblas.h>

/* C = alpha * op(A) @ op(B) + beta * C, row-major; trans_a/trans_b are 0 or 1.
 * OpenBLAS32 takes 32-bit sizes: the Python layer rejects larger problems. */
#define FNN_DEFINE_GEMM(T, SFX, CBLAS_GEMM)                                              \
    static inline void fnn_gemm_##SFX(int trans_a, int trans_b, int64_t m, int64_t n,    \
                                      int64_t k, T alpha, const T *a, int64_t lda,       \
                                      const T *b, int64_t ldb, T beta, T *c,             \
                                      int64_t ldc) {                                     \
        assert(m <= INT32_MAX && n <= INT32_MAX && k <= INT32_MAX);                      \
        assert(lda <= INT32_MAX && ldb <= INT32_MAX && ldc <= INT32_MAX);                \
        CBLAS_GEMM(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,                   \
                   trans_b ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n,          \
                   (blasint)k, alpha, a, (blasint)lda, b, (blasint)ldb, beta, c,         \
                   (blasint)ldc);                                                        \
    }
FNN_DEFINE_GEMM(float, f32, scipy_cblas_sgemm)
FNN_DEFINE_GEMM(double, f64, scipy_cblas_dgemm)
#undef FNN_DEFINE_GEMM

/* y = A @ x + y, A row-major (m, n): the row sums of A when x is ones. */
#define FNN_DEFINE_GEMV(T, SFX, CBLAS_GEMV)                                                   \
    static inline void fnn_gemv_add_##SFX(int64_t m, int64_t n, const T *a, int64_t lda,     \
                                          const T *x, T *y) {                                 \
        assert(m <= INT32_MAX && n <= INT32_MAX && lda <= INT32_MAX);                         \
        CBLAS_GEMV(CblasRowMajor, CblasNoTrans, (blasint)m, (blasint)n, 1, a, (blasint)lda, x, \
                   1, 1, y, 1);                                                               \
    }
FNN_DEFINE_GEMV(float, f32, scipy_cblas_sgemv)
FNN_DEFINE_GEMV(double, f64, scipy_cblas_dgemv)
#undef FNN_DEFINE_GEMV

static inline void fnn_blas_set_num_threads(int n) { scipy_openblas_set_num_threads(n); }
static inline const char *fnn_blas_get_config(void) { return scipy_openblas_get_config(); }
/* The kernels OpenBLAS picked at load (its build configuration names only its build host's). */
static inline const char *fnn_blas_get_core(void) { return scipy_openblas_get_corename(); }

#endif
