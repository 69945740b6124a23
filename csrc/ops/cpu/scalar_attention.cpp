// Scalar reference of the attention kernels (kernels.h: kv_row_f32, attn_scores,
// attn_softmax, attn_pv) and add_attention_kernels(), which puts each path's kernels into
// its merged table.
//
// Numerics (the SIMD paths follow the same plan with wider vectors):
//   * a score is a dot over d in 16 interleaved float32 partial sums (element i goes to
//     partial i mod 16), summed pairwise at the end: the same for every (row, key) pair;
//   * exp is std::exp (float);
//   * a softmax row's sum runs over the row's columns [a, b] in 16 partial sums indexed by
//     column mod 16 (columns are absolute key positions mod the block size), pairwise at the end;
//   * P.V is one multiply-add per (key, element), keys ascending, per row.
// Every quantity of a row depends only on that row's inputs, never on nr / nk / the tile.
#include <algorithm>
#include <cmath>
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

void row_f32(int64_t n, const void* row, float* out) { std::memcpy(out, row, static_cast<size_t>(n) * 4); }

void row_f16(int64_t n, const void* row, float* out) {
    const auto* r = static_cast<const uint8_t*>(row);
    for (int64_t i = 0; i < n; ++i) out[i] = half(r + 2 * i);
}

void row_q8_0(int64_t n, const void* row, float* out) {
    const auto* r = static_cast<const uint8_t*>(row);
    for (int64_t b = 0; b < n / kQK; ++b, r += sizeof(quant::BlockQ8_0), out += kQK) {
        const float d = half(r);
        const auto* q = reinterpret_cast<const int8_t*>(r + 2);
        for (int i = 0; i < kQK; ++i) out[i] = d * static_cast<float>(q[i]);
    }
}

void row_q4_0(int64_t n, const void* row, float* out) {
    const auto* r = static_cast<const uint8_t*>(row);
    for (int64_t b = 0; b < n / kQK; ++b, r += sizeof(quant::BlockQ4_0), out += kQK) {
        const float d = half(r);
        for (int i = 0; i < kQK / 2; ++i) {
            out[i] = d * static_cast<float>((r[2 + i] & 0x0F) - 8);
            out[i + kQK / 2] = d * static_cast<float>((r[2 + i] >> 4) - 8);
        }
    }
}

// 16 partial sums -> one, pairwise: (p0 + p8) ..., then halves again (the AVX-512 order).
inline float sum16(float* p) {
    for (int w = 8; w >= 1; w /= 2)
        for (int i = 0; i < w; ++i) p[i] += p[i + w];
    return p[0];
}

float dot(int64_t d, const float* a, const float* b) {
    float p[16] = {};
    int64_t i = 0;
    for (; i + 16 <= d; i += 16)
        for (int l = 0; l < 16; ++l) p[l] += a[i + l] * b[i + l];
    for (int l = 0; i + l < d; ++l) p[l] += a[i + l] * b[i + l];
    return sum16(p);
}

void scores(int64_t d, int nr, int nk, const float* q, int64_t qs, const float* k, int64_t ks, float* s, int64_t ss) {
    for (int r = 0; r < nr; ++r)
        for (int j = 0; j < nk; ++j) s[r * ss + j] = dot(d, q + r * qs, k + j * ks);
}

void softmax(int nr, float* s, int64_t ss, const int* a, const int* b, float scale, float* m, float* l,
             float* alpha) {
    for (int r = 0; r < nr; ++r) {
        if (a[r] > b[r]) continue;
        float* sr = s + r * ss;
        float mx = m[r];
        for (int j = a[r]; j <= b[r]; ++j) mx = std::max(mx, scale * sr[j]);
        const float al = m[r] == -INFINITY ? 0.0f : std::exp(m[r] - mx);
        float p[16] = {};
        for (int j = a[r]; j <= b[r]; ++j) {
            const float e = std::exp(scale * sr[j] - mx);
            sr[j] = e;
            p[j % 16] += e;
        }
        l[r] = l[r] * al + sum16(p);
        m[r] = mx;
        alpha[r] = al;
    }
}

void pv(int64_t d, int nr, const int* a, const int* b, const float* p, int64_t ps, const float* v, int64_t vs,
        float* o, int64_t os) {
    for (int r = 0; r < nr; ++r) {
        float* orow = o + r * os;
        for (int j = a[r]; j <= b[r]; ++j) {
            const float pj = p[r * ps + j];
            const float* vr = v + j * vs;
            for (int64_t i = 0; i < d; ++i) orow[i] += pj * vr[i];
        }
    }
}

}  // namespace

void add_attention_kernels_scalar(KernelTable& t) {
    t.kv_row_f32[static_cast<int>(GGMLType::F32)] = row_f32;
    t.kv_row_f32[static_cast<int>(GGMLType::F16)] = row_f16;
    t.kv_row_f32[static_cast<int>(GGMLType::Q8_0)] = row_q8_0;
    t.kv_row_f32[static_cast<int>(GGMLType::Q4_0)] = row_q4_0;
    t.attn_scores = scores;
    t.attn_softmax = softmax;
    t.attn_pv = pv;
}

void add_attention_kernels(KernelTable& t, const std::string& isa) {
    // Start from the reference, then let the path replace what it has.
    add_attention_kernels_scalar(t);
#if defined(UNIGEMMA_X86)
    if (isa.rfind("avx512", 0) == 0) add_attention_kernels_avx512(t);
    if (isa == "avx2") add_attention_kernels_avx2(t);
#endif
    // NEON: no attention kernels yet, the neon paths run the scalar ones.
    (void)isa;
}

}  // namespace unigemma::cpu
