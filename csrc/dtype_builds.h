/* Compile the kernel file named by FNN_DTYPE_SOURCE once per dtype: T float,
 * SFX f32 and FNN_F32 1, then T double, SFX f64 and FNN_F32 0 (for #if).
 * Included from a kernel file that includes itself, as isa_builds.h is; no
 * include guard, by design. */
#define T float
#define SFX f32
#define FNN_F32 1
#include FNN_DTYPE_SOURCE
#undef T
#undef SFX
#undef FNN_F32

#define T double
#define SFX f64
#define FNN_F32 0
#include FNN_DTYPE_SOURCE
#undef T
#undef SFX
#undef FNN_F32
