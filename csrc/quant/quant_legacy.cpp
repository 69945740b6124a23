// Legacy 32-element block formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0.
//
// The quantizers reproduce gguf.quants (the pip package's numpy code) bit for bit, which
// means doing exactly its float32 operations in its order:
//   * every intermediate is float32 (numpy 2 keeps python scalars "weak"), and nothing may
//     be fused: this file is compiled with -ffp-contract=off (see CMakeLists.txt);
//   * the inverse scale is 1/d computed separately (then multiplied), never x/d;
//   * numpy's float -> uint8/int8 cast truncates through a 32-bit integer, keeping the low
//     byte; NaN, inf and |x| >= 2^31 give 0 (x86 "integer indefinite"). Reached only when
//     d is subnormal (1/d = inf) or the input is not finite; emulated by np_cast_u8().
//   * argmax picks the first maximum (and the first NaN if any); max/min propagate NaN.
#include <cmath>
#include <cstring>
#include <limits>

#include "quant/block_layouts.h"
#include "quant/fp16.h"
#include "quant/quant_internal.h"

namespace unigemma::quant::detail {

namespace {

// numpy's astype(uint8/int8) of a float32, as raw low byte.
inline uint8_t np_cast_u8(float v) {
    if (!(std::fabs(v) < 2147483648.0f)) return 0;  // NaN, inf, out of int32 range
    return static_cast<uint8_t>(static_cast<uint32_t>(static_cast<int32_t>(v)));
}

// gguf.quants.np_roundf: sign(n) * (floor|n| + floor(2 * (|n| - floor|n|))), in float32.
inline float np_roundf(float n) {
    const float a = std::fabs(n);
    const float floored = std::floor(a);
    const float b = floored + std::floor(2.0f * (a - floored));
    float sign;
    if (n > 0.0f)
        sign = 1.0f;
    else if (n < 0.0f)
        sign = -1.0f;
    else if (n == 0.0f)
        sign = 0.0f;
    else
        sign = n;  // NaN
    return sign * b;
}

// numpy max / min over a block: NaN if any element is NaN.
inline float np_max(const float* x, int n) {
    float m = x[0];
    for (int i = 0; i < n; ++i) {
        if (std::isnan(x[i])) return x[i];
        if (x[i] > m) m = x[i];
    }
    return m;
}

inline float np_min(const float* x, int n) {
    float m = x[0];
    for (int i = 0; i < n; ++i) {
        if (std::isnan(x[i])) return x[i];
        if (x[i] < m) m = x[i];
    }
    return m;
}

// blocks[argmax(abs(blocks))]: the signed element of largest magnitude, first one on ties;
// the first NaN if there is one.
inline float np_signed_absmax(const float* x, int n) {
    int best = 0;
    float best_abs = std::fabs(x[0]);
    if (std::isnan(best_abs)) return x[0];
    for (int i = 1; i < n; ++i) {
        const float a = std::fabs(x[i]);
        if (std::isnan(a)) return x[i];
        if (a > best_abs) {
            best_abs = a;
            best = i;
        }
    }
    return x[best];
}

// id = np.where(d == 0, 0, 1 / d)
inline float inverse_or_zero(float d) { return d == 0.0f ? 0.0f : 1.0f / d; }

template <class Block>
inline void store_block(uint8_t* dst, int64_t i, const Block& b) {
    std::memcpy(dst + i * static_cast<int64_t>(sizeof(Block)), &b, sizeof(Block));
}

template <class Block>
inline Block load_block(const uint8_t* src, int64_t i) {
    Block b;
    std::memcpy(&b, src + i * static_cast<int64_t>(sizeof(Block)), sizeof(Block));
    return b;
}

// Symmetric 4/5-bit: d = x[argmax|x|] / -half; q = trunc(x * (1/d) + (half + 0.5)), clipped.
inline void quantize_symmetric(const float* x, float half, uint8_t qmax, uint8_t* q, uint16_t* d16) {
    const float mx = np_signed_absmax(x, kQK);
    const float d = mx / -half;
    const float id = inverse_or_zero(d);
    const float offset = half + 0.5f;
    for (int i = 0; i < kQK; ++i) {
        const uint8_t v = np_cast_u8(std::trunc(x[i] * id + offset));
        q[i] = v > qmax ? qmax : v;
    }
    *d16 = fp32_to_fp16(d);
}

// Asymmetric 4/5-bit: d = (max - min) / qmax; q = trunc((x - min) * (1/d) + 0.5), clipped.
inline void quantize_affine(const float* x, uint8_t qmax, uint8_t* q, uint16_t* d16, uint16_t* m16) {
    const float mx = np_max(x, kQK);
    const float mn = np_min(x, kQK);
    const float d = (mx - mn) / static_cast<float>(qmax);
    const float id = inverse_or_zero(d);
    for (int i = 0; i < kQK; ++i) {
        const uint8_t v = np_cast_u8(std::trunc((x[i] - mn) * id + 0.5f));
        q[i] = v > qmax ? qmax : v;
    }
    *d16 = fp32_to_fp16(d);
    *m16 = fp32_to_fp16(mn);
}

inline void pack_nibbles(const uint8_t* q, uint8_t* qs) {
    for (int j = 0; j < kQK / 2; ++j) qs[j] = static_cast<uint8_t>((q[j] & 0x0f) | (q[j + kQK / 2] << 4));
}

inline void pack_high_bits(const uint8_t* q, uint8_t* qh) {
    uint32_t h = 0;
    for (int i = 0; i < kQK; ++i) h |= static_cast<uint32_t>((q[i] >> 4) != 0) << i;
    for (int k = 0; k < 4; ++k) qh[k] = static_cast<uint8_t>(h >> (8 * k));
}

inline uint32_t load_high_bits(const uint8_t* qh) {
    return static_cast<uint32_t>(qh[0]) | static_cast<uint32_t>(qh[1]) << 8 | static_cast<uint32_t>(qh[2]) << 16 |
           static_cast<uint32_t>(qh[3]) << 24;
}

}  // namespace

// ---------------------------------------------------------------- quantize

void quantize_q4_0(const float* src, uint8_t* dst, int64_t nb) {
    uint8_t q[kQK];
    for (int64_t i = 0; i < nb; ++i) {
        BlockQ4_0 b;
        quantize_symmetric(src + i * kQK, 8.0f, 15, q, &b.d);
        pack_nibbles(q, b.qs);
        store_block(dst, i, b);
    }
}

void quantize_q4_1(const float* src, uint8_t* dst, int64_t nb) {
    uint8_t q[kQK];
    for (int64_t i = 0; i < nb; ++i) {
        BlockQ4_1 b;
        quantize_affine(src + i * kQK, 15, q, &b.d, &b.m);
        pack_nibbles(q, b.qs);
        store_block(dst, i, b);
    }
}

void quantize_q5_0(const float* src, uint8_t* dst, int64_t nb) {
    uint8_t q[kQK];
    for (int64_t i = 0; i < nb; ++i) {
        BlockQ5_0 b;
        quantize_symmetric(src + i * kQK, 16.0f, 31, q, &b.d);
        pack_nibbles(q, b.qs);
        pack_high_bits(q, b.qh);
        store_block(dst, i, b);
    }
}

void quantize_q5_1(const float* src, uint8_t* dst, int64_t nb) {
    uint8_t q[kQK];
    for (int64_t i = 0; i < nb; ++i) {
        BlockQ5_1 b;
        quantize_affine(src + i * kQK, 31, q, &b.d, &b.m);
        pack_nibbles(q, b.qs);
        pack_high_bits(q, b.qh);
        store_block(dst, i, b);
    }
}

void quantize_q8_0(const float* src, uint8_t* dst, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const float* x = src + i * kQK;
        // abs(blocks).max() / 127 (NaN propagates through max)
        float amax = std::fabs(x[0]);
        for (int k = 0; k < kQK; ++k) {
            const float a = std::fabs(x[k]);
            if (std::isnan(a)) {
                amax = a;
                break;
            }
            if (a > amax) amax = a;
        }
        const float d = amax / 127.0f;
        const float id = inverse_or_zero(d);
        BlockQ8_0 b;
        for (int k = 0; k < kQK; ++k) b.qs[k] = static_cast<int8_t>(np_cast_u8(np_roundf(x[k] * id)));
        b.d = fp32_to_fp16(d);
        store_block(dst, i, b);
    }
}

// ---------------------------------------------------------------- dequantize

void dequantize_q4_0(const uint8_t* src, float* dst, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const auto b = load_block<BlockQ4_0>(src, i);
        const float d = fp16_to_fp32(b.d);
        float* y = dst + i * kQK;
        for (int j = 0; j < kQK / 2; ++j) {
            y[j] = d * static_cast<float>((b.qs[j] & 0x0f) - 8);
            y[j + kQK / 2] = d * static_cast<float>((b.qs[j] >> 4) - 8);
        }
    }
}

void dequantize_q4_1(const uint8_t* src, float* dst, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const auto b = load_block<BlockQ4_1>(src, i);
        const float d = fp16_to_fp32(b.d);
        const float m = fp16_to_fp32(b.m);
        float* y = dst + i * kQK;
        for (int j = 0; j < kQK / 2; ++j) {
            y[j] = d * static_cast<float>(b.qs[j] & 0x0f) + m;
            y[j + kQK / 2] = d * static_cast<float>(b.qs[j] >> 4) + m;
        }
    }
}

void dequantize_q5_0(const uint8_t* src, float* dst, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const auto b = load_block<BlockQ5_0>(src, i);
        const float d = fp16_to_fp32(b.d);
        const uint32_t qh = load_high_bits(b.qh);
        float* y = dst + i * kQK;
        for (int j = 0; j < kQK / 2; ++j) {
            const int lo = (b.qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
            const int hi = (b.qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
            y[j] = d * static_cast<float>(lo - 16);
            y[j + kQK / 2] = d * static_cast<float>(hi - 16);
        }
    }
}

void dequantize_q5_1(const uint8_t* src, float* dst, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const auto b = load_block<BlockQ5_1>(src, i);
        const float d = fp16_to_fp32(b.d);
        const float m = fp16_to_fp32(b.m);
        const uint32_t qh = load_high_bits(b.qh);
        float* y = dst + i * kQK;
        for (int j = 0; j < kQK / 2; ++j) {
            const int lo = (b.qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
            const int hi = (b.qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
            y[j] = d * static_cast<float>(lo) + m;
            y[j + kQK / 2] = d * static_cast<float>(hi) + m;
        }
    }
}

void dequantize_q8_0(const uint8_t* src, float* dst, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const auto b = load_block<BlockQ8_0>(src, i);
        const float d = fp16_to_fp32(b.d);
        float* y = dst + i * kQK;
        for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(b.qs[j]) * d;
    }
}

}  // namespace unigemma::quant::detail
