// Exact scalar conversions between float32 and the 16-bit float formats (IEEE binary16 and
// bfloat16). Internal to quant/.
//
// fp32_to_fp16 matches numpy's float32 -> float16 cast bit for bit (on every input,
// NaN payloads included): round to nearest, ties to even; overflow to +-inf; NaN keeps its
// sign and the top 10 payload bits, and a payload that would vanish becomes 1 (so a NaN
// stays a NaN; signalling NaNs are not quieted).
// fp32_to_bf16 matches gguf.quants' BF16 quantizer (the ggml rule): NaN is forced quiet
// (low 16 bits dropped, quiet bit set), everything else rounds to nearest even.
#pragma once
#include <cstdint>
#include <cstring>

// Under nvcc these are also device functions: the CUDA block decoders and KV encoders
// (ops/cuda/block_math.cuh) use the same bits. Integer work only, plus one exact multiply.
#if defined(__CUDACC__)
#define UG_FP16_FN static __host__ __device__ inline
#else
#define UG_FP16_FN static inline
#endif

namespace unigemma::quant {

// `static`: internal linkage on purpose. These are included by the per-ISA kernel files,
// which are compiled with -mavx2 / -mavx512* / -march=...+dotprod; with external linkage the
// linker could keep one of those copies for every caller, including the scalar path on a
// CPU without those instructions.

UG_FP16_FN uint32_t f32_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

UG_FP16_FN float f32_from_bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

UG_FP16_FN uint16_t fp32_to_fp16(float f) {
    const uint32_t x = f32_bits(f);
    const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
    const uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) {  // inf or NaN
        if (ax == 0x7f800000u) return sign | 0x7c00u;
        uint16_t payload = static_cast<uint16_t>((ax & 0x007fffffu) >> 13);
        if (payload == 0) payload = 1;
        return static_cast<uint16_t>(sign | 0x7c00u | payload);
    }
    if (ax >= 0x47800000u) return sign | 0x7c00u;  // |f| >= 65536: overflow
    if (ax <= 0x33000000u) return sign;            // |f| <= 2^-25 rounds (ties-to-even) to 0
    const uint32_t exp = ax >> 23;                 // biased float32 exponent
    const uint32_t mant = (ax & 0x007fffffu) | 0x00800000u;
    if (exp < 113) {
        // Result is a binary16 subnormal (or rounds up to the smallest normal):
        // count of 2^-24 units = mant * 2^(exp - 126), rounded to nearest even.
        const uint32_t shift = 126 - exp;  // 14..24
        uint32_t q = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1u);
        const uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) ++q;
        return static_cast<uint16_t>(sign | q);
    }
    // Normal: re-bias the exponent, keep 10 mantissa bits, round the 13 dropped bits to
    // nearest even. A carry out of the mantissa bumps the exponent (up to inf), as it should.
    uint32_t h = ((exp - 112u) << 10) | ((ax >> 13) & 0x3ffu);
    const uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
}

UG_FP16_FN float fp16_to_fp32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        // Zero or subnormal: mant * 2^-24, exact in float32.
        const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
        return f32_from_bits(f32_bits(v) | sign);
    }
    if (exp == 31) return f32_from_bits(sign | 0x7f800000u | (mant << 13));
    return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
}

UG_FP16_FN uint16_t fp32_to_bf16(float f) {
    uint32_t n = f32_bits(f);
    if ((n & 0x7fffffffu) > 0x7f800000u) n = (n & 0xffff0000u) | 0x00400000u;  // quiet NaN
    const uint64_t r = (static_cast<uint64_t>(n) + (0x7fffu + ((n >> 16) & 1u))) >> 16;
    return static_cast<uint16_t>(r);
}

UG_FP16_FN float bf16_to_fp32(uint16_t b) { return f32_from_bits(static_cast<uint32_t>(b) << 16); }

}  // namespace unigemma::quant
