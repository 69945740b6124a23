// Panel kernels, AVX-512 (layouts and arithmetic: panels.h; reference: scalar_panels.cpp,
// matched bit for bit).
//
// Per block: the four 64-byte nibble vectors give 8 code vectors (& 0x0f, >> 4 & 0x0f): code
// vector g holds elements 4g..4g+3 of each of the 16 rows, one row per 32-bit lane. For each
// token the 8 matching 4-byte activation groups are broadcast and multiplied in: with VNNI
// one vpdpbusd each (u8 codes x s8 activations); without, vpmaddubsw pairs (|sum| <= 2 * 15 *
// 128) summed as int16 (8 of them: <= 30720, no overflow) and one vpmaddwd against ones.
// Then per token: int - s (offset 8 * sum q), to float, times d_w[16] * d_x, one FMA into the
// token's 16-row accumulator. Tokens are a template parameter so accumulators stay in zmm.
// Q4_K: the same 8-vector dot per 32-element sub-block j, times the rows' scales sc_j
// (vpmulld) into an int32 super-block sum; the mins term sum_j m_j * sums_j likewise; two
// FMAs per super-block. Q6_K: signed codes c - 32 rebuilt from nibble | 2 high bits; per
// 16-element sub-block, vpmaddubsw of unsigned activations q + 128 with the codes, two groups
// per int16 sum, times the rows' scales as int16 pairs (vpdpwssd / vpmaddwd) into int32;
// minus 128 x the precomputed weight sums; one FMA per super-block. No vpmulld.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstring>

#include "ops/cpu/kernels.h"

#include "ops/cpu/unroll.h"

namespace unigemma::cpu {

namespace {

inline __m512i bcast4(const int8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

// int16 pair dot added to acc (vpdpwssd, else vpmaddwd + add).
template <bool V>
inline __m512i dot_s16(__m512i acc, __m512i a, __m512i b) {
    if constexpr (V) return _mm512_dpwssd_epi32(acc, a, b);
    else return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b));
}

template <bool V>
inline __m512i block_dot(const __m512i (&w)[8], const int8_t* x) {
    if constexpr (V) {
        // two chains of 4 (shorter dependency chains), summed: the integer result is exact
        __m512i a = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[0], bcast4(x));
        __m512i b = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[4], bcast4(x + 16));
        UG_UNROLL
        for (int j = 1; j < 4; ++j) {
            a = _mm512_dpbusd_epi32(a, w[j], bcast4(x + 4 * j));
            b = _mm512_dpbusd_epi32(b, w[j + 4], bcast4(x + 16 + 4 * j));
        }
        return _mm512_add_epi32(a, b);
    } else {
        __m512i s = _mm512_maddubs_epi16(w[0], bcast4(x));
        UG_UNROLL
        for (int j = 1; j < 4; ++j) s = _mm512_add_epi16(s, _mm512_maddubs_epi16(w[j], bcast4(x + 4 * j)));
        UG_UNROLL
        for (int j = 0; j < 4; ++j) s = _mm512_add_epi16(s, _mm512_maddubs_epi16(w[j + 4], bcast4(x + 16 + 4 * j)));
        return _mm512_madd_epi16(s, _mm512_set1_epi16(1));
    }
}

template <bool V, int NC>
void run(int64_t nb, float* out, int64_t os, const uint8_t* panel, const uint8_t* act, size_t as) {
    __m512 acc[NC];
    UG_UNROLL
    for (int c = 0; c < NC; ++c) acc[c] = _mm512_setzero_ps();
    const __m512i lo = _mm512_set1_epi8(0x0f);
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* pb = panel + b * 288;
        if (NC <= 2) {  // GEMV-like: stream ahead (8 blocks = 2.3 KB)
            UG_UNROLL
            for (int l = 0; l < 5; ++l) _mm_prefetch(reinterpret_cast<const char*>(pb + 8 * 288 + 64 * l), _MM_HINT_T0);
        }
        __m512i w[8];
        UG_UNROLL
        for (int j = 0; j < 4; ++j) {
            const __m512i v = _mm512_loadu_si512(pb + 64 * j);
            w[j] = _mm512_and_si512(v, lo);
            w[j + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo);
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(pb + 256)));
        UG_UNROLL
        for (int c = 0; c < NC; ++c) {
            const uint8_t* at = act + static_cast<size_t>(c) * as;
            float xd;
            int32_t xs;
            std::memcpy(&xd, at + nb * 32 + 4 * b, 4);
            std::memcpy(&xs, at + nb * 36 + 4 * b, 4);
            const __m512i dot = _mm512_sub_epi32(block_dot<V>(w, reinterpret_cast<const int8_t*>(at) + 32 * b),
                                                 _mm512_set1_epi32(xs));
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw, _mm512_set1_ps(xd)), acc[c]);
        }
    }
    UG_UNROLL
    for (int c = 0; c < NC; ++c) _mm512_storeu_ps(out + c * os, acc[c]);
}

template <bool V, int NC>
void run_k(int64_t nb, float* out, int64_t os, const uint8_t* panel, const uint8_t* act, size_t as) {
    const int64_t cols = nb * 256;
    __m512 acc[NC];
    UG_UNROLL
    for (int c = 0; c < NC; ++c) acc[c] = _mm512_setzero_ps();
    const __m512i lo = _mm512_set1_epi8(0x0f);
    for (int64_t s = 0; s < nb; ++s) {
        const uint8_t* pb = panel + s * 2368;
        __m512i isum[NC];
        UG_UNROLL
        for (int c = 0; c < NC; ++c) isum[c] = _mm512_setzero_si512();
        for (int j = 0; j < 8; ++j) {
            const uint8_t* pv = pb + 64 * 8 * (j / 2);
            if (NC <= 2) {  // GEMV-like: stream ahead (the super-block after next, 5 lines per step)
                UG_UNROLL
                for (int l = 0; l < 5; ++l) _mm_prefetch(reinterpret_cast<const char*>(pb + 2 * 2368 + 64 * (5 * j + l)), _MM_HINT_T0);
            }
            __m512i w[8];
            if (j & 1) {
                UG_UNROLL
                for (int g = 0; g < 8; ++g) w[g] = _mm512_and_si512(_mm512_srli_epi16(_mm512_loadu_si512(pv + 64 * g), 4), lo);
            } else {
                UG_UNROLL
                for (int g = 0; g < 8; ++g) w[g] = _mm512_and_si512(_mm512_loadu_si512(pv + 64 * g), lo);
            }
            const __m512i sc = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(pb + 2048 + 16 * j)));
            UG_UNROLL
            for (int c = 0; c < NC; ++c) {
                const auto* x = reinterpret_cast<const int8_t*>(act + static_cast<size_t>(c) * as) + 256 * s + 32 * j;
                isum[c] = _mm512_add_epi32(isum[c], _mm512_mullo_epi32(block_dot<V>(w, x), sc));
            }
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(pb + 2304)));
        const __m512 dm = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(pb + 2336)));
        UG_UNROLL
        for (int c = 0; c < NC; ++c) {
            const uint8_t* at = act + static_cast<size_t>(c) * as;
            float xd;
            int32_t xs[8];
            std::memcpy(&xd, at + cols + 4 * s, 4);
            std::memcpy(xs, at + cols + 4 * nb + 32 * s, 32);
            __m512i ms = _mm512_setzero_si512();
            for (int j = 0; j < 8; ++j) {
                const __m512i m = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(pb + 2176 + 16 * j)));
                ms = _mm512_add_epi32(ms, _mm512_mullo_epi32(m, _mm512_set1_epi32(xs[j])));
            }
            const __m512 vx = _mm512_set1_ps(xd);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[c]), _mm512_mul_ps(dw, vx), acc[c]);
            acc[c] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(ms), _mm512_mul_ps(dm, vx), acc[c]);
        }
    }
    UG_UNROLL
    for (int c = 0; c < NC; ++c) _mm512_storeu_ps(out + c * os, acc[c]);
}

template <bool V>
void q4_k_panels(int64_t nb, int nc, float* out, int64_t os, const uint8_t* panel, const uint8_t* act, size_t as) {
    using Fn = void (*)(int64_t, float*, int64_t, const uint8_t*, const uint8_t*, size_t);
    static constexpr Fn tbl[8] = {run_k<V, 1>, run_k<V, 2>, run_k<V, 3>, run_k<V, 4>,
                                  run_k<V, 5>, run_k<V, 6>, run_k<V, 7>, run_k<V, 8>};
    tbl[nc - 1](nb, out, os, panel, act, as);
}

template <bool V, int NC>
void run_6(int64_t nb, float* out, int64_t os, const uint8_t* panel, const uint8_t* act, size_t as) {
    const int64_t cols = nb * 256;
    __m512 acc[NC];
    UG_UNROLL
    for (int c = 0; c < NC; ++c) acc[c] = _mm512_setzero_ps();
    const __m512i lo = _mm512_set1_epi8(0x0f);
    const __m512i hm = _mm512_set1_epi8(0x30);
    const __m512i b32 = _mm512_set1_epi8(32);
    for (int64_t s = 0; s < nb; ++s) {
        const uint8_t* pb = panel + s * 3424;
        __m512i isum[NC];
        UG_UNROLL
        for (int c = 0; c < NC; ++c) isum[c] = _mm512_setzero_si512();
        UG_UNROLL
        for (int k = 0; k < 16; ++k) {
            const int h = k / 8, m = (k % 8) / 2, half = k % 2;
            __m512i w[4];  // signed codes c - 32 of groups 4 half .. 4 half + 3
            UG_UNROLL
            for (int q = 0; q < 4; ++q) {
                const int g = 4 * half + q;
                const __m512i L = _mm512_loadu_si512(pb + 64 * (16 * h + 8 * (m & 1) + g));
                const __m512i H = _mm512_loadu_si512(pb + 2048 + 64 * (8 * h + g));
                const __m512i low = _mm512_and_si512(m < 2 ? L : _mm512_srli_epi16(L, 4), lo);
                const __m512i hi = m == 0 ? _mm512_slli_epi16(H, 4)
                                   : m == 1 ? _mm512_slli_epi16(H, 2)
                                   : m == 2 ? H
                                            : _mm512_srli_epi16(H, 2);
                w[q] = _mm512_sub_epi8(_mm512_or_si512(low, _mm512_and_si512(hi, hm)), b32);
            }
            // (sc, sc) int16 per lane: the madd / dpwssd multiplier of the lane's two int16 sums
            const __m512i sc32 = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(pb + 3072 + 16 * k)));
            const __m512i scw = _mm512_or_si512(_mm512_and_si512(sc32, _mm512_set1_epi32(0xffff)), _mm512_slli_epi32(sc32, 16));
            UG_UNROLL
            for (int c = 0; c < NC; ++c) {
                const auto* x = reinterpret_cast<const int8_t*>(act + static_cast<size_t>(c) * as) + 256 * s + 128 * h +
                                32 * m + 16 * half;
                // (q + 128) u8 x (c - 32) s8 pairs, two groups per int16 sum: |.| <= 4 * 255 * 32 < 2^15
                const __m512i p = _mm512_add_epi16(_mm512_maddubs_epi16(bcast4(x), w[0]), _mm512_maddubs_epi16(bcast4(x + 4), w[1]));
                const __m512i r = _mm512_add_epi16(_mm512_maddubs_epi16(bcast4(x + 8), w[2]), _mm512_maddubs_epi16(bcast4(x + 12), w[3]));
                isum[c] = dot_s16<V>(dot_s16<V>(isum[c], p, scw), r, scw);
            }
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(pb + 3328)));
        const __m512i wsum = _mm512_slli_epi32(_mm512_loadu_si512(pb + 3360), 7);
        UG_UNROLL
        for (int c = 0; c < NC; ++c) {
            float xd;
            std::memcpy(&xd, act + static_cast<size_t>(c) * as + cols + 4 * s, 4);
            const __m512i t = _mm512_sub_epi32(isum[c], wsum);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_mul_ps(dw, _mm512_set1_ps(xd)), acc[c]);
        }
    }
    UG_UNROLL
    for (int c = 0; c < NC; ++c) _mm512_storeu_ps(out + c * os, acc[c]);
}

template <bool V>
void q6_k_panels(int64_t nb, int nc, float* out, int64_t os, const uint8_t* panel, const uint8_t* act, size_t as) {
    using Fn = void (*)(int64_t, float*, int64_t, const uint8_t*, const uint8_t*, size_t);
    static constexpr Fn tbl[8] = {run_6<V, 1>, run_6<V, 2>, run_6<V, 3>, run_6<V, 4>,
                                  run_6<V, 5>, run_6<V, 6>, run_6<V, 7>, run_6<V, 8>};
    tbl[nc - 1](nb, out, os, panel, act, as);
}

template <bool V>
void q4_0_panels(int64_t nb, int nc, float* out, int64_t os, const uint8_t* panel, const uint8_t* act, size_t as) {
    using Fn = void (*)(int64_t, float*, int64_t, const uint8_t*, const uint8_t*, size_t);
    static constexpr Fn tbl[8] = {run<V, 1>, run<V, 2>, run<V, 3>, run<V, 4>,
                                  run<V, 5>, run<V, 6>, run<V, 7>, run<V, 8>};
    tbl[nc - 1](nb, out, os, panel, act, as);
}

}  // namespace

void add_panel_kernels_avx512(KernelTable& t, bool vnni) {
    t.panel_dot[static_cast<int>(PanelType::Q4_0)] = vnni ? q4_0_panels<true> : q4_0_panels<false>;
    t.panel_dot[static_cast<int>(PanelType::Q4_K)] = vnni ? q4_k_panels<true> : q4_k_panels<false>;
    t.panel_dot[static_cast<int>(PanelType::Q6_K)] = vnni ? q6_k_panels<true> : q6_k_panels<false>;
}

}  // namespace unigemma::cpu
