/* Process-wide setup: the instruction set for im2col.c, OpenBLAS threading, and
 * the thread count (OpenMP's own, so OMP_NUM_THREADS and threadpoolctl's
 * "openmp" limit control fastnn without a second knob). */
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>
#include <unistd.h>
#include "blas.h"
#include "fastnn.h"

#ifndef FNN_COMPILER
#define FNN_COMPILER "unknown"
#endif

const fnn_simd_ops *fnn_simd = &fnn_simd_portable;
static int fnn_conv_choice = FNN_CONV_AUTO;
static int64_t fnn_l1_bytes = 32 * 1024, fnn_l2_bytes = 1024 * 1024;

/* FASTNN_SIMD=portable|avx2 asks for a path; one the CPU lacks is not taken. */
static const fnn_simd_ops *choose_simd_ops(void) {
    const char *want = getenv("FASTNN_SIMD");
    int has_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                     __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
    int has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (want && strcmp(want, "portable") == 0) return &fnn_simd_portable;
    if (want && strcmp(want, "avx2") == 0) return has_avx2 ? &fnn_simd_avx2 : &fnn_simd_portable;
    if (has_avx512) return &fnn_simd_avx512;
    if (has_avx2) return &fnn_simd_avx2;
    return &fnn_simd_portable;
}

static void fnn_cache_register_fork(void);

void fnn_init(void) {
    __builtin_cpu_init();
    fnn_cache_register_fork();
    fnn_simd = choose_simd_ops();
    const char *conv = getenv("FASTNN_CONV");
    if (conv && strcmp(conv, "gemm") == 0) fnn_conv_choice = FNN_CONV_GEMM;
    if (conv && strcmp(conv, "winograd") == 0) fnn_conv_choice = FNN_CONV_WINOGRAD;
#if defined(_SC_LEVEL1_DCACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE)
    long l1 = sysconf(_SC_LEVEL1_DCACHE_SIZE), l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (l1 > 0) fnn_l1_bytes = l1;
    if (l2 > 0) fnn_l2_bytes = l2;
#endif
    /* OpenMP does all parallel work; a threaded OpenBLAS inside it oversubscribes
     * (DESIGN.md section 2: 110-125 against 156-159 GFLOP/s). */
    fnn_blas_set_num_threads(1);
}

/* The count set_num_threads gave (0: none), for every thread of the process.
 * OpenMP's own count is per thread: omp_set_num_threads, and threadpoolctl,
 * which calls it, change the calling thread's only, and a thread that Python
 * starts later begins from OMP_NUM_THREADS. So every parallel region asks
 * fnn_get_num_threads: the calling thread's OpenMP count, capped by this one
 * (a worker thread of a program that set 1 must not start 2 more). */
static atomic_int fnn_threads_given;

void fnn_set_num_threads(int n) {
    n = n > 0 ? n : 1;
    atomic_store(&fnn_threads_given, n);
    omp_set_num_threads(n);
}

void fnn_set_own_threads(int n) { omp_set_num_threads(n > 0 ? n : 1); }

int fnn_get_num_threads(void) {
    int own = omp_get_max_threads(), given = atomic_load(&fnn_threads_given);
    return given > 0 && given < own ? given : own;
}
/* Large blocks: kernels' workspaces and (through the Python layer) their
 * outputs. glibc hands freed memory above its trim threshold back to the
 * kernel, so a block of tens of MB was mapped again, page by page, and zeroed
 * by the kernel on every call:
 * - a 3x3 512->512 forward+backward on 7x7 at batch 16: 12% of the time in
 *   page faults of its workspace (under 1% cached: 1.13-1.15x less CPU time);
 * - the 7x7 stride-2 stem's 51 MB output at batch 16: 14% of its forward.
 * So released blocks are kept, up to FNN_CACHE_BLOCKS of them and
 * FNN_CACHE_KEEP bytes in all, the oldest dropped first, and a request takes
 * the smallest cached block of its kind that fits it without wasting more than
 * a quarter of it (an output may be kept long). A block's capacity and kind sit
 * in a header before it; a spin lock guards the cache for the few
 * instructions of a lookup.
 *
 * FNN_BLOCK_HUGE asks for transparent huge pages: fnn_gemm_rows reads a
 * column matrix's rows thousands of bytes apart, one 4 KB page each, more pages
 * than the first-level TLB holds (on a 7x7 stride-2 stem, 1.26x faster on huge
 * pages), and NumPy puts arrays of 4 MB and more on them too. Winograd keeps
 * small pages: on huge ones, physically contiguous, its power-of-two strides
 * fell into the same L2 sets (a 3x3 256->256 on 14x14 at batch 1 ran
 * 0.69-0.75x). */
#define FNN_BLOCK_HEADER ((size_t)64)
#define FNN_CACHE_KEEP ((size_t)256 << 20)
#define FNN_CACHE_BLOCKS 8
#define FNN_HUGE_PAGE ((size_t)2 << 20)
static struct {
    atomic_flag busy;
    size_t *block[FNN_CACHE_BLOCKS]; /* oldest first */
    int count;
    size_t bytes;
} fnn_cache = {ATOMIC_FLAG_INIT, {NULL}, 0, 0};

static void fnn_cache_lock(void) {
    while (atomic_flag_test_and_set_explicit(&fnn_cache.busy, memory_order_acquire)) {
    }
}
static void fnn_cache_unlock(void) {
    atomic_flag_clear_explicit(&fnn_cache.busy, memory_order_release);
}

/* fork() while another thread holds the lock would leave the child's cache
 * locked, or half updated: the fork waits for the lock, and both sides free it. */
static void fnn_cache_register_fork(void) {
    static atomic_flag registered = ATOMIC_FLAG_INIT;
    if (!atomic_flag_test_and_set(&registered))
        pthread_atfork(fnn_cache_lock, fnn_cache_unlock, fnn_cache_unlock);
}

/* Removes block i from the cache and returns it. */
static size_t *fnn_cache_take(int i) {
    size_t *h = fnn_cache.block[i];
    memmove(fnn_cache.block + i, fnn_cache.block + i + 1,
            (size_t)(fnn_cache.count - i - 1) * sizeof(size_t *));
    fnn_cache.count--;
    fnn_cache.bytes -= h[0];
    return h;
}

void *fnn_block_alloc(size_t bytes, int kind) {
    if (bytes > SIZE_MAX - FNN_BLOCK_HEADER - FNN_HUGE_PAGE) return NULL;
    /* under half a huge page, small pages: no TLB to spare there */
    const size_t huge = kind == FNN_BLOCK_HUGE && bytes >= FNN_HUGE_PAGE / 2;
    const size_t total = huge ? (FNN_BLOCK_HEADER + bytes + FNN_HUGE_PAGE - 1) / FNN_HUGE_PAGE *
                                    FNN_HUGE_PAGE
                              : FNN_BLOCK_HEADER + bytes;
    const size_t fresh = total - FNN_BLOCK_HEADER; /* the capacity of a new block */
    size_t *h = NULL;
    fnn_cache_lock();
    int best = -1;
    for (int i = 0; i < fnn_cache.count; i++) {
        size_t *b = fnn_cache.block[i];
        if (b[1] == huge && b[0] >= bytes && b[0] - fresh <= fresh / 4 &&
            (best < 0 || b[0] < fnn_cache.block[best][0]))
            best = i;
    }
    if (best >= 0) h = fnn_cache_take(best);
    fnn_cache_unlock();
    if (h) return (char *)h + FNN_BLOCK_HEADER;
    if (huge) {
        h = aligned_alloc(FNN_HUGE_PAGE, total);
        if (h) madvise(h, total, MADV_HUGEPAGE); /* advice: failure is harmless */
    } else { /* 64-byte aligned, past the header too: outputs are vectors' arrays */
        h = aligned_alloc(FNN_BLOCK_HEADER, (total + FNN_BLOCK_HEADER - 1) / FNN_BLOCK_HEADER *
                                                FNN_BLOCK_HEADER);
    }
    if (!h) return NULL;
    h[0] = fresh;
    h[1] = huge;
    return (char *)h + FNN_BLOCK_HEADER;
}

void fnn_block_free(void *p) {
    if (!p) return;
    size_t *h = (size_t *)((char *)p - FNN_BLOCK_HEADER), *drop[FNN_CACHE_BLOCKS + 1];
    int n = 0;
    fnn_cache_lock();
    if (h[0] > FNN_CACHE_KEEP) {
        drop[n++] = h;
    } else {
        while (fnn_cache.count == FNN_CACHE_BLOCKS || fnn_cache.bytes + h[0] > FNN_CACHE_KEEP)
            drop[n++] = fnn_cache_take(0);
        fnn_cache.block[fnn_cache.count++] = h;
        fnn_cache.bytes += h[0];
    }
    fnn_cache_unlock();
    while (n > 0) free(drop[--n]);
}

void fnn_block_release_cached(void) {
    size_t *drop[FNN_CACHE_BLOCKS];
    int n = 0;
    fnn_cache_lock();
    while (fnn_cache.count > 0) drop[n++] = fnn_cache_take(0);
    fnn_cache_unlock();
    while (n > 0) free(drop[--n]);
}

const char *fnn_simd_name(void) { return fnn_simd->name; }
int fnn_conv_algorithm(void) { return fnn_conv_choice; }
int64_t fnn_cache_bytes(int level) { return level == 1 ? fnn_l1_bytes : fnn_l2_bytes; }
const char *fnn_compiler(void) { return FNN_COMPILER; }
const char *fnn_blas_config(void) { return fnn_blas_get_config(); }
const char *fnn_blas_core(void) { return fnn_blas_get_core(); }
