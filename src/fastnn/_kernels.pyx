# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Typed entry points into the C kernels (csrc/).

Arrays arrive here already validated, C-contiguous and of one dtype (the
Python modules see to that); this layer only checks that the buffers fit the
shape, releases the GIL around the C call and turns a status code into an
exception. Every function has one body for float32 and float64 (fused type).
"""
from cython cimport floating
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc


fnn_init()


cdef fnn_conv_shape _shape(object g) except *:
    """A ConvGeometry tuple (see fastnn._validate) as the C struct."""
    cdef fnn_conv_shape s
    (s.batch, s.in_channels, s.in_h, s.in_w, s.out_channels, s.kernel_h, s.kernel_w,
     s.stride_h, s.stride_w, s.pad_h, s.pad_w, s.dilation_h, s.dilation_w,
     s.groups, s.out_h, s.out_w) = g
    return s


cdef int _check(int status) except -1:
    if status == FNN_ENOMEM:
        raise MemoryError("fastnn: a kernel workspace allocation failed")
    if status != FNN_OK:
        raise RuntimeError(f"fastnn: kernel failed with status {status}")
    return 0


cdef void _need(Py_ssize_t have, int64_t want, str name) except *:
    if have != want:
        raise ValueError(f"{name}: buffer has {have} elements, the shape needs {want}")


cdef class Block:
    """`nbytes` bytes from the C layer's block cache (csrc/runtime.c), returned to it
    when the last array on them goes: a writable byte buffer, 64-byte aligned, for
    fastnn._memory.empty. Not public API."""
    cdef void *ptr
    cdef Py_ssize_t nbytes
    cdef Py_ssize_t itemsize

    def __cinit__(self, Py_ssize_t nbytes):
        if nbytes <= 0:
            raise ValueError(f"Block: nbytes must be positive, not {nbytes}")
        # huge pages from 4 MB on, as NumPy asks for its own arrays (on huge pages, a
        # 3.2 MB LSTM output ran 0.97x np.empty's; on small ones 1.05x)
        self.ptr = fnn_block_alloc(nbytes,
                                   FNN_BLOCK_HUGE if nbytes >= 4 << 20 else FNN_BLOCK_SMALL)
        if self.ptr == NULL:
            raise MemoryError(f"fastnn: no memory for an output of {nbytes} bytes")
        self.nbytes = nbytes
        self.itemsize = 1

    def __dealloc__(self):
        fnn_block_free(self.ptr)

    def __getbuffer__(self, Py_buffer *view, int flags):
        view.buf = self.ptr
        view.obj = self
        view.len = self.nbytes
        view.readonly = 0
        view.itemsize = 1
        view.format = "B"
        view.ndim = 1
        view.shape = &self.nbytes
        view.strides = &self.itemsize
        view.suboffsets = NULL
        view.internal = NULL


def release_cached_blocks():
    """Frees every block the cache holds (fnn_block_release_cached). Not public API."""
    fnn_block_release_cached()


def set_num_threads(int n):
    fnn_set_num_threads(n)


def set_own_threads(int n):
    """The calling thread's own OpenMP thread count (set_num_threads' cap stays). Not
    public API: for fastnn._concurrent."""
    fnn_set_own_threads(n)


def get_num_threads():
    return fnn_get_num_threads()


def config():
    """(SIMD path, compiler, BLAS configuration, L1d bytes, L2 bytes, BLAS kernels)."""
    return (fnn_simd_name().decode(), fnn_compiler().decode(), fnn_blas_config().decode(),
            fnn_cache_bytes(1), fnn_cache_bytes(2), fnn_blas_core().decode())


cdef void _need_unfold(fnn_conv_shape *s, Py_ssize_t nx, Py_ssize_t ncols) except *:
    _need(nx, s.batch * s.in_channels * s.in_h * s.in_w, "x")
    _need(ncols, s.batch * s.in_channels * s.kernel_h * s.kernel_w * s.out_h * s.out_w, "cols")


def im2col(geometry, const floating[::1] x, floating[::1] cols):
    cdef fnn_conv_shape s = _shape(geometry)
    cdef int status
    _need_unfold(&s, x.shape[0], cols.shape[0])
    with nogil:
        if floating is float:
            status = fnn_im2col_f32(&s, &x[0], &cols[0])
        else:
            status = fnn_im2col_f64(&s, &x[0], &cols[0])
    _check(status)


def col2im(geometry, const floating[::1] cols, floating[::1] x):
    """x = col2im(cols), overlaps summed."""
    cdef fnn_conv_shape s = _shape(geometry)
    cdef int status
    _need_unfold(&s, x.shape[0], cols.shape[0])
    with nogil:
        if floating is float:
            status = fnn_col2im_f32(&s, &cols[0], &x[0])
        else:
            status = fnn_col2im_f64(&s, &cols[0], &x[0])
    _check(status)


cdef void _need_conv(fnn_conv_shape *s, Py_ssize_t nx, Py_ssize_t nw, Py_ssize_t ny) except *:
    _need(nx, s.batch * s.in_channels * s.in_h * s.in_w, "x")
    _need(nw, s.out_channels * (s.in_channels // s.groups) * s.kernel_h * s.kernel_w, "weight")
    _need(ny, s.batch * s.out_channels * s.out_h * s.out_w, "output")


def conv2d_forward(geometry, const floating[::1] x, const floating[::1] w,
                   const floating[::1] bias, floating[::1] y):
    """y = conv(x, w) + bias; `bias` may be None."""
    cdef fnn_conv_shape s = _shape(geometry)
    cdef int status
    cdef const floating *b = NULL
    _need_conv(&s, x.shape[0], w.shape[0], y.shape[0])
    if bias is not None:
        _need(bias.shape[0], s.out_channels, "bias")
        b = &bias[0]
    with nogil:
        if floating is float:
            status = fnn_conv2d_forward_f32(&s, &x[0], &w[0], b, &y[0])
        else:
            status = fnn_conv2d_forward_f64(&s, &x[0], &w[0], b, &y[0])
    _check(status)


def conv2d_backward(geometry, const floating[::1] dy, const floating[::1] x,
                    const floating[::1] w, floating[::1] dx, floating[::1] dw,
                    floating[::1] db):
    """Gradients of conv2d; each of dx, dw, db may be None (not computed)."""
    cdef fnn_conv_shape s = _shape(geometry)
    cdef int status
    cdef floating *pdx = NULL
    cdef floating *pdw = NULL
    cdef floating *pdb = NULL
    _need_conv(&s, x.shape[0], w.shape[0], dy.shape[0])
    if dx is not None:
        _need(dx.shape[0], x.shape[0], "grad_input")
        pdx = &dx[0]
    if dw is not None:
        _need(dw.shape[0], w.shape[0], "grad_weight")
        pdw = &dw[0]
    if db is not None:
        _need(db.shape[0], s.out_channels, "grad_bias")
        pdb = &db[0]
    with nogil:
        if floating is float:
            status = fnn_conv2d_backward_f32(&s, &dy[0], &x[0], &w[0], pdx, pdw, pdb)
        else:
            status = fnn_conv2d_backward_f64(&s, &dy[0], &x[0], &w[0], pdx, pdw, pdb)
    _check(status)


def gemm_batch(const floating[:, ::1] a, const floating[:, :, ::1] b, floating[:, :, ::1] c):
    """c[i] = a @ b[i] with the bundled BLAS, split over OpenMP threads.

    Not public API: the yardstick of the benchmarks (a plain GEMM of a
    convolution's M, N, K) and a check of the BLAS binding in the tests.
    """
    cdef int status
    if b.shape[1] != a.shape[1] or c.shape[0] != b.shape[0] or c.shape[1] != a.shape[0] \
            or c.shape[2] != b.shape[2]:
        raise ValueError("gemm_batch: shapes of a, b, c do not fit c[i] = a @ b[i]")
    if c.shape[0] == 0 or c.shape[1] == 0 or c.shape[2] == 0 or a.shape[1] == 0:
        raise ValueError("gemm_batch: empty operand")
    with nogil:
        if floating is float:
            status = fnn_gemm_batch_f32(b.shape[0], a.shape[0], b.shape[2], a.shape[1],
                                        &a[0, 0], &b[0, 0, 0], &c[0, 0, 0])
        else:
            status = fnn_gemm_batch_f64(b.shape[0], a.shape[0], b.shape[2], a.shape[1],
                                        &a[0, 0], &b[0, 0, 0], &c[0, 0, 0])
    _check(status)


# --------------------------------------------------------------------------- pooling


cdef fnn_pool_shape _pool_shape(object g) except *:
    """A PoolGeometry tuple (see fastnn._validate) as the C struct."""
    cdef fnn_pool_shape s
    (s.batch, s.channels, s.in_h, s.in_w, s.out_h, s.out_w, s.kernel_h, s.kernel_w,
     s.stride_h, s.stride_w, s.pad_h, s.pad_w, s.dilation_h, s.dilation_w) = g
    return s


cdef void _need_pool(fnn_pool_shape *s, Py_ssize_t nx, Py_ssize_t ny) except *:
    _need(nx, s.batch * s.channels * s.in_h * s.in_w, "input")
    _need(ny, s.batch * s.channels * s.out_h * s.out_w, "output")


def max_pool2d_forward(geometry, const floating[::1] x, floating[::1] y, int64_t[::1] idx):
    """y = max pooling of x; the flat per-plane positions go to idx unless it is None."""
    cdef fnn_pool_shape s = _pool_shape(geometry)
    cdef int status
    cdef int64_t *pidx = NULL
    _need_pool(&s, x.shape[0], y.shape[0])
    if idx is not None:
        _need(idx.shape[0], y.shape[0], "indices")
        pidx = &idx[0]
    with nogil:
        if floating is float:
            status = fnn_max_pool2d_forward_f32(&s, &x[0], &y[0], pidx)
        else:
            status = fnn_max_pool2d_forward_f64(&s, &x[0], &y[0], pidx)
    _check(status)


def max_pool2d_backward(geometry, const floating[::1] dy, const int64_t[::1] idx,
                        floating[::1] dx):
    """dx = dy scattered by idx (plain and adaptive max pooling); dx is overwritten.

    Returns False when an index lies outside its plane (those are skipped): the
    index values are data the shape checks cannot see, so the kernel checks
    them during the scatter, where it costs nothing, and the caller raises.
    """
    cdef fnn_pool_shape s = _pool_shape(geometry)
    cdef int status
    _need_pool(&s, dx.shape[0], dy.shape[0])
    _need(idx.shape[0], dy.shape[0], "indices")
    with nogil:
        if floating is float:
            status = fnn_max_pool2d_backward_f32(&s, &dy[0], &idx[0], &dx[0])
        else:
            status = fnn_max_pool2d_backward_f64(&s, &dy[0], &idx[0], &dx[0])
    if status == FNN_EINVAL:
        return False
    _check(status)
    return True


def avg_pool2d_forward(geometry, const floating[::1] x, floating[::1] y,
                       bint count_include_pad, int64_t divisor_override):
    """y = average pooling of x; divisor_override 0 means none."""
    cdef fnn_pool_shape s = _pool_shape(geometry)
    cdef int status
    _need_pool(&s, x.shape[0], y.shape[0])
    with nogil:
        if floating is float:
            status = fnn_avg_pool2d_forward_f32(&s, &x[0], &y[0], count_include_pad,
                                                divisor_override)
        else:
            status = fnn_avg_pool2d_forward_f64(&s, &x[0], &y[0], count_include_pad,
                                                divisor_override)
    _check(status)


def avg_pool2d_backward(geometry, const floating[::1] dy, floating[::1] dx,
                        bint count_include_pad, int64_t divisor_override):
    """dx = gradient of average pooling (dx is overwritten)."""
    cdef fnn_pool_shape s = _pool_shape(geometry)
    cdef int status
    _need_pool(&s, dx.shape[0], dy.shape[0])
    with nogil:
        if floating is float:
            status = fnn_avg_pool2d_backward_f32(&s, &dy[0], &dx[0], count_include_pad,
                                                 divisor_override)
        else:
            status = fnn_avg_pool2d_backward_f64(&s, &dy[0], &dx[0], count_include_pad,
                                                 divisor_override)
    _check(status)


def adaptive_avg_pool2d_forward(geometry, const floating[::1] x, floating[::1] y):
    cdef fnn_pool_shape s = _pool_shape(geometry)
    cdef int status
    _need_pool(&s, x.shape[0], y.shape[0])
    with nogil:
        if floating is float:
            status = fnn_adaptive_avg_pool2d_forward_f32(&s, &x[0], &y[0])
        else:
            status = fnn_adaptive_avg_pool2d_forward_f64(&s, &x[0], &y[0])
    _check(status)


def adaptive_avg_pool2d_backward(geometry, const floating[::1] dy, floating[::1] dx):
    """dx = gradient of adaptive average pooling (dx is overwritten)."""
    cdef fnn_pool_shape s = _pool_shape(geometry)
    cdef int status
    _need_pool(&s, dx.shape[0], dy.shape[0])
    with nogil:
        if floating is float:
            status = fnn_adaptive_avg_pool2d_backward_f32(&s, &dy[0], &dx[0])
        else:
            status = fnn_adaptive_avg_pool2d_backward_f64(&s, &dy[0], &dx[0])
    _check(status)


cdef int64_t _pyramid_size(const int64_t[::1] out_hw) except -1:
    """S = sum of h*w over the levels of out_hw = (h0, w0, h1, w1, ...)."""
    cdef int64_t total = 0
    cdef Py_ssize_t j
    if out_hw.shape[0] == 0 or out_hw.shape[0] % 2:
        raise ValueError("out_hw: one (height, width) pair per level")
    for j in range(0, out_hw.shape[0], 2):
        total += out_hw[j] * out_hw[j + 1]
    return total


def pyramid_pool_forward(geometry, const int64_t[::1] out_hw, bint is_max,
                         const floating[::1] x, floating[::1] y, int64_t[::1] idx):
    """Adaptive pooling to every (h, w) of out_hw at once, outputs per image level after
    level (spatial pyramid pooling; one level is adaptive pooling). idx may be None."""
    cdef fnn_pool_shape s = _pool_shape(geometry)
    cdef int status
    cdef int64_t *pidx = NULL
    cdef int64_t S = _pyramid_size(out_hw), levels = out_hw.shape[0] // 2
    _need(x.shape[0], s.batch * s.channels * s.in_h * s.in_w, "input")
    _need(y.shape[0], s.batch * s.channels * S, "output")
    if idx is not None:
        _need(idx.shape[0], y.shape[0], "indices")
        pidx = &idx[0]
    with nogil:
        if floating is float:
            status = fnn_pyramid_pool_forward_f32(&s, levels, &out_hw[0], is_max, &x[0], &y[0],
                                                  pidx)
        else:
            status = fnn_pyramid_pool_forward_f64(&s, levels, &out_hw[0], is_max, &x[0], &y[0],
                                                  pidx)
    _check(status)


def pyramid_pool_backward(geometry, const int64_t[::1] out_hw, bint is_max,
                          const floating[::1] dy, const int64_t[::1] idx, floating[::1] dx):
    """dx = the gradient of pyramid_pool_forward (max: by idx); dx is overwritten.

    Returns False when an index lies outside its plane (see max_pool2d_backward).
    """
    cdef fnn_pool_shape s = _pool_shape(geometry)
    cdef int status
    cdef const int64_t *pidx = NULL
    cdef int64_t S = _pyramid_size(out_hw), levels = out_hw.shape[0] // 2
    _need(dx.shape[0], s.batch * s.channels * s.in_h * s.in_w, "grad_input")
    _need(dy.shape[0], s.batch * s.channels * S, "grad_output")
    if is_max:
        if idx is None:
            raise ValueError("indices: needed by max pooling's backward")
        _need(idx.shape[0], dy.shape[0], "indices")
        pidx = &idx[0]
    with nogil:
        if floating is float:
            status = fnn_pyramid_pool_backward_f32(&s, levels, &out_hw[0], is_max, &dy[0], pidx,
                                                   &dx[0])
        else:
            status = fnn_pyramid_pool_backward_f64(&s, levels, &out_hw[0], is_max, &dy[0], pidx,
                                                   &dx[0])
    if status == FNN_EINVAL:
        return False
    _check(status)
    return True


# --------------------------------------------------------------------------- packed GEMM


def packed_nr(str typecode):
    """Panel width of the packed GEMM for 'f' (float32) or 'd' (float64) on the
    instruction set in use: column ranges of gemm_packed start at multiples of it."""
    if typecode == "f":
        return fnn_packed_nr_f32()
    if typecode == "d":
        return fnn_packed_nr_f64()
    raise ValueError(f"packed_nr: typecode 'f' or 'd', not {typecode!r}")


cdef int64_t _row_stride(const floating[:, :] x, str fn, str name) except -1:
    """Elements from one row of matrix x to the next (a single row: its width). Each row
    must be contiguous, the rows in order and apart (slices of wider arrays are fine)."""
    cdef Py_ssize_t itemsize = sizeof(floating)
    if x.shape[1] > 1 and x.strides[1] != itemsize:
        raise ValueError(f"{fn}: the rows of {name} must be contiguous")
    if x.shape[0] == 1:
        return x.shape[1]
    if x.strides[0] % itemsize or x.strides[0] < x.shape[1] * itemsize:
        raise ValueError(f"{fn}: the rows of {name} must follow one another")
    return x.strides[0] // itemsize


def gemm_packed(const floating[:, :] a, const floating[:, :] b, bint trans_b,
                Py_ssize_t n0, Py_ssize_t n1, bint beta, floating[:, :] c,
                Py_ssize_t steps=1, bint prefetch=False, bint trans_a=False):
    """c[:, n0:n1] = (c[:, n0:n1] if beta else 0) + (A @ B)[:, n0:n1], B = b.T if trans_b
    else b, with B packed into a fresh buffer first; with beta false c is only written.
    A = a.T read in place if trans_a (FNN_PACKED_TRANS_A) else a.

    Not public API: the test and benchmark hook of the recurrent per-step GEMM. Rows
    of a, b and c may lie further apart than their width (slices of wider arrays);
    n0 must be a multiple of packed_nr. `steps` repeats the product on one packing,
    as a step loop does (with beta, c then gains a @ B that many times). `prefetch`
    sets FNN_PACKED_PREFETCH, which must not change a bit of c.
    """
    cdef int64_t m = a.shape[1] if trans_a else a.shape[0]
    cdef int64_t k = a.shape[0] if trans_a else a.shape[1]
    cdef int64_t n = b.shape[0] if trans_b else b.shape[1]
    cdef int64_t nr, size
    cdef Py_ssize_t step
    cdef int64_t lda = _row_stride(a, "gemm_packed", "a")
    cdef int64_t ldb = _row_stride(b, "gemm_packed", "b")
    cdef int64_t ldc = _row_stride(c, "gemm_packed", "c")
    cdef floating *bp
    cdef int flags = ((FNN_PACKED_ACCUMULATE if beta else 0) |
                      (FNN_PACKED_PREFETCH if prefetch else 0) |
                      (FNN_PACKED_TRANS_A if trans_a else 0))
    if (b.shape[1] if trans_b else b.shape[0]) != k or c.shape[0] != m or c.shape[1] != n:
        raise ValueError("gemm_packed: shapes of a, b, c do not fit c = op(a) @ op(b)")
    if m == 0 or n == 0 or k == 0:
        raise ValueError("gemm_packed: empty operand")
    if floating is float:
        nr, size = fnn_packed_nr_f32(), fnn_packed_size_f32(k, n)
    else:
        nr, size = fnn_packed_nr_f64(), fnn_packed_size_f64(k, n)
    if not 0 <= n0 <= n1 <= n or n0 % nr:
        raise ValueError(f"gemm_packed: columns [{n0}, {n1}) of {n}, start a multiple of {nr}")
    if steps < 1:
        raise ValueError("gemm_packed: steps must be at least 1")
    bp = <floating *>malloc(size * sizeof(floating))
    if bp == NULL:
        raise MemoryError("gemm_packed: no memory for the packed operand")
    with nogil:
        if floating is float:
            fnn_pack_b_f32(k, n, &b[0, 0], ldb, trans_b, bp)
            for step in range(steps):
                fnn_gemm_packed_f32(m, n0, n1, k, &a[0, 0], lda, bp, flags, &c[0, 0], ldc)
        else:
            fnn_pack_b_f64(k, n, &b[0, 0], ldb, trans_b, bp)
            for step in range(steps):
                fnn_gemm_packed_f64(m, n0, n1, k, &a[0, 0], lda, bp, flags, &c[0, 0], ldc)
        free(bp)


def gemm_rows(const floating[:, :] a, const floating[:, :] b, bint beta, floating[:, :] c,
              Py_ssize_t steps=1, const floating[::1] bias=None):
    """c = (c if beta else bias[:, None] if bias is not None else 0) + a @ b with b read
    in place, row-major, by the packed GEMM's tiles (fnn_gemm_rows, as convolution's
    columns are). Not public API: the test and benchmark hook; rows may lie further apart
    than their width; `steps` repeats the product (with beta, c gains a @ b that many
    times).
    """
    cdef int64_t m = a.shape[0], k = a.shape[1], n = b.shape[1]
    cdef int64_t lda = _row_stride(a, "gemm_rows", "a")
    cdef int64_t ldb = _row_stride(b, "gemm_rows", "b")
    cdef int64_t ldc = _row_stride(c, "gemm_rows", "c")
    cdef int flags = FNN_PACKED_ACCUMULATE if beta else 0
    cdef Py_ssize_t step
    if b.shape[0] != k or c.shape[0] != m or c.shape[1] != n:
        raise ValueError("gemm_rows: shapes of a, b, c do not fit c = a @ b")
    if m == 0 or n == 0 or k == 0:
        raise ValueError("gemm_rows: empty operand")
    if steps < 1:
        raise ValueError("gemm_rows: steps must be at least 1")
    if bias is not None and bias.shape[0] != m:
        raise ValueError("gemm_rows: bias must have one value per row of c")
    cdef const floating *bias_ptr = &bias[0] if bias is not None else NULL
    with nogil:
        for step in range(steps):
            if floating is float:
                fnn_gemm_rows_f32(m, n, k, &a[0, 0], lda, &b[0, 0], ldb, bias_ptr, flags,
                                  &c[0, 0], ldc)
            else:
                fnn_gemm_rows_f64(m, n, k, &a[0, 0], lda, &b[0, 0], ldb, bias_ptr, flags,
                                  &c[0, 0], ldc)


# --------------------------------------------------------------------------- recurrences


cdef fnn_rnn_shape _rnn_shape(object g) except *:
    """An RNNGeometry tuple (see fastnn._validate) as the C struct."""
    cdef fnn_rnn_shape s
    (s.steps, s.batch, s.input_size, s.hidden_size, s.mode, s.reverse) = g
    return s


cdef int64_t _gate_width(fnn_rnn_shape *s):
    """Columns of a step's gate row: 4H for LSTM (i f g o) and GRU (r z n, W_hn h), else H."""
    return (4 if s.mode == FNN_RNN_LSTM or s.mode == FNN_RNN_GRU else 1) * s.hidden_size


cdef int64_t _x_gates(fnn_rnn_shape *s):
    """Rows of W_ih: 4H (LSTM), 3H (GRU) or H."""
    return (4 if s.mode == FNN_RNN_LSTM else 3 if s.mode == FNN_RNN_GRU else 1) * s.hidden_size


cdef void _need_rnn(fnn_rnn_shape *s, Py_ssize_t nx, Py_ssize_t nw_ih,
                    Py_ssize_t nw_hh) except *:
    _need(nx, s.steps * s.batch * s.input_size, "x")
    _need(nw_ih, _x_gates(s) * s.input_size, "w_ih")
    _need(nw_hh, _x_gates(s) * s.hidden_size, "w_hh")


cdef void _need_opt(object arr, Py_ssize_t have, int64_t want, str name, bint needed) except *:
    """An optional buffer: the right size when given, and given when `needed`."""
    if arr is None:
        if needed:
            raise ValueError(f"{name}: required for this recurrence")
    else:
        _need(have, want, name)


cdef const int64_t *_rows(const int64_t[::1] rows, int64_t batch) except? NULL:
    """A row map: a permutation of range(batch) (checked: the kernels index with it), or NULL."""
    cdef Py_ssize_t n
    cdef bytearray seen
    if rows is None:
        return NULL
    _need(rows.shape[0], batch, "rows")
    seen = bytearray(batch)
    for n in range(batch):
        if rows[n] < 0 or rows[n] >= batch or seen[rows[n]]:
            raise ValueError("rows: not a permutation of the batch's rows")
        seen[rows[n]] = 1
    return &rows[0]


def rnn_forward(geometry, const floating[::1] x, const floating[::1] w_ih,
                const floating[::1] w_hh, const floating[::1] b_ih, const floating[::1] b_hh,
                const int64_t[::1] lengths, const int64_t[::1] rows, const floating[::1] h0,
                const floating[::1] c0,
                floating[::1] y, floating[::1] h_n, floating[::1] c_n, floating[::1] gates,
                floating[::1] hs, floating[::1] cs, const int64_t[::1] x_rows=None):
    """One layer and direction of a recurrence; biases, lengths, rows and x_rows may be
    None (x_rows: x is in the caller's row order, as h0 and y, and the kernel reads
    its row n from x_rows[n]; else x is in the kernel's order).

    c0, c_n (and cs when training) are for LSTM only. gates, hs (and cs) given
    means training: they keep what rnn_backward needs; else all are None.
    """
    cdef fnn_rnn_shape s = _rnn_shape(geometry)
    cdef int status
    cdef bint lstm = s.mode == FNN_RNN_LSTM, training = hs is not None
    cdef int64_t NH = s.batch * s.hidden_size
    cdef const floating *pb_ih = NULL
    cdef const floating *pb_hh = NULL
    cdef const floating *pc0 = NULL
    cdef floating *pc_n = NULL
    cdef floating *pgates = NULL
    cdef floating *phs = NULL
    cdef floating *pcs = NULL
    cdef const int64_t *plen = NULL
    cdef const int64_t *prows = _rows(rows, s.batch)
    cdef const int64_t *px_rows = _rows(x_rows, s.batch)
    _need_rnn(&s, x.shape[0], w_ih.shape[0], w_hh.shape[0])
    _need_opt(gates, 0 if gates is None else gates.shape[0], s.steps * s.batch * _gate_width(&s),
              "gates", training)
    _need(h0.shape[0], NH, "h0")
    _need(h_n.shape[0], NH, "h_n")
    _need(y.shape[0], s.steps * NH, "y")
    _need_opt(c0, 0 if c0 is None else c0.shape[0], NH, "c0", lstm)
    _need_opt(c_n, 0 if c_n is None else c_n.shape[0], NH, "c_n", lstm)
    _need_opt(hs, 0 if hs is None else hs.shape[0], (s.steps + 1) * NH, "hs", False)
    _need_opt(cs, 0 if cs is None else cs.shape[0], (s.steps + 1) * NH, "cs", lstm and training)
    _need_opt(lengths, 0 if lengths is None else lengths.shape[0], s.batch, "lengths", False)
    if (b_ih is None) != (b_hh is None):
        raise ValueError("b_ih and b_hh: give both or neither")
    if b_ih is not None:
        _need(b_ih.shape[0], _x_gates(&s), "b_ih")
        _need(b_hh.shape[0], _x_gates(&s), "b_hh")
        pb_ih = &b_ih[0]
        pb_hh = &b_hh[0]
    if lstm:
        pc0 = &c0[0]
        pc_n = &c_n[0]
    if training:
        pgates = &gates[0]
        phs = &hs[0]
        if lstm:
            pcs = &cs[0]
    if lengths is not None:
        plen = &lengths[0]
    with nogil:
        if floating is float:
            status = fnn_rnn_forward_f32(&s, &x[0], &w_ih[0], &w_hh[0], pb_ih, pb_hh, plen, prows,
                                         px_rows, &h0[0], pc0, &y[0], &h_n[0], pc_n, pgates, phs,
                                         pcs)
        else:
            status = fnn_rnn_forward_f64(&s, &x[0], &w_ih[0], &w_hh[0], pb_ih, pb_hh, plen, prows,
                                         px_rows, &h0[0], pc0, &y[0], &h_n[0], pc_n, pgates, phs,
                                         pcs)
    _check(status)


def rnn_backward(geometry, const floating[::1] x, const floating[::1] w_ih,
                 const floating[::1] w_hh, const int64_t[::1] lengths, const int64_t[::1] rows,
                 floating[::1] gates,
                 const floating[::1] hs, const floating[::1] cs, const floating[::1] dy,
                 const floating[::1] dh_n, const floating[::1] dc_n, floating[::1] dx,
                 floating[::1] dh0, floating[::1] dc0, floating[::1] dw_ih, floating[::1] dw_hh,
                 floating[::1] db_ih, floating[::1] db_hh):
    """Backward through time of rnn_forward (trained), overwriting `gates` with the
    gate gradients; dy, dh_n, dc_n, lengths, rows and the bias gradients may be None; cs,
    dc0 (and dc_n when given) are for LSTM only."""
    cdef fnn_rnn_shape s = _rnn_shape(geometry)
    cdef int status
    cdef bint lstm = s.mode == FNN_RNN_LSTM
    cdef int64_t NH = s.batch * s.hidden_size
    cdef const floating *pcs = NULL
    cdef const floating *pdy = NULL
    cdef const floating *pdh_n = NULL
    cdef const floating *pdc_n = NULL
    cdef floating *pdc0 = NULL
    cdef floating *pdb_ih = NULL
    cdef floating *pdb_hh = NULL
    cdef const int64_t *plen = NULL
    cdef const int64_t *prows = _rows(rows, s.batch)
    _need_rnn(&s, x.shape[0], w_ih.shape[0], w_hh.shape[0])
    _need(gates.shape[0], s.steps * s.batch * _gate_width(&s), "gates")
    _need(hs.shape[0], (s.steps + 1) * NH, "hs")
    _need(dx.shape[0], x.shape[0], "dx")
    _need(dh0.shape[0], NH, "dh0")
    _need(dw_ih.shape[0], w_ih.shape[0], "dw_ih")
    _need(dw_hh.shape[0], w_hh.shape[0], "dw_hh")
    _need_opt(cs, 0 if cs is None else cs.shape[0], (s.steps + 1) * NH, "cs", lstm)
    _need_opt(dc0, 0 if dc0 is None else dc0.shape[0], NH, "dc0", lstm)
    _need_opt(dy, 0 if dy is None else dy.shape[0], s.steps * NH, "dy", False)
    _need_opt(dh_n, 0 if dh_n is None else dh_n.shape[0], NH, "dh_n", False)
    _need_opt(dc_n, 0 if dc_n is None else dc_n.shape[0], NH, "dc_n", False)
    _need_opt(lengths, 0 if lengths is None else lengths.shape[0], s.batch, "lengths", False)
    if (db_ih is None) != (db_hh is None):
        raise ValueError("db_ih and db_hh: give both or neither")
    if db_ih is not None:
        _need(db_ih.shape[0], _x_gates(&s), "db_ih")
        _need(db_hh.shape[0], _x_gates(&s), "db_hh")
        pdb_ih = &db_ih[0]
        pdb_hh = &db_hh[0]
    if lstm:
        pcs = &cs[0]
        pdc0 = &dc0[0]
        if dc_n is not None:
            pdc_n = &dc_n[0]
    if dy is not None:
        pdy = &dy[0]
    if dh_n is not None:
        pdh_n = &dh_n[0]
    if lengths is not None:
        plen = &lengths[0]
    with nogil:
        if floating is float:
            status = fnn_rnn_backward_f32(&s, &x[0], &w_ih[0], &w_hh[0], plen, prows, &gates[0],
                                          &hs[0], pcs, pdy, pdh_n, pdc_n, &dx[0], &dh0[0], pdc0,
                                          &dw_ih[0], &dw_hh[0], pdb_ih, pdb_hh)
        else:
            status = fnn_rnn_backward_f64(&s, &x[0], &w_ih[0], &w_hh[0], plen, prows, &gates[0],
                                          &hs[0], pcs, pdy, pdh_n, pdc_n, &dx[0], &dh0[0], pdc0,
                                          &dw_ih[0], &dw_hh[0], pdb_ih, pdb_hh)
    _check(status)
