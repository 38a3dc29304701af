/* Recurrences over a whole sequence: LSTM, GRU and the Elman RNN (tanh or
 * relu), one layer and one direction per call, forward and backward through
 * time.
 *
 * Forward: the input projection x W_ih^T runs a chunk of steps ahead of the
 * recurrence (one GEMM per chunk, so its output is still in cache when the
 * steps read it); every step then adds h W_hh^T with the packed-panel GEMM
 * (gemm_packed.c: W_hh is packed once per call, not once per step as a BLAS
 * call would) and applies the gate nonlinearities to what it just wrote. The
 * whole sequence runs in one parallel region (DESIGN.md section 2); threads
 * share it by hidden units or by batch rows (fnn_rnn_part below).
 * Backward: per step the gate gradients (written over the kept activations),
 * then dh_{t-1} = dG_t W_hh (W_hh packed once again); the weight and bias
 * gradients and dx are GEMMs over all steps once the loop is done.
 * With lengths, the rows come sorted longest first, so each step's GEMMs
 * cover only the rows still running.
 *
 * Every split depends on the shape only (fixed blocks of rows; an element's
 * sums do not depend on the range or rows a call covers), so results are the
 * same bit for bit whatever the thread count. The gate kernels are compiled
 * once per instruction set (isa_builds.h): this file includes itself once per
 * instruction set, within that once per dtype, and once per dtype for the
 * entry points. */
#if !defined(FNN_ISA) && !defined(T) /* ---- top level ---- */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "blas.h"
#include "fastnn.h"

/* Gate kernels over `len` hidden units of one batch row. Forward: g holds the
 * row's pre-activations (gate blocks H apart), b the biases in the same
 * layout; the activations are written back over g (the backward reads them).
 * Backward: dh is dL/dh_t from later steps, dy the output's gradient; they
 * overwrite the activations in g with the gate gradients (pre-activation) and
 * write the part of dL/dh_{t-1} that does not go through W_hh. */
#define FNN_RNN_OPS(T, SFX)                                                                   \
    void (*lstm_row_##SFX)(int64_t len, int64_t H, T *g, const T *b, const T *c_prev, T *c,  \
                           T *h, T *y);                                                       \
    void (*gru_row_##SFX)(int64_t len, int64_t H, T *g, const T *b, const T *h_prev, T *h,   \
                          T *y);                                                              \
    void (*rnn_row_##SFX)(int64_t len, int relu, T *g, const T *b, T *h, T *y);              \
    void (*lstm_backward_row_##SFX)(int64_t len, int64_t H, T *g, const T *c_prev,           \
                                    const T *c, const T *dh, const T *dy, T *dc, T *dh_prev); \
    void (*gru_backward_row_##SFX)(int64_t len, int64_t H, T *g, const T *h_prev,            \
                                   const T *dh, const T *dy, T *dh_prev);                     \
    void (*rnn_backward_row_##SFX)(int64_t len, int relu, T *g, const T *dh, const T *dy,    \
                                   T *dh_prev);
typedef struct {
    FNN_RNN_OPS(float, f32)
    FNN_RNN_OPS(double, f64)
} fnn_rnn_ops;
#undef FNN_RNN_OPS

#define FNN_ISA_SOURCE "rnn.c"
#include "isa_builds.h"

#define FNN_RNN_LIST(isa, sfx)                                                                \
    lstm_row_##isa##_##sfx, gru_row_##isa##_##sfx, rnn_row_##isa##_##sfx,                     \
        lstm_backward_row_##isa##_##sfx, gru_backward_row_##isa##_##sfx,                      \
        rnn_backward_row_##isa##_##sfx
#define FNN_DEFINE_RNN_OPS(isa)                                                               \
    static const fnn_rnn_ops fnn_rnn_##isa = {FNN_RNN_LIST(isa, f32), FNN_RNN_LIST(isa, f64)};
FNN_DEFINE_RNN_OPS(portable)
FNN_DEFINE_RNN_OPS(avx2)
FNN_DEFINE_RNN_OPS(avx512)

/* The set runtime.c chose (fnn_simd_level). */
static const fnn_rnn_ops *fnn_rnn_ops_now(void) {
    static const fnn_rnn_ops *const sets[] = {&fnn_rnn_portable, &fnn_rnn_avx2, &fnn_rnn_avx512};
    return sets[fnn_simd_level()];
}

/* Rows of the dx GEMM per work item: fixed, so the calls do not depend on
 * the thread count; 64 keeps two threads within 2% of each other at T * N =
 * 3200. The input projection runs ahead of the recurrence by chunks of about
 * FNN_RNN_CHUNK_ROWS rows (whole steps): 1 MB of LSTM gates at N = 32, H = 256. */
#define FNN_RNN_ROWS 64
#define FNN_RNN_CHUNK_ROWS 256

/* The weight gradients' GEMMs run on our tiles, not OpenBLAS's, whose kernels
 * are those it picks at load or OPENBLAS_CORETYPE forces: on a Zen 5 (AVX-512)
 * with OPENBLAS_CORETYPE=Haswell, training 1.22-1.25x faster at 1 thread
 * (LSTM, GRU at batch 32-64), 1.20-1.27x at 2; against its AVX-512 kernels
 * 1.01-1.04x. Items of FNN_RNN_GRAD_PANELS panels of their columns (dG's; 4
 * panels and A blocks of L2/4 were the same within 1-4%), blocks of A (x or
 * h_prev read transposed, all steps) of FNN_RNN_GRAD_A_BYTES. */
#define FNN_RNN_GRAD_PANELS 2
#define FNN_RNN_GRAD_A_BYTES (fnn_cache_bytes(2) / 2)

/* A split by batch rows needs W_hh (packed) within half of a core's L2 (the
 * rest is the rows' states and gates) and 8 rows per thread. */
#define FNN_RNN_L2_BYTES (fnn_cache_bytes(2) / 2)
#define FNN_RNN_MIN_ROWS 8

/* Work of a step (2 * N * G * H * (I + H) flops) per thread below which a
 * split by units does not pay for its barriers. At N = 1 (Zen 4, calls 15 ms
 * apart, as the benchmarks time them), an LSTM with H = 128, I = 64 (200
 * kflops a step) ran 1.2-1.35x faster on 2 threads, a GRU (150 kflops)
 * 1.2-1.3x, and with AVX2 (16-column panels) H = I = 64 (130 kflops) 1.4x,
 * H = I = 32 (33 kflops) about the same. */
#define FNN_RNN_THREAD_FLOPS 25000

/* Rows of step t that the GEMMs cover: up to the last row still running.
 * Inactive rows below it are computed and ignored; with the rows sorted by
 * length (the Python layer does that) none are, and a batch with lengths
 * costs its active rows only. */
static int64_t fnn_rnn_rows(const int64_t *lengths, int64_t N, int64_t t) {
    int64_t m = N;
    if (lengths)
        while (m > 0 && lengths[m - 1] <= t) m--;
    return m;
}

/* Row n of the kernel is row rows[n] of the caller's states and outputs. */
static int64_t fnn_rnn_row(const int64_t *rows, int64_t n) { return rows ? rows[n] : n; }

/* The backward's GEMMs over all steps' rows (row t * N + n) skip the rows
 * that have ended: from row p, the end (at most `limit`) of the running rows
 * of p's step that p is one of; p when p has ended. */
static int64_t fnn_rnn_run_end(const int64_t *lengths, int64_t N, int64_t p, int64_t limit) {
    if (!lengths) return limit;
    const int64_t t = p / N, end = t * N + fnn_rnn_rows(lengths, N, t);
    return p < end ? (end < limit ? end : limit) : p;
}

/* From an ended row p, the next row that may run: the next step's first. */
static int64_t fnn_rnn_next_step(int64_t N, int64_t p, int64_t limit) {
    const int64_t next = (p / N + 1) * N;
    return next < limit ? next : limit;
}

/* How the threads share a sequence. By hidden units: every thread takes all
 * rows and whole panels of units, and a barrier ends each step (each row's
 * next step needs all units). By batch rows: thread tid takes rows tid, tid +
 * nt, ... (interleaved, so that sorted lengths stay balanced) and all units;
 * the recurrences are then independent and need no barrier, but every thread
 * streams all of W_hh each step, so this is for W_hh that fits in a core's L2
 * and enough rows to fill the tiles. An element's sums are the same either
 * way, so the results do not depend on the choice. */
typedef struct {
    int64_t r0, stride; /* rows r0, r0 + stride, ... */
    int64_t u0, u1;     /* units [u0, u1) */
} fnn_rnn_part;

/* Rows of the first m that a part holds. */
static int64_t fnn_rnn_count(const fnn_rnn_part *p, int64_t m) {
    return m > p->r0 ? (m - p->r0 + p->stride - 1) / p->stride : 0;
}

static int fnn_rnn_by_rows(int64_t N, int64_t packed_bytes, int nt) {
    return nt > 1 && N >= FNN_RNN_MIN_ROWS * nt && packed_bytes <= FNN_RNN_L2_BYTES;
}

/* FNN_PACKED_PREFETCH when a thread's part of a packed weight (`bytes` in
 * all; split by units over nt threads unless `whole`) does not stay in L2 with
 * the rest of a step. */
static int fnn_rnn_prefetch(int64_t bytes, int whole, int nt) {
    return (whole ? bytes : bytes / nt) > FNN_RNN_L2_BYTES ? FNN_PACKED_PREFETCH : 0;
}

/* The end of a step, inside the parallel region: a split by units waits for
 * all units. Not in a team of one: libgomp's barrier makes a futex syscall
 * every time, which cost an LSTM or GRU at N = 1 (5 us a step) 7-8%. */
static void fnn_rnn_step_done(int by_rows) {
    if (!by_rows && omp_get_num_threads() > 1) {
#pragma omp barrier
    }
}

/* Gate blocks of H columns that the input and the recurrent GEMMs fill. */
static int64_t fnn_rnn_x_blocks(int mode) {
    return mode == FNN_RNN_LSTM ? 4 : mode == FNN_RNN_GRU ? 3 : 1;
}

/* Bytes of a workspace piece of `size` values: whole cache lines. */
static size_t fnn_rnn_piece_bytes(int64_t size, size_t elem) {
    return ((size_t)size * elem + 63) / 64 * 64;
}

/* A call's workspace: pieces of sizes[i] values of `elem` bytes, each on its
 * own cache lines, in one block from fnn_block_alloc, whose cache keeps it for
 * the next call: fresh pages each call (malloc maps blocks over 128 KB anew)
 * cost an LSTM at N = 1 (384 KB of packed weights) 5% of its time in page
 * faults. Returns the block (NULL when out of memory); pieces[i] is NULL where
 * sizes[i] is 0. */
static void *fnn_rnn_workspace(size_t elem, int count, const int64_t *sizes, void **pieces) {
    size_t total = 0;
    for (int i = 0; i < count; i++) {
        if ((size_t)sizes[i] > (SIZE_MAX / 2 - total) / elem) return NULL;
        total += fnn_rnn_piece_bytes(sizes[i], elem);
    }
    char *block = fnn_block_alloc(total > 0 ? total : 64, FNN_BLOCK_SMALL), *at = block;
    if (!block) return NULL;
    for (int i = 0; i < count; at += fnn_rnn_piece_bytes(sizes[i++], elem))
        pieces[i] = sizes[i] ? at : NULL;
    return block;
}

#define FNN_DTYPE_SOURCE "rnn.c"
#include "dtype_builds.h"
#undef FNN_DTYPE_SOURCE

#elif defined(FNN_ISA) && !defined(T) /* ---- one instruction set: both dtypes ---- */

#define FNN_DTYPE_SOURCE "rnn.c"
#include "dtype_builds.h"
#undef FNN_DTYPE_SOURCE

#elif defined(FNN_ISA) /* ---- one instruction set, one dtype: the gate kernels ---- */

/* exp(x) for x <= 0, NaN passed through, written so that the gate loops
 * vectorize (libm's expf is a call per element, which costs as much as the
 * step's GEMM): 2^n e^r with n = round(x / ln 2) found by the 1.5 * 2^p
 * rounding trick, |r| <= ln(2) / 2 and Taylor terms up to r^7 (float, relative
 * error 6e-9) or r^13 (double, 4e-18). The lower clamp keeps 2^n normal; it
 * changes results below 1e-38 (float) or 1e-307 (double) only. */
static inline T FNN_NAME(exp_nonpos)(T x) {
#if FNN_F32
    x = x < -87.0f ? -87.0f : x;
    float t = x * 1.44269504088896341f + 12582912.0f;
    float n = t - 12582912.0f;
    float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    uint32_t bits, scale_bits;
    memcpy(&bits, &t, sizeof bits);
    scale_bits = (bits - 0x4B400000u + 127u) << 23;
    float scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    return p * scale;
#else
    x = x < -708.0 ? -708.0 : x;
    double t = x * 1.4426950408889634074 + 6755399441055744.0;
    double n = t - 6755399441055744.0;
    double r = (x - n * 6.93145751953125e-1) - n * 1.42860682030941723212e-6;
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    uint64_t bits, scale_bits;
    memcpy(&bits, &t, sizeof bits);
    scale_bits = (bits - 0x4338000000000000ull + 1023u) << 52;
    double scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    return p * scale;
#endif
}

/* Both from e = exp(-|x|) <= 1, so nothing overflows for any x. */
static inline T FNN_NAME(sigmoid)(T x) {
    T e = FNN_NAME(exp_nonpos)(-(x < 0 ? -x : x));
    T s = 1 / (1 + e);
    return x >= 0 ? s : e * s;
}

static inline T FNN_NAME(tanh)(T x) {
    T a = x < 0 ? -x : x;
    T e = FNN_NAME(exp_nonpos)(-2 * a);
    T t = (1 - e) / (1 + e);
    return x < 0 ? -t : t;
}

/* relu that keeps NaN, as PyTorch's does. */
static inline T FNN_NAME(relu)(T x) { return x < 0 ? 0 : x; }

static void FNN_NAME(lstm_row)(int64_t len, int64_t H, T *restrict g, const T *restrict b,
                               const T *restrict c_prev, T *restrict c, T *restrict h,
                               T *restrict y) {
    for (int64_t u = 0; u < len; u++) {
        T i = FNN_NAME(sigmoid)(g[u] + b[u]);
        T f = FNN_NAME(sigmoid)(g[H + u] + b[H + u]);
        T z = FNN_NAME(tanh)(g[2 * H + u] + b[2 * H + u]);
        T o = FNN_NAME(sigmoid)(g[3 * H + u] + b[3 * H + u]);
        T cu = f * c_prev[u] + i * z;
        T hu = o * FNN_NAME(tanh)(cu);
        g[u] = i;
        g[H + u] = f;
        g[2 * H + u] = z;
        g[3 * H + u] = o;
        c[u] = cu;
        h[u] = hu;
        y[u] = hu;
    }
}

/* g holds r, z, n and the hidden part of n (W_hn h; kept as W_hn h + b_hn). */
static void FNN_NAME(gru_row)(int64_t len, int64_t H, T *restrict g, const T *restrict b,
                              const T *restrict h_prev, T *restrict h, T *restrict y) {
    for (int64_t u = 0; u < len; u++) {
        T r = FNN_NAME(sigmoid)(g[u] + b[u]);
        T z = FNN_NAME(sigmoid)(g[H + u] + b[H + u]);
        T hn = g[3 * H + u] + b[3 * H + u];
        T n = FNN_NAME(tanh)(g[2 * H + u] + b[2 * H + u] + r * hn);
        T hu = n + z * (h_prev[u] - n);
        g[u] = r;
        g[H + u] = z;
        g[2 * H + u] = n;
        g[3 * H + u] = hn;
        h[u] = hu;
        y[u] = hu;
    }
}

/* One loop per nonlinearity, each storing all three results: a separate copy
 * loop became two memmove calls per row (6% of a step at N = 32, H = 256). */
static void FNN_NAME(rnn_row)(int64_t len, int relu, T *restrict g, const T *restrict b,
                              T *restrict h, T *restrict y) {
    if (relu) {
        for (int64_t u = 0; u < len; u++) {
            T v = FNN_NAME(relu)(g[u] + b[u]);
            g[u] = h[u] = y[u] = v;
        }
    } else {
        for (int64_t u = 0; u < len; u++) {
            T v = FNN_NAME(tanh)(g[u] + b[u]);
            g[u] = h[u] = y[u] = v;
        }
    }
}

static void FNN_NAME(lstm_backward_row)(int64_t len, int64_t H, T *restrict g,
                                        const T *restrict c_prev, const T *restrict c,
                                        const T *restrict dh, const T *restrict dy,
                                        T *restrict dc, T *restrict dh_prev) {
    for (int64_t u = 0; u < len; u++) {
        T i = g[u], f = g[H + u], z = g[2 * H + u], o = g[3 * H + u];
        T th = FNN_NAME(tanh)(c[u]);
        T d = dh[u] + dy[u];
        T dct = dc[u] + d * o * (1 - th * th);
        g[u] = dct * z * i * (1 - i);
        g[H + u] = dct * c_prev[u] * f * (1 - f);
        g[2 * H + u] = dct * i * (1 - z * z);
        g[3 * H + u] = d * th * o * (1 - o);
        dc[u] = dct * f;
        dh_prev[u] = 0;
    }
}

/* The gradients of r, z, the hidden part of n (what W_hn h + b_hn receives)
 * and the input part of n, in that order: the first three are the recurrent
 * GEMM's left operand, contiguous. */
static void FNN_NAME(gru_backward_row)(int64_t len, int64_t H, T *restrict g,
                                       const T *restrict h_prev, const T *restrict dh,
                                       const T *restrict dy, T *restrict dh_prev) {
    for (int64_t u = 0; u < len; u++) {
        T r = g[u], z = g[H + u], n = g[2 * H + u], hn = g[3 * H + u];
        T d = dh[u] + dy[u];
        T dn = d * (1 - z) * (1 - n * n);
        g[u] = dn * hn * r * (1 - r);
        g[H + u] = d * (h_prev[u] - n) * z * (1 - z);
        g[2 * H + u] = dn * r;
        g[3 * H + u] = dn;
        dh_prev[u] = d * z;
    }
}

static void FNN_NAME(rnn_backward_row)(int64_t len, int relu, T *restrict g,
                                       const T *restrict dh, const T *restrict dy,
                                       T *restrict dh_prev) {
    if (relu)
        for (int64_t u = 0; u < len; u++) g[u] = g[u] > 0 ? dh[u] + dy[u] : 0;
    else
        for (int64_t u = 0; u < len; u++) g[u] = (dh[u] + dy[u]) * (1 - g[u] * g[u]);
    for (int64_t u = 0; u < len; u++) dh_prev[u] = 0;
}

#else /* ---- one dtype: the entry points ---- */

#define FNN_SFX2(name, sfx) name##_##sfx
#define FNN_SFX1(name, sfx) FNN_SFX2(name, sfx)
#define FNN_T(name) FNN_SFX1(name, SFX)
#define OP(name) FNN_SFX1(name, SFX)

/* Threads for a sequence, of the nt available, and thread tid's part (see
 * fnn_rnn_part): split by units, no more threads than there are panels of units to share, nor than
 * there are FNN_RNN_THREAD_FLOPS of a step's work (step_flops). */
static int FNN_T(fnn_rnn_threads)(int64_t H, int64_t step_flops, int by_rows, int nt) {
    int64_t nr = FNN_T(fnn_packed_nr)(), panels = (H + nr - 1) / nr;
    int64_t most = step_flops / FNN_RNN_THREAD_FLOPS < panels ? step_flops / FNN_RNN_THREAD_FLOPS
                                                                : panels;
    return by_rows || most >= nt ? nt : most > 1 ? (int)most : 1;
}

static fnn_rnn_part FNN_T(fnn_rnn_part_of)(int by_rows, int64_t H, int tid, int nt) {
    fnn_rnn_part p = {0, 1, 0, H};
    if (by_rows) {
        p.r0 = tid;
        p.stride = nt;
    } else {
        int64_t nr = FNN_T(fnn_packed_nr)(), panels = (H + nr - 1) / nr;
        int64_t p0 = panels * tid / nt, p1 = panels * (tid + 1) / nt;
        p.u0 = p0 * nr < H ? p0 * nr : H;
        p.u1 = p1 * nr < H ? p1 * nr : H;
    }
    return p;
}

/* dst = src (N x H) with the kernel's row n at the caller's row rows[n]: to the
 * kernel's order (`to_kernel`) or back; src NULL means zeros. */
static void FNN_T(fnn_rnn_copy_rows)(int64_t N, int64_t H, const int64_t *rows, int to_kernel,
                                     const T *src, T *dst) {
    for (int64_t n = 0; n < N; n++) {
        int64_t c = fnn_rnn_row(rows, n);
        T *d = dst + (to_kernel ? n : c) * H;
        if (!src) memset(d, 0, (size_t)H * sizeof(T));
        else memcpy(d, src + (to_kernel ? c : n) * H, (size_t)H * sizeof(T));
    }
}

/* Pack each gate block (H rows) of a weight: for x W^T (trans 1: B = W_b^T,
 * k = cols) or for dG W (trans 0: B = W_b, k = H). One item per block. */
static void FNN_T(fnn_rnn_pack_blocks)(int64_t blocks, int64_t H, int64_t cols, const T *w,
                                       int trans, T *packed, int64_t psize) {
#pragma omp for schedule(static) nowait
    for (int64_t b = 0; b < blocks; b++)
        FNN_T(fnn_pack_b)(trans ? cols : H, trans ? H : cols, w + b * H * cols, cols, trans,
                          packed + b * psize);
}

/* c[:, u0:u1] = (accumulate ? c[:, u0:u1] : 0) + a (m x k) @ W^T[:, u0:u1] for
 * one gate block W (its rows are units, of k values): from W packed, or with
 * `packed` NULL from W itself through the BLAS, for a one-step call (a cell),
 * which would spend most of its time packing (48% of an LSTM cell at H = 128). */
static void FNN_T(fnn_rnn_gemm)(int64_t m, int64_t u0, int64_t u1, int64_t k, const T *a,
                                int64_t lda, const T *packed, const T *w, int flags, T *c,
                                int64_t ldc) {
    if (packed)
        FNN_T(fnn_gemm_packed)(m, u0, u1, k, a, lda, packed, flags, c, ldc);
    else if (m > 0 && u1 > u0)
        FNN_T(fnn_gemm)(0, 1, m, u1 - u0, k, 1, a, lda, w + u0 * k, k,
                        flags & FNN_PACKED_ACCUMULATE ? 1 : 0, c + u0, ldc);
}

/* gates[r, b*H + j] = (x W_ih^T)[r, b*H + j] for `rows` rows (x rows ldx
 * apart, gates rows ldg apart) and the units [u0, u1) of every gate block b:
 * each thread projects what its own recurrence reads, so no barrier is needed
 * and it stays in its cache. packed_ih NULL: from w_ih (fnn_rnn_gemm). */
static void FNN_T(fnn_rnn_project)(int64_t rows, const T *x, int64_t ldx, int64_t In,
                                   const fnn_rnn_part *p, int64_t H, int64_t blocks,
                                   const T *packed_ih, int64_t xsize, const T *w_ih, int flags,
                                   T *gates, int64_t ldg) {
    for (int64_t b = 0, nb; b < blocks; b += nb) {
        nb = packed_ih ? 1 : blocks - b; /* unpacked: all blocks in one call */
        FNN_T(fnn_rnn_gemm)(rows, p->u0, (nb - 1) * H + p->u1, In, x, ldx,
                            packed_ih ? packed_ih + b * xsize : NULL, w_ih + b * H * In, flags,
                            gates + b * H, ldg);
    }
}

int FNN_T(fnn_rnn_forward)(const fnn_rnn_shape *s, const T *x, const T *w_ih, const T *w_hh,
                          const T *b_ih, const T *b_hh, const int64_t *lengths,
                          const int64_t *rows, const int64_t *x_rows, const T *h0,
                          const T *c0, T *y, T *h_n, T *c_n, T *gates, T *hs, T *cs) {
    const int64_t steps = s->steps, N = s->batch, In = s->input_size, H = s->hidden_size;
    const int lstm = s->mode == FNN_RNN_LSTM, gru = s->mode == FNN_RNN_GRU;
    const int relu = s->mode == FNN_RNN_RELU, reverse = s->reverse, training = hs != NULL;
    const int64_t blocks = fnn_rnn_x_blocks(s->mode), xcols = blocks * H;
    const int64_t G = gru ? 4 * H : xcols, NH = N * H;
    const int64_t hsize = FNN_T(fnn_packed_size)(H, H), xsize = FNN_T(fnn_packed_size)(In, H);
    const fnn_rnn_ops *ops = fnn_rnn_ops_now();
    /* One step uses each weight once: no packing, one thread (fnn_rnn_gemm). */
    const int packing = steps > 1;

    int64_t chunk_steps = FNN_RNN_CHUNK_ROWS / N > 1 ? FNN_RNN_CHUNK_ROWS / N : 1;
    if (chunk_steps > steps) chunk_steps = steps;
    const int nt = fnn_get_num_threads();
    const int by_rows = fnn_rnn_by_rows(N, blocks * hsize * (int64_t)sizeof(T), nt);
    const int threads =
        packing ? FNN_T(fnn_rnn_threads)(H, 2 * N * xcols * (In + H), by_rows, nt) : 1;
    /* With x_rows, each thread gathers the rows of x it projects, step by step
     * (xbuf). Inference keeps two steps of states and a chunk of gates. */
    const int64_t sizes[] = {packing ? blocks * hsize : 0,
                             packing ? blocks * xsize : 0,
                             G,
                             training ? 0 : 2 * NH * (lstm ? 2 : 1),
                             training ? 0 : chunk_steps * N * G,
                             x_rows ? threads * N * In : 0};
    void *pieces[6];
    void *ws = fnn_rnn_workspace(sizeof(T), 6, sizes, pieces);
    if (!ws) return FNN_ENOMEM;
    T *packed_hh = pieces[0], *packed_ih = pieces[1], *bias = pieces[2], *state = pieces[3];
    T *work = pieces[4], *xbuf = pieces[5];
    /* Both biases enter every gate's pre-activation, except that GRU keeps
     * b_hn inside r * (W_hn h + b_hn): its slot is the fourth block. */
    for (int64_t j = 0; j < xcols; j++) {
        T bi = b_ih ? b_ih[j] : 0, bh = b_hh ? b_hh[j] : 0;
        bias[j] = gru && j >= 2 * H ? bi : bi + bh;
        if (gru && j >= 2 * H) bias[j + H] = bh;
    }
    T *hbuf = training ? hs : state;
    T *cbuf = lstm ? (training ? cs : state + 2 * NH) : NULL;
#define FNN_SLOT(buf, k) ((buf) + (training ? (k) : ((k) & 1)) * NH)
    int64_t first = reverse ? steps : 0, last = reverse ? 0 : steps;
    FNN_T(fnn_rnn_copy_rows)(N, H, rows, 1, h0, FNN_SLOT(hbuf, first));
    if (lstm) FNN_T(fnn_rnn_copy_rows)(N, H, rows, 1, c0, FNN_SLOT(cbuf, first));

    const int pf_hh = fnn_rnn_prefetch(blocks * hsize * (int64_t)sizeof(T), by_rows, threads);
    const int pf_ih = fnn_rnn_prefetch(blocks * xsize * (int64_t)sizeof(T), by_rows, threads);
#pragma omp parallel num_threads(threads)
    {
        if (packing) {
            FNN_T(fnn_rnn_pack_blocks)(blocks, H, H, w_hh, 1, packed_hh, hsize);
            FNN_T(fnn_rnn_pack_blocks)(blocks, H, In, w_ih, 1, packed_ih, xsize);
        }
#pragma omp barrier
        const fnn_rnn_part p =
            FNN_T(fnn_rnn_part_of)(by_rows, H, omp_get_thread_num(), omp_get_num_threads());
        const int64_t len = p.u1 - p.u0, u0 = p.u0, r0 = p.r0, stride = p.stride;
        /* The input projection runs a chunk of steps ahead of the recurrence:
         * in training straight into `gates`, else into a small workspace that
         * stays in cache (and costs no page faults, unlike a (T, N, G) one). */
        T *chunk = training ? gates : work;
        int64_t chunk_t0 = 0;
        for (int64_t step = 0; step < steps; step++) {
            int64_t t = reverse ? steps - 1 - step : step;
            int64_t kin = reverse ? t + 1 : t, kout = reverse ? t : t + 1;
            if (step % chunk_steps == 0) {
                int64_t end = step + chunk_steps < steps ? step + chunk_steps : steps;
                int64_t t0 = reverse ? steps - end : step, t1 = reverse ? steps - step : end;
                chunk = training ? gates + t0 * N * G : work;
                chunk_t0 = t0;
                if (!lengths && !x_rows && stride == 1)
                    FNN_T(fnn_rnn_project)((t1 - t0) * N, x + t0 * N * In, In, In, &p, H, blocks,
                                           packed_ih, xsize, w_ih, pf_ih, chunk, G);
                else /* step by step, this thread's running rows only */
                    for (int64_t tt = t0; tt < t1; tt++) {
                        const int64_t running = fnn_rnn_rows(lengths, N, tt);
                        const T *xs = x + (tt * N + r0) * In;
                        if (x_rows) {
                            T *mine = xbuf + omp_get_thread_num() * N * In;
                            for (int64_t n = r0; n < running; n += stride)
                                memcpy(mine + n * In, x + (tt * N + x_rows[n]) * In,
                                       (size_t)In * sizeof(T));
                            xs = mine + r0 * In;
                        }
                        FNN_T(fnn_rnn_project)(fnn_rnn_count(&p, running), xs, stride * In, In,
                                               &p, H, blocks, packed_ih, xsize, w_ih, pf_ih,
                                               chunk + ((tt - t0) * N + r0) * G, stride * G);
                    }
            }
            const int64_t m = fnn_rnn_count(&p, fnn_rnn_rows(lengths, N, t));
            const T *hin = FNN_SLOT(hbuf, kin);
            T *hout = FNN_SLOT(hbuf, kout);
            T *gt = chunk + (t - chunk_t0) * N * G;
            /* GRU's n block gets W_hn h alone, in its own slot. Unpacked (one
             * thread, all units), blocks with neighbouring slots go in one call
             * (a 32-row LSTM or GRU cell at H = 256: 4-5% faster than per block). */
            for (int64_t b = 0, nb; b < blocks; b += nb) {
                const int alone = gru && b == 2;
                nb = packing || alone ? 1 : (gru ? 2 : blocks) - b;
                FNN_T(fnn_rnn_gemm)(m, u0, (nb - 1) * H + p.u1, H, hin + r0 * H, stride * H,
                                    packing ? packed_hh + b * hsize : NULL, w_hh + b * H * H,
                                    (alone ? 0 : FNN_PACKED_ACCUMULATE) | pf_hh,
                                    gt + r0 * G + (alone ? 3 : b) * H, stride * G);
            }
            for (int64_t n = r0; n < N; n += stride) {
                T *g = gt + n * G + u0, *yr = y + (t * N + fnn_rnn_row(rows, n)) * H + u0;
                const T *hi = hin + n * H + u0;
                T *ho = hout + n * H + u0;
                const T *ci = lstm ? FNN_SLOT(cbuf, kin) + n * H + u0 : NULL;
                T *co = lstm ? FNN_SLOT(cbuf, kout) + n * H + u0 : NULL;
                if (lengths && t >= lengths[n]) {
                    memcpy(ho, hi, (size_t)len * sizeof(T));
                    if (lstm) memcpy(co, ci, (size_t)len * sizeof(T));
                    memset(yr, 0, (size_t)len * sizeof(T));
                } else if (lstm) {
                    ops->OP(lstm_row)(len, H, g, bias + u0, ci, co, ho, yr);
                } else if (gru) {
                    ops->OP(gru_row)(len, H, g, bias + u0, hi, ho, yr);
                } else {
                    ops->OP(rnn_row)(len, relu, g, bias + u0, ho, yr);
                }
            }
            fnn_rnn_step_done(by_rows);
        }
    }
    FNN_T(fnn_rnn_copy_rows)(N, H, rows, 0, FNN_SLOT(hbuf, last), h_n);
    if (lstm) FNN_T(fnn_rnn_copy_rows)(N, H, rows, 0, FNN_SLOT(cbuf, last), c_n);
#undef FNN_SLOT
    fnn_block_free(ws);
    return FNN_OK;
}

/* db[j] = sum over all rows of column src + j of dg, rows in order. */
static void FNN_T(fnn_rnn_colsum)(int64_t rows, int64_t G, const T *dg, int64_t src,
                                  int64_t j0, int64_t j1, T *db) {
    for (int64_t j = j0; j < j1; j++) db[j] = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = j0; j < j1; j++) db[j] += dg[r * G + src + j];
}

/* dst (cols x rows, rows ldd apart) = src (rows x cols, rows lds apart)
 * transposed, by blocks of 16 columns whose destination rows stay in L1. */
static void FNN_T(fnn_rnn_transpose)(int64_t rows, int64_t cols, const T *src, int64_t lds,
                                     T *dst, int64_t ldd) {
    for (int64_t j0 = 0; j0 < cols; j0 += 16) {
        const int64_t j1 = j0 + 16 < cols ? j0 + 16 : cols;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = j0; j < j1; j++) dst[j * ldd + r] = src[r * lds + j];
    }
}

/* Values of k per block of a weight gradient's GEMM (m rows of A): the block
 * of A stays in L2 while every panel of the item's columns runs over it. */
static int64_t FNN_T(fnn_rnn_grad_kc)(int64_t m) {
    return fnn_max64(64, FNN_RNN_GRAD_A_BYTES / (m * (int64_t)sizeof(T)));
}

/* c (m x n) = at^T @ b for at (k x m) and b (k x n), rows lda and ldb apart,
 * over the rows p of k that run (fnn_rnn_run_end; row 0 always does), on our
 * tiles, b packed into `packed` by blocks of k (fnn_rnn_grad_kc). */
static void FNN_T(fnn_rnn_grad_gemm)(int64_t m, int64_t n, int64_t k, const T *at, int64_t lda,
                                     const T *b, int64_t ldb, const int64_t *lengths, int64_t N,
                                     T *packed, T *c, int64_t ldc) {
    const int64_t kc = FNN_T(fnn_rnn_grad_kc)(m);
    for (int64_t p0 = 0, end; p0 < k; p0 = end > p0 ? end : fnn_rnn_next_step(N, p0, k)) {
        end = fnn_rnn_run_end(lengths, N, p0, k);
        for (int64_t q = p0; q < end; q += kc) {
            const int64_t kk = end - q < kc ? end - q : kc;
            FNN_T(fnn_pack_b)(kk, n, b + q * ldb, ldb, 0, packed);
            FNN_T(fnn_gemm_packed)(m, 0, n, kk, at + q * lda, lda, packed,
                                   FNN_PACKED_TRANS_A | (q > 0 ? FNN_PACKED_ACCUMULATE : 0), c,
                                   ldc);
        }
    }
}

/* Rows [r0, r1) of the weight and bias gradients, all steps at once: dW_ih
 * = dG_x^T x, dW_hh = dG_h^T h_prev, db = column sums. Each is computed
 * transposed, x^T dG_x (x, read transposed, is A; dG's columns are B), into
 * `tmp` and transposed back. For GRU, the input part of row j >= 2H (the n
 * gate) is column j + H of dG (the fourth block), so a range crossing 2H is
 * done in two pieces. */
static void FNN_T(fnn_rnn_param_grads)(int64_t r0, int64_t r1, int64_t split, int64_t H,
                                       int64_t rows, int64_t G, int64_t In, const T *dg,
                                       const T *x, const T *hprev, const int64_t *lengths,
                                       int64_t N, T *packed, T *tmp, T *dw_ih, T *dw_hh,
                                       T *db_ih, T *db_hh) {
    for (int64_t a = r0; a < r1;) {
        int64_t b = a < split && split < r1 ? split : r1, src = a >= split ? H : 0;
        FNN_T(fnn_rnn_grad_gemm)(In, b - a, rows, x, In, dg + a + src, G, lengths, N, packed,
                                 tmp, b - a);
        FNN_T(fnn_rnn_transpose)(In, b - a, tmp, b - a, dw_ih + a * In, In);
        if (db_ih) FNN_T(fnn_rnn_colsum)(rows, G, dg, src, a, b, db_ih);
        a = b;
    }
    FNN_T(fnn_rnn_grad_gemm)(H, r1 - r0, rows, hprev, H, dg + r0, G, lengths, N, packed, tmp,
                             r1 - r0);
    FNN_T(fnn_rnn_transpose)(H, r1 - r0, tmp, r1 - r0, dw_hh + r0 * H, H);
    if (db_hh) FNN_T(fnn_rnn_colsum)(rows, G, dg, 0, r0, r1, db_hh);
}

int FNN_T(fnn_rnn_backward)(const fnn_rnn_shape *s, const T *x, const T *w_ih, const T *w_hh,
                           const int64_t *lengths, const int64_t *rows, T *gates, const T *hs,
                           const T *cs, const T *dy, const T *dh_n, const T *dc_n, T *dx,
                           T *dh0, T *dc0, T *dw_ih, T *dw_hh, T *db_ih, T *db_hh) {
    const int64_t steps = s->steps, N = s->batch, In = s->input_size, H = s->hidden_size;
    const int lstm = s->mode == FNN_RNN_LSTM, gru = s->mode == FNN_RNN_GRU;
    const int relu = s->mode == FNN_RNN_RELU, reverse = s->reverse;
    const int64_t blocks = fnn_rnn_x_blocks(s->mode), xcols = blocks * H;
    const int64_t G = gru ? 4 * H : xcols, NH = N * H, all_rows = steps * N;
    const int64_t hsize = FNN_T(fnn_packed_size)(xcols, H), xsize = FNN_T(fnn_packed_size)(H, In);
    const fnn_rnn_ops *ops = fnn_rnn_ops_now();
    const int nt = fnn_get_num_threads();
    const int by_rows = fnn_rnn_by_rows(N, hsize * (int64_t)sizeof(T), nt);
    const int threads = FNN_T(fnn_rnn_threads)(H, 2 * N * xcols * (In + H), by_rows, nt);

    /* per thread: a weight gradient item's packed B and its result */
    const int64_t grad_cols = FNN_RNN_GRAD_PANELS * FNN_T(fnn_packed_nr)();
    const int64_t grad_kc = fnn_min64(all_rows, FNN_T(fnn_rnn_grad_kc)(fnn_min64(In, H)));
    const int64_t grad_ws = FNN_T(fnn_packed_size)(grad_kc, grad_cols) +
                            fnn_max64(In, H) * grad_cols;
    const int64_t sizes[] = {hsize, blocks * xsize, 2 * NH, lstm ? NH : 0, H, threads * grad_ws};
    void *pieces[6];
    void *ws = fnn_rnn_workspace(sizeof(T), 6, sizes, pieces);
    if (!ws) return FNN_ENOMEM;
    T *packed_hh = pieces[0], *packed_ih = pieces[1], *dhbuf = pieces[2], *dc = pieces[3];
    T *zeros = pieces[4], *grad_buf = pieces[5];
    memset(zeros, 0, (size_t)H * sizeof(T));
    FNN_T(fnn_rnn_copy_rows)(N, H, rows, 1, dh_n, dhbuf);
    if (lstm) FNN_T(fnn_rnn_copy_rows)(N, H, rows, 1, dc_n, dc);

    const int64_t split = gru ? 2 * H : xcols;
    const int64_t row_blocks = (all_rows + FNN_RNN_ROWS - 1) / FNN_RNN_ROWS;
    const T *hprev = hs + (reverse ? NH : 0);
    const int pf_hh = fnn_rnn_prefetch(hsize * (int64_t)sizeof(T), by_rows, threads);
    const int pf_ih = fnn_rnn_prefetch(blocks * xsize * (int64_t)sizeof(T), 1, threads);
#pragma omp parallel num_threads(threads)
    {
#pragma omp single nowait
        FNN_T(fnn_pack_b)(xcols, H, w_hh, H, 0, packed_hh);
        FNN_T(fnn_rnn_pack_blocks)(blocks, H, In, w_ih, 0, packed_ih, xsize);
#pragma omp barrier
        const fnn_rnn_part p =
            FNN_T(fnn_rnn_part_of)(by_rows, H, omp_get_thread_num(), omp_get_num_threads());
        const int64_t len = p.u1 - p.u0, u0 = p.u0, r0 = p.r0, stride = p.stride;
        T *dh_cur = dhbuf, *dh_next = dhbuf + NH;
        for (int64_t step = steps - 1; step >= 0; step--) {
            int64_t t = reverse ? steps - 1 - step : step;
            int64_t kin = reverse ? t + 1 : t, kout = reverse ? t : t + 1;
            T *gt = gates + t * N * G;
            for (int64_t n = r0; n < N; n += stride) {
                T *g = gt + n * G + u0;
                const T *dhr = dh_cur + n * H + u0;
                const T *dyr = dy ? dy + (t * N + fnn_rnn_row(rows, n)) * H + u0 : zeros;
                T *dhp = dh_next + n * H + u0;
                if (lengths && t >= lengths[n]) {
                    for (int64_t b = 0; b < G / H; b++)
                        memset(g + b * H, 0, (size_t)len * sizeof(T));
                    memcpy(dhp, dhr, (size_t)len * sizeof(T));
                } else if (lstm) {
                    const T *cp = cs + kin * NH + n * H + u0, *cn = cs + kout * NH + n * H + u0;
                    ops->OP(lstm_backward_row)(len, H, g, cp, cn, dhr, dyr, dc + n * H + u0, dhp);
                } else if (gru) {
                    ops->OP(gru_backward_row)(len, H, g, hs + kin * NH + n * H + u0, dhr, dyr, dhp);
                } else {
                    ops->OP(rnn_backward_row)(len, relu, g, dhr, dyr, dhp);
                }
            }
            fnn_rnn_step_done(by_rows);
            FNN_T(fnn_gemm_packed)(fnn_rnn_count(&p, fnn_rnn_rows(lengths, N, t)), u0, p.u1, xcols,
                                   gt + r0 * G, stride * G, packed_hh,
                                   FNN_PACKED_ACCUMULATE | pf_hh, dh_next + r0 * H,
                                   stride * H);
            T *swap = dh_cur;
            dh_cur = dh_next;
            dh_next = swap;
        }
#pragma omp barrier
        /* The gate gradients are complete; what remains are GEMMs and sums
         * over all steps. */
        T *packed = grad_buf + omp_get_thread_num() * grad_ws;
        T *tmp = packed + FNN_T(fnn_packed_size)(grad_kc, grad_cols);
#pragma omp for schedule(static) nowait
        for (int64_t c0 = 0; c0 < xcols; c0 += grad_cols)
            FNN_T(fnn_rnn_param_grads)(c0, fnn_min64(xcols, c0 + grad_cols), split, H, all_rows,
                                       G, In, gates, x, hprev, lengths, N, packed, tmp, dw_ih,
                                       dw_hh, db_ih, db_hh);
#pragma omp for schedule(static)
        for (int64_t rb = 0; rb < row_blocks; rb++) {
            const int64_t r1 = fnn_min64(all_rows, (rb + 1) * FNN_RNN_ROWS);
            for (int64_t r0 = rb * FNN_RNN_ROWS, end; r0 < r1; r0 = end) {
                end = fnn_rnn_run_end(lengths, N, r0, r1);
                if (end == r0) { /* ended rows: a zero gradient */
                    end = fnn_rnn_next_step(N, r0, r1);
                    memset(dx + r0 * In, 0, (size_t)((end - r0) * In) * sizeof(T));
                    continue;
                }
                for (int64_t b = 0; b < blocks; b++) {
                    int64_t src = gru && b == 2 ? 3 : b;
                    FNN_T(fnn_gemm_packed)(end - r0, 0, In, H, gates + r0 * G + src * H, G,
                                           packed_ih + b * xsize,
                                           (b > 0 ? FNN_PACKED_ACCUMULATE : 0) | pf_ih,
                                           dx + r0 * In, In);
                }
            }
        }
    }
    /* The loop swapped the buffers `steps` times. */
    FNN_T(fnn_rnn_copy_rows)(N, H, rows, 0, dhbuf + (steps & 1) * NH, dh0);
    if (lstm) FNN_T(fnn_rnn_copy_rows)(N, H, rows, 0, dc, dc0);
    fnn_block_free(ws);
    return FNN_OK;
}

#undef FNN_SFX2
#undef FNN_SFX1
#undef FNN_T
#undef OP
#endif
