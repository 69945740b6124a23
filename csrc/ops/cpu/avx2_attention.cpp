// AVX2 + FMA + F16C attention kernels (kernels.h: kv_row_f32, attn_scores, attn_softmax,
// attn_pv): the plan of avx512_attention.cpp with 8-lane vectors and 16 registers:
//   * score (r, j): one ymm accumulator per pair, FMA over d in chunks of 8 (masked last
//     chunk), reduced pairwise (lanes i + (i + 4), then + 2, + 1); tiles of up to 4 rows x
//     3 keys (12 accumulators); the per-pair arithmetic is the same for every tile shape.
//   * softmax: the same exp as AVX-512 (2^n put into the exponent bits instead of vscalefps),
//     masked to the row's columns [a, b]; the row sum in 8 lanes (column mod 8).
//   * P.V: up to 4 rows share each V load; one FMA per (key, element), keys ascending.
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

// All-ones in lanes [0, n), n <= 8.
inline __m256i tail_mask(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// ------------------------------------------------------------------ rows -> float32

void row_f32(int64_t n, const void* row, float* out) { std::memcpy(out, row, static_cast<size_t>(n) * 4); }

void row_f16(int64_t n, const void* row, float* out) {
    const auto* r = static_cast<const uint8_t*>(row);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + 2 * i))));
    for (; i < n; ++i) out[i] = half(r + 2 * i);
}

// 8 int8 (low half of q8) times d into out[0..8).
inline void store_q8(float* out, __m128i q8, __m256 d) {
    _mm256_storeu_ps(out, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8))));
}

inline void store_q32(float* out, __m128i lo16, __m128i hi16, __m256 d) {
    store_q8(out, lo16, d);
    store_q8(out + 8, _mm_srli_si128(lo16, 8), d);
    store_q8(out + 16, hi16, d);
    store_q8(out + 24, _mm_srli_si128(hi16, 8), d);
}

void row_q8_0(int64_t n, const void* row, float* out) {
    const auto* r = static_cast<const uint8_t*>(row);
    for (int64_t b = 0; b < n / kQK; ++b, r += sizeof(quant::BlockQ8_0), out += kQK)
        store_q32(out, _mm_loadu_si128(reinterpret_cast<const __m128i*>(r + 2)),
                  _mm_loadu_si128(reinterpret_cast<const __m128i*>(r + 18)), _mm256_set1_ps(half(r)));
}

void row_q4_0(int64_t n, const void* row, float* out) {
    const auto* r = static_cast<const uint8_t*>(row);
    const __m128i m4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    for (int64_t b = 0; b < n / kQK; ++b, r += sizeof(quant::BlockQ4_0), out += kQK) {
        const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r + 2));
        store_q32(out, _mm_sub_epi8(_mm_and_si128(q, m4), eight),
                  _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), m4), eight), _mm256_set1_ps(half(r)));
    }
}

// ------------------------------------------------------------------ scores

inline float hsum(__m256 v) {
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

template <int RT, int CT>
void score_tile(int64_t d, const float* q, int64_t qs, const float* k, int64_t ks, float* s, int64_t ss) {
    __m256 acc[RT][CT];
    UG_UNROLL for (int r = 0; r < RT; ++r) UG_UNROLL for (int c = 0; c < CT; ++c) acc[r][c] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= d; i += 8) {
        __m256 kv[CT];
        UG_UNROLL for (int c = 0; c < CT; ++c) kv[c] = _mm256_loadu_ps(k + c * ks + i);
        UG_UNROLL for (int r = 0; r < RT; ++r) {
            const __m256 qv = _mm256_loadu_ps(q + r * qs + i);
            UG_UNROLL for (int c = 0; c < CT; ++c) acc[r][c] = _mm256_fmadd_ps(qv, kv[c], acc[r][c]);
        }
    }
    if (i < d) {
        const __m256i m = tail_mask(d - i);
        __m256 kv[CT];
        UG_UNROLL for (int c = 0; c < CT; ++c) kv[c] = _mm256_maskload_ps(k + c * ks + i, m);
        UG_UNROLL for (int r = 0; r < RT; ++r) {
            const __m256 qv = _mm256_maskload_ps(q + r * qs + i, m);
            UG_UNROLL for (int c = 0; c < CT; ++c) acc[r][c] = _mm256_fmadd_ps(qv, kv[c], acc[r][c]);
        }
    }
    UG_UNROLL for (int r = 0; r < RT; ++r) UG_UNROLL for (int c = 0; c < CT; ++c) s[r * ss + c] = hsum(acc[r][c]);
}

using ScoreFn = void (*)(int64_t, const float*, int64_t, const float*, int64_t, float*, int64_t);
constexpr ScoreFn kScoreTiles[4][3] = {
    {score_tile<1, 1>, score_tile<1, 2>, score_tile<1, 3>},
    {score_tile<2, 1>, score_tile<2, 2>, score_tile<2, 3>},
    {score_tile<3, 1>, score_tile<3, 2>, score_tile<3, 3>},
    {score_tile<4, 1>, score_tile<4, 2>, score_tile<4, 3>},
};

void scores(int64_t d, int nr, int nk, const float* q, int64_t qs, const float* k, int64_t ks, float* s, int64_t ss) {
    for (int c = 0; c < nk; c += 3) {
        const int ct = std::min(3, nk - c);
        for (int r = 0; r < nr; r += 4) {
            const int rt = std::min(4, nr - r);
            kScoreTiles[rt - 1][ct - 1](d, q + r * qs, qs, k + c * ks, ks, s + r * ss + c, ss);
        }
    }
}

// ------------------------------------------------------------------ softmax

// exp(x) for x <= 0 (clamped at -87.3, where 2^n stays a normal float): as avx512_attention.cpp.
inline __m256 exp_neg(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 f = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    f = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), f);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// All-ones in the lanes of the 8-column chunk at column c that lie in [a, b].
inline __m256i range_mask(int c, int a, int b) {
    const __m256i col = _mm256_add_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(a), col),
                               _mm256_cmpgt_epi32(_mm256_set1_epi32(b + 1), col));
}

void softmax(int nr, float* s, int64_t ss, const int* a, const int* b, float scale, float* m, float* l,
             float* alpha) {
    const __m256 vs = _mm256_set1_ps(scale);
    for (int r = 0; r < nr; ++r) {
        if (a[r] > b[r]) continue;
        float* sr = s + r * ss;
        const int c0 = a[r] & ~7;
        __m256 vmax = _mm256_set1_ps(-INFINITY);
        for (int c = c0; c <= b[r]; c += 8) {
            const __m256i mk = range_mask(c, a[r], b[r]);
            const __m256 t = _mm256_mul_ps(vs, _mm256_maskload_ps(sr + c, mk));
            vmax = _mm256_blendv_ps(vmax, _mm256_max_ps(vmax, t), _mm256_castsi256_ps(mk));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float mx = std::max(m[r], _mm_cvtss_f32(m4));
        const float al = m[r] == -INFINITY ? 0.0f : _mm256_cvtss_f32(exp_neg(_mm256_set1_ps(m[r] - mx)));
        const __m256 vm = _mm256_set1_ps(mx);
        __m256 sum = _mm256_setzero_ps();
        for (int c = c0; c <= b[r]; c += 8) {
            const __m256i mk = range_mask(c, a[r], b[r]);
            const __m256 e = exp_neg(_mm256_sub_ps(_mm256_mul_ps(vs, _mm256_maskload_ps(sr + c, mk)), vm));
            _mm256_maskstore_ps(sr + c, mk, e);
            sum = _mm256_add_ps(sum, _mm256_and_ps(e, _mm256_castsi256_ps(mk)));  // + 0 outside [a, b]
        }
        l[r] = l[r] * al + hsum(sum);
        m[r] = mx;
        alpha[r] = al;
    }
}

// ------------------------------------------------------------------ P.V

// o_r[i..] += sum_{j = j0..j1} p_r[j] * v_j[i..] for RT rows over NV vectors of 8 floats
// (the last one masked by `last` when NV = 1).
template <int RT, int NV>
inline void pv_strip(int64_t i, __m256i last, int j0, int j1, const float* p, int64_t ps, const float* v,
                     int64_t vs, float* o, int64_t os) {
    __m256 acc[RT][NV];
    UG_UNROLL for (int r = 0; r < RT; ++r) UG_UNROLL for (int u = 0; u < NV; ++u) acc[r][u] =
        NV == 1 ? _mm256_maskload_ps(o + r * os + i, last) : _mm256_loadu_ps(o + r * os + i + 8 * u);
    for (int j = j0; j <= j1; ++j) {
        __m256 vv[NV];
        UG_UNROLL for (int u = 0; u < NV; ++u) vv[u] =
            NV == 1 ? _mm256_maskload_ps(v + j * vs + i, last) : _mm256_loadu_ps(v + j * vs + i + 8 * u);
        UG_UNROLL for (int r = 0; r < RT; ++r) {
            const __m256 pj = _mm256_broadcast_ss(p + r * ps + j);
            UG_UNROLL for (int u = 0; u < NV; ++u) acc[r][u] = _mm256_fmadd_ps(pj, vv[u], acc[r][u]);
        }
    }
    UG_UNROLL for (int r = 0; r < RT; ++r) UG_UNROLL for (int u = 0; u < NV; ++u) {
        if (NV == 1)
            _mm256_maskstore_ps(o + r * os + i, last, acc[r][u]);
        else
            _mm256_storeu_ps(o + r * os + i + 8 * u, acc[r][u]);
    }
}

template <int RT>
void pv_rows(int64_t d, int j0, int j1, const float* p, int64_t ps, const float* v, int64_t vs, float* o,
             int64_t os) {
    if (j0 > j1) return;
    const __m256i all = _mm256_set1_epi32(-1);
    int64_t i = 0;
    for (; i + 16 <= d; i += 16) pv_strip<RT, 2>(i, all, j0, j1, p, ps, v, vs, o, os);
    for (; i + 8 <= d; i += 8) pv_strip<RT, 1>(i, all, j0, j1, p, ps, v, vs, o, os);
    if (i < d) pv_strip<RT, 1>(i, tail_mask(d - i), j0, j1, p, ps, v, vs, o, os);
}

using PvFn = void (*)(int64_t, int, int, const float*, int64_t, const float*, int64_t, float*, int64_t);
constexpr PvFn kPvRows[4] = {pv_rows<1>, pv_rows<2>, pv_rows<3>, pv_rows<4>};

void pv(int64_t d, int nr, const int* a, const int* b, const float* p, int64_t ps, const float* v, int64_t vs,
        float* o, int64_t os) {
    for (int r0 = 0; r0 < nr; r0 += 4) {
        const int rt = std::min(4, nr - r0);
        int A = 0, B = 1 << 30;
        for (int r = r0; r < r0 + rt; ++r) A = std::max(A, a[r]), B = std::min(B, b[r]);
        if (A > B) {
            for (int r = r0; r < r0 + rt; ++r) pv_rows<1>(d, a[r], b[r], p + r * ps, ps, v, vs, o + r * os, os);
            continue;
        }
        for (int r = r0; r < r0 + rt; ++r) pv_rows<1>(d, a[r], A - 1, p + r * ps, ps, v, vs, o + r * os, os);
        kPvRows[rt - 1](d, A, B, p + r0 * ps, ps, v, vs, o + r0 * os, os);
        for (int r = r0; r < r0 + rt; ++r) pv_rows<1>(d, B + 1, b[r], p + r * ps, ps, v, vs, o + r * os, os);
    }
}

}  // namespace

void add_attention_kernels_avx2(KernelTable& t) {
    t.kv_row_f32[static_cast<int>(GGMLType::F32)] = row_f32;
    t.kv_row_f32[static_cast<int>(GGMLType::F16)] = row_f16;
    t.kv_row_f32[static_cast<int>(GGMLType::Q8_0)] = row_q8_0;
    t.kv_row_f32[static_cast<int>(GGMLType::Q4_0)] = row_q4_0;
    t.attn_scores = scores;
    t.attn_softmax = softmax;
    t.attn_pv = pv;
}

}  // namespace unigemma::cpu
