/* Process-wide setup: the instruction set for im2col.c, OpenBLAS threading, and
 * the thread count (OpenMP's own, so OMP_NUM_THREADS and threadpoolctl's
 * "openmp" limit control fastnn without a second knob). */
#include <omp.h>
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

void fnn_init(void) {
    __builtin_cpu_init();
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

int fnn_get_num_threads(void) {
    int own = omp_get_max_threads(), given = atomic_load(&fnn_threads_given);
    return given > 0 && given < own ? given : own;
}
/* Workspaces. glibc hands freed memory above its trim threshold back to the
 * kernel, so a workspace of tens of MB was mapped again, page by page, on
 * every call: 12% of a 3x3 512->512 forward+backward on 7x7 at batch 16 went
 * to page faults (under 1% with the cache: 1.13-1.15x less CPU time). One
 * cached buffer per kind, the largest released, in a slot that calls exchange
 * atomically (whatever is in the slot belongs to the cache): concurrent calls
 * each take it or allocate their own, and no lock is held. A buffer's
 * capacity and kind sit in a header before it; over FNN_WORKSPACE_KEEP bytes
 * it is not kept.
 *
 * FNN_WORKSPACE_HUGE asks for transparent huge pages: fnn_gemm_rows reads a
 * column matrix's rows thousands of bytes apart, one 4 KB page each, more pages
 * than the first-level TLB holds (on a 7x7 stride-2 stem, 1.26x faster on huge
 * pages). Other kernels keep small pages: on huge ones, physically contiguous,
 * Winograd's power-of-two strides fell into the same L2 sets (a 3x3 256->256
 * on 14x14 at batch 1 ran 0.69-0.75x). */
#define FNN_WORKSPACE_HEADER ((size_t)64)
#define FNN_WORKSPACE_KEEP ((size_t)256 << 20)
#define FNN_HUGE_PAGE ((size_t)2 << 20)
static _Atomic(size_t *) fnn_workspace_slot[2];

void *fnn_workspace_alloc(size_t bytes, int kind) {
    const int huge = kind == FNN_WORKSPACE_HUGE;
    size_t *h = atomic_exchange(&fnn_workspace_slot[huge], NULL);
    if (h && h[0] >= bytes) return (char *)h + FNN_WORKSPACE_HEADER;
    free(h);
    if (bytes > SIZE_MAX - FNN_WORKSPACE_HEADER - FNN_HUGE_PAGE) return NULL;
    size_t total = FNN_WORKSPACE_HEADER + bytes;
    if (huge) {
        total = (total + FNN_HUGE_PAGE - 1) / FNN_HUGE_PAGE * FNN_HUGE_PAGE;
        h = aligned_alloc(FNN_HUGE_PAGE, total);
        if (h) madvise(h, total, MADV_HUGEPAGE); /* advice: failure is harmless */
    } else {
        h = malloc(total);
    }
    if (!h) return NULL;
    h[0] = total - FNN_WORKSPACE_HEADER;
    h[1] = (size_t)huge;
    return (char *)h + FNN_WORKSPACE_HEADER;
}

void fnn_workspace_free(void *p) {
    if (!p) return;
    size_t *h = (size_t *)((char *)p - FNN_WORKSPACE_HEADER), *old = h;
    if (h[0] <= FNN_WORKSPACE_KEEP) {
        _Atomic(size_t *) *slot = &fnn_workspace_slot[h[1]];
        old = atomic_exchange(slot, h);
        if (old && old[0] > h[0]) old = atomic_exchange(slot, old);
    }
    free(old);
}

const char *fnn_simd_name(void) { return fnn_simd->name; }
int fnn_conv_algorithm(void) { return fnn_conv_choice; }
int64_t fnn_cache_bytes(int level) { return level == 1 ? fnn_l1_bytes : fnn_l2_bytes; }
const char *fnn_compiler(void) { return FNN_COMPILER; }
const char *fnn_blas_config(void) { return fnn_blas_get_config(); }
