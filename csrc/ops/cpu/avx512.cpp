// AVX-512 kernel tables (compiled with -mavx512f/bw/vl/dq/vnni + avx2/fma/f16c; entered only
// when the CPU has AVX-512 F/BW/VL). Two tables:
//   avx512_table():        uses AVX512-VNNI (vpdpbusd / vpdpwssd) when the CPU has it, else is
//                          the same as the next one;
//   avx512_novnni_table(): no VNNI instruction anywhere (maddubs + madd), for CPUs without it
//                          and for testing that path on CPUs with it.
// Same contracts as scalar.cpp (which documents the activation formats).
//
// Legacy formats work on two 32-element blocks per 512-bit register ([block i | block i+1],
// each in element order); K-quants on 64 elements (two sub-blocks) per register. Offsets of
// unsigned codes (Q4_0: -8, Q5_0: -16, Q8_0 as u8 + 128 with VNNI, Q6_K: -32) are removed
// with the activation sums, computed once per activation block and shared by all rows.
// Float weights use 16-lane FMA accumulators with masked tails.
// GCC 12's AVX-512 headers trip -Wuninitialized on their own _mm512_undefined_*() idiom.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cfloat>
#include <cmath>
#include <cstring>

#include "ops/cpu/cpu_features.h"
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

inline __m256i loadu256(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline __m128i loadu128(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
inline __m512i loadu512(const uint8_t* p) { return _mm512_loadu_si512(p); }

inline __m512i cat(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }

inline int hsum_i32(__m128i v) {
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 0, 3, 2)));
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(v);
}

inline uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// u8 x s8 dot of 4-byte groups, added to acc (int32 lanes).
template <bool V>
inline __m512i dot_u8s8(__m512i acc, __m512i u, __m512i s) {
    if constexpr (V) {
        return _mm512_dpbusd_epi32(acc, u, s);
    } else {
        return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)));
    }
}

// int16 x int16 pair dot added to acc.
template <bool V>
inline __m512i dot_s16(__m512i acc, __m512i a, __m512i b) {
    if constexpr (V) {
        return _mm512_dpwssd_epi32(acc, a, b);
    } else {
        return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b));
    }
}


// ------------------------------------------------------------------ float weights

struct LoadF32 {
    static constexpr int kBytes = 4;
    static __m512 load(const uint8_t* p) { return _mm512_loadu_ps(p); }
    static __m512 load_tail(const uint8_t* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
};
struct LoadF16 {
    static constexpr int kBytes = 2;
    static __m512 load(const uint8_t* p) { return _mm512_cvtph_ps(loadu256(p)); }
    static __m512 load_tail(const uint8_t* p, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }
};
struct LoadBF16 {
    static constexpr int kBytes = 2;
    static __m512 cvt(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
    static __m512 load(const uint8_t* p) { return cvt(loadu256(p)); }
    static __m512 load_tail(const uint8_t* p, __mmask16 m) { return cvt(_mm256_maskz_loadu_epi16(m, p)); }
};

template <class L>
struct FloatK {
    template <int NR, int NC>
    struct K {
        static void run(int64_t n, float* out, int64_t os, const uint8_t* w, size_t ws, const uint8_t* x,
                        size_t xs) {
            constexpr int U = NR * NC <= 2 ? 4 : 1;
            __m512 acc[U][NR][NC];
            UG_UNROLL
            for (int u = 0; u < U; ++u)
                for (int r = 0; r < NR; ++r)
                    for (int c = 0; c < NC; ++c) acc[u][r][c] = _mm512_setzero_ps();
            int64_t i = 0;
            for (; i + 16 * U <= n; i += 16 * U) {
                UG_UNROLL
                for (int u = 0; u < U; ++u) {
                    const int64_t e = i + 16 * u;
                    __m512 wv[NR];
                    for (int r = 0; r < NR; ++r) wv[r] = L::load(w + r * ws + e * L::kBytes);
                    for (int c = 0; c < NC; ++c) {
                        const __m512 xv = _mm512_loadu_ps(reinterpret_cast<const float*>(x + c * xs) + e);
                        for (int r = 0; r < NR; ++r) acc[u][r][c] = _mm512_fmadd_ps(wv[r], xv, acc[u][r][c]);
                    }
                }
            }
            for (; i < n; i += 16) {
                const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff)
                                                : static_cast<__mmask16>((1u << (n - i)) - 1);
                __m512 wv[NR];
                for (int r = 0; r < NR; ++r) wv[r] = L::load_tail(w + r * ws + i * L::kBytes, m);
                for (int c = 0; c < NC; ++c) {
                    const __m512 xv = _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(x + c * xs) + i);
                    for (int r = 0; r < NR; ++r) acc[0][r][c] = _mm512_fmadd_ps(wv[r], xv, acc[0][r][c]);
                }
            }
            for (int r = 0; r < NR; ++r)
                for (int c = 0; c < NC; ++c) {
                    __m512 a = acc[0][r][c];
                    for (int u = 1; u < U; ++u) a = _mm512_add_ps(a, acc[u][r][c]);
                    out[c * os + r] = _mm512_reduce_add_ps(a);
                }
        }
    };
};

// ------------------------------------------------------------------ legacy formats

// Legacy blocks are handled in pairs (i, i + 1): one 512-bit register holds both blocks in
// element order, and the four fp16 scales of the pair become one [d0 x8 | d1 x8] vector
// with a single conversion and permute. `two` = false handles a last odd block (its partner
// lane gets scale 0 and reads the same block again, never past the end).
struct Pair {
    __m512i v;
    __m128 d;  // lanes 0, 1: block scales
    __m128 m;  // lanes 0, 1: block mins (Q8_1: sums s)
};

inline __m128 fp16_pair(const uint8_t* a, const uint8_t* b, bool two) {
    uint16_t x, y;
    std::memcpy(&x, a, 2);
    std::memcpy(&y, b, 2);
    if (!two) y = 0;
    return _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(x | (static_cast<uint32_t>(y) << 16))));
}

// 2 x 16 bytes of nibbles -> [lo0 | hi0 | lo1 | hi1] (each block in element order).
inline __m512i unpack_nibbles2(const uint8_t* p0, const uint8_t* p1) {
    const __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(loadu128(p0)), loadu128(p1), 1);
    const __m512i t = _mm512_and_si512(cat(q, _mm256_srli_epi16(q, 4)), _mm512_set1_epi8(0x0f));
    return _mm512_shuffle_i64x2(t, t, _MM_SHUFFLE(3, 1, 2, 0));
}

inline __m512i qh_bits2(const uint8_t* p0, const uint8_t* p1) {
    const __mmask64 k = static_cast<__mmask64>(load_u32(p0)) | (static_cast<__mmask64>(load_u32(p1)) << 32);
    return _mm512_maskz_mov_epi8(k, _mm512_set1_epi8(0x10));
}

inline Pair x_q8_0(const uint8_t* b, bool two) {
    const uint8_t* c = two ? b + 34 : b;
    return {cat(loadu256(b + 2), loadu256(c + 2)), fp16_pair(b, c, two), _mm_setzero_ps()};
}
inline Pair x_q8_1(const uint8_t* b, bool two) {
    const uint8_t* c = two ? b + 36 : b;
    return {cat(loadu256(b + 4), loadu256(c + 4)), fp16_pair(b, c, two), fp16_pair(b + 2, c + 2, two)};
}

// sum over 4-byte groups of k * x (k = the unsigned offset), negated.
template <bool V>
inline __m512i neg_offset(__m512i x, int k) {
    const __m512i kv = _mm512_set1_epi8(static_cast<char>(k));
    if constexpr (V) {
        return _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), kv, x));
    } else {
        const __m512i s = _mm512_madd_epi16(_mm512_maddubs_epi16(kv, x), _mm512_set1_epi16(1));
        return _mm512_sub_epi32(_mm512_setzero_si512(), s);
    }
}

template <bool V>
struct FQ8_0 {
    static constexpr int kW = 34, kX = 34;
    static constexpr bool kMin = false;
    // VNNI: w as u8 (w + 128), minus 128 * sum x. Without: |w| x (sign(w) * x).
    static Pair load_w(const uint8_t* b, bool two) {
        const uint8_t* c = two ? b + kW : b;
        __m512i v = cat(loadu256(b + 2), loadu256(c + 2));
        if constexpr (V) v = _mm512_xor_si512(v, _mm512_set1_epi8(static_cast<char>(0x80)));
        return {v, fp16_pair(b, c, two), _mm_setzero_ps()};
    }
    static Pair load_x(const uint8_t* b, bool two) { return x_q8_0(b, two); }
    static __m512i prep_x(__m512i x) {
        if constexpr (V) return neg_offset<true>(x, 128);
        else return _mm512_setzero_si512();
    }
    static __m512i dot(__m512i acc, __m512i w, __m512i x) {
        if constexpr (V) {
            return _mm512_dpbusd_epi32(acc, w, x);
        } else {
            const __mmask64 neg = _mm512_movepi8_mask(w);
            const __m512i sx = _mm512_mask_sub_epi8(x, neg, _mm512_setzero_si512(), x);
            return dot_u8s8<false>(acc, _mm512_abs_epi8(w), sx);
        }
    }
};

// Q4_0 (Off 8) / Q5_0 (Off 16): unsigned codes, minus Off * sum x.
template <bool V, int Off, int Wb, bool Q5>
struct FQx_0 {
    static constexpr int kW = Wb, kX = 34;
    static constexpr bool kMin = false;
    static Pair load_w(const uint8_t* b, bool two) {
        const uint8_t* c = two ? b + kW : b;
        if constexpr (Q5) {
            return {_mm512_or_si512(unpack_nibbles2(b + 6, c + 6), qh_bits2(b + 2, c + 2)), fp16_pair(b, c, two),
                    _mm_setzero_ps()};
        } else {
            return {unpack_nibbles2(b + 2, c + 2), fp16_pair(b, c, two), _mm_setzero_ps()};
        }
    }
    static Pair load_x(const uint8_t* b, bool two) { return x_q8_0(b, two); }
    static __m512i prep_x(__m512i x) { return neg_offset<V>(x, Off); }
    static __m512i dot(__m512i acc, __m512i w, __m512i x) { return dot_u8s8<V>(acc, w, x); }
};

// Q4_1 / Q5_1 x Q8_1: unsigned codes; the min term m * s per block.
template <bool V, int Wb, bool Q5>
struct FQx_1 {
    static constexpr int kW = Wb, kX = 36;
    static constexpr bool kMin = true;
    static Pair load_w(const uint8_t* b, bool two) {
        const uint8_t* c = two ? b + kW : b;
        __m512i v;
        if constexpr (Q5)
            v = _mm512_or_si512(unpack_nibbles2(b + 8, c + 8), qh_bits2(b + 4, c + 4));
        else
            v = unpack_nibbles2(b + 4, c + 4);
        return {v, fp16_pair(b, c, two), fp16_pair(b + 2, c + 2, two)};
    }
    static Pair load_x(const uint8_t* b, bool two) { return x_q8_1(b, two); }
    static __m512i prep_x(__m512i) { return _mm512_setzero_si512(); }
    static __m512i dot(__m512i acc, __m512i w, __m512i x) { return dot_u8s8<V>(acc, w, x); }
};

template <class F>
struct LegacyK {
    template <int NR, int NC>
    struct K {
        static void step(int64_t i, bool two, __m512 (&acc)[NR][NC], __m128 (&ext)[NR][NC], const uint8_t* w,
                         size_t ws, const uint8_t* x, size_t xs) {
            const __m512i lanes = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
            Pair wp[NR];
            UG_UNROLL
            for (int r = 0; r < NR; ++r) wp[r] = F::load_w(w + r * ws + i * F::kW, two);
            UG_UNROLL
            for (int c = 0; c < NC; ++c) {
                const Pair xp = F::load_x(x + c * xs + i * F::kX, two);
                const __m512i x0 = F::prep_x(xp.v);
                UG_UNROLL
                for (int r = 0; r < NR; ++r) {
                    const __m512 p = _mm512_cvtepi32_ps(F::dot(x0, wp[r].v, xp.v));
                    const __m512 sc = _mm512_permutexvar_ps(lanes, _mm512_castps128_ps512(_mm_mul_ps(wp[r].d, xp.d)));
                    acc[r][c] = _mm512_fmadd_ps(p, sc, acc[r][c]);
                    if constexpr (F::kMin) ext[r][c] = _mm_fmadd_ps(wp[r].m, xp.m, ext[r][c]);
                }
            }
        }
        static void run(int64_t n, float* out, int64_t os, const uint8_t* w, size_t ws, const uint8_t* x,
                        size_t xs) {
            // One accumulator per (row, column) whatever the tile shape: a row kernel (1 x 1) and
            // every tile position sum the blocks in the same order, so a token gets the same bits
            // alone (decode) and in a batch (prefill, speculative verification).
            constexpr int U = 1;
            __m512 acc[U][NR][NC];
            __m128 ext[NR][NC];
            UG_UNROLL
            for (int r = 0; r < NR; ++r)
                for (int c = 0; c < NC; ++c) {
                    ext[r][c] = _mm_setzero_ps();
                    for (int u = 0; u < U; ++u) acc[u][r][c] = _mm512_setzero_ps();
                }
            const int64_t nb = n / 32;
            int64_t i = 0;
            for (; i + 2 * U <= nb; i += 2 * U) {
                UG_UNROLL
                for (int u = 0; u < U; ++u) step(i + 2 * u, true, acc[u], ext, w, ws, x, xs);
            }
            for (; i + 2 <= nb; i += 2) step(i, true, acc[0], ext, w, ws, x, xs);
            if (i < nb) step(i, false, acc[0], ext, w, ws, x, xs);
            for (int r = 0; r < NR; ++r)
                for (int c = 0; c < NC; ++c) {
                    __m512 a = acc[0][r][c];
                    for (int u = 1; u < U; ++u) a = _mm512_add_ps(a, acc[u][r][c]);
                    float e = 0.0f;
                    if constexpr (F::kMin) {
                        const __m128 t = ext[r][c];
                        e = _mm_cvtss_f32(t) + _mm_cvtss_f32(_mm_movehdup_ps(t));
                    }
                    out[c * os + r] = _mm512_reduce_add_ps(a) + e;
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
inline __m128i q8k_bsums32(const uint8_t* b) { return _mm_hadd_epi16(loadu128(b + 260), loadu128(b + 276)); }

template <bool V, bool Q5>
struct Q45K {
    template <int NR, int NC>
    struct K {
        static constexpr int kW = Q5 ? 176 : 144;
        static void run(int64_t n, float* out, int64_t os, const uint8_t* w, size_t ws, const uint8_t* x,
                        size_t xs) {
            __m512 acc[NR][NC];
            float macc[NR][NC];
            UG_UNROLL
            for (int r = 0; r < NR; ++r)
                for (int c = 0; c < NC; ++c) {
                    acc[r][c] = _mm512_setzero_ps();
                    macc[r][c] = 0.0f;
                }
            const __m256i m4 = _mm256_set1_epi8(0x0f);
            const int64_t nb = n / 256;
            for (int64_t i = 0; i < nb; ++i) {
                float d[NR], dmin[NR];
                alignas(16) uint8_t sc[NR][8], mn[NR][8];
                const uint8_t* wb[NR];
                const uint8_t* xb[NC];
                __m512i qh2[NR];
                UG_UNROLL
                for (int r = 0; r < NR; ++r) {
                    wb[r] = w + r * ws + i * kW;
                    d[r] = h2f(wb[r]);
                    dmin[r] = h2f(wb[r] + 2);
                    unpack_k4_scales(wb[r] + 4, sc[r], mn[r]);
                    if constexpr (Q5) qh2[r] = _mm512_broadcast_i64x4(loadu256(wb[r] + 16));
                }
                UG_UNROLL
                for (int c = 0; c < NC; ++c) xb[c] = x + c * xs + i * 292;
                __m512i isum[NR][NC];
                UG_UNROLL
                for (int r = 0; r < NR; ++r)
                    for (int c = 0; c < NC; ++c) isum[r][c] = _mm512_setzero_si512();
                UG_UNROLL
                for (int j = 0; j < 4; ++j) {
                    __m512i wv[NR], sv[NR];
                    UG_UNROLL
                    for (int r = 0; r < NR; ++r) {
                        const __m256i q = loadu256(wb[r] + (Q5 ? 48 : 16) + 32 * j);
                        wv[r] = cat(_mm256_and_si256(q, m4), _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
                        if constexpr (Q5) {
                            // bit 2j (low half) / 2j + 1 (high half) of qh -> 0x10
                            const __m512i t = _mm512_and_si512(
                                _mm512_srli_epi16(qh2[r], 2 * j),
                                cat(_mm256_set1_epi8(1), _mm256_set1_epi8(2)));
                            const __m512i cnt = cat(_mm256_set1_epi16(4), _mm256_set1_epi16(3));
                            wv[r] = _mm512_or_si512(wv[r], _mm512_sllv_epi16(t, cnt));
                        }
                        sv[r] = cat(_mm256_set1_epi16(sc[r][2 * j]), _mm256_set1_epi16(sc[r][2 * j + 1]));
                    }
                    UG_UNROLL
                    for (int c = 0; c < NC; ++c) {
                        const __m512i xv = loadu512(xb[c] + 4 + 64 * j);
                        UG_UNROLL
                        for (int r = 0; r < NR; ++r)
                            isum[r][c] = dot_s16<V>(isum[r][c], _mm512_maddubs_epi16(wv[r], xv), sv[r]);
                    }
                }
                UG_UNROLL
                for (int c = 0; c < NC; ++c) {
                    const float dx = q8k_d(xb[c]);
                    const __m128i bs = q8k_bsums32(xb[c]);
                    UG_UNROLL
                    for (int r = 0; r < NR; ++r) {
                        const __m128i m16 = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(mn[r])));
                        const int msum = hsum_i32(_mm_madd_epi16(m16, bs));
                        acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r][c]), _mm512_set1_ps(d[r] * dx),
                                                    acc[r][c]);
                        macc[r][c] += (dmin[r] * dx) * static_cast<float>(msum);
                    }
                }
            }
            for (int r = 0; r < NR; ++r)
                for (int c = 0; c < NC; ++c) out[c * os + r] = _mm512_reduce_add_ps(acc[r][c]) - macc[r][c];
        }
    };
};

template <bool V>
struct Q6KT {
    template <int NR, int NC>
    struct K {
        static void run(int64_t n, float* out, int64_t os, const uint8_t* w, size_t ws, const uint8_t* x,
                        size_t xs) {
            __m512 acc[NR][NC];
            UG_UNROLL
            for (int r = 0; r < NR; ++r)
                for (int c = 0; c < NC; ++c) acc[r][c] = _mm512_setzero_ps();
            const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
            const __m512i sh_a = cat(_mm256_set1_epi16(4), _mm256_set1_epi16(2));
            const __m512i sh_b = cat(_mm256_set1_epi16(0), _mm256_set1_epi16(2));
            // int16 lane -> scale index within the 4 sub-blocks of a 64-element register
            const __m512i idx0 = _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1,
                                                   1, 0, 0, 0, 0, 0, 0, 0, 0);
            const int64_t nb = n / 256;
            for (int64_t i = 0; i < nb; ++i) {
                const uint8_t* wb[NR];
                const uint8_t* xb[NC];
                float d[NR];
                __m256i s16[NR];
                UG_UNROLL
                for (int r = 0; r < NR; ++r) {
                    wb[r] = w + r * ws + i * 210;
                    d[r] = h2f(wb[r] + 208);
                    s16[r] = _mm256_cvtepi8_epi16(loadu128(wb[r] + 192));
                }
                UG_UNROLL
                for (int c = 0; c < NC; ++c) xb[c] = x + c * xs + i * 292;
                __m512i isum[NR][NC];
                UG_UNROLL
                for (int r = 0; r < NR; ++r)
                    for (int c = 0; c < NC; ++c) {
                        // the -32 offset: 32 * sum_j scale_j * bsum_j
                        const __m256i corr = _mm256_madd_epi16(s16[r], loadu256(xb[c] + 260));
                        isum[r][c] = _mm512_inserti64x4(_mm512_setzero_si512(),
                                                        _mm256_sub_epi32(_mm256_setzero_si256(),
                                                                         _mm256_slli_epi32(corr, 5)),
                                                        0);
                    }
                // 4 parts of 64 elements: (h, a) = elements 128h + 0..63, (h, b) = 128h + 64..127
                UG_UNROLL
                for (int part = 0; part < 4; ++part) {
                    const int h = part / 2;
                    const bool hi = part % 2;
                    __m512i qv[NR], sv[NR];
                    UG_UNROLL
                    for (int r = 0; r < NR; ++r) {
                        const __m512i ql = loadu512(wb[r] + 64 * h);
                        const __m512i qh = _mm512_broadcast_i64x4(loadu256(wb[r] + 128 + 32 * h));
                        if (!hi)
                            qv[r] = _mm512_or_si512(_mm512_and_si512(ql, m4),
                                                    _mm512_and_si512(_mm512_sllv_epi16(qh, sh_a), m30));
                        else
                            qv[r] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                                    _mm512_and_si512(_mm512_srlv_epi16(qh, sh_b), m30));
                        sv[r] = _mm512_permutexvar_epi16(_mm512_add_epi16(idx0, _mm512_set1_epi16(4 * part)),
                                                         _mm512_castsi256_si512(s16[r]));
                    }
                    UG_UNROLL
                    for (int c = 0; c < NC; ++c) {
                        const __m512i xv = loadu512(xb[c] + 4 + 64 * part);
                        UG_UNROLL
                        for (int r = 0; r < NR; ++r)
                            isum[r][c] = dot_s16<V>(isum[r][c], _mm512_maddubs_epi16(qv[r], xv), sv[r]);
                    }
                }
                UG_UNROLL
                for (int c = 0; c < NC; ++c) {
                    const float dx = q8k_d(xb[c]);
                    UG_UNROLL
                    for (int r = 0; r < NR; ++r)
                        acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r][c]), _mm512_set1_ps(d[r] * dx),
                                                    acc[r][c]);
                }
            }
            for (int r = 0; r < NR; ++r)
                for (int c = 0; c < NC; ++c) out[c * os + r] = _mm512_reduce_add_ps(acc[r][c]);
        }
    };
};

// ------------------------------------------------------------------ activations

// 16 floats -> 16 int8 of round_half_even(clamp(v * id, -127, 127)).
inline __m128i q8_lanes(__m512 v, __m512 id) {
    v = _mm512_mul_ps(v, id);
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
    return _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v));
}
inline __m512i q8_lanes32(__m512 v, __m512 id) {
    v = _mm512_mul_ps(v, id);
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
    return _mm512_cvtps_epi32(v);
}

inline float absmax(const float* x, int n) {
    __m512 m = _mm512_setzero_ps();
    for (int j = 0; j < n; j += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + j)));
    return _mm512_reduce_max_ps(m);
}

void quantize_q8_0_act(const float* x, void* y, int64_t n) {
    auto* out = static_cast<uint8_t*>(y);
    for (int64_t i = 0; i < n / 32; ++i) {
        const float* xb = x + 32 * i;
        const uint16_t d16 = scale_to_fp16_up(absmax(xb, 32) / 127.0f);
        const float dr = fp16_to_fp32(d16);
        const __m512 id = _mm512_set1_ps(dr > 0.0f ? 1.0f / dr : 0.0f);
        uint8_t* ob = out + 34 * i;
        std::memcpy(ob, &d16, 2);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(ob + 2), q8_lanes(_mm512_loadu_ps(xb), id));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(ob + 18), q8_lanes(_mm512_loadu_ps(xb + 16), id));
    }
}

void quantize_q8_1_act(const float* x, void* y, int64_t n) {
    auto* out = static_cast<uint8_t*>(y);
    for (int64_t i = 0; i < n / 32; ++i) {
        const float* xb = x + 32 * i;
        const uint16_t d16 = scale_to_fp16_up(absmax(xb, 32) / 127.0f);
        const float dr = fp16_to_fp32(d16);
        const __m512 id = _mm512_set1_ps(dr > 0.0f ? 1.0f / dr : 0.0f);
        const __m512i a = q8_lanes32(_mm512_loadu_ps(xb), id), b = q8_lanes32(_mm512_loadu_ps(xb + 16), id);
        const int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(a, b));
        const float s = dr * static_cast<float>(sum);
        const uint16_t s16 = static_cast<uint16_t>(scale_to_fp16(std::fabs(s)) | (s < 0.0f ? 0x8000u : 0u));
        uint8_t* ob = out + 36 * i;
        std::memcpy(ob, &d16, 2);
        std::memcpy(ob + 2, &s16, 2);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(ob + 4), _mm512_cvtsepi32_epi8(a));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(ob + 20), _mm512_cvtsepi32_epi8(b));
    }
}

void quantize_q8_k_act(const float* x, void* y, int64_t n) {
    auto* out = static_cast<uint8_t*>(y);
    for (int64_t i = 0; i < n / 256; ++i) {
        const float* xb = x + 256 * i;
        float d = absmax(xb, 256) / 127.0f;
        if (!(d >= FLT_MIN)) d = 0.0f;
        const __m512 id = _mm512_set1_ps(d > 0.0f ? 1.0f / d : 0.0f);
        uint8_t* ob = out + 292 * i;
        std::memcpy(ob, &d, 4);
        int16_t bsums[16];
        for (int g = 0; g < 16; ++g) {
            const __m512i q = q8_lanes32(_mm512_loadu_ps(xb + 16 * g), id);
            bsums[g] = static_cast<int16_t>(_mm512_reduce_add_epi32(q));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(ob + 4 + 16 * g), _mm512_cvtsepi32_epi8(q));
        }
        std::memcpy(ob + 260, bsums, 32);
    }
}

void quantize_f32_act(const float* x, void* y, int64_t n) {
    if (n > 0) std::memmove(y, x, static_cast<size_t>(n) * sizeof(float));
}

// ------------------------------------------------------------------ vector math

inline __m512 round_ne(__m512 v) { return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline __m512 pow2i(__m512 k) {  // 2^k for integral k in [-126, 127]
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(k), _mm512_set1_epi32(127)), 23));
}

// exp(x) for x in [-87.33, 88] (clamped above; 0 below ln(FLT_MIN)), ~2 ulp.
inline __m512 v_exp(__m512 x) {
    const __mmask16 small = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.33654f), _CMP_LT_OQ);
    x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.33654f));
    const __m512 k = round_ne(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)));
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_maskz_mul_ps(static_cast<__mmask16>(~small), p, pow2i(k));
}

// tanh(u) = expm1(2u) / (expm1(2u) + 2), expm1 accurate near 0.
inline __m512 v_tanh(__m512 u) {
    u = _mm512_min_ps(_mm512_max_ps(u, _mm512_set1_ps(-9.0f)), _mm512_set1_ps(9.0f));
    const __m512 v = _mm512_add_ps(u, u);
    const __m512 k = round_ne(_mm512_mul_ps(v, _mm512_set1_ps(1.44269504088896341f)));
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), v);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 40320);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 5040));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512 q = _mm512_mul_ps(p, r);
    const __m512 s = pow2i(k);
    const __m512 e = _mm512_fmadd_ps(s, q, _mm512_sub_ps(s, _mm512_set1_ps(1.0f)));
    return _mm512_div_ps(e, _mm512_add_ps(e, _mm512_set1_ps(2.0f)));
}

inline __m512 v_gelu(__m512 x) {
    const __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
    const __m512 u = _mm512_mul_ps(_mm512_set1_ps(0.7978845608028654f), _mm512_fmadd_ps(_mm512_set1_ps(0.044715f), x3, x));
    const __m512 e = v_exp(_mm512_mul_ps(u, _mm512_set1_ps(-2.0f)));
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

inline void v_sincos(__m512 th, __m512* s, __m512* c) {
    const __m512 j = round_ne(_mm512_mul_ps(th, _mm512_set1_ps(0.636619772367581343f)));
    __m512 r = _mm512_fnmadd_ps(j, _mm512_set1_ps(1.5707963705062866f), th);
    r = _mm512_fnmadd_ps(j, _mm512_set1_ps(-4.371138828673793e-08f), r);
    r = _mm512_fnmadd_ps(j, _mm512_set1_ps(-1.7763568394002505e-15f), r);
    const __m512 r2 = _mm512_mul_ps(r, r);
    __m512 ps = _mm512_set1_ps(1.0f / 362880);
    ps = _mm512_fmadd_ps(ps, r2, _mm512_set1_ps(-1.0f / 5040));
    ps = _mm512_fmadd_ps(ps, r2, _mm512_set1_ps(1.0f / 120));
    ps = _mm512_fmadd_ps(ps, r2, _mm512_set1_ps(-1.0f / 6));
    ps = _mm512_fmadd_ps(_mm512_mul_ps(ps, r2), r, r);
    __m512 pc = _mm512_set1_ps(-1.0f / 3628800);
    pc = _mm512_fmadd_ps(pc, r2, _mm512_set1_ps(1.0f / 40320));
    pc = _mm512_fmadd_ps(pc, r2, _mm512_set1_ps(-1.0f / 720));
    pc = _mm512_fmadd_ps(pc, r2, _mm512_set1_ps(1.0f / 24));
    pc = _mm512_fmadd_ps(pc, r2, _mm512_set1_ps(-0.5f));
    pc = _mm512_fmadd_ps(pc, r2, _mm512_set1_ps(1.0f));
    const __m512i q = _mm512_cvtps_epi32(j);
    const __mmask16 swap = _mm512_test_epi32_mask(q, _mm512_set1_epi32(1));
    const __m512 sn = _mm512_mask_blend_ps(swap, ps, pc);
    const __m512 cs = _mm512_mask_blend_ps(swap, pc, ps);
    const __m512i sgn_s = _mm512_slli_epi32(_mm512_and_si512(q, _mm512_set1_epi32(2)), 30);
    const __m512i sgn_c =
        _mm512_slli_epi32(_mm512_and_si512(_mm512_add_epi32(q, _mm512_set1_epi32(1)), _mm512_set1_epi32(2)), 30);
    *s = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(sn), sgn_s));
    *c = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(cs), sgn_c));
}

inline __mmask16 tail_mask(int64_t k) {
    return k >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << k) - 1);
}

template <class F>
inline void map1(float* y, const float* x, int64_t n, F f) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, f(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

template <class F>
inline void map2(float* y, const float* a, const float* b, int64_t n, F f) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, f(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i)));
    }
}

// sum of f(x) over n floats; f is applied to masked-off lanes too, which are then dropped.
template <class F>
inline float reduce(const float* x, int64_t n, F f) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_add_ps(a0, f(_mm512_loadu_ps(x + i)));
        a1 = _mm512_add_ps(a1, f(_mm512_loadu_ps(x + i + 16)));
    }
    for (; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        a0 = _mm512_mask_add_ps(a0, m, a0, f(_mm512_maskz_loadu_ps(m, x + i)));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

void rms_norm(float* y, const float* x, const float* w, int64_t n, float eps) {
    const float ss = reduce(x, n, [](__m512 v) { return _mm512_mul_ps(v, v); });
    const __m512 r = _mm512_set1_ps(1.0f / std::sqrt(ss / static_cast<float>(n) + eps));
    if (w)
        map2(y, x, w, n, [r](__m512 a, __m512 b) { return _mm512_mul_ps(_mm512_mul_ps(a, r), b); });
    else
        map1(y, x, n, [r](__m512 a) { return _mm512_mul_ps(a, r); });
}

void layer_norm(float* y, const float* x, const float* w, const float* b, int64_t n, float eps) {
    const float fn = static_cast<float>(n);
    const float mean0 = reduce(x, n, [](__m512 v) { return v; }) / fn;
    const __m512 mv0 = _mm512_set1_ps(mean0);
    const float sq = reduce(x, n, [mv0](__m512 v) {
        const __m512 t = _mm512_sub_ps(v, mv0);
        return _mm512_mul_ps(t, t);
    });
    const float dsum = reduce(x, n, [mv0](__m512 v) { return _mm512_sub_ps(v, mv0); });
    const float mean = mean0 + dsum / fn;
    const float var = std::fmax(sq - dsum * dsum / fn, 0.0f) / fn;
    const __m512 mv = _mm512_set1_ps(mean);
    const __m512 r = _mm512_set1_ps(1.0f / std::sqrt(var + eps));
    map1(y, x, n, [mv, r](__m512 v) { return _mm512_mul_ps(_mm512_sub_ps(v, mv), r); });
    if (w) map2(y, y, w, n, [](__m512 a, __m512 c) { return _mm512_mul_ps(a, c); });
    if (b) map2(y, y, b, n, [](__m512 a, __m512 c) { return _mm512_add_ps(a, c); });
}

void gelu_tanh(float* y, const float* x, int64_t n) { map1(y, x, n, v_gelu); }

void gelu_tanh_mul(float* y, const float* g, const float* u, int64_t n) {
    map2(y, g, u, n, [](__m512 a, __m512 b) { return _mm512_mul_ps(v_gelu(a), b); });
}

void softmax(float* y, const float* x, int64_t n) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = tail_mask(n - i);
        m = _mm512_mask_max_ps(m, k, m, _mm512_maskz_loadu_ps(k, x + i));
    }
    const float mx = _mm512_reduce_max_ps(m);
    if (mx == -INFINITY) {
        for (int64_t j = 0; j < n; ++j) y[j] = 0.0f;
        return;
    }
    const __m512 mv = _mm512_set1_ps(mx);
    map1(y, x, n, [mv](__m512 v) { return v_exp(_mm512_sub_ps(v, mv)); });
    const float s = reduce(y, n, [](__m512 v) { return v; });
    const __m512 inv = _mm512_set1_ps(1.0f / s);
    map1(y, y, n, [inv](__m512 v) { return _mm512_mul_ps(v, inv); });
}

void softcap(float* y, const float* x, int64_t n, float cap) {
    const __m512 c = _mm512_set1_ps(cap), ic = _mm512_set1_ps(1.0f / cap);
    map1(y, x, n, [c, ic](__m512 v) { return _mm512_mul_ps(c, v_tanh(_mm512_mul_ps(v, ic))); });
}

void add(float* y, const float* a, const float* b, int64_t n) {
    map2(y, a, b, n, [](__m512 p, __m512 q) { return _mm512_add_ps(p, q); });
}

void mul(float* y, const float* a, const float* b, int64_t n) {
    map2(y, a, b, n, [](__m512 p, __m512 q) { return _mm512_mul_ps(p, q); });
}

void scale(float* y, const float* x, float s, int64_t n) {
    const __m512 sv = _mm512_set1_ps(s);
    map1(y, x, n, [sv](__m512 v) { return _mm512_mul_ps(v, sv); });
}

void rope_neox(float* x, int64_t d, float pos, const float* inv_freq) {
    const int64_t h = d / 2;
    const __m512 pv = _mm512_set1_ps(pos);
    for (int64_t i = 0; i < h; i += 16) {
        const __mmask16 m = tail_mask(h - i);
        const __m512 a = _mm512_maskz_loadu_ps(m, x + i), b = _mm512_maskz_loadu_ps(m, x + h + i);
        __m512 s, c;
        v_sincos(_mm512_mul_ps(pv, _mm512_maskz_loadu_ps(m, inv_freq + i)), &s, &c);
        _mm512_mask_storeu_ps(x + i, m, _mm512_fmsub_ps(a, c, _mm512_mul_ps(b, s)));
        _mm512_mask_storeu_ps(x + h + i, m, _mm512_fmadd_ps(a, s, _mm512_mul_ps(b, c)));
    }
}

// ------------------------------------------------------------------ tables

template <bool V>
struct Kinds {
    template <int NR, int NC>
    using F32 = typename FloatK<LoadF32>::template K<NR, NC>;
    template <int NR, int NC>
    using F16 = typename FloatK<LoadF16>::template K<NR, NC>;
    template <int NR, int NC>
    using BF16 = typename FloatK<LoadBF16>::template K<NR, NC>;
    template <int NR, int NC>
    using Q8_0 = typename LegacyK<FQ8_0<V>>::template K<NR, NC>;
    template <int NR, int NC>
    using Q4_0 = typename LegacyK<FQx_0<V, 8, 18, false>>::template K<NR, NC>;
    template <int NR, int NC>
    using Q5_0 = typename LegacyK<FQx_0<V, 16, 22, true>>::template K<NR, NC>;
    template <int NR, int NC>
    using Q4_1 = typename LegacyK<FQx_1<V, 20, false>>::template K<NR, NC>;
    template <int NR, int NC>
    using Q5_1 = typename LegacyK<FQx_1<V, 24, true>>::template K<NR, NC>;
    template <int NR, int NC>
    using Q4K = typename Q45K<V, false>::template K<NR, NC>;
    template <int NR, int NC>
    using Q5K = typename Q45K<V, true>::template K<NR, NC>;
    template <int NR, int NC>
    using Q6K = typename Q6KT<V>::template K<NR, NC>;
};

template <template <int, int> class Kn>
void set(KernelTable& t, GGMLType ty) {
    t.vec_dot[static_cast<int>(ty)] = vec_fn<Kn>;
    t.tile_dot[static_cast<int>(ty)] = tile_fn<Kn>;
}

template <bool V>
KernelTable make_table(const char* name) {
    using Kd = Kinds<V>;
    KernelTable t;
    t.isa = name;
    set<Kd::template F32>(t, GGMLType::F32);
    set<Kd::template F16>(t, GGMLType::F16);
    set<Kd::template BF16>(t, GGMLType::BF16);
    set<Kd::template Q8_0>(t, GGMLType::Q8_0);
    set<Kd::template Q4_0>(t, GGMLType::Q4_0);
    set<Kd::template Q5_0>(t, GGMLType::Q5_0);
    set<Kd::template Q4_1>(t, GGMLType::Q4_1);
    set<Kd::template Q5_1>(t, GGMLType::Q5_1);
    set<Kd::template Q4K>(t, GGMLType::Q4_K);
    set<Kd::template Q5K>(t, GGMLType::Q5_K);
    set<Kd::template Q6K>(t, GGMLType::Q6_K);
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
    add_row_kernels_avx512(t);
    add_panel_kernels_avx512(t, V);
    return t;
}

}  // namespace

const KernelTable* avx512_novnni_table() {
    static const KernelTable t = make_table<false>("avx512-novnni");
    return &t;
}

const KernelTable* avx512_table() {
    static const KernelTable t = features().avx512vnni ? make_table<true>("avx512") : make_table<false>("avx512");
    return &t;
}

}  // namespace unigemma::cpu
