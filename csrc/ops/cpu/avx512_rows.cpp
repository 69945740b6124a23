// AVX-512 row-axpy kernels (acc += a * row) for the KV-cache types, added to the avx512
// tables: F32 / F16 16 lanes at a time; Q8_0 / Q4_0 one 32-element block as two 16-lane
// halves (vpmovsxbd from 16 int8, converted to float, one FMA each).
// GCC 12 reports a false -Wmaybe-uninitialized inside _mm512_cvtph_ps (its undefined
// pass-through operand); nothing here reads uninitialized data.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstring>

#include "ops/cpu/kernels.h"
#include "quant/block_layouts.h"
#include "quant/fp16.h"

namespace unigemma::cpu {

namespace {

using quant::kQK;

inline float half(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return quant::fp16_to_fp32(h);
}

void axpy_f32(int64_t n, float a, const void* row, float* acc) {
    const auto* r = static_cast<const float*>(row);
    const __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(acc + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(r + i), _mm512_loadu_ps(acc + i)));
    if (i < n) {
        const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(acc + i, m,
                              _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, r + i), _mm512_maskz_loadu_ps(m, acc + i)));
    }
}

void axpy_f16(int64_t n, float a, const void* row, float* acc) {
    const auto* r = static_cast<const uint8_t*>(row);
    const __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r + 2 * i)));
        _mm512_storeu_ps(acc + i, _mm512_fmadd_ps(va, v, _mm512_loadu_ps(acc + i)));
    }
    for (; i < n; ++i) acc[i] += a * half(r + 2 * i);
}

inline void fma16(float* acc, __m128i q8, __m512 ad) {
    const __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q8));
    _mm512_storeu_ps(acc, _mm512_fmadd_ps(ad, q, _mm512_loadu_ps(acc)));
}

void axpy_q8_0(int64_t n, float a, const void* row, float* acc) {
    const auto* r = static_cast<const uint8_t*>(row);
    for (int64_t b = 0; b < n / kQK; ++b, r += sizeof(quant::BlockQ8_0), acc += kQK) {
        const __m512 ad = _mm512_set1_ps(a * half(r));
        fma16(acc, _mm_loadu_si128(reinterpret_cast<const __m128i*>(r + 2)), ad);
        fma16(acc + 16, _mm_loadu_si128(reinterpret_cast<const __m128i*>(r + 18)), ad);
    }
}

void axpy_q4_0(int64_t n, float a, const void* row, float* acc) {
    const auto* r = static_cast<const uint8_t*>(row);
    const __m128i m4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    for (int64_t b = 0; b < n / kQK; ++b, r += sizeof(quant::BlockQ4_0), acc += kQK) {
        const __m512 ad = _mm512_set1_ps(a * half(r));
        const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r + 2));
        fma16(acc, _mm_sub_epi8(_mm_and_si128(q, m4), eight), ad);
        fma16(acc + 16, _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), m4), eight), ad);
    }
}

}  // namespace

void add_row_kernels_avx512(KernelTable& t) {
    t.axpy_row[static_cast<int>(GGMLType::F32)] = axpy_f32;
    t.axpy_row[static_cast<int>(GGMLType::F16)] = axpy_f16;
    t.axpy_row[static_cast<int>(GGMLType::Q8_0)] = axpy_q8_0;
    t.axpy_row[static_cast<int>(GGMLType::Q4_0)] = axpy_q4_0;
}

}  // namespace unigemma::cpu
