// Block math shared by the CUDA kernels and their host twins (bindings/init_cuda.cpp,
// tools/harness/cuda_selftest.cu). Everything here is UG_HD: __host__ __device__ under nvcc,
// plain inline under a host compiler, so the same source is compiled for both sides and the
// host copy can be tested on a machine without a GPU. No CUDA header is needed when
// !__CUDACC__ (own fp16 / bf16 bit conversions).
//
// Numerics contract
//   * decode_unit<T>: the 32 float values of one "unit" of a weight row, bit-identical to the
//     CPU dequantizer (quant/quant_legacy.cpp, quant_k.cpp, quant_common.cpp): same products,
//     same roundings, never contracted to FMA (the device side spells the roundings with
//     __fmul_rn / __fsub_rn; host translation units that include this file are compiled with
//     -ffp-contract=off, see CMakeLists.txt).
//   * unit_dot<T>: sum over one unit of w[i] * x[i] in a FIXED order (below); not equal to
//     dequantize-then-dot, but the host twin computes exactly what the GEMV kernel computes.
//   * row_dot: the GEMV reduction order, emulating one warp:
//       lane l (0..31) accumulates acc_l = (((0 + unit_dot(l)) + unit_dot(l + 32)) + ...)
//       over the units l, l + 32, l + 64, ... of the row, ascending;
//       then a xor butterfly: for off = 16, 8, 4, 2, 1: acc_l = acc_l + acc_(l ^ off).
//     Float addition is commutative, so every lane ends with the same value; that value is
//     the row's result. The order depends only on the row length, never on how many token
//     columns a launch carries (1..8), so a speculative verify pass gives the decode step's
//     bits (batch invariance, as on the CPU).
//
// Units: every supported row is cut into units of 32 consecutive elements (cols % 32 == 0;
// K-quant rows are whole 256-element super-blocks = 8 units each):
//   Q4_0 / Q8_0     unit u = block u (18 / 34 bytes)
//   Q4_K            unit u = sub-block j = u % 8 of super-block u / 8: scale sc[j], min m[j],
//                   nibble (j % 2) of qs[32 * (j / 2) + l], l < 32
//   Q6_K            unit u = elements 128h + 32s + l (l < 32) of super-block u / 8, with
//                   h = (u % 8) / 4, s = u % 4; two int8 scales (l < 16, l >= 16)
//   F32 / F16 / BF16  elements 32u .. 32u + 31
// unit_dot order per type (fma = one rounding, "+" / "*" = one rounding each):
//   Q4_0, Q8_0      s = fma(q_i, x_i, s) for i = 0..31 (q_i the integer value as float);
//                   result d * s
//   Q4_K            sq = fma(q_i, x_i, sq), sx = sx + x_i, i = 0..31;
//                   result (d * sc) * sq - (dmin * m) * sx
//   Q6_K            sa = fma(q_i, x_i, sa) for i < 16, sb likewise for i >= 16;
//                   result (d * sc_a) * sa + (d * sc_b) * sb
//   F32/F16/BF16    s = fma(w_i, x_i, s), i = 0..31
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>
#include "quant/fp16.h"

#ifdef __CUDACC__
#include <cuda_fp16.h>
#define UG_HD __host__ __device__ inline
#else
#include <cmath>
#define UG_HD inline

#endif

namespace unigemma::cuda {

// GGML type ids (gguf/ggml_types.h) of the weight types the CUDA backend reads.
constexpr int kTF32 = 0, kTF16 = 1, kTQ4_0 = 2, kTQ8_0 = 8, kTQ4_K = 12, kTQ6_K = 14, kTBF16 = 30;
constexpr int kUnit = 32;  // elements per unit
constexpr int kWarp = 32;  // lanes per warp (the reduction order above)

// Bytes per unit-carrying block and units per block, per type.
UG_HD constexpr int block_bytes(int t) {
    return t == kTQ4_0 ? 18 : t == kTQ8_0 ? 34 : t == kTQ4_K ? 144 : t == kTQ6_K ? 210 : t == kTF32 ? 128 : 64;
}
UG_HD constexpr int units_per_block(int t) { return (t == kTQ4_K || t == kTQ6_K) ? 8 : 1; }
// Bytes of one row of `cols` elements (cols a multiple of 32, of 256 for K-quants).
UG_HD constexpr int64_t row_bytes_of(int t, int64_t cols) {
    return cols / (kUnit * units_per_block(t)) * block_bytes(t);
}
UG_HD constexpr bool supported_type(int t) {
    return t == kTF32 || t == kTF16 || t == kTBF16 || t == kTQ4_0 || t == kTQ8_0 || t == kTQ4_K || t == kTQ6_K;
}

// ---------------------------------------------------------------- scalar helpers

// Roundings spelled out so nvcc cannot contract a*b - c into an FMA (the host side relies on
// -ffp-contract=off for the same guarantee).
UG_HD float ug_mul(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
UG_HD float ug_add(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}
UG_HD float ug_sub(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}
UG_HD float ug_fma(float a, float b, float c) {
#ifdef __CUDA_ARCH__
    return __fmaf_rn(a, b, c);
#else
    return std::fma(a, b, c);
#endif
}

UG_HD float ug_bits_to_f32(uint32_t u) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
#endif
}
UG_HD uint32_t ug_f32_to_bits(float f) {
#ifdef __CUDA_ARCH__
    return __float_as_uint(f);
#else
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
#endif
}

// Exact binary16 / bfloat16 -> float32 (every input, NaN payloads kept): quant/fp16.h's.
UG_HD float ug_f16_to_f32(uint16_t h) { return quant::fp16_to_fp32(h); }
UG_HD float ug_bf16_to_f32(uint16_t b) { return quant::bf16_to_fp32(b); }

// Little-endian loads from byte pointers of any alignment (device weights are packed blocks
// of 18 / 34 / 210 bytes, so wider aligned loads are not generally possible).
UG_HD uint16_t ld_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

// Q4_K / Q5_K scale-min unpacking of sub-block j (quant/block_layouts.h unpack_scale_min_k4).
UG_HD void scale_min_k4(const uint8_t* s, int j, int* sc, int* m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 2) & 0x30);
        *m = (s[j + 4] >> 4) | ((s[j] >> 2) & 0x30);
    }
}

// Integer value of element l (0..31) of Q6_K unit `su` (0..7) of one super-block, and the
// index of its scale. q in [-32, 31].
UG_HD int q6k_value(const uint8_t* blk, int su, int l, int* scale_idx) {
    const int h = su / 4, s = su % 4;
    const uint8_t* ql = blk + 64 * h;
    const uint8_t* qh = blk + 128 + 32 * h;
    const int lo = (s & 1) ? ql[32 + l] : ql[l];
    const int lo4 = (s & 2) ? (lo >> 4) : (lo & 0x0f);
    const int hi2 = (qh[l] >> (2 * s)) & 3;
    *scale_idx = 8 * h + 2 * s + l / 16;
    return (lo4 | (hi2 << 4)) - 32;
}

// ---------------------------------------------------------------- decode (exact dequant)

// The 32 values of unit u of a row, bit-identical to quant::dequantize_row.
template <int T>
UG_HD void decode_unit(const uint8_t* row, int64_t u, float* out) {
    if constexpr (T == kTQ4_0) {
        const uint8_t* b = row + u * 18;
        const float d = ug_f16_to_f32(ld_u16(b));
        for (int j = 0; j < 16; ++j) {
            out[j] = ug_mul(d, static_cast<float>((b[2 + j] & 0x0f) - 8));
            out[j + 16] = ug_mul(d, static_cast<float>((b[2 + j] >> 4) - 8));
        }
    } else if constexpr (T == kTQ8_0) {
        const uint8_t* b = row + u * 34;
        const float d = ug_f16_to_f32(ld_u16(b));
        for (int j = 0; j < 32; ++j) out[j] = ug_mul(static_cast<float>(static_cast<int8_t>(b[2 + j])), d);
    } else if constexpr (T == kTQ4_K) {
        const uint8_t* b = row + (u / 8) * 144;
        const int j = static_cast<int>(u % 8);
        int sc, m;
        scale_min_k4(b + 4, j, &sc, &m);
        const float dl = ug_mul(ug_f16_to_f32(ld_u16(b)), static_cast<float>(sc));
        const float ml = ug_mul(ug_f16_to_f32(ld_u16(b + 2)), static_cast<float>(m));
        const uint8_t* qs = b + 16 + 32 * (j / 2);
        const int shift = 4 * (j % 2);
        for (int l = 0; l < 32; ++l) out[l] = ug_sub(ug_mul(dl, static_cast<float>((qs[l] >> shift) & 0x0f)), ml);
    } else if constexpr (T == kTQ6_K) {
        const uint8_t* b = row + (u / 8) * 210;
        const float d = ug_f16_to_f32(ld_u16(b + 208));
        const int su = static_cast<int>(u % 8);
        for (int l = 0; l < 32; ++l) {
            int si;
            const int q = q6k_value(b, su, l, &si);
            const float dl = ug_mul(d, static_cast<float>(static_cast<int8_t>(b[192 + si])));
            out[l] = ug_mul(dl, static_cast<float>(q));
        }
    } else if constexpr (T == kTF16 || T == kTBF16) {
        const uint8_t* b = row + u * 64;
        for (int l = 0; l < 32; ++l) out[l] = T == kTF16 ? ug_f16_to_f32(ld_u16(b + 2 * l)) : ug_bf16_to_f32(ld_u16(b + 2 * l));
    } else {
        static_assert(T == kTF32, "unsupported weight type");
        const uint8_t* b = row + u * 128;
        for (int l = 0; l < 32; ++l)
            out[l] = ug_bits_to_f32(static_cast<uint32_t>(b[4 * l]) | (static_cast<uint32_t>(b[4 * l + 1]) << 8) |
                                    (static_cast<uint32_t>(b[4 * l + 2]) << 16) |
                                    (static_cast<uint32_t>(b[4 * l + 3]) << 24));
    }
}

// ---------------------------------------------------------------- dot of one unit

// res[c] = sum_i w[i] * x[c * x_stride + i] over unit u of `row`, for NT token columns at
// once (the weights are decoded once for all columns); each column's arithmetic is the
// one-column order of the header, so the result of a column does not depend on NT.
template <int T, int NT>
UG_HD void unit_dot_n(const uint8_t* row, int64_t u, const float* x, int64_t x_stride, float* res) {
    if constexpr (T == kTQ4_0 || T == kTQ8_0) {
        const uint8_t* b = row + u * (T == kTQ4_0 ? 18 : 34);
        float s[NT];
        for (int c = 0; c < NT; ++c) s[c] = 0.0f;
        for (int i = 0; i < 32; ++i) {
            float q;
            if constexpr (T == kTQ4_0)
                q = static_cast<float>((i < 16 ? (b[2 + i] & 0x0f) : (b[2 + i - 16] >> 4)) - 8);
            else
                q = static_cast<float>(static_cast<int8_t>(b[2 + i]));
            for (int c = 0; c < NT; ++c) s[c] = ug_fma(q, x[c * x_stride + i], s[c]);
        }
        const float d = ug_f16_to_f32(ld_u16(b));
        for (int c = 0; c < NT; ++c) res[c] = ug_mul(d, s[c]);
    } else if constexpr (T == kTQ4_K) {
        const uint8_t* b = row + (u / 8) * 144;
        const int j = static_cast<int>(u % 8);
        int sc, m;
        scale_min_k4(b + 4, j, &sc, &m);
        const uint8_t* qs = b + 16 + 32 * (j / 2);
        const int shift = 4 * (j % 2);
        float sq[NT], sx[NT];
        for (int c = 0; c < NT; ++c) sq[c] = sx[c] = 0.0f;
        for (int i = 0; i < 32; ++i) {
            const float q = static_cast<float>((qs[i] >> shift) & 0x0f);
            for (int c = 0; c < NT; ++c) {
                sq[c] = ug_fma(q, x[c * x_stride + i], sq[c]);
                sx[c] = ug_add(sx[c], x[c * x_stride + i]);
            }
        }
        const float dl = ug_mul(ug_f16_to_f32(ld_u16(b)), static_cast<float>(sc));
        const float ml = ug_mul(ug_f16_to_f32(ld_u16(b + 2)), static_cast<float>(m));
        for (int c = 0; c < NT; ++c) res[c] = ug_sub(ug_mul(dl, sq[c]), ug_mul(ml, sx[c]));
    } else if constexpr (T == kTQ6_K) {
        const uint8_t* b = row + (u / 8) * 210;
        const int su = static_cast<int>(u % 8);
        float sa[NT], sb[NT];
        for (int c = 0; c < NT; ++c) sa[c] = sb[c] = 0.0f;
        int ia = 0, ib = 0;
        for (int i = 0; i < 16; ++i) {
            const float q = static_cast<float>(q6k_value(b, su, i, &ia));
            for (int c = 0; c < NT; ++c) sa[c] = ug_fma(q, x[c * x_stride + i], sa[c]);
        }
        for (int i = 16; i < 32; ++i) {
            const float q = static_cast<float>(q6k_value(b, su, i, &ib));
            for (int c = 0; c < NT; ++c) sb[c] = ug_fma(q, x[c * x_stride + i], sb[c]);
        }
        const float d = ug_f16_to_f32(ld_u16(b + 208));
        const float da = ug_mul(d, static_cast<float>(static_cast<int8_t>(b[192 + ia])));
        const float db = ug_mul(d, static_cast<float>(static_cast<int8_t>(b[192 + ib])));
        for (int c = 0; c < NT; ++c) res[c] = ug_add(ug_mul(da, sa[c]), ug_mul(db, sb[c]));
    } else {
        float w[32];
        decode_unit<T>(row, u, w);
        for (int c = 0; c < NT; ++c) {
            float s = 0.0f;
            for (int i = 0; i < 32; ++i) s = ug_fma(w[i], x[c * x_stride + i], s);
            res[c] = s;
        }
    }
}

template <int T>
UG_HD float unit_dot(const uint8_t* row, int64_t u, const float* x) {
    float r;
    unit_dot_n<T, 1>(row, u, x, 0, &r);
    return r;
}

// ---------------------------------------------------------------- KV-cache row encoders

// float32 -> binary16, round to nearest even: quant/fp16.h's fp32_to_fp16 (numpy's cast, NaN
// payloads included).
UG_HD uint16_t ug_f32_to_f16(float f) { return quant::fp32_to_fp16(f); }

UG_HD float ug_div(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}

// gguf.quants np_roundf in float32 (quant_legacy.cpp): sign(n) * (floor|n| + floor(2 (|n| - floor|n|))).
UG_HD float ug_np_roundf(float n) {
    const float a = fabsf(n);
    const float fl = floorf(a);
    const float b = ug_add(fl, floorf(ug_mul(2.0f, ug_sub(a, fl))));
    const float sign = n > 0.0f ? 1.0f : n < 0.0f ? -1.0f : n == 0.0f ? 0.0f : n;
    return ug_mul(sign, b);
}

// One Q8_0 block (34 bytes) from 32 floats, bit-identical to quant::quantize_rows(Q8_0):
// d = max|x| / 127 (NaN propagates), q = np_roundf(x / d) as int8 (numpy's wrapping cast).
UG_HD void encode_q8_0_block(const float* x, uint8_t* out) {
    float amax = fabsf(x[0]);
    for (int k = 0; k < 32; ++k) {
        const float a = fabsf(x[k]);
        if (a != a) {
            amax = a;
            break;
        }
        if (a > amax) amax = a;
    }
    const float d = ug_div(amax, 127.0f);
    const float id = d == 0.0f ? 0.0f : ug_div(1.0f, d);
    for (int k = 0; k < 32; ++k) {
        const float v = ug_np_roundf(ug_mul(x[k], id));
        out[2 + k] = fabsf(v) < 2147483648.0f ? static_cast<uint8_t>(static_cast<uint32_t>(static_cast<int32_t>(v))) : 0;
    }
    const uint16_t h = ug_f32_to_f16(d);
    out[0] = static_cast<uint8_t>(h & 0xff);
    out[1] = static_cast<uint8_t>(h >> 8);
}

// ---------------------------------------------------------------- host twins

// Dequantizes n elements (n % 32 == 0; % 256 for K-quants) of a row; the device GEMM's
// weight-tile decode and the CPU dequantizer give the same bits.
template <int T>
inline void twin_dequantize(const uint8_t* row, int64_t n, float* out) {
    for (int64_t u = 0; u < n / kUnit; ++u) decode_unit<T>(row, u, out + u * kUnit);
}

// The GEMV result for one row, in the warp order of the header (32 emulated lanes).
template <int T>
inline float twin_row_dot(const uint8_t* row, const float* x, int64_t cols) {
    float acc[kWarp];
    const int64_t units = cols / kUnit;
    for (int l = 0; l < kWarp; ++l) {
        acc[l] = 0.0f;
        for (int64_t u = l; u < units; u += kWarp) acc[l] = ug_add(acc[l], unit_dot<T>(row, u, x + u * kUnit));
    }
    for (int off = kWarp / 2; off >= 1; off /= 2) {
        float nxt[kWarp];
        for (int l = 0; l < kWarp; ++l) nxt[l] = ug_add(acc[l], acc[l ^ off]);
        for (int l = 0; l < kWarp; ++l) acc[l] = nxt[l];
    }
    return acc[0];
}

// Runtime dispatch over the supported types; returns false for an unsupported type.
template <typename F>
inline bool dispatch_type(int t, F&& f) {
    switch (t) {
        case kTF32: f(std::integral_constant<int, kTF32>{}); return true;
        case kTF16: f(std::integral_constant<int, kTF16>{}); return true;
        case kTBF16: f(std::integral_constant<int, kTBF16>{}); return true;
        case kTQ4_0: f(std::integral_constant<int, kTQ4_0>{}); return true;
        case kTQ8_0: f(std::integral_constant<int, kTQ8_0>{}); return true;
        case kTQ4_K: f(std::integral_constant<int, kTQ4_K>{}); return true;
        case kTQ6_K: f(std::integral_constant<int, kTQ6_K>{}); return true;
        default: return false;
    }
}

}  // namespace unigemma::cuda
