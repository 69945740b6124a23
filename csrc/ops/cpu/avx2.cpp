// AVX2 + FMA + F16C kernel table (compiled with -mavx2 -mfma -mf16c; entered only when the
// CPU has all three). Same contracts as scalar.cpp, which documents the activation formats.
//
// Quantized dots: one weight block is unpacked once per row and reused for every column of
// the tile; one activation block is loaded once per column. u8 x s8 products use vpmaddubsw
// (pairs -> int16, never saturating here: |w| <= 63 and |x| <= 127 give <= 16002), then
// vpmaddwd to int32 (with ones, or with the K-quant sub-block scales), int32 -> float, and an
// FMA with the block scale. Offsets of unsigned codes (Q4_0: -8, Q5_0: -16, Q6_K: -32) are
// removed with the activation block sums, so the weights stay unsigned.
// Float weights (F32/F16/BF16): 8-lane FMA accumulators, the tail in scalar code.
#include <immintrin.h>

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
    return _cvtsh_ss(h);
}

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

inline int hsum_i32(__m128i v) {
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 0, 3, 2)));
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(v);
}

inline int hsum_i32(__m256i v) {
    return hsum_i32(_mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)));
}

inline float hmax(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

inline __m256i loadu256(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline __m128i loadu128(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

// 16 bytes of nibbles -> 32 bytes [low nibbles | high nibbles] (element order of a Q4 block).
inline __m256i unpack_nibbles(const uint8_t* p) {
    const __m128i q = loadu128(p);
    const __m256i v = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
}

// 32 bits (element i = bit i) -> 32 bytes of 0x10 / 0x00.
inline __m256i bits_to_0x10(uint32_t bits) {
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3,
                                          3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), shuf);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

inline __m256i ones16() { return _mm256_set1_epi16(1); }


// ------------------------------------------------------------------ float weights

struct LoadF32 {
    static constexpr int kBytes = 4;
    static __m256 load(const uint8_t* p) { return _mm256_loadu_ps(reinterpret_cast<const float*>(p)); }
    static float one(const uint8_t* p) {
        float v;
        std::memcpy(&v, p, 4);
        return v;
    }
};
struct LoadF16 {
    static constexpr int kBytes = 2;
    static __m256 load(const uint8_t* p) { return _mm256_cvtph_ps(loadu128(p)); }
    static float one(const uint8_t* p) { return h2f(p); }
};
struct LoadBF16 {
    static constexpr int kBytes = 2;
    static __m256 load(const uint8_t* p) {
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(loadu128(p)), 16));
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
            __m256 acc[U][NR][NC];
            for (int u = 0; u < U; ++u)
                for (int r = 0; r < NR; ++r)
                    for (int c = 0; c < NC; ++c) acc[u][r][c] = _mm256_setzero_ps();
            int64_t i = 0;
            for (; i + 8 * U <= n; i += 8 * U) {
                UG_UNROLL
                for (int u = 0; u < U; ++u) {
                    const int64_t e = i + 8 * u;
                    __m256 wv[NR];
                    for (int r = 0; r < NR; ++r) wv[r] = L::load(w + r * ws + e * L::kBytes);
                    for (int c = 0; c < NC; ++c) {
                        const __m256 xv = _mm256_loadu_ps(reinterpret_cast<const float*>(x + c * xs) + e);
                        for (int r = 0; r < NR; ++r) acc[u][r][c] = _mm256_fmadd_ps(wv[r], xv, acc[u][r][c]);
                    }
                }
            }
            for (; i + 8 <= n; i += 8) {
                __m256 wv[NR];
                for (int r = 0; r < NR; ++r) wv[r] = L::load(w + r * ws + i * L::kBytes);
                for (int c = 0; c < NC; ++c) {
                    const __m256 xv = _mm256_loadu_ps(reinterpret_cast<const float*>(x + c * xs) + i);
                    for (int r = 0; r < NR; ++r) acc[0][r][c] = _mm256_fmadd_ps(wv[r], xv, acc[0][r][c]);
                }
            }
            for (int r = 0; r < NR; ++r)
                for (int c = 0; c < NC; ++c) {
                    __m256 a = acc[0][r][c];
                    for (int u = 1; u < U; ++u) a = _mm256_add_ps(a, acc[u][r][c]);
                    float s = hsum(a);
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

// A format describes one weight block (W), one activation block (X) and their int32 dot.
struct FQ8_0 {
    static constexpr int kW = 34, kX = 34;
    static constexpr bool kMin = false;
    struct W {
        __m256i v, a;
        float d, m;
    };
    struct X {
        __m256i v;
        float d, s;
    };
    static W load_w(const uint8_t* b) {
        const __m256i v = loadu256(b + 2);
        return {v, _mm256_sign_epi8(v, v), h2f(b), 0.0f};
    }
    static X load_x(const uint8_t* b) { return {loadu256(b + 2), h2f(b), 0.0f}; }
    static __m256i dot(const W& w, const X& x) {
        return _mm256_madd_epi16(_mm256_maddubs_epi16(w.a, _mm256_sign_epi8(x.v, w.v)), ones16());
    }
};

// Unsigned codes with an offset k: sum (q - k) x = sum q x - k sum x; the k * x pair sums
// come from one maddubs per activation block.
template <int Off>
struct XOff {
    __m256i v, c;
    float d, s;
};
template <int Off>
inline XOff<Off> load_x_off(const uint8_t* b) {
    const __m256i v = loadu256(b + 2);
    return {v, _mm256_maddubs_epi16(_mm256_set1_epi8(Off), v), h2f(b), 0.0f};
}

struct FQ4_0 {
    static constexpr int kW = 18, kX = 34;
    static constexpr bool kMin = false;
    struct W {
        __m256i v;
        float d, m;
    };
    using X = XOff<8>;
    static W load_w(const uint8_t* b) { return {unpack_nibbles(b + 2), h2f(b), 0.0f}; }
    static X load_x(const uint8_t* b) { return load_x_off<8>(b); }
    static __m256i dot(const W& w, const X& x) {
        return _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(w.v, x.v), x.c), ones16());
    }
};

struct FQ5_0 {
    static constexpr int kW = 22, kX = 34;
    static constexpr bool kMin = false;
    struct W {
        __m256i v;
        float d, m;
    };
    using X = XOff<16>;
    static W load_w(const uint8_t* b) {
        uint32_t qh;
        std::memcpy(&qh, b + 2, 4);
        return {_mm256_or_si256(unpack_nibbles(b + 6), bits_to_0x10(qh)), h2f(b), 0.0f};
    }
    static X load_x(const uint8_t* b) { return load_x_off<16>(b); }
    static __m256i dot(const W& w, const X& x) {
        return _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(w.v, x.v), x.c), ones16());
    }
};

struct XQ8_1 {
    __m256i v;
    float d, s;
};
inline XQ8_1 load_x_q8_1(const uint8_t* b) { return {loadu256(b + 4), h2f(b), h2f(b + 2)}; }

struct FQ4_1 {
    static constexpr int kW = 20, kX = 36;
    static constexpr bool kMin = true;
    struct W {
        __m256i v;
        float d, m;
    };
    using X = XQ8_1;
    static W load_w(const uint8_t* b) { return {unpack_nibbles(b + 4), h2f(b), h2f(b + 2)}; }
    static X load_x(const uint8_t* b) { return load_x_q8_1(b); }
    static __m256i dot(const W& w, const X& x) { return _mm256_madd_epi16(_mm256_maddubs_epi16(w.v, x.v), ones16()); }
};

struct FQ5_1 {
    static constexpr int kW = 24, kX = 36;
    static constexpr bool kMin = true;
    struct W {
        __m256i v;
        float d, m;
    };
    using X = XQ8_1;
    static W load_w(const uint8_t* b) {
        uint32_t qh;
        std::memcpy(&qh, b + 4, 4);
        return {_mm256_or_si256(unpack_nibbles(b + 8), bits_to_0x10(qh)), h2f(b), h2f(b + 2)};
    }
    static X load_x(const uint8_t* b) { return load_x_q8_1(b); }
    static __m256i dot(const W& w, const X& x) { return _mm256_madd_epi16(_mm256_maddubs_epi16(w.v, x.v), ones16()); }
};

template <class F>
struct LegacyK {
    template <int NR, int NC>
    struct K {
        static void step(int64_t i, __m256 (&acc)[NR][NC], float (&ext)[NR][NC], const uint8_t* w, size_t ws,
                         const uint8_t* x, size_t xs) {
            typename F::W wb[NR];
            for (int r = 0; r < NR; ++r) wb[r] = F::load_w(w + r * ws + i * F::kW);
            for (int c = 0; c < NC; ++c) {
                const typename F::X xb = F::load_x(x + c * xs + i * F::kX);
                for (int r = 0; r < NR; ++r) {
                    const __m256 p = _mm256_cvtepi32_ps(F::dot(wb[r], xb));
                    acc[r][c] = _mm256_fmadd_ps(p, _mm256_set1_ps(wb[r].d * xb.d), acc[r][c]);
                    if constexpr (F::kMin) ext[r][c] += wb[r].m * xb.s;
                }
            }
        }
        static void run(int64_t n, float* out, int64_t os, const uint8_t* w, size_t ws, const uint8_t* x,
                        size_t xs) {
            // One accumulator per (row, column) whatever the tile shape: a row kernel (1 x 1) and
            // every tile position sum the blocks in the same order, so a token gets the same bits
            // alone (decode) and in a batch (prefill, speculative verification).
            constexpr int U = 1;
            __m256 acc[U][NR][NC];
            float ext[NR][NC];
            for (int r = 0; r < NR; ++r)
                for (int c = 0; c < NC; ++c) {
                    ext[r][c] = 0.0f;
                    for (int u = 0; u < U; ++u) acc[u][r][c] = _mm256_setzero_ps();
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
                    __m256 a = acc[0][r][c];
                    for (int u = 1; u < U; ++u) a = _mm256_add_ps(a, acc[u][r][c]);
                    out[c * os + r] = hsum(a) + ext[r][c];
                }
        }
    };
};

// ------------------------------------------------------------------ K-quants

// Q4_K / Q5_K 12-byte scales -> sc[8], m[8] (the 32-bit form of unpack_scale_min_k4).
inline void unpack_k4_scales(const uint8_t* s, uint8_t* sc, uint8_t* m) {
    uint32_t u0, u1, u2;
    std::memcpy(&u0, s, 4);
    std::memcpy(&u1, s + 4, 4);
    std::memcpy(&u2, s + 8, 4);
    const uint32_t a = u0 & 0x3f3f3f3fu, b = u1 & 0x3f3f3f3fu;
    const uint32_t c = (u2 & 0x0f0f0f0fu) | ((u0 >> 2) & 0x30303030u);
    const uint32_t d = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 2) & 0x30303030u);
    std::memcpy(sc, &a, 4);
    std::memcpy(sc + 4, &c, 4);
    std::memcpy(m, &b, 4);
    std::memcpy(m + 4, &d, 4);
}

// Q8_K activation block views.
inline float q8k_d(const uint8_t* b) {
    float d;
    std::memcpy(&d, b, 4);
    return d;
}
inline const uint8_t* q8k_qs(const uint8_t* b) { return b + 4; }
inline __m256i q8k_bsums(const uint8_t* b) { return loadu256(b + 260); }
// bsums of 32-element sub-blocks (pairs of the 16-element sums), as 8 int16.
inline __m128i q8k_bsums32(const uint8_t* b) {
    return _mm_hadd_epi16(loadu128(b + 260), loadu128(b + 276));
}

template <bool kQ5>
struct Q45K {
    template <int NR, int NC>
    struct K {
        static constexpr int kW = kQ5 ? 176 : 144;
        static void run(int64_t n, float* out, int64_t os, const uint8_t* w, size_t ws, const uint8_t* x,
                        size_t xs) {
            __m256 acc[NR][NC];
            float macc[NR][NC];
            for (int r = 0; r < NR; ++r)
                for (int c = 0; c < NC; ++c) {
                    acc[r][c] = _mm256_setzero_ps();
                    macc[r][c] = 0.0f;
                }
            const __m256i m4 = _mm256_set1_epi8(0x0f);
            const int64_t nb = n / 256;
            for (int64_t i = 0; i < nb; ++i) {
                float d[NR], dmin[NR], dx[NC];
                alignas(16) uint8_t sc[NR][8], mn[NR][8];
                const uint8_t* wb[NR];
                const uint8_t* xb[NC];
                for (int r = 0; r < NR; ++r) {
                    wb[r] = w + r * ws + i * kW;
                    d[r] = h2f(wb[r]);
                    dmin[r] = h2f(wb[r] + 2);
                    unpack_k4_scales(wb[r] + 4, sc[r], mn[r]);
                }
                for (int c = 0; c < NC; ++c) {
                    xb[c] = x + c * xs + i * 292;
                    dx[c] = q8k_d(xb[c]);
                }
                __m256i isum[NR][NC];
                for (int r = 0; r < NR; ++r)
                    for (int c = 0; c < NC; ++c) isum[r][c] = _mm256_setzero_si256();
                for (int j = 0; j < 4; ++j) {
                    __m256i lo[NR], hi[NR];
                    for (int r = 0; r < NR; ++r) {
                        const uint8_t* qs = wb[r] + (kQ5 ? 48 : 16) + 32 * j;
                        const __m256i q = loadu256(qs);
                        lo[r] = _mm256_and_si256(q, m4);
                        hi[r] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                        if constexpr (kQ5) {
                            const __m256i qh = _mm256_srl_epi16(loadu256(wb[r] + 16), _mm_cvtsi32_si128(2 * j));
                            lo[r] = _mm256_or_si256(
                                lo[r], _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(1)), 4));
                            hi[r] = _mm256_or_si256(
                                hi[r], _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(2)), 3));
                        }
                    }
                    for (int c = 0; c < NC; ++c) {
                        const __m256i xl = loadu256(q8k_qs(xb[c]) + 64 * j);
                        const __m256i xh = loadu256(q8k_qs(xb[c]) + 64 * j + 32);
                        for (int r = 0; r < NR; ++r) {
                            const __m256i pl = _mm256_madd_epi16(_mm256_maddubs_epi16(lo[r], xl),
                                                                 _mm256_set1_epi16(sc[r][2 * j]));
                            const __m256i ph = _mm256_madd_epi16(_mm256_maddubs_epi16(hi[r], xh),
                                                                 _mm256_set1_epi16(sc[r][2 * j + 1]));
                            isum[r][c] = _mm256_add_epi32(isum[r][c], _mm256_add_epi32(pl, ph));
                        }
                    }
                }
                for (int c = 0; c < NC; ++c) {
                    const __m128i bs = q8k_bsums32(xb[c]);
                    for (int r = 0; r < NR; ++r) {
                        const __m128i m16 = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(mn[r])));
                        const int msum = hsum_i32(_mm_madd_epi16(m16, bs));
                        acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][c]), _mm256_set1_ps(d[r] * dx[c]),
                                                    acc[r][c]);
                        macc[r][c] += (dmin[r] * dx[c]) * static_cast<float>(msum);
                    }
                }
            }
            for (int r = 0; r < NR; ++r)
                for (int c = 0; c < NC; ++c) out[c * os + r] = hsum(acc[r][c]) - macc[r][c];
        }
    };
};

template <int NR, int NC>
using Q4K = Q45K<false>::K<NR, NC>;
template <int NR, int NC>
using Q5K = Q45K<true>::K<NR, NC>;

template <int NR, int NC>
struct Q6K {
    static void run(int64_t n, float* out, int64_t os, const uint8_t* w, size_t ws, const uint8_t* x, size_t xs) {
        __m256 acc[NR][NC];
        for (int r = 0; r < NR; ++r)
            for (int c = 0; c < NC; ++c) acc[r][c] = _mm256_setzero_ps();
        const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
        const int64_t nb = n / 256;
        for (int64_t i = 0; i < nb; ++i) {
            const uint8_t* wb[NR];
            const uint8_t* xb[NC];
            float d[NR];
            __m256i sv[NR][8];  // per 32-element vector k: [scale 2k x8 | scale 2k+1 x8] as int16
            __m256i sfull[NR];  // the 16 scales as int16
            for (int r = 0; r < NR; ++r) {
                wb[r] = w + r * ws + i * 210;
                d[r] = h2f(wb[r] + 208);
                const __m128i s8 = loadu128(wb[r] + 192);
                sfull[r] = _mm256_cvtepi8_epi16(s8);
                for (int k = 0; k < 8; ++k) {
                    const __m128i idx = _mm_setr_epi8(2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k,
                                                      2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1,
                                                      2 * k + 1, 2 * k + 1, 2 * k + 1);
                    sv[r][k] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s8, idx));
                }
            }
            for (int c = 0; c < NC; ++c) xb[c] = x + c * xs + i * 292;
            __m256i isum[NR][NC];
            for (int r = 0; r < NR; ++r)
                for (int c = 0; c < NC; ++c) {
                    // the -32 offset: 32 * sum_j scale_j * bsum_j
                    const __m256i corr = _mm256_madd_epi16(sfull[r], q8k_bsums(xb[c]));
                    isum[r][c] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(corr, 5));
                }
            for (int h = 0; h < 2; ++h) {
                __m256i q[NR][4];
                for (int r = 0; r < NR; ++r) {
                    const __m256i ql0 = loadu256(wb[r] + 64 * h);
                    const __m256i ql1 = loadu256(wb[r] + 64 * h + 32);
                    const __m256i qh = loadu256(wb[r] + 128 + 32 * h);
                    q[r][0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
                    q[r][1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
                    q[r][2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m30));
                    q[r][3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                              _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
                }
                for (int c = 0; c < NC; ++c) {
                    for (int v = 0; v < 4; ++v) {
                        const __m256i xv = loadu256(q8k_qs(xb[c]) + 128 * h + 32 * v);
                        for (int r = 0; r < NR; ++r) {
                            const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(q[r][v], xv), sv[r][4 * h + v]);
                            isum[r][c] = _mm256_add_epi32(isum[r][c], p);
                        }
                    }
                }
            }
            for (int c = 0; c < NC; ++c) {
                const float dx = q8k_d(xb[c]);
                for (int r = 0; r < NR; ++r)
                    acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][c]), _mm256_set1_ps(d[r] * dx), acc[r][c]);
            }
        }
        for (int r = 0; r < NR; ++r)
            for (int c = 0; c < NC; ++c) out[c * os + r] = hsum(acc[r][c]);
    }
};

// ------------------------------------------------------------------ activations

// 8 floats -> 8 int32 of round_half_even(clamp(v * id, -127, 127)).
inline __m256i q8_lanes(__m256 v, __m256 id) {
    v = _mm256_mul_ps(v, id);
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
    return _mm256_cvtps_epi32(v);  // default rounding: to nearest, ties to even
}

// 32 int32 (4 vectors) -> 32 int8 in order.
inline __m256i pack_32(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    const __m256i r = _mm256_packs_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

inline float absmax(const float* x, int n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < n; j += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
    return hmax(m);
}

void quantize_q8_0_act(const float* x, void* y, int64_t n) {
    auto* out = static_cast<uint8_t*>(y);
    for (int64_t i = 0; i < n / 32; ++i) {
        const float* xb = x + 32 * i;
        const uint16_t d16 = scale_to_fp16_up(absmax(xb, 32) / 127.0f);
        const float dr = fp16_to_fp32(d16);
        const __m256 id = _mm256_set1_ps(dr > 0.0f ? 1.0f / dr : 0.0f);
        const __m256i q = pack_32(q8_lanes(_mm256_loadu_ps(xb), id), q8_lanes(_mm256_loadu_ps(xb + 8), id),
                                  q8_lanes(_mm256_loadu_ps(xb + 16), id), q8_lanes(_mm256_loadu_ps(xb + 24), id));
        uint8_t* ob = out + 34 * i;
        std::memcpy(ob, &d16, 2);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(ob + 2), q);
    }
}

void quantize_q8_1_act(const float* x, void* y, int64_t n) {
    auto* out = static_cast<uint8_t*>(y);
    for (int64_t i = 0; i < n / 32; ++i) {
        const float* xb = x + 32 * i;
        const uint16_t d16 = scale_to_fp16_up(absmax(xb, 32) / 127.0f);
        const float dr = fp16_to_fp32(d16);
        const __m256 id = _mm256_set1_ps(dr > 0.0f ? 1.0f / dr : 0.0f);
        const __m256i a = q8_lanes(_mm256_loadu_ps(xb), id), b = q8_lanes(_mm256_loadu_ps(xb + 8), id);
        const __m256i c = q8_lanes(_mm256_loadu_ps(xb + 16), id), e = q8_lanes(_mm256_loadu_ps(xb + 24), id);
        const int sum = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(a, b), _mm256_add_epi32(c, e)));
        const float s = dr * static_cast<float>(sum);
        const uint16_t s16 = static_cast<uint16_t>(scale_to_fp16(std::fabs(s)) | (s < 0.0f ? 0x8000u : 0u));
        uint8_t* ob = out + 36 * i;
        std::memcpy(ob, &d16, 2);
        std::memcpy(ob + 2, &s16, 2);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(ob + 4), pack_32(a, b, c, e));
    }
}

void quantize_q8_k_act(const float* x, void* y, int64_t n) {
    auto* out = static_cast<uint8_t*>(y);
    for (int64_t i = 0; i < n / 256; ++i) {
        const float* xb = x + 256 * i;
        float d = absmax(xb, 256) / 127.0f;
        if (!(d >= FLT_MIN)) d = 0.0f;
        const __m256 id = _mm256_set1_ps(d > 0.0f ? 1.0f / d : 0.0f);
        uint8_t* ob = out + 292 * i;
        std::memcpy(ob, &d, 4);
        int16_t bsums[16];
        for (int g = 0; g < 8; ++g) {  // 32 elements = two 16-element groups
            const float* xg = xb + 32 * g;
            const __m256i a = q8_lanes(_mm256_loadu_ps(xg), id), b = q8_lanes(_mm256_loadu_ps(xg + 8), id);
            const __m256i c = q8_lanes(_mm256_loadu_ps(xg + 16), id), e = q8_lanes(_mm256_loadu_ps(xg + 24), id);
            bsums[2 * g] = static_cast<int16_t>(hsum_i32(_mm256_add_epi32(a, b)));
            bsums[2 * g + 1] = static_cast<int16_t>(hsum_i32(_mm256_add_epi32(c, e)));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(ob + 4 + 32 * g), pack_32(a, b, c, e));
        }
        std::memcpy(ob + 260, bsums, 32);
    }
}

void quantize_f32_act(const float* x, void* y, int64_t n) {
    if (n > 0) std::memmove(y, x, static_cast<size_t>(n) * sizeof(float));
}

// ------------------------------------------------------------------ vector math

// exp(x) for x in [-87.33, 88] (clamped above; 0 below ln(FLT_MIN)), ~2 ulp.
inline __m256 v_exp(__m256 x) {
    const __m256 small = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33654f), _CMP_LT_OQ);
    x = _mm256_min_ps(x, _mm256_set1_ps(88.0f));
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.33654f));
    const __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(small, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

// tanh(u) = expm1(2u) / (expm1(2u) + 2), with expm1 accurate near 0 (relative error ~ eps).
inline __m256 v_tanh(__m256 u) {
    u = _mm256_min_ps(_mm256_max_ps(u, _mm256_set1_ps(-9.0f)), _mm256_set1_ps(9.0f));
    const __m256 v = _mm256_add_ps(u, u);
    const __m256 k = _mm256_round_ps(_mm256_mul_ps(v, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), v);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 40320);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 5040));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256 q = _mm256_mul_ps(p, r);  // expm1(r)
    const __m256 s = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23));
    const __m256 e = _mm256_fmadd_ps(s, q, _mm256_sub_ps(s, _mm256_set1_ps(1.0f)));  // expm1(2u)
    return _mm256_div_ps(e, _mm256_add_ps(e, _mm256_set1_ps(2.0f)));
}

// gelu_tanh(x) = 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3).
inline __m256 v_gelu(__m256 x) {
    const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    const __m256 u = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f),
                                   _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
    const __m256 e = v_exp(_mm256_mul_ps(u, _mm256_set1_ps(-2.0f)));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

// sin and cos of th (|th| up to ~1e5 keeps ~1e-7 absolute error).
inline void v_sincos(__m256 th, __m256* s, __m256* c) {
    const __m256 j = _mm256_round_ps(_mm256_mul_ps(th, _mm256_set1_ps(0.636619772367581343f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(j, _mm256_set1_ps(1.5707963705062866f), th);
    r = _mm256_fnmadd_ps(j, _mm256_set1_ps(-4.371138828673793e-08f), r);
    r = _mm256_fnmadd_ps(j, _mm256_set1_ps(-1.7763568394002505e-15f), r);
    const __m256 r2 = _mm256_mul_ps(r, r);
    __m256 ps = _mm256_set1_ps(1.0f / 362880);
    ps = _mm256_fmadd_ps(ps, r2, _mm256_set1_ps(-1.0f / 5040));
    ps = _mm256_fmadd_ps(ps, r2, _mm256_set1_ps(1.0f / 120));
    ps = _mm256_fmadd_ps(ps, r2, _mm256_set1_ps(-1.0f / 6));
    ps = _mm256_fmadd_ps(_mm256_mul_ps(ps, r2), r, r);
    __m256 pc = _mm256_set1_ps(-1.0f / 3628800);
    pc = _mm256_fmadd_ps(pc, r2, _mm256_set1_ps(1.0f / 40320));
    pc = _mm256_fmadd_ps(pc, r2, _mm256_set1_ps(-1.0f / 720));
    pc = _mm256_fmadd_ps(pc, r2, _mm256_set1_ps(1.0f / 24));
    pc = _mm256_fmadd_ps(pc, r2, _mm256_set1_ps(-0.5f));
    pc = _mm256_fmadd_ps(pc, r2, _mm256_set1_ps(1.0f));
    const __m256i q = _mm256_cvtps_epi32(j);
    const __m256 swap = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(q, _mm256_set1_epi32(1)),
                                                               _mm256_set1_epi32(1)));
    const __m256 sn = _mm256_blendv_ps(ps, pc, swap);
    const __m256 cs = _mm256_blendv_ps(pc, ps, swap);
    const __m256 sgn_s = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(q, _mm256_set1_epi32(2)), 30));
    const __m256 sgn_c = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_and_si256(_mm256_add_epi32(q, _mm256_set1_epi32(1)), _mm256_set1_epi32(2)), 30));
    *s = _mm256_xor_ps(sn, sgn_s);
    *c = _mm256_xor_ps(cs, sgn_c);
}

// Applies f to n floats in blocks of 8; the tail goes through a zero-padded buffer.
template <class F>
inline void map1(float* y, const float* x, int64_t n, F f) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f(_mm256_loadu_ps(x + i)));
    if (i < n) {
        alignas(32) float t[8] = {};
        std::memcpy(t, x + i, static_cast<size_t>(n - i) * 4);
        _mm256_store_ps(t, f(_mm256_load_ps(t)));
        std::memcpy(y + i, t, static_cast<size_t>(n - i) * 4);
    }
}

template <class F>
inline void map2(float* y, const float* a, const float* b, int64_t n, F f) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    if (i < n) {
        alignas(32) float ta[8] = {}, tb[8] = {};
        std::memcpy(ta, a + i, static_cast<size_t>(n - i) * 4);
        std::memcpy(tb, b + i, static_cast<size_t>(n - i) * 4);
        _mm256_store_ps(ta, f(_mm256_load_ps(ta), _mm256_load_ps(tb)));
        std::memcpy(y + i, ta, static_cast<size_t>(n - i) * 4);
    }
}

// sum over n floats of f(x) (8 lanes x 2 accumulators, zero-padded tail: f(0) must be 0).
template <class F>
inline float reduce(const float* x, int64_t n, F f) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_add_ps(a0, f(_mm256_loadu_ps(x + i)));
        a1 = _mm256_add_ps(a1, f(_mm256_loadu_ps(x + i + 8)));
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_add_ps(a0, f(_mm256_loadu_ps(x + i)));
    if (i < n) {
        alignas(32) float t[8] = {};
        std::memcpy(t, x + i, static_cast<size_t>(n - i) * 4);
        a1 = _mm256_add_ps(a1, f(_mm256_load_ps(t)));
    }
    return hsum(_mm256_add_ps(a0, a1));
}

void rms_norm(float* y, const float* x, const float* w, int64_t n, float eps) {
    const float ss = reduce(x, n, [](__m256 v) { return _mm256_mul_ps(v, v); });
    const __m256 r = _mm256_set1_ps(1.0f / std::sqrt(ss / static_cast<float>(n) + eps));
    if (w)
        map2(y, x, w, n, [r](__m256 a, __m256 b) { return _mm256_mul_ps(_mm256_mul_ps(a, r), b); });
    else
        map1(y, x, n, [r](__m256 a) { return _mm256_mul_ps(a, r); });
}

void layer_norm(float* y, const float* x, const float* w, const float* b, int64_t n, float eps) {
    const float mean0 = reduce(x, n, [](__m256 v) { return v; }) / static_cast<float>(n);
    // Second pass about mean0: sum (x - mean0)^2 and the correction sum (x - mean0)
    // ("corrected two-pass" variance; the tail is padded with mean0, which adds nothing).
    const __m256 mv0 = _mm256_set1_ps(mean0);
    __m256 sq = _mm256_setzero_ps(), sd = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 t = _mm256_sub_ps(_mm256_loadu_ps(x + i), mv0);
        sq = _mm256_fmadd_ps(t, t, sq);
        sd = _mm256_add_ps(sd, t);
    }
    if (i < n) {
        alignas(32) float t8[8];
        for (int k = 0; k < 8; ++k) t8[k] = i + k < n ? x[i + k] : mean0;
        const __m256 t = _mm256_sub_ps(_mm256_load_ps(t8), mv0);
        sq = _mm256_fmadd_ps(t, t, sq);
        sd = _mm256_add_ps(sd, t);
    }
    const float fn = static_cast<float>(n);
    const float dsum = hsum(sd);
    const float mean = mean0 + dsum / fn;
    const float var = std::fmax(hsum(sq) - dsum * dsum / fn, 0.0f) / fn;
    const __m256 mv = _mm256_set1_ps(mean);
    const __m256 r = _mm256_set1_ps(1.0f / std::sqrt(var + eps));
    map1(y, x, n, [mv, r](__m256 v) { return _mm256_mul_ps(_mm256_sub_ps(v, mv), r); });
    if (w) map2(y, y, w, n, [](__m256 a, __m256 c) { return _mm256_mul_ps(a, c); });
    if (b) map2(y, y, b, n, [](__m256 a, __m256 c) { return _mm256_add_ps(a, c); });
}

void gelu_tanh(float* y, const float* x, int64_t n) { map1(y, x, n, v_gelu); }

void gelu_tanh_mul(float* y, const float* g, const float* u, int64_t n) {
    map2(y, g, u, n, [](__m256 a, __m256 b) { return _mm256_mul_ps(v_gelu(a), b); });
}

void softmax(float* y, const float* x, int64_t n) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    float mx = hmax(m);
    for (; i < n; ++i) mx = std::fmax(mx, x[i]);
    if (mx == -INFINITY) {
        for (int64_t j = 0; j < n; ++j) y[j] = 0.0f;
        return;
    }
    const __m256 mv = _mm256_set1_ps(mx);
    map1(y, x, n, [mv](__m256 v) { return v_exp(_mm256_sub_ps(v, mv)); });
    const float s = reduce(y, n, [](__m256 v) { return v; });
    const __m256 inv = _mm256_set1_ps(1.0f / s);
    map1(y, y, n, [inv](__m256 v) { return _mm256_mul_ps(v, inv); });
}

void softcap(float* y, const float* x, int64_t n, float cap) {
    const __m256 c = _mm256_set1_ps(cap), ic = _mm256_set1_ps(1.0f / cap);
    map1(y, x, n, [c, ic](__m256 v) { return _mm256_mul_ps(c, v_tanh(_mm256_mul_ps(v, ic))); });
}

void add(float* y, const float* a, const float* b, int64_t n) {
    map2(y, a, b, n, [](__m256 p, __m256 q) { return _mm256_add_ps(p, q); });
}

void mul(float* y, const float* a, const float* b, int64_t n) {
    map2(y, a, b, n, [](__m256 p, __m256 q) { return _mm256_mul_ps(p, q); });
}

void scale(float* y, const float* x, float s, int64_t n) {
    const __m256 sv = _mm256_set1_ps(s);
    map1(y, x, n, [sv](__m256 v) { return _mm256_mul_ps(v, sv); });
}

void rope_neox(float* x, int64_t d, float pos, const float* inv_freq) {
    const int64_t h = d / 2;
    const __m256 pv = _mm256_set1_ps(pos);
    int64_t i = 0;
    auto rot = [pv](__m256 f, __m256 a, __m256 b, __m256* oa, __m256* ob) {
        __m256 s, c;
        v_sincos(_mm256_mul_ps(pv, f), &s, &c);
        *oa = _mm256_fmsub_ps(a, c, _mm256_mul_ps(b, s));
        *ob = _mm256_fmadd_ps(a, s, _mm256_mul_ps(b, c));
    };
    for (; i + 8 <= h; i += 8) {
        __m256 oa, ob;
        rot(_mm256_loadu_ps(inv_freq + i), _mm256_loadu_ps(x + i), _mm256_loadu_ps(x + h + i), &oa, &ob);
        _mm256_storeu_ps(x + i, oa);
        _mm256_storeu_ps(x + h + i, ob);
    }
    if (i < h) {
        alignas(32) float f[8] = {}, a[8] = {}, b[8] = {};
        const size_t k = static_cast<size_t>(h - i) * 4;
        std::memcpy(f, inv_freq + i, k);
        std::memcpy(a, x + i, k);
        std::memcpy(b, x + h + i, k);
        __m256 oa, ob;
        rot(_mm256_load_ps(f), _mm256_load_ps(a), _mm256_load_ps(b), &oa, &ob);
        _mm256_store_ps(a, oa);
        _mm256_store_ps(b, ob);
        std::memcpy(x + i, a, k);
        std::memcpy(x + h + i, b, k);
    }
}

// ------------------------------------------------------------------ table

template <int NR, int NC>
using KF32 = FloatK<LoadF32>::K<NR, NC>;
template <int NR, int NC>
using KF16 = FloatK<LoadF16>::K<NR, NC>;
template <int NR, int NC>
using KBF16 = FloatK<LoadBF16>::K<NR, NC>;
template <int NR, int NC>
using KQ8_0 = LegacyK<FQ8_0>::K<NR, NC>;
template <int NR, int NC>
using KQ4_0 = LegacyK<FQ4_0>::K<NR, NC>;
template <int NR, int NC>
using KQ5_0 = LegacyK<FQ5_0>::K<NR, NC>;
template <int NR, int NC>
using KQ4_1 = LegacyK<FQ4_1>::K<NR, NC>;
template <int NR, int NC>
using KQ5_1 = LegacyK<FQ5_1>::K<NR, NC>;

template <template <int, int> class Kn>
void set(KernelTable& t, GGMLType ty) {
    t.vec_dot[static_cast<int>(ty)] = vec_fn<Kn>;
    t.tile_dot[static_cast<int>(ty)] = tile_fn<Kn>;
}

KernelTable make_table() {
    KernelTable t;
    t.isa = "avx2";
    set<KF32>(t, GGMLType::F32);
    set<KF16>(t, GGMLType::F16);
    set<KBF16>(t, GGMLType::BF16);
    set<KQ8_0>(t, GGMLType::Q8_0);
    set<KQ4_0>(t, GGMLType::Q4_0);
    set<KQ5_0>(t, GGMLType::Q5_0);
    set<KQ4_1>(t, GGMLType::Q4_1);
    set<KQ5_1>(t, GGMLType::Q5_1);
    set<Q4K>(t, GGMLType::Q4_K);
    set<Q5K>(t, GGMLType::Q5_K);
    set<Q6K>(t, GGMLType::Q6_K);
    t.quantize_act[static_cast<int>(GGMLType::F32)] = quantize_f32_act;
    t.quantize_act[static_cast<int>(GGMLType::Q8_0)] = quantize_q8_0_act;
    t.quantize_act[static_cast<int>(GGMLType::Q8_1)] = quantize_q8_1_act;
    t.quantize_act[static_cast<int>(GGMLType::Q8_K)] = quantize_q8_k_act;
    t.rms_norm = rms_norm;
    t.layer_norm = layer_norm;
    t.gelu_tanh = gelu_tanh;
    t.gelu_tanh_mul = gelu_tanh_mul;
    t.softmax = softmax;
    t.softcap = softcap;
    t.add = add;
    t.mul = mul;
    t.scale = scale;
    t.rope_neox = rope_neox;
    add_row_kernels_avx2(t);
    add_panel_kernels_avx2(t);
    return t;
}

}  // namespace

const KernelTable* avx2_table() {
    static const KernelTable t = make_table();
    return &t;
}

}  // namespace unigemma::cpu
