/* TEMPORARY stand-in for the helper's packed GEMM (same interface, scalar). */
#include "fastnn.h"
#define NR 16
#define DEF(T, SFX)                                                                            \
    int64_t fnn_packed_nr_##SFX(void) { return NR; }                                          \
    int64_t fnn_packed_size_##SFX(int64_t k, int64_t n) { return k * ((n + NR - 1) / NR * NR); } \
    void fnn_pack_b_##SFX(int64_t k, int64_t n, const T *b, int64_t ldb, int trans_b, T *bp) { \
        int64_t np = (n + NR - 1) / NR * NR;                                                   \
        for (int64_t j = 0; j < np; j++)                                                       \
            for (int64_t p = 0; p < k; p++)                                                    \
                bp[(j / NR) * k * NR + p * NR + j % NR] =                                      \
                    j < n ? (trans_b ? b[j * ldb + p] : b[p * ldb + j]) : 0;                   \
    }                                                                                          \
    void fnn_gemm_packed_##SFX(int64_t m, int64_t n0, int64_t n1, int64_t k, const T *a,       \
                               int64_t lda, const T *bp, int beta, T *c, int64_t ldc) {        \
        for (int64_t i = 0; i < m; i++)                                                        \
            for (int64_t j = n0; j < n1; j++) {                                                \
                T acc = 0;                                                                     \
                for (int64_t p = 0; p < k; p++)                                                \
                    acc += a[i * lda + p] * bp[(j / NR) * k * NR + p * NR + j % NR];           \
                c[i * ldc + j] = beta ? c[i * ldc + j] + acc : acc;                            \
            }                                                                                  \
    }
DEF(float, f32)
DEF(double, f64)
