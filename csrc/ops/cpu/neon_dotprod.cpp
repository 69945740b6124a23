// NEON with the ARMv8.2 dot product extension (sdot), compiled with
// -march=armv8.2-a+dotprod+fp16: the quantized-weight kernels of neon_impl.h built on vdotq_s32.
// neon.cpp's neon_table() takes these entries when the CPU reports dotprod (HWCAP_ASIMDDP).
#include "ops/cpu/neon_impl.h"

namespace unigemma::cpu {

namespace {

struct DotProd {
    static int32x4_t dot2(int32x4_t acc, int8x16_t a0, int8x16_t b0, int8x16_t a1, int8x16_t b1) {
        return vdotq_s32(vdotq_s32(acc, a0, b0), a1, b1);
    }
    static int32x4_t dot1(int32x4_t acc, int8x16_t a, int8x16_t b) { return vdotq_s32(acc, a, b); }
};

}  // namespace

void neon_dotprod_fill(KernelTable& t) { fill_quantized<DotProd>(t); }

}  // namespace unigemma::cpu
