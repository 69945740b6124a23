// Panel kernels, scalar reference (layouts and arithmetic: panels.h). Every SIMD
// path must match it bit for bit: the integer block dot is exact and the float steps are
// the same rounded operations in the same order.
#include <cmath>
#include <cstring>

#include "ops/cpu/kernels.h"
#include "quant/fp16.h"

namespace unigemma::cpu {

namespace {

void q4_0_panels_scalar(int64_t nb, int nc, float* out, int64_t os, const uint8_t* panel, const uint8_t* act,
                        size_t as) {
    for (int c = 0; c < nc; ++c) {
        const uint8_t* at = act + static_cast<size_t>(c) * as;
        const auto* xq = reinterpret_cast<const int8_t*>(at);
        float xd[1];
        int32_t xs[1];
        float acc[16] = {};
        for (int64_t b = 0; b < nb; ++b) {
            const uint8_t* pb = panel + b * 288;
            std::memcpy(xd, at + nb * 32 + 4 * b, 4);
            std::memcpy(xs, at + nb * 36 + 4 * b, 4);
            const int8_t* x = xq + 32 * b;
            for (int i = 0; i < 16; ++i) {
                int32_t dot = 0;
                for (int j = 0; j < 4; ++j)
                    for (int e = 0; e < 4; ++e) {
                        const uint8_t v = pb[64 * j + 4 * i + e];
                        dot += (v & 0x0f) * x[4 * j + e] + (v >> 4) * x[16 + 4 * j + e];
                    }
                uint16_t h;
                std::memcpy(&h, pb + 256 + 2 * i, 2);
                const float scale = quant::fp16_to_fp32(h) * xd[0];
                acc[i] = std::fma(static_cast<float>(dot - xs[0]), scale, acc[i]);
            }
        }
        std::memcpy(out + c * os, acc, sizeof(acc));
    }
}

void q4_k_panels_scalar(int64_t nb, int nc, float* out, int64_t os, const uint8_t* panel, const uint8_t* act,
                        size_t as) {
    const int64_t cols = nb * 256;
    for (int c = 0; c < nc; ++c) {
        const uint8_t* at = act + static_cast<size_t>(c) * as;
        float acc[16] = {};
        for (int64_t s = 0; s < nb; ++s) {
            const uint8_t* pb = panel + s * 2368;
            const auto* xq = reinterpret_cast<const int8_t*>(at) + 256 * s;
            float xd;
            std::memcpy(&xd, at + cols + 4 * s, 4);
            int32_t xs[8];
            std::memcpy(xs, at + cols + 4 * nb + 32 * s, 32);
            for (int i = 0; i < 16; ++i) {
                int32_t isum = 0, msum = 0;
                for (int j = 0; j < 8; ++j) {
                    const int ch = j / 2, hi = j % 2;
                    int32_t dot = 0;
                    for (int g = 0; g < 8; ++g)
                        for (int e = 0; e < 4; ++e) {
                            const uint8_t v = pb[64 * (8 * ch + g) + 4 * i + e];
                            dot += (hi ? v >> 4 : v & 0x0f) * xq[32 * j + 4 * g + e];
                        }
                    isum += pb[2048 + 16 * j + i] * dot;
                    msum += pb[2176 + 16 * j + i] * xs[j];
                }
                uint16_t h, hm;
                std::memcpy(&h, pb + 2304 + 2 * i, 2);
                std::memcpy(&hm, pb + 2336 + 2 * i, 2);
                const float dd = quant::fp16_to_fp32(h) * xd;
                const float dm = quant::fp16_to_fp32(hm) * xd;
                acc[i] = std::fma(static_cast<float>(isum), dd, acc[i]);
                acc[i] = std::fma(static_cast<float>(msum), -dm, acc[i]);
            }
        }
        std::memcpy(out + c * os, acc, sizeof(acc));
    }
}

void q6_k_panels_scalar(int64_t nb, int nc, float* out, int64_t os, const uint8_t* panel, const uint8_t* act,
                        size_t as) {
    const int64_t cols = nb * 256;
    for (int c = 0; c < nc; ++c) {
        const uint8_t* at = act + static_cast<size_t>(c) * as;
        float acc[16] = {};
        for (int64_t s = 0; s < nb; ++s) {
            const uint8_t* pb = panel + s * 3424;
            const uint8_t* xu = at + 256 * s;  // q + 128
            float xd;
            std::memcpy(&xd, at + cols + 4 * s, 4);
            for (int i = 0; i < 16; ++i) {
                int32_t t = 0;
                for (int k = 0; k < 16; ++k) {
                    const int h = k / 8, m = (k % 8) / 2, half = k % 2;
                    int32_t dot = 0;
                    for (int g = 4 * half; g < 4 * half + 4; ++g)
                        for (int e = 0; e < 4; ++e) {
                            const uint8_t l = pb[64 * (16 * h + 8 * (m & 1) + g) + 4 * i + e];
                            const uint8_t hb = pb[2048 + 64 * (8 * h + g) + 4 * i + e];
                            const int code = (m < 2 ? l & 0x0f : l >> 4) | (((hb >> (2 * m)) & 3) << 4);
                            const int q = static_cast<int8_t>(xu[128 * h + 32 * m + 4 * g + e] ^ 0x80);
                            dot += q * (code - 32);
                        }
                    t += static_cast<int8_t>(pb[3072 + 16 * k + i]) * dot;
                }
                uint16_t hd;
                std::memcpy(&hd, pb + 3328 + 2 * i, 2);
                acc[i] = std::fma(static_cast<float>(t), quant::fp16_to_fp32(hd) * xd, acc[i]);
            }
        }
        std::memcpy(out + c * os, acc, sizeof(acc));
    }
}

}  // namespace

void add_panel_kernels_scalar(KernelTable& t) {
    t.panel_dot[static_cast<int>(PanelType::Q4_0)] = q4_0_panels_scalar;
    t.panel_dot[static_cast<int>(PanelType::Q4_K)] = q4_k_panels_scalar;
    t.panel_dot[static_cast<int>(PanelType::Q6_K)] = q6_k_panels_scalar;
}

}  // namespace unigemma::cpu
