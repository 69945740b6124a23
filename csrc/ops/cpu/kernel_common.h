// Pieces every kernel file (scalar.cpp, avx2.cpp, avx512.cpp, neon*.cpp) shares.
// Everything here is in an anonymous namespace on purpose: each file is compiled with its
// own target flags, so each must get its own copy; an inline symbol with external linkage
// could be kept by the linker from an AVX-512 object and run on the scalar path.
#pragma once
#include <cstddef>
#include <cstdint>

#include "quant/fp16.h"

namespace unigemma::cpu {
namespace {

// Activation scales (bit-identical on every path).
// fp16 of a non-negative value, saturated at the largest finite fp16.
inline uint16_t scale_to_fp16(float d) {
    const uint16_t h = quant::fp32_to_fp16(d);
    return (h & 0x7fffu) >= 0x7c00u ? static_cast<uint16_t>(0x7bffu) : h;
}

// fp16 of a non-negative scale rounded *up* (so that |x| / d never exceeds 127), saturated.
inline uint16_t scale_to_fp16_up(float d) {
    uint16_t h = scale_to_fp16(d);
    if (quant::fp16_to_fp32(h) < d && h < 0x7bffu) ++h;
    return h;
}

// Tile dispatch: Kn<R, C>::run computes an R-row x C-column tile (kernels.h TileDotFn).
using RunFn = void (*)(int64_t, float*, int64_t, const uint8_t*, size_t, const uint8_t*, size_t);

template <template <int, int> class Kn>
void tile_fn(int64_t n, int nr, int nc, float* out, int64_t os, const void* w, size_t ws, const void* x,
             size_t xs) {
    static constexpr RunFn tbl[4][4] = {
        {Kn<1, 1>::run, Kn<1, 2>::run, Kn<1, 3>::run, Kn<1, 4>::run},
        {Kn<2, 1>::run, Kn<2, 2>::run, Kn<2, 3>::run, Kn<2, 4>::run},
        {Kn<3, 1>::run, Kn<3, 2>::run, Kn<3, 3>::run, Kn<3, 4>::run},
        {Kn<4, 1>::run, Kn<4, 2>::run, Kn<4, 3>::run, Kn<4, 4>::run},
    };
    tbl[nr - 1][nc - 1](n, out, os, static_cast<const uint8_t*>(w), ws, static_cast<const uint8_t*>(x), xs);
}

template <template <int, int> class Kn>
void vec_fn(int64_t n, float* out, const void* w, const void* x) {
    Kn<1, 1>::run(n, out, 1, static_cast<const uint8_t*>(w), 0, static_cast<const uint8_t*>(x), 0);
}

}  // namespace
}  // namespace unigemma::cpu
