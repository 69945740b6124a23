// UG_UNROLL: full unrolling of the small constant loops over tile rows / columns / unroll
// slots in the SIMD kernels, so their accumulators stay in registers at any optimization level.
#pragma once

#if defined(__clang__)
#define UG_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define UG_UNROLL _Pragma("GCC unroll 16")
#else
#define UG_UNROLL
#endif
