# Declarations of the C kernels in csrc/ (see csrc/fastnn.h).
from libc.stdint cimport int64_t

cdef extern from "fastnn.h" nogil:
    ctypedef enum fnn_status:
        FNN_OK
        FNN_ENOMEM
        FNN_EINVAL

    ctypedef struct fnn_conv_shape:
        int64_t batch, in_channels, in_h, in_w
        int64_t out_channels, kernel_h, kernel_w
        int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w
        int64_t groups, out_h, out_w

    void fnn_init()
    void fnn_set_num_threads(int n)
    int fnn_get_num_threads()
    void fnn_set_own_threads(int n)
    const char *fnn_simd_name()
    int64_t fnn_cache_bytes(int level)
    const char *fnn_compiler()
    const char *fnn_blas_config()
    const char *fnn_blas_core()

    int fnn_im2col_f32(const fnn_conv_shape *s, const float *x, float *cols)
    int fnn_im2col_f64(const fnn_conv_shape *s, const double *x, double *cols)
    int fnn_col2im_f32(const fnn_conv_shape *s, const float *cols, float *x)
    int fnn_col2im_f64(const fnn_conv_shape *s, const double *cols, double *x)

    int fnn_conv2d_forward_f32(const fnn_conv_shape *s, const float *x, const float *w,
                               const float *bias, float *y)
    int fnn_conv2d_forward_f64(const fnn_conv_shape *s, const double *x, const double *w,
                               const double *bias, double *y)
    int fnn_conv2d_backward_f32(const fnn_conv_shape *s, const float *dy, const float *x,
                                const float *w, float *dx, float *dw, float *db)
    int fnn_conv2d_backward_f64(const fnn_conv_shape *s, const double *dy, const double *x,
                                const double *w, double *dx, double *dw, double *db)

    int fnn_gemm_batch_f32(int64_t batch, int64_t m, int64_t n, int64_t k, const float *a,
                           const float *b, float *c)
    int fnn_gemm_batch_f64(int64_t batch, int64_t m, int64_t n, int64_t k, const double *a,
                           const double *b, double *c)

    ctypedef struct fnn_pool_shape:
        int64_t batch, channels, in_h, in_w, out_h, out_w
        int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w

    int fnn_max_pool2d_forward_f32(const fnn_pool_shape *s, const float *x, float *y,
                                   int64_t *idx)
    int fnn_max_pool2d_forward_f64(const fnn_pool_shape *s, const double *x, double *y,
                                   int64_t *idx)
    int fnn_max_pool2d_backward_f32(const fnn_pool_shape *s, const float *dy,
                                    const int64_t *idx, float *dx)
    int fnn_max_pool2d_backward_f64(const fnn_pool_shape *s, const double *dy,
                                    const int64_t *idx, double *dx)
    int fnn_avg_pool2d_forward_f32(const fnn_pool_shape *s, const float *x, float *y,
                                   int count_include_pad, int64_t divisor_override)
    int fnn_avg_pool2d_forward_f64(const fnn_pool_shape *s, const double *x, double *y,
                                   int count_include_pad, int64_t divisor_override)
    int fnn_avg_pool2d_backward_f32(const fnn_pool_shape *s, const float *dy, float *dx,
                                    int count_include_pad, int64_t divisor_override)
    int fnn_avg_pool2d_backward_f64(const fnn_pool_shape *s, const double *dy, double *dx,
                                    int count_include_pad, int64_t divisor_override)
    int fnn_adaptive_avg_pool2d_forward_f32(const fnn_pool_shape *s, const float *x, float *y)
    int fnn_adaptive_avg_pool2d_forward_f64(const fnn_pool_shape *s, const double *x, double *y)
    int fnn_adaptive_avg_pool2d_backward_f32(const fnn_pool_shape *s, const float *dy,
                                             float *dx)
    int fnn_adaptive_avg_pool2d_backward_f64(const fnn_pool_shape *s, const double *dy,
                                             double *dx)
    int fnn_pyramid_pool_forward_f32(const fnn_pool_shape *s, int64_t levels,
                                     const int64_t *out_hw, int is_max, const float *x,
                                     float *y, int64_t *idx)
    int fnn_pyramid_pool_forward_f64(const fnn_pool_shape *s, int64_t levels,
                                     const int64_t *out_hw, int is_max, const double *x,
                                     double *y, int64_t *idx)
    int fnn_pyramid_pool_backward_f32(const fnn_pool_shape *s, int64_t levels,
                                      const int64_t *out_hw, int is_max, const float *dy,
                                      const int64_t *idx, float *dx)
    int fnn_pyramid_pool_backward_f64(const fnn_pool_shape *s, int64_t levels,
                                      const int64_t *out_hw, int is_max, const double *dy,
                                      const int64_t *idx, double *dx)

    int64_t fnn_packed_nr_f32()
    int64_t fnn_packed_nr_f64()
    int64_t fnn_packed_size_f32(int64_t k, int64_t n)
    int64_t fnn_packed_size_f64(int64_t k, int64_t n)
    void fnn_pack_b_f32(int64_t k, int64_t n, const float *b, int64_t ldb, int trans_b,
                        float *bp)
    void fnn_pack_b_f64(int64_t k, int64_t n, const double *b, int64_t ldb, int trans_b,
                        double *bp)
    void fnn_gemm_packed_f32(int64_t m, int64_t n0, int64_t n1, int64_t k, const float *a,
                             int64_t lda, const float *bp, int flags, float *c, int64_t ldc)
    void fnn_gemm_packed_f64(int64_t m, int64_t n0, int64_t n1, int64_t k, const double *a,
                             int64_t lda, const double *bp, int flags, double *c, int64_t ldc)
    void fnn_gemm_rows_f32(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                           const float *b, int64_t ldb, const float *bias, int flags, float *c,
                           int64_t ldc)
    void fnn_gemm_rows_f64(int64_t m, int64_t n, int64_t k, const double *a, int64_t lda,
                           const double *b, int64_t ldb, const double *bias, int flags,
                           double *c, int64_t ldc)

    void *fnn_block_alloc(size_t bytes, int kind)
    void fnn_block_free(void *p)
    void fnn_block_release_cached()

    enum:
        FNN_BLOCK_SMALL
        FNN_BLOCK_HUGE

    enum:
        FNN_PACKED_ACCUMULATE
        FNN_PACKED_PREFETCH
        FNN_PACKED_TRANS_A

    enum:
        FNN_RNN_LSTM
        FNN_RNN_GRU
        FNN_RNN_TANH
        FNN_RNN_RELU

    ctypedef struct fnn_rnn_shape:
        int64_t steps, batch, input_size, hidden_size
        int mode, reverse

    int fnn_rnn_forward_f32(const fnn_rnn_shape *s, const float *x, const float *w_ih,
                            const float *w_hh, const float *b_ih, const float *b_hh,
                            const int64_t *lengths, const int64_t *rows, const int64_t *x_rows,
                            const float *h0, const float *c0, float *y,
                            float *h_n, float *c_n, float *gates, float *hs, float *cs)
    int fnn_rnn_forward_f64(const fnn_rnn_shape *s, const double *x, const double *w_ih,
                            const double *w_hh, const double *b_ih, const double *b_hh,
                            const int64_t *lengths, const int64_t *rows, const int64_t *x_rows,
                            const double *h0, const double *c0, double *y, double *h_n,
                            double *c_n, double *gates, double *hs, double *cs)
    int fnn_rnn_backward_f32(const fnn_rnn_shape *s, const float *x, const float *w_ih,
                             const float *w_hh, const int64_t *lengths, const int64_t *rows,
                             float *gates,
                             const float *hs, const float *cs, const float *dy,
                             const float *dh_n, const float *dc_n, float *dx, float *dh0,
                             float *dc0, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh)
    int fnn_rnn_backward_f64(const fnn_rnn_shape *s, const double *x, const double *w_ih,
                             const double *w_hh, const int64_t *lengths, const int64_t *rows,
                             double *gates,
                             const double *hs, const double *cs, const double *dy,
                             const double *dh_n, const double *dc_n, double *dx, double *dh0,
                             double *dc0, double *dw_ih, double *dw_hh, double *db_ih,
                             double *db_hh)
