// AVX2 + FMA + F16C row-axpy kernels (acc += a * row) for the KV-cache types, added to the
// avx2 table. Q8_0 / Q4_0: per 32-element block, a * d is broadcast once and the int8
// values widened 8 at a time (vpmovsxbd) and converted to float.
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
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(r + i), _mm256_loadu_ps(acc + i)));
    for (; i < n; ++i) acc[i] += a * r[i];
}

void axpy_f16(int64_t n, float a, const void* row, float* acc) {
    const auto* r = static_cast<const uint8_t*>(row);
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + 2 * i)));
        _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(va, v, _mm256_loadu_ps(acc + i)));
    }
    for (; i < n; ++i) acc[i] += a * half(r + 2 * i);
}

// 8 int8 -> 8 floats, acc[0..8) += ad * q
inline void fma8(float* acc, __m128i q8, __m256 ad) {
    const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8));
    _mm256_storeu_ps(acc, _mm256_fmadd_ps(ad, q, _mm256_loadu_ps(acc)));
}

void axpy_q8_0(int64_t n, float a, const void* row, float* acc) {
    const auto* r = static_cast<const uint8_t*>(row);
    for (int64_t b = 0; b < n / kQK; ++b, r += sizeof(quant::BlockQ8_0), acc += kQK) {
        const __m256 ad = _mm256_set1_ps(a * half(r));
        const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r + 2));
        const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r + 18));
        fma8(acc, lo, ad);
        fma8(acc + 8, _mm_srli_si128(lo, 8), ad);
        fma8(acc + 16, hi, ad);
        fma8(acc + 24, _mm_srli_si128(hi, 8), ad);
    }
}

void axpy_q4_0(int64_t n, float a, const void* row, float* acc) {
    const auto* r = static_cast<const uint8_t*>(row);
    const __m128i m4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    for (int64_t b = 0; b < n / kQK; ++b, r += sizeof(quant::BlockQ4_0), acc += kQK) {
        const __m256 ad = _mm256_set1_ps(a * half(r));
        const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r + 2));
        // element j < 16: low nibble of byte j; element 16 + j: high nibble; both minus 8
        const __m128i lo = _mm_sub_epi8(_mm_and_si128(q, m4), eight);
        const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), m4), eight);
        fma8(acc, lo, ad);
        fma8(acc + 8, _mm_srli_si128(lo, 8), ad);
        fma8(acc + 16, hi, ad);
        fma8(acc + 24, _mm_srli_si128(hi, 8), ad);
    }
}

}  // namespace

void add_row_kernels_avx2(KernelTable& t) {
    t.axpy_row[static_cast<int>(GGMLType::F32)] = axpy_f32;
    t.axpy_row[static_cast<int>(GGMLType::F16)] = axpy_f16;
    t.axpy_row[static_cast<int>(GGMLType::Q8_0)] = axpy_q8_0;
    t.axpy_row[static_cast<int>(GGMLType::Q4_0)] = axpy_q4_0;
}

}  // namespace unigemma::cpu
