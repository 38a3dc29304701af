/* Compile the kernel file named by FNN_ISA_SOURCE once per instruction set:
 * FNN_ISA is portable, avx2 or avx512 (FNN_ISA_LEVEL 0, 1, 2, for #if), each
 * build under its GCC target, and
 * FNN_NAME(base) names a function of the build (base_isa_sfx, SFX being the
 * dtype suffix the file defines). runtime.c picks one set at import
 * (FASTNN_SIMD=portable|avx2 forces one). Included from the top level of a
 * kernel file that includes itself; no include guard, by design. */
#ifndef FNN_NAME
#define FNN_NAME3(base, isa, sfx) base##_##isa##_##sfx
#define FNN_NAME2(base, isa, sfx) FNN_NAME3(base, isa, sfx)
#define FNN_NAME(base) FNN_NAME2(base, FNN_ISA, SFX)
#endif

#define FNN_ISA portable
#define FNN_ISA_LEVEL 0
#include FNN_ISA_SOURCE
#undef FNN_ISA
#undef FNN_ISA_LEVEL

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define FNN_ISA avx2
#define FNN_ISA_LEVEL 1
#include FNN_ISA_SOURCE
#undef FNN_ISA
#undef FNN_ISA_LEVEL
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,prefer-vector-width=512")
#define FNN_ISA avx512
#define FNN_ISA_LEVEL 2
#include FNN_ISA_SOURCE
#undef FNN_ISA
#undef FNN_ISA_LEVEL
#pragma GCC pop_options
