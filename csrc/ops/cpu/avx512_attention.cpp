// AVX-512 attention kernels (kernels.h: kv_row_f32, attn_scores, attn_softmax, attn_pv),
// the scalar_attention.cpp plan with 16-lane vectors:
//   * score (r, j): one zmm accumulator per pair, FMA over d in chunks of 16 (masked last
//     chunk), reduced with hsum() (pairwise halves: the scalar sum16 order). Tiles of up to
//     4 rows x 4 keys share loads; the per-pair arithmetic is the same for every tile shape.
//   * softmax: exp by Cody-Waite reduction and a degree-6 polynomial (<= 2 ulp here, inputs
//     <= 0), masked to the row's columns [a, b]; the row sum in 16 lanes (column mod 16).
//   * P.V: up to 4 rows share each V load; per output element one FMA per key, keys
//     ascending (rows with a different [a, b] run their extra keys alone, in order).
// GCC 12 reports false -W(maybe-)uninitialized warnings inside _mm512_cvtph_ps and
// _mm512_reduce_max_ps (their undefined pass-through operands); nothing here reads
// uninitialized data.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ops/cpu/kernels.h"
#include "quant/block_layouts.h"
#include "quant/fp16.h"

#include "ops/cpu/unroll.h"

namespace unigemma::cpu {

namespace {

using quant::kQK;

inline float half(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return quant::fp16_to_fp32(h);
}

inline __mmask16 tail_mask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1); }

// ------------------------------------------------------------------ rows -> float32

void row_f32(int64_t n, const void* row, float* out) { std::memcpy(out, row, static_cast<size_t>(n) * 4); }

void row_f16(int64_t n, const void* row, float* out) {
    const auto* r = static_cast<const uint8_t*>(row);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r + 2 * i))));
    for (; i < n; ++i) out[i] = half(r + 2 * i);
}

inline void store_q16(float* out, __m128i q8, __m512 d) {
    _mm512_storeu_ps(out, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q8))));
}

void row_q8_0(int64_t n, const void* row, float* out) {
    const auto* r = static_cast<const uint8_t*>(row);
    for (int64_t b = 0; b < n / kQK; ++b, r += sizeof(quant::BlockQ8_0), out += kQK) {
        const __m512 d = _mm512_set1_ps(half(r));
        store_q16(out, _mm_loadu_si128(reinterpret_cast<const __m128i*>(r + 2)), d);
        store_q16(out + 16, _mm_loadu_si128(reinterpret_cast<const __m128i*>(r + 18)), d);
    }
}

void row_q4_0(int64_t n, const void* row, float* out) {
    const auto* r = static_cast<const uint8_t*>(row);
    const __m128i m4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    for (int64_t b = 0; b < n / kQK; ++b, r += sizeof(quant::BlockQ4_0), out += kQK) {
        const __m512 d = _mm512_set1_ps(half(r));
        const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r + 2));
        store_q16(out, _mm_sub_epi8(_mm_and_si128(q, m4), eight), d);
        store_q16(out + 16, _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), m4), eight), d);
    }
}

// ------------------------------------------------------------------ scores

// Sum of the 16 lanes, pairwise: lanes i + (i + 8), then + 4, + 2, + 1.
inline float hsum(__m512 v) {
    const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

// s[r * ss + c] = q_r . k_c for an RT x CT tile.
template <int RT, int CT>
void score_tile(int64_t d, const float* q, int64_t qs, const float* k, int64_t ks, float* s, int64_t ss) {
    __m512 acc[RT][CT];
    UG_UNROLL for (int r = 0; r < RT; ++r) UG_UNROLL for (int c = 0; c < CT; ++c) acc[r][c] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= d; i += 16) {
        __m512 kv[CT];
        UG_UNROLL for (int c = 0; c < CT; ++c) kv[c] = _mm512_loadu_ps(k + c * ks + i);
        UG_UNROLL for (int r = 0; r < RT; ++r) {
            const __m512 qv = _mm512_loadu_ps(q + r * qs + i);
            UG_UNROLL for (int c = 0; c < CT; ++c) acc[r][c] = _mm512_fmadd_ps(qv, kv[c], acc[r][c]);
        }
    }
    if (i < d) {
        const __mmask16 m = tail_mask(d - i);
        __m512 kv[CT];
        UG_UNROLL for (int c = 0; c < CT; ++c) kv[c] = _mm512_maskz_loadu_ps(m, k + c * ks + i);
        UG_UNROLL for (int r = 0; r < RT; ++r) {
            const __m512 qv = _mm512_maskz_loadu_ps(m, q + r * qs + i);
            UG_UNROLL for (int c = 0; c < CT; ++c) acc[r][c] = _mm512_fmadd_ps(qv, kv[c], acc[r][c]);
        }
    }
    UG_UNROLL for (int r = 0; r < RT; ++r) UG_UNROLL for (int c = 0; c < CT; ++c) s[r * ss + c] = hsum(acc[r][c]);
}

using ScoreFn = void (*)(int64_t, const float*, int64_t, const float*, int64_t, float*, int64_t);
constexpr ScoreFn kScoreTiles[4][4] = {
    {score_tile<1, 1>, score_tile<1, 2>, score_tile<1, 3>, score_tile<1, 4>},
    {score_tile<2, 1>, score_tile<2, 2>, score_tile<2, 3>, score_tile<2, 4>},
    {score_tile<3, 1>, score_tile<3, 2>, score_tile<3, 3>, score_tile<3, 4>},
    {score_tile<4, 1>, score_tile<4, 2>, score_tile<4, 3>, score_tile<4, 4>},
};

void scores(int64_t d, int nr, int nk, const float* q, int64_t qs, const float* k, int64_t ks, float* s, int64_t ss) {
    // keys outer: a 4-key group stays in L1 while every row passes over it
    for (int c = 0; c < nk; c += 4) {
        const int ct = std::min(4, nk - c);
        for (int r = 0; r < nr; r += 4) {
            const int rt = std::min(4, nr - r);
            kScoreTiles[rt - 1][ct - 1](d, q + r * qs, qs, k + c * ks, ks, s + r * ss + c, ss);
        }
    }
}

// ------------------------------------------------------------------ softmax

// exp(x) for x <= 0 (x < -87.3 gives ~1e-38 instead of less; NaN gives the same):
// x = n ln2 + f, |f| <= ln2 / 2 (two-constant Cody-Waite), exp(f) by its degree-6 Taylor
// polynomial (truncation < 1.3e-7 relative), times 2^n by vscalefps.
inline __m512 exp_neg(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    f = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), f);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

// Mask of the lanes of the 16-column chunk starting at column c that lie in [a, b].
inline __mmask16 range_mask(int c, int a, int b) {
    const int lo = std::max(a - c, 0), hi = std::min(b - c, 15);
    return static_cast<__mmask16>(((1u << (hi + 1)) - 1) & ~((1u << lo) - 1));
}

void softmax(int nr, float* s, int64_t ss, const int* a, const int* b, float scale, float* m, float* l,
             float* alpha) {
    const __m512 vs = _mm512_set1_ps(scale);
    for (int r = 0; r < nr; ++r) {
        if (a[r] > b[r]) continue;
        float* sr = s + r * ss;
        const int c0 = a[r] & ~15;
        __m512 vmax = _mm512_set1_ps(-INFINITY);
        for (int c = c0; c <= b[r]; c += 16) {
            const __mmask16 mk = range_mask(c, a[r], b[r]);
            vmax = _mm512_mask_max_ps(vmax, mk, vmax, _mm512_mul_ps(vs, _mm512_maskz_loadu_ps(mk, sr + c)));
        }
        const float mx = std::max(m[r], _mm512_reduce_max_ps(vmax));
        const float al = m[r] == -INFINITY ? 0.0f : _mm512_cvtss_f32(exp_neg(_mm512_set1_ps(m[r] - mx)));
        const __m512 vm = _mm512_set1_ps(mx);
        __m512 sum = _mm512_setzero_ps();
        for (int c = c0; c <= b[r]; c += 16) {
            const __mmask16 mk = range_mask(c, a[r], b[r]);
            const __m512 e = exp_neg(_mm512_sub_ps(_mm512_mul_ps(vs, _mm512_maskz_loadu_ps(mk, sr + c)), vm));
            _mm512_mask_storeu_ps(sr + c, mk, e);
            sum = _mm512_mask_add_ps(sum, mk, sum, e);
        }
        l[r] = l[r] * al + hsum(sum);
        m[r] = mx;
        alpha[r] = al;
    }
}

// ------------------------------------------------------------------ P.V

// o_r[i..] += sum_{j = j0..j1} p_r[j] * v_j[i..] for RT rows, over NV vectors of 16 floats
// from element i (the last one masked by `last` when NV = 1).
template <int RT, int NV>
inline void pv_strip(int64_t i, __mmask16 last, int j0, int j1, const float* p, int64_t ps, const float* v,
                     int64_t vs, float* o, int64_t os) {
    __m512 acc[RT][NV];
    UG_UNROLL for (int r = 0; r < RT; ++r) UG_UNROLL for (int u = 0; u < NV; ++u) acc[r][u] =
        _mm512_maskz_loadu_ps(NV == 1 ? last : 0xFFFF, o + r * os + i + 16 * u);
    for (int j = j0; j <= j1; ++j) {
        __m512 vv[NV];
        UG_UNROLL for (int u = 0; u < NV; ++u) vv[u] =
            _mm512_maskz_loadu_ps(NV == 1 ? last : 0xFFFF, v + j * vs + i + 16 * u);
        UG_UNROLL for (int r = 0; r < RT; ++r) {
            const __m512 pj = _mm512_set1_ps(p[r * ps + j]);
            UG_UNROLL for (int u = 0; u < NV; ++u) acc[r][u] = _mm512_fmadd_ps(pj, vv[u], acc[r][u]);
        }
    }
    UG_UNROLL for (int r = 0; r < RT; ++r) UG_UNROLL for (int u = 0; u < NV; ++u)
        _mm512_mask_storeu_ps(o + r * os + i + 16 * u, NV == 1 ? last : 0xFFFF, acc[r][u]);
}

template <int RT>
void pv_rows(int64_t d, int j0, int j1, const float* p, int64_t ps, const float* v, int64_t vs, float* o,
             int64_t os) {
    if (j0 > j1) return;
    int64_t i = 0;
    for (; i + 64 <= d; i += 64) pv_strip<RT, 4>(i, 0xFFFF, j0, j1, p, ps, v, vs, o, os);
    for (; i + 16 <= d; i += 16) pv_strip<RT, 1>(i, 0xFFFF, j0, j1, p, ps, v, vs, o, os);
    if (i < d) pv_strip<RT, 1>(i, tail_mask(d - i), j0, j1, p, ps, v, vs, o, os);
}

using PvFn = void (*)(int64_t, int, int, const float*, int64_t, const float*, int64_t, float*, int64_t);
constexpr PvFn kPvRows[4] = {pv_rows<1>, pv_rows<2>, pv_rows<3>, pv_rows<4>};

void pv(int64_t d, int nr, const int* a, const int* b, const float* p, int64_t ps, const float* v, int64_t vs,
        float* o, int64_t os) {
    for (int r0 = 0; r0 < nr; r0 += 4) {
        const int rt = std::min(4, nr - r0);
        int A = 0, B = 1 << 30;  // keys every row of the group sees
        for (int r = r0; r < r0 + rt; ++r) A = std::max(A, a[r]), B = std::min(B, b[r]);
        if (A > B) {  // some row sees nothing here, or the ranges do not overlap
            for (int r = r0; r < r0 + rt; ++r) pv_rows<1>(d, a[r], b[r], p + r * ps, ps, v, vs, o + r * os, os);
            continue;
        }
        // per row: its keys before A alone, [A, B] together, its keys after B alone (ascending)
        for (int r = r0; r < r0 + rt; ++r) pv_rows<1>(d, a[r], A - 1, p + r * ps, ps, v, vs, o + r * os, os);
        kPvRows[rt - 1](d, A, B, p + r0 * ps, ps, v, vs, o + r0 * os, os);
        for (int r = r0; r < r0 + rt; ++r) pv_rows<1>(d, B + 1, b[r], p + r * ps, ps, v, vs, o + r * os, os);
    }
}

}  // namespace

void add_attention_kernels_avx512(KernelTable& t) {
    t.kv_row_f32[static_cast<int>(GGMLType::F32)] = row_f32;
    t.kv_row_f32[static_cast<int>(GGMLType::F16)] = row_f16;
    t.kv_row_f32[static_cast<int>(GGMLType::Q8_0)] = row_q8_0;
    t.kv_row_f32[static_cast<int>(GGMLType::Q4_0)] = row_q4_0;
    t.attn_scores = scores;
    t.attn_softmax = softmax;
    t.attn_pv = pv;
}

}  // namespace unigemma::cpu
