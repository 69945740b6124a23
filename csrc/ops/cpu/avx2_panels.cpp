// Panel kernels, AVX2 (layouts and arithmetic: panels.h; reference: scalar_panels.cpp,
// matched bit for bit). A 16-row panel is two 8-row halves, one ymm
// each (row i's 4 codes of a group in 32-bit lane i % 8 of half i / 8). Per half, block and
// token: 8 vpmaddubsw (u8 codes x broadcast s8 activation groups, |pair| <= 3840) summed as
// int16 (<= 30720), one vpmaddwd against ones, minus the offset sum, to float, times
// d_w * d_x, one FMA. Q4_K: the same dot per 32-element sub-block, times the rows' scales
// (vpmulld) into an int32 super-block sum, the mins term likewise, two FMAs per super-block.
// Q6_K: signed codes c - 32, vpmaddubsw of unsigned activations q + 128 with them (two
// groups per int16 sum), vpmaddwd with the rows' scales as int16 pairs, minus 128 x the
// precomputed weight sums, one FMA per super-block.
#include <immintrin.h>

#include <cstring>

#include "ops/cpu/kernels.h"

#include "ops/cpu/unroll.h"

namespace unigemma::cpu {

namespace {

inline __m256i bcast4(const int8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

// sum_g w[g] . broadcast(x[4g .. 4g+3]) over 8 groups, int32 per lane.
inline __m256i dot8(const __m256i (&w)[8], const int8_t* x) {
    __m256i s = _mm256_maddubs_epi16(w[0], bcast4(x));
    UG_UNROLL
    for (int g = 1; g < 8; ++g) s = _mm256_add_epi16(s, _mm256_maddubs_epi16(w[g], bcast4(x + 4 * g)));
    return _mm256_madd_epi16(s, _mm256_set1_epi16(1));
}

template <int NC>
void run_k(int64_t nb, float* out, int64_t os, const uint8_t* panel, const uint8_t* act, size_t as) {
    const int64_t cols = nb * 256;
    __m256 acc[NC][2];
    UG_UNROLL
    for (int c = 0; c < NC; ++c) acc[c][0] = acc[c][1] = _mm256_setzero_ps();
    const __m256i lo = _mm256_set1_epi8(0x0f);
    for (int64_t s = 0; s < nb; ++s) {
        const uint8_t* pb = panel + s * 2368;
        for (int h = 0; h < 2; ++h) {
            __m256i isum[NC];
            UG_UNROLL
            for (int c = 0; c < NC; ++c) isum[c] = _mm256_setzero_si256();
            for (int j = 0; j < 8; ++j) {
                const uint8_t* pv = pb + 64 * 8 * (j / 2) + 32 * h;
                __m256i w[8];
                UG_UNROLL
                for (int g = 0; g < 8; ++g) {
                    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pv + 64 * g));
                    w[g] = _mm256_and_si256(j & 1 ? _mm256_srli_epi16(v, 4) : v, lo);
                }
                const __m256i sc =
                    _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(pb + 2048 + 16 * j + 8 * h)));
                UG_UNROLL
                for (int c = 0; c < NC; ++c) {
                    const auto* x = reinterpret_cast<const int8_t*>(act + static_cast<size_t>(c) * as) + 256 * s + 32 * j;
                    isum[c] = _mm256_add_epi32(isum[c], _mm256_mullo_epi32(dot8(w, x), sc));
                }
            }
            const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(pb + 2304 + 16 * h)));
            const __m256 dm = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(pb + 2336 + 16 * h)));
            UG_UNROLL
            for (int c = 0; c < NC; ++c) {
                const uint8_t* at = act + static_cast<size_t>(c) * as;
                float xd;
                int32_t xs[8];
                std::memcpy(&xd, at + cols + 4 * s, 4);
                std::memcpy(xs, at + cols + 4 * nb + 32 * s, 32);
                __m256i ms = _mm256_setzero_si256();
                for (int j = 0; j < 8; ++j) {
                    const __m256i m = _mm256_cvtepu8_epi32(
                        _mm_loadl_epi64(reinterpret_cast<const __m128i*>(pb + 2176 + 16 * j + 8 * h)));
                    ms = _mm256_add_epi32(ms, _mm256_mullo_epi32(m, _mm256_set1_epi32(xs[j])));
                }
                const __m256 vx = _mm256_set1_ps(xd);
                acc[c][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[c]), _mm256_mul_ps(dw, vx), acc[c][h]);
                acc[c][h] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_mul_ps(dm, vx), acc[c][h]);
            }
        }
    }
    UG_UNROLL
    for (int c = 0; c < NC; ++c) {
        _mm256_storeu_ps(out + c * os, acc[c][0]);
        _mm256_storeu_ps(out + c * os + 8, acc[c][1]);
    }
}

void q4_k_panels(int64_t nb, int nc, float* out, int64_t os, const uint8_t* panel, const uint8_t* act, size_t as) {
    using Fn = void (*)(int64_t, float*, int64_t, const uint8_t*, const uint8_t*, size_t);
    static constexpr Fn tbl[2] = {run_k<1>, run_k<2>};
    for (int c = 0; c < nc; c += 2) {
        const int m = nc - c < 2 ? nc - c : 2;
        tbl[m - 1](nb, out + c * os, os, panel, act + static_cast<size_t>(c) * as, as);
    }
}

template <int NC>
void run_6(int64_t nb, float* out, int64_t os, const uint8_t* panel, const uint8_t* act, size_t as) {
    const int64_t cols = nb * 256;
    __m256 acc[NC][2];
    UG_UNROLL
    for (int c = 0; c < NC; ++c) acc[c][0] = acc[c][1] = _mm256_setzero_ps();
    const __m256i lo = _mm256_set1_epi8(0x0f);
    const __m256i hm = _mm256_set1_epi8(0x30);
    const __m256i b32 = _mm256_set1_epi8(32);
    for (int64_t s = 0; s < nb; ++s) {
        const uint8_t* pb = panel + s * 3424;
        for (int hf = 0; hf < 2; ++hf) {  // rows 8 hf .. 8 hf + 7
            __m256i isum[NC];
            UG_UNROLL
            for (int c = 0; c < NC; ++c) isum[c] = _mm256_setzero_si256();
            UG_UNROLL
            for (int k = 0; k < 16; ++k) {
                const int h = k / 8, m = (k % 8) / 2, half = k % 2;
                __m256i w[4];
                UG_UNROLL
                for (int q = 0; q < 4; ++q) {
                    const int g = 4 * half + q;
                    const __m256i L = _mm256_loadu_si256(
                        reinterpret_cast<const __m256i*>(pb + 64 * (16 * h + 8 * (m & 1) + g) + 32 * hf));
                    const __m256i H =
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pb + 2048 + 64 * (8 * h + g) + 32 * hf));
                    const __m256i low = _mm256_and_si256(m < 2 ? L : _mm256_srli_epi16(L, 4), lo);
                    const __m256i hi = m == 0 ? _mm256_slli_epi16(H, 4)
                                       : m == 1 ? _mm256_slli_epi16(H, 2)
                                       : m == 2 ? H
                                                : _mm256_srli_epi16(H, 2);
                    w[q] = _mm256_sub_epi8(_mm256_or_si256(low, _mm256_and_si256(hi, hm)), b32);
                }
                const __m256i sc32 =
                    _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(pb + 3072 + 16 * k + 8 * hf)));
                const __m256i scw =
                    _mm256_or_si256(_mm256_and_si256(sc32, _mm256_set1_epi32(0xffff)), _mm256_slli_epi32(sc32, 16));
                UG_UNROLL
                for (int c = 0; c < NC; ++c) {
                    const auto* x = reinterpret_cast<const int8_t*>(act + static_cast<size_t>(c) * as) + 256 * s +
                                    128 * h + 32 * m + 16 * half;
                    const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(bcast4(x), w[0]),
                                                       _mm256_maddubs_epi16(bcast4(x + 4), w[1]));
                    const __m256i r = _mm256_add_epi16(_mm256_maddubs_epi16(bcast4(x + 8), w[2]),
                                                       _mm256_maddubs_epi16(bcast4(x + 12), w[3]));
                    isum[c] = _mm256_add_epi32(isum[c],
                                               _mm256_add_epi32(_mm256_madd_epi16(p, scw), _mm256_madd_epi16(r, scw)));
                }
            }
            const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(pb + 3328 + 16 * hf)));
            const __m256i wsum =
                _mm256_slli_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(pb + 3360 + 32 * hf)), 7);
            UG_UNROLL
            for (int c = 0; c < NC; ++c) {
                float xd;
                std::memcpy(&xd, act + static_cast<size_t>(c) * as + cols + 4 * s, 4);
                const __m256i t = _mm256_sub_epi32(isum[c], wsum);
                acc[c][hf] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), _mm256_mul_ps(dw, _mm256_set1_ps(xd)), acc[c][hf]);
            }
        }
    }
    UG_UNROLL
    for (int c = 0; c < NC; ++c) {
        _mm256_storeu_ps(out + c * os, acc[c][0]);
        _mm256_storeu_ps(out + c * os + 8, acc[c][1]);
    }
}

void q6_k_panels(int64_t nb, int nc, float* out, int64_t os, const uint8_t* panel, const uint8_t* act, size_t as) {
    using Fn = void (*)(int64_t, float*, int64_t, const uint8_t*, const uint8_t*, size_t);
    static constexpr Fn tbl[2] = {run_6<1>, run_6<2>};
    for (int c = 0; c < nc; c += 2) {
        const int m = nc - c < 2 ? nc - c : 2;
        tbl[m - 1](nb, out + c * os, os, panel, act + static_cast<size_t>(c) * as, as);
    }
}

template <int NC>
void run(int64_t nb, float* out, int64_t os, const uint8_t* panel, const uint8_t* act, size_t as) {
    __m256 acc[NC][2];
    UG_UNROLL
    for (int c = 0; c < NC; ++c) acc[c][0] = acc[c][1] = _mm256_setzero_ps();
    const __m256i lo = _mm256_set1_epi8(0x0f);
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* pb = panel + b * 288;
        UG_UNROLL
        for (int h = 0; h < 2; ++h) {
            __m256i w[8];
            UG_UNROLL
            for (int j = 0; j < 4; ++j) {
                const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pb + 64 * j + 32 * h));
                w[j] = _mm256_and_si256(v, lo);
                w[j + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo);
            }
            const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(pb + 256 + 16 * h)));
            UG_UNROLL
            for (int c = 0; c < NC; ++c) {
                const uint8_t* at = act + static_cast<size_t>(c) * as;
                const auto* x = reinterpret_cast<const int8_t*>(at) + 32 * b;
                float xd;
                int32_t xs;
                std::memcpy(&xd, at + nb * 32 + 4 * b, 4);
                std::memcpy(&xs, at + nb * 36 + 4 * b, 4);
                __m256i s = _mm256_maddubs_epi16(w[0], bcast4(x));
                UG_UNROLL
                for (int j = 1; j < 4; ++j) s = _mm256_add_epi16(s, _mm256_maddubs_epi16(w[j], bcast4(x + 4 * j)));
                UG_UNROLL
                for (int j = 0; j < 4; ++j)
                    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(w[j + 4], bcast4(x + 16 + 4 * j)));
                const __m256i dot = _mm256_sub_epi32(_mm256_madd_epi16(s, ones), _mm256_set1_epi32(xs));
                acc[c][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(dw, _mm256_set1_ps(xd)), acc[c][h]);
            }
        }
    }
    UG_UNROLL
    for (int c = 0; c < NC; ++c) {
        _mm256_storeu_ps(out + c * os, acc[c][0]);
        _mm256_storeu_ps(out + c * os + 8, acc[c][1]);
    }
}

void q4_0_panels(int64_t nb, int nc, float* out, int64_t os, const uint8_t* panel, const uint8_t* act, size_t as) {
    using Fn = void (*)(int64_t, float*, int64_t, const uint8_t*, const uint8_t*, size_t);
    // at most 4 tokens per pass: 8 accumulators + 8 code vectors fill the 16 ymm registers
    static constexpr Fn tbl[4] = {run<1>, run<2>, run<3>, run<4>};
    for (int c = 0; c < nc; c += 4) {
        const int m = nc - c < 4 ? nc - c : 4;
        tbl[m - 1](nb, out + c * os, os, panel, act + static_cast<size_t>(c) * as, as);
    }
}

}  // namespace

void add_panel_kernels_avx2(KernelTable& t) {
    t.panel_dot[static_cast<int>(PanelType::Q4_0)] = q4_0_panels;
    t.panel_dot[static_cast<int>(PanelType::Q4_K)] = q4_k_panels;
    t.panel_dot[static_cast<int>(PanelType::Q6_K)] = q6_k_panels;
}

}  // namespace unigemma::cpu
