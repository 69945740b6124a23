// NEON kernel templates shared by neon.cpp (base ARMv8-A: int8 dots with smull/smlal +
// sadalp) and neon_dotprod.cpp (ARMv8.2 sdot). Included only by those two files, which are
// compiled with different target flags: everything here has internal linkage (anonymous
// namespace), so each file gets its own copy and no instruction of the dotprod build can
// leak into the base table through a shared (ODR-merged) symbol.
//
// Same contracts as scalar.cpp. All weight codes fit in int8 once their offset is removed
// (Q4_0: q - 8, Q5_0: q - 16, Q6_K: q - 32; the others are unsigned <= 31), so every
// integer dot here is a plain signed int8 dot.
#pragma once
#include <arm_neon.h>

#include <cfloat>
#include <cmath>
#include <cstring>

#include "ops/cpu/kernel_common.h"
#include "ops/cpu/kernels.h"
#include "quant/block_layouts.h"
#include "quant/fp16.h"

#include "ops/cpu/unroll.h"

namespace unigemma::cpu {
namespace {

using namespace unigemma::quant;

// ------------------------------------------------------------------ helpers

inline float h2f(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

inline uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

inline int8x16_t ld_s8(const uint8_t* p) { return vld1q_s8(reinterpret_cast<const int8_t*>(p)); }

// Integer dot policies: dot2 = a0.b0 + a1.b1 (32 int8 pairs), dot1 = a.b (16 pairs), added
// to acc. Only the horizontal sum of the result is meaningful.
struct DotBase {
    static int32x4_t dot2(int32x4_t acc, int8x16_t a0, int8x16_t b0, int8x16_t a1, int8x16_t b1) {
        // two int8 x int8 products fit in int16 (|p| <= 128 * 127)
        int16x8_t lo = vmull_s8(vget_low_s8(a0), vget_low_s8(b0));
        lo = vmlal_s8(lo, vget_low_s8(a1), vget_low_s8(b1));
        int16x8_t hi = vmull_high_s8(a0, b0);
        hi = vmlal_high_s8(hi, a1, b1);
        return vpadalq_s16(vpadalq_s16(acc, lo), hi);
    }
    static int32x4_t dot1(int32x4_t acc, int8x16_t a, int8x16_t b) {
        const int16x8_t lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        const int16x8_t hi = vmull_high_s8(a, b);
        return vpadalq_s16(vpadalq_s16(acc, lo), hi);
    }
};


template <template <int, int> class Kn>
void set_kernels(KernelTable& t, GGMLType ty) {
    t.vec_dot[static_cast<int>(ty)] = vec_fn<Kn>;
    t.tile_dot[static_cast<int>(ty)] = tile_fn<Kn>;
}

// ------------------------------------------------------------------ float weights

struct LoadF32 {
    static constexpr int kBytes = 4;
    static float32x4_t load(const uint8_t* p) { return vld1q_f32(reinterpret_cast<const float*>(p)); }
    static float one(const uint8_t* p) {
        float v;
        std::memcpy(&v, p, 4);
        return v;
    }
};
struct LoadF16 {
    static constexpr int kBytes = 2;
    static float32x4_t load(const uint8_t* p) {
        return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p))));
    }
    static float one(const uint8_t* p) { return h2f(p); }
};
struct LoadBF16 {
    static constexpr int kBytes = 2;
    static float32x4_t load(const uint8_t* p) {
        return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p)), 16));
    }
    static float one(const uint8_t* p) {
        uint16_t h;
        std::memcpy(&h, p, 2);
        return bf16_to_fp32(h);
    }
};

template <class L>
struct FloatK {
    template <int NR, int NC>
    struct K {
        static void run(int64_t n, float* out, int64_t os, const uint8_t* w, size_t ws, const uint8_t* x,
                        size_t xs) {
            constexpr int U = NR * NC <= 2 ? 4 : 1;
            float32x4_t acc[U][NR][NC];
            UG_UNROLL
            for (int u = 0; u < U; ++u)
                for (int r = 0; r < NR; ++r)
                    for (int c = 0; c < NC; ++c) acc[u][r][c] = vdupq_n_f32(0.0f);
            int64_t i = 0;
            for (; i + 4 * U <= n; i += 4 * U) {
                UG_UNROLL
                for (int u = 0; u < U; ++u) {
                    const int64_t e = i + 4 * u;
                    float32x4_t wv[NR];
                    UG_UNROLL
                    for (int r = 0; r < NR; ++r) wv[r] = L::load(w + r * ws + e * L::kBytes);
                    UG_UNROLL
                    for (int c = 0; c < NC; ++c) {
                        const float32x4_t xv = vld1q_f32(reinterpret_cast<const float*>(x + c * xs) + e);
                        UG_UNROLL
                        for (int r = 0; r < NR; ++r) acc[u][r][c] = vfmaq_f32(acc[u][r][c], wv[r], xv);
                    }
                }
            }
            for (; i + 4 <= n; i += 4) {
                float32x4_t wv[NR];
                for (int r = 0; r < NR; ++r) wv[r] = L::load(w + r * ws + i * L::kBytes);
                for (int c = 0; c < NC; ++c) {
                    const float32x4_t xv = vld1q_f32(reinterpret_cast<const float*>(x + c * xs) + i);
                    for (int r = 0; r < NR; ++r) acc[0][r][c] = vfmaq_f32(acc[0][r][c], wv[r], xv);
                }
            }
            for (int r = 0; r < NR; ++r)
                for (int c = 0; c < NC; ++c) {
                    float32x4_t a = acc[0][r][c];
                    for (int u = 1; u < U; ++u) a = vaddq_f32(a, acc[u][r][c]);
                    float s = vaddvq_f32(a);
                    for (int64_t j = i; j < n; ++j) {
                        float xv;
                        std::memcpy(&xv, x + c * xs + 4 * j, 4);
                        s += L::one(w + r * ws + j * L::kBytes) * xv;
                    }
                    out[c * os + r] = s;
                }
        }
    };
};

// ------------------------------------------------------------------ legacy formats

// One 32-element block as two int8x16 vectors in element order, scale d and min m
// (activations: d and the Q8_1 sum s).
struct Blk {
    int8x16_t v0, v1;
    float d, m;
};

inline Blk nibbles(const uint8_t* qs, int off, float d, float m) {
    const uint8x16_t q = vld1q_u8(qs);
    const int8x16_t o = vdupq_n_s8(static_cast<int8_t>(off));
    return {vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0f))), o),
            vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), o), d, m};
}

// bit i of qh -> 0x10 in byte i (i < 32), as two vectors.
inline void qh_bits(uint32_t qh, uint8x16_t* b0, uint8x16_t* b1) {
    static const uint8_t kBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t bit = vld1q_u8(kBit);
    const uint8x8_t q = vreinterpret_u8_u32(vdup_n_u32(qh));  // bytes 0..3 = qh bytes
    const uint8x16_t lo = vcombine_u8(vdup_lane_u8(q, 0), vdup_lane_u8(q, 1));
    const uint8x16_t hi = vcombine_u8(vdup_lane_u8(q, 2), vdup_lane_u8(q, 3));
    *b0 = vandq_u8(vtstq_u8(lo, bit), vdupq_n_u8(0x10));
    *b1 = vandq_u8(vtstq_u8(hi, bit), vdupq_n_u8(0x10));
}

inline Blk nibbles5(const uint8_t* qs, uint32_t qh, int off, float d, float m) {
    const uint8x16_t q = vld1q_u8(qs);
    uint8x16_t h0, h1;
    qh_bits(qh, &h0, &h1);
    const int8x16_t o = vdupq_n_s8(static_cast<int8_t>(off));
    return {vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q, vdupq_n_u8(0x0f)), h0)), o),
            vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q, 4), h1)), o), d, m};
}

struct FQ8_0 {
    static constexpr int kW = 34, kX = 34;
    static constexpr bool kMin = false;
    static Blk load_w(const uint8_t* b) { return {ld_s8(b + 2), ld_s8(b + 18), h2f(b), 0.0f}; }
    static Blk load_x(const uint8_t* b) { return {ld_s8(b + 2), ld_s8(b + 18), h2f(b), 0.0f}; }
};
struct FQ4_0 {
    static constexpr int kW = 18, kX = 34;
    static constexpr bool kMin = false;
    static Blk load_w(const uint8_t* b) { return nibbles(b + 2, 8, h2f(b), 0.0f); }
    static Blk load_x(const uint8_t* b) { return FQ8_0::load_x(b); }
};
struct FQ5_0 {
    static constexpr int kW = 22, kX = 34;
    static constexpr bool kMin = false;
    static Blk load_w(const uint8_t* b) { return nibbles5(b + 6, load_u32(b + 2), 16, h2f(b), 0.0f); }
    static Blk load_x(const uint8_t* b) { return FQ8_0::load_x(b); }
};
inline Blk x_q8_1(const uint8_t* b) { return {ld_s8(b + 4), ld_s8(b + 20), h2f(b), h2f(b + 2)}; }
struct FQ4_1 {
    static constexpr int kW = 20, kX = 36;
    static constexpr bool kMin = true;
    static Blk load_w(const uint8_t* b) { return nibbles(b + 4, 0, h2f(b), h2f(b + 2)); }
    static Blk load_x(const uint8_t* b) { return x_q8_1(b); }
};
struct FQ5_1 {
    static constexpr int kW = 24, kX = 36;
    static constexpr bool kMin = true;
    static Blk load_w(const uint8_t* b) { return nibbles5(b + 8, load_u32(b + 4), 0, h2f(b), h2f(b + 2)); }
    static Blk load_x(const uint8_t* b) { return x_q8_1(b); }
};

template <class D, class F>
struct LegacyK {
    template <int NR, int NC>
    struct K {
        static void step(int64_t i, float32x4_t (&acc)[NR][NC], float (&ext)[NR][NC], const uint8_t* w, size_t ws,
                         const uint8_t* x, size_t xs) {
            Blk wb[NR];
            UG_UNROLL
            for (int r = 0; r < NR; ++r) wb[r] = F::load_w(w + r * ws + i * F::kW);
            UG_UNROLL
            for (int c = 0; c < NC; ++c) {
                const Blk xb = F::load_x(x + c * xs + i * F::kX);
                UG_UNROLL
                for (int r = 0; r < NR; ++r) {
                    const int32x4_t p = D::dot2(vdupq_n_s32(0), wb[r].v0, xb.v0, wb[r].v1, xb.v1);
                    acc[r][c] = vfmaq_n_f32(acc[r][c], vcvtq_f32_s32(p), wb[r].d * xb.d);
                    if constexpr (F::kMin) ext[r][c] += wb[r].m * xb.m;
                }
            }
        }
        static void run(int64_t n, float* out, int64_t os, const uint8_t* w, size_t ws, const uint8_t* x,
                        size_t xs) {
            // One accumulator per (row, column) whatever the tile shape: a row kernel (1 x 1) and
            // every tile position sum the blocks in the same order, so a token gets the same bits
            // alone (decode) and in a batch (prefill, speculative verification).
            constexpr int U = 1;
            float32x4_t acc[U][NR][NC];
            float ext[NR][NC];
            UG_UNROLL
            for (int r = 0; r < NR; ++r)
                for (int c = 0; c < NC; ++c) {
                    ext[r][c] = 0.0f;
                    for (int u = 0; u < U; ++u) acc[u][r][c] = vdupq_n_f32(0.0f);
                }
            const int64_t nb = n / 32;
            int64_t i = 0;
            for (; i + U <= nb; i += U) {
                UG_UNROLL
                for (int u = 0; u < U; ++u) step(i + u, acc[u], ext, w, ws, x, xs);
            }
            for (; i < nb; ++i) step(i, acc[0], ext, w, ws, x, xs);
            for (int r = 0; r < NR; ++r)
                for (int c = 0; c < NC; ++c) {
                    float32x4_t a = acc[0][r][c];
                    for (int u = 1; u < U; ++u) a = vaddq_f32(a, acc[u][r][c]);
                    out[c * os + r] = vaddvq_f32(a) + ext[r][c];
                }
        }
    };
};

// ------------------------------------------------------------------ K-quants

inline void unpack_k4_scales(const uint8_t* s, uint8_t* sc, uint8_t* m) {
    const uint32_t u0 = load_u32(s), u1 = load_u32(s + 4), u2 = load_u32(s + 8);
    const uint32_t a = u0 & 0x3f3f3f3fu, b = u1 & 0x3f3f3f3fu;
    const uint32_t c = (u2 & 0x0f0f0f0fu) | ((u0 >> 2) & 0x30303030u);
    const uint32_t d = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 2) & 0x30303030u);
    std::memcpy(sc, &a, 4);
    std::memcpy(sc + 4, &c, 4);
    std::memcpy(m, &b, 4);
    std::memcpy(m + 4, &d, 4);
}

inline float q8k_d(const uint8_t* b) {
    float d;
    std::memcpy(&d, b, 4);
    return d;
}

// sum_j m[j] * (bsums[2j] + bsums[2j + 1]) of one Q8_K block.
inline int min_sum(const uint8_t* mn, const uint8_t* xb) {
    const int16x8_t b0 = vld1q_s16(reinterpret_cast<const int16_t*>(xb + 260));
    const int16x8_t b1 = vld1q_s16(reinterpret_cast<const int16_t*>(xb + 276));
    const int16x8_t pairs = vpaddq_s16(b0, b1);
    const int16x8_t m16 = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mn)));
    const int32x4_t p = vmlal_high_s16(vmull_s16(vget_low_s16(m16), vget_low_s16(pairs)), m16, pairs);
    return vaddvq_s32(p);
}

template <class D, bool Q5>
struct Q45K {
    template <int NR, int NC>
    struct K {
        static constexpr int kW = Q5 ? 176 : 144;
        static void run(int64_t n, float* out, int64_t os, const uint8_t* w, size_t ws, const uint8_t* x,
                        size_t xs) {
            float32x4_t acc[NR][NC];
            float macc[NR][NC];
            UG_UNROLL
            for (int r = 0; r < NR; ++r)
                for (int c = 0; c < NC; ++c) {
                    acc[r][c] = vdupq_n_f32(0.0f);
                    macc[r][c] = 0.0f;
                }
            const uint8x16_t m4 = vdupq_n_u8(0x0f);
            const int64_t nb = n / 256;
            for (int64_t i = 0; i < nb; ++i) {
                float d[NR], dmin[NR];
                uint8_t sc[NR][8], mn[NR][8];
                const uint8_t* wb[NR];
                const uint8_t* xb[NC];
                UG_UNROLL
                for (int r = 0; r < NR; ++r) {
                    wb[r] = w + r * ws + i * kW;
                    d[r] = h2f(wb[r]);
                    dmin[r] = h2f(wb[r] + 2);
                    unpack_k4_scales(wb[r] + 4, sc[r], mn[r]);
                }
                UG_UNROLL
                for (int c = 0; c < NC; ++c) xb[c] = x + c * xs + i * 292;
                int32x4_t isum[NR][NC];
                UG_UNROLL
                for (int r = 0; r < NR; ++r)
                    for (int c = 0; c < NC; ++c) isum[r][c] = vdupq_n_s32(0);
                UG_UNROLL
                for (int j = 0; j < 4; ++j) {
                    int8x16_t lo0[NR], lo1[NR], hi0[NR], hi1[NR];
                    UG_UNROLL
                    for (int r = 0; r < NR; ++r) {
                        const uint8_t* qs = wb[r] + (Q5 ? 48 : 16) + 32 * j;
                        const uint8x16_t q0 = vld1q_u8(qs), q1 = vld1q_u8(qs + 16);
                        uint8x16_t l0 = vandq_u8(q0, m4), l1 = vandq_u8(q1, m4);
                        uint8x16_t h0 = vshrq_n_u8(q0, 4), h1 = vshrq_n_u8(q1, 4);
                        if constexpr (Q5) {
                            const uint8x16_t qh0 = vld1q_u8(wb[r] + 16), qh1 = vld1q_u8(wb[r] + 32);
                            const uint8x16_t bl = vdupq_n_u8(static_cast<uint8_t>(1u << (2 * j)));
                            const uint8x16_t bh = vdupq_n_u8(static_cast<uint8_t>(2u << (2 * j)));
                            const uint8x16_t x10 = vdupq_n_u8(0x10);
                            l0 = vorrq_u8(l0, vandq_u8(vtstq_u8(qh0, bl), x10));
                            l1 = vorrq_u8(l1, vandq_u8(vtstq_u8(qh1, bl), x10));
                            h0 = vorrq_u8(h0, vandq_u8(vtstq_u8(qh0, bh), x10));
                            h1 = vorrq_u8(h1, vandq_u8(vtstq_u8(qh1, bh), x10));
                        }
                        lo0[r] = vreinterpretq_s8_u8(l0);
                        lo1[r] = vreinterpretq_s8_u8(l1);
                        hi0[r] = vreinterpretq_s8_u8(h0);
                        hi1[r] = vreinterpretq_s8_u8(h1);
                    }
                    UG_UNROLL
                    for (int c = 0; c < NC; ++c) {
                        const uint8_t* q8 = xb[c] + 4 + 64 * j;
                        const int8x16_t x0 = ld_s8(q8), x1 = ld_s8(q8 + 16), x2 = ld_s8(q8 + 32), x3 = ld_s8(q8 + 48);
                        UG_UNROLL
                        for (int r = 0; r < NR; ++r) {
                            const int32x4_t pl = D::dot2(vdupq_n_s32(0), lo0[r], x0, lo1[r], x1);
                            const int32x4_t ph = D::dot2(vdupq_n_s32(0), hi0[r], x2, hi1[r], x3);
                            isum[r][c] = vmlaq_n_s32(isum[r][c], pl, sc[r][2 * j]);
                            isum[r][c] = vmlaq_n_s32(isum[r][c], ph, sc[r][2 * j + 1]);
                        }
                    }
                }
                UG_UNROLL
                for (int c = 0; c < NC; ++c) {
                    const float dx = q8k_d(xb[c]);
                    UG_UNROLL
                    for (int r = 0; r < NR; ++r) {
                        acc[r][c] = vfmaq_n_f32(acc[r][c], vcvtq_f32_s32(isum[r][c]), d[r] * dx);
                        macc[r][c] += (dmin[r] * dx) * static_cast<float>(min_sum(mn[r], xb[c]));
                    }
                }
            }
            for (int r = 0; r < NR; ++r)
                for (int c = 0; c < NC; ++c) out[c * os + r] = vaddvq_f32(acc[r][c]) - macc[r][c];
        }
    };
};

template <class D>
struct Q6KT {
    template <int NR, int NC>
    struct K {
        static void run(int64_t n, float* out, int64_t os, const uint8_t* w, size_t ws, const uint8_t* x,
                        size_t xs) {
            float32x4_t acc[NR][NC];
            UG_UNROLL
            for (int r = 0; r < NR; ++r)
                for (int c = 0; c < NC; ++c) acc[r][c] = vdupq_n_f32(0.0f);
            const uint8x16_t m4 = vdupq_n_u8(0x0f), m30 = vdupq_n_u8(0x30);
            const int8x16_t o32 = vdupq_n_s8(32);
            const int64_t nb = n / 256;
            for (int64_t i = 0; i < nb; ++i) {
                const uint8_t* wb[NR];
                const uint8_t* xb[NC];
                float d[NR];
                UG_UNROLL
                for (int r = 0; r < NR; ++r) {
                    wb[r] = w + r * ws + i * 210;
                    d[r] = h2f(wb[r] + 208);
                }
                UG_UNROLL
                for (int c = 0; c < NC; ++c) xb[c] = x + c * xs + i * 292;
                int32x4_t isum[NR][NC];
                UG_UNROLL
                for (int r = 0; r < NR; ++r)
                    for (int c = 0; c < NC; ++c) isum[r][c] = vdupq_n_s32(0);
                // 8 groups g of 32 elements (128h + 32v + l): q = ql nibble | qh bits << 4, - 32
                UG_UNROLL
                for (int g = 0; g < 8; ++g) {
                    const int h = g / 4, v = g % 4;
                    int8x16_t q0[NR], q1[NR];
                    UG_UNROLL
                    for (int r = 0; r < NR; ++r) {
                        const uint8_t* ql = wb[r] + 64 * h + 32 * (v % 2);
                        const uint8_t* qh = wb[r] + 128 + 32 * h;
                        uint8x16_t l0 = vld1q_u8(ql), l1 = vld1q_u8(ql + 16);
                        uint8x16_t h0 = vld1q_u8(qh), h1 = vld1q_u8(qh + 16);
                        if (v < 2) {
                            l0 = vandq_u8(l0, m4);
                            l1 = vandq_u8(l1, m4);
                        } else {
                            l0 = vshrq_n_u8(l0, 4);
                            l1 = vshrq_n_u8(l1, 4);
                        }
                        // bits 2v, 2v + 1 of qh -> bits 4, 5
                        const int sh = 2 * v;
                        if (sh <= 4) {
                            h0 = vshlq_u8(h0, vdupq_n_s8(static_cast<int8_t>(4 - sh)));
                            h1 = vshlq_u8(h1, vdupq_n_s8(static_cast<int8_t>(4 - sh)));
                        } else {
                            h0 = vshrq_n_u8(h0, 2);
                            h1 = vshrq_n_u8(h1, 2);
                        }
                        q0[r] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(l0, vandq_u8(h0, m30))), o32);
                        q1[r] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(l1, vandq_u8(h1, m30))), o32);
                    }
                    UG_UNROLL
                    for (int c = 0; c < NC; ++c) {
                        const uint8_t* q8 = xb[c] + 4 + 32 * g;
                        const int8x16_t x0 = ld_s8(q8), x1 = ld_s8(q8 + 16);
                        UG_UNROLL
                        for (int r = 0; r < NR; ++r) {
                            const int8_t* sc = reinterpret_cast<const int8_t*>(wb[r] + 192) + 2 * g;
                            isum[r][c] = vmlaq_n_s32(isum[r][c], D::dot1(vdupq_n_s32(0), q0[r], x0), sc[0]);
                            isum[r][c] = vmlaq_n_s32(isum[r][c], D::dot1(vdupq_n_s32(0), q1[r], x1), sc[1]);
                        }
                    }
                }
                UG_UNROLL
                for (int c = 0; c < NC; ++c) {
                    const float dx = q8k_d(xb[c]);
                    UG_UNROLL
                    for (int r = 0; r < NR; ++r)
                        acc[r][c] = vfmaq_n_f32(acc[r][c], vcvtq_f32_s32(isum[r][c]), d[r] * dx);
                }
            }
            for (int r = 0; r < NR; ++r)
                for (int c = 0; c < NC; ++c) out[c * os + r] = vaddvq_f32(acc[r][c]);
        }
    };
};

// Fills the quantized-weight entries of t with the kernels built on dot policy D.
template <class D>
void fill_quantized(KernelTable& t) {
    set_kernels<LegacyK<D, FQ8_0>::template K>(t, GGMLType::Q8_0);
    set_kernels<LegacyK<D, FQ4_0>::template K>(t, GGMLType::Q4_0);
    set_kernels<LegacyK<D, FQ5_0>::template K>(t, GGMLType::Q5_0);
    set_kernels<LegacyK<D, FQ4_1>::template K>(t, GGMLType::Q4_1);
    set_kernels<LegacyK<D, FQ5_1>::template K>(t, GGMLType::Q5_1);
    set_kernels<Q45K<D, false>::template K>(t, GGMLType::Q4_K);
    set_kernels<Q45K<D, true>::template K>(t, GGMLType::Q5_K);
    set_kernels<Q6KT<D>::template K>(t, GGMLType::Q6_K);
}

}  // namespace
}  // namespace unigemma::cpu
