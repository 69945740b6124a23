// K-quant formats (256-element super-blocks): dequantization of Q2_K, Q3_K, Q4_K, Q5_K,
// Q6_K, Q8_K and quantization to Q4_K, Q5_K, Q6_K.
//
// Dequantization does gguf.quants' float32 operations in its order, so it is bit-identical
// (like all of quant/, compiled with -ffp-contract=off).
//
// Quantization (gguf.quants has none for these formats) is our own search:
//   A. each sub-block gets a continuous fit, a weighted least-squares scale (and, for
//      Q4_K/Q5_K, a non-negative "min" offset): a grid of inverse scales seeds the integer
//      levels, each seed is refit in closed form, and the best is then polished by
//      alternating "round levels" / "refit scale+min" steps;
//   B. the super-block scales (fp16) are set from the largest sub-block scale/min, and the
//      sub-block scales/mins are rounded to their integer grids (6-bit, or int8 for Q6_K);
//   C. each sub-block tries the neighbouring integer scale/min codes, re-rounding its
//      levels against the exact dequantized values, and keeps the best (storing zeros is
//      always a candidate, so no sub-block ends up worse than zeros);
//   D. the fp16 super-block scales are refit by least squares given the integer codes and
//      levels, and B-C rerun from the refit values; the better of the two results is kept.
// Errors are weighted by w_i = rms + |x_i| (rms of the super-block), which favours the
// larger weights a little over pure MSE. All search arithmetic runs on the super-block
// divided by a power of two (exact), so huge or tiny inputs neither overflow nor underflow
// the sums. When the fp16 super-block scale would be subnormal, coarser scales are tried too.
// Inputs must be finite (InputError otherwise). The largest magnitudes the formats can hold
// are about 65504 * 63 * nmax (Q4_K 6.2e7, Q5_K 1.3e8) and 65504 * 127 * 32 (Q6_K 2.7e8):
// beyond that the fp16 scales saturate (finite output, large error); blocks with max|x| <
// 2^-30 are stored as zeros (the formats cannot resolve them).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "base/error.h"
#include "quant/block_layouts.h"
#include "quant/fp16.h"
#include "quant/quant_internal.h"

namespace unigemma::quant::detail {

namespace {

template <class Block>
inline Block load_block(const uint8_t* src, int64_t i) {
    Block b;
    std::memcpy(&b, src + i * static_cast<int64_t>(sizeof(Block)), sizeof(Block));
    return b;
}

template <class Block>
inline void store_block(uint8_t* dst, int64_t i, const Block& b) {
    std::memcpy(dst + i * static_cast<int64_t>(sizeof(Block)), &b, sizeof(Block));
}

}  // namespace

// ================================================================ dequantize

void dequantize_q2_k(const uint8_t* src, float* dst, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const auto b = load_block<BlockQ2_K>(src, i);
        const float d = fp16_to_fp32(b.d);
        const float dmin = fp16_to_fp32(b.dmin);
        float* y = dst + i * kQKK;
        for (int j = 0; j < kQKK / 16; ++j) {
            const float dl = d * static_cast<float>(b.scales[j] & 0x0f);
            const float ml = dmin * static_cast<float>(b.scales[j] >> 4);
            for (int k = 0; k < 16; ++k) {
                const int e = 16 * j + k;
                const int h = e / 128, s = (e % 128) / 32, l = e % 32;
                const int q = (b.qs[32 * h + l] >> (2 * s)) & 3;
                y[e] = dl * static_cast<float>(q) - ml;
            }
        }
    }
}

void dequantize_q3_k(const uint8_t* src, float* dst, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const auto b = load_block<BlockQ3_K>(src, i);
        const float d = fp16_to_fp32(b.d);
        float* y = dst + i * kQKK;
        for (int j = 0; j < kQKK / 16; ++j) {
            const int lo = j < 8 ? (b.scales[j] & 0x0f) : (b.scales[j - 8] >> 4);
            const int hi = (b.scales[8 + j % 4] >> (2 * (j / 4))) & 3;
            const float dl = d * static_cast<float>((lo | (hi << 4)) - 32);
            for (int k = 0; k < 16; ++k) {
                const int e = 16 * j + k;
                const int h = e / 128, s = (e % 128) / 32, l = e % 32;
                const int low = (b.qs[32 * h + l] >> (2 * s)) & 3;
                const int high = (b.hmask[l] >> (e / 32)) & 1;
                y[e] = dl * static_cast<float>(low - ((high ^ 1) << 2));
            }
        }
    }
}

void dequantize_q4_k(const uint8_t* src, float* dst, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const auto b = load_block<BlockQ4_K>(src, i);
        const float d = fp16_to_fp32(b.d);
        const float dmin = fp16_to_fp32(b.dmin);
        uint8_t sc[8], m[8];
        unpack_scale_min_k4(b.scales, sc, m);
        float* y = dst + i * kQKK;
        for (int j = 0; j < 8; ++j) {
            const float dl = d * static_cast<float>(sc[j]);
            const float ml = dmin * static_cast<float>(m[j]);
            const int c = j / 2, shift = 4 * (j % 2);
            for (int l = 0; l < 32; ++l) {
                const int q = (b.qs[32 * c + l] >> shift) & 0x0f;
                y[32 * j + l] = dl * static_cast<float>(q) - ml;
            }
        }
    }
}

void dequantize_q5_k(const uint8_t* src, float* dst, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const auto b = load_block<BlockQ5_K>(src, i);
        const float d = fp16_to_fp32(b.d);
        const float dmin = fp16_to_fp32(b.dmin);
        uint8_t sc[8], m[8];
        unpack_scale_min_k4(b.scales, sc, m);
        float* y = dst + i * kQKK;
        for (int j = 0; j < 8; ++j) {
            const float dl = d * static_cast<float>(sc[j]);
            const float ml = dmin * static_cast<float>(m[j]);
            const int c = j / 2, shift = 4 * (j % 2);
            for (int l = 0; l < 32; ++l) {
                const int q = ((b.qs[32 * c + l] >> shift) & 0x0f) | (((b.qh[l] >> j) & 1) << 4);
                y[32 * j + l] = dl * static_cast<float>(q) - ml;
            }
        }
    }
}

void dequantize_q6_k(const uint8_t* src, float* dst, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const auto b = load_block<BlockQ6_K>(src, i);
        const float d = fp16_to_fp32(b.d);
        float dl[16];
        for (int j = 0; j < 16; ++j) dl[j] = d * static_cast<float>(b.scales[j]);
        float* y = dst + i * kQKK;
        for (int h = 0; h < 2; ++h) {
            const uint8_t* ql = b.ql + 64 * h;
            const uint8_t* qh = b.qh + 32 * h;
            float* yh = y + 128 * h;
            const float* s = dl + 8 * h;
            for (int l = 0; l < 32; ++l) {
                // elements 128h + {l, 32 + l, 64 + l, 96 + l}
                const int q0 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) - 32;
                const int q1 = ((ql[32 + l] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q2 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q3 = ((ql[32 + l] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                yh[l] = s[l / 16] * static_cast<float>(q0);
                yh[32 + l] = s[2 + l / 16] * static_cast<float>(q1);
                yh[64 + l] = s[4 + l / 16] * static_cast<float>(q2);
                yh[96 + l] = s[6 + l / 16] * static_cast<float>(q3);
            }
        }
    }
}

void dequantize_q8_k(const uint8_t* src, float* dst, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i) {
        const auto b = load_block<BlockQ8_K>(src, i);
        float* y = dst + i * kQKK;
        for (int e = 0; e < kQKK; ++e) y[e] = b.d * static_cast<float>(b.qs[e]);
    }
}

// ================================================================ quantize

namespace {

constexpr float kFp16Max = 65504.0f;

// v clamped to [lo, hi] (integer bounds) and rounded to nearest, ties to even, as a float;
// NaN gives lo. Branch-free (min/max, then the 1.5 * 2^23 add/subtract that leaves a float32
// rounded to an integer) so the loops over a sub-block vectorize.
inline float round_clamp(float v, float lo, float hi) {
    constexpr float kMagic = 12582912.0f;
    v = std::max(lo, v);  // (lo < v) ? v : lo
    v = std::min(hi, v);  // (v < hi) ? v : hi
    return (v + kMagic) - kMagic;
}

inline int round_clamp_int(float v, int lo, int hi) {
    return static_cast<int>(round_clamp(v, static_cast<float>(lo), static_cast<float>(hi)));
}

// Sum of 8 lane accumulators in a fixed order (results do not depend on the compiler).
inline float hsum8(const float* a) { return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])); }

// Rounds a positive real-domain super-block scale to fp16, saturating at the largest finite
// fp16 (a block too large for the format saturates instead of decoding to inf/NaN).
inline uint16_t scale_to_fp16(float v) {
    if (!(v > 0.0f)) return 0;
    return fp32_to_fp16(std::min(v, kFp16Max));
}

// Per-super-block preparation: finiteness check, power-of-two normalisation, error weights.
struct Prepared {
    float xn[kQKK];  // x * norm, 1 <= max|xn| < 2
    float w[kQKK];   // error weights
    float norm;      // 2^-e
    float denorm;    // 2^e
};

// Returns false when the block is stored as all zeros.
bool prepare(const float* x, int64_t block_index, const char* type, Prepared& p) {
    float amax = 0.0f;
    for (int i = 0; i < kQKK; ++i) {
        if (!std::isfinite(x[i]))
            throw InputError(std::string("[quantize] ") + type + ": non-finite value at element " +
                             std::to_string(block_index * kQKK + i) + " of a row");
        amax = std::max(amax, std::fabs(x[i]));
    }
    // The smallest non-zero magnitude these formats can store is 2^-24 (fp16 scale 2^-24
    // times code 1 times level 1), so a block this small is best stored as zeros; the cut
    // also keeps norm = 2^-e finite.
    if (amax < 0x1p-30f) return false;
    const int e = std::ilogb(amax);  // -30 .. 127
    p.norm = std::ldexp(1.0f, -e);   // exact (2^-127 is a float subnormal, still exact)
    p.denorm = std::ldexp(1.0f, e);
    float sumsq = 0.0f;
    for (int i = 0; i < kQKK; ++i) {
        p.xn[i] = x[i] * p.norm;  // exact: power-of-two scaling with a normal result
        sumsq += p.xn[i] * p.xn[i];
    }
    const float rms = std::sqrt(sumsq / kQKK);
    for (int i = 0; i < kQKK; ++i) p.w[i] = rms + std::fabs(p.xn[i]);
    return true;
}

// ---------------------------------------------------------------- affine (Q4_K / Q5_K)
// Sub-blocks of 32: x ~ a*L - m, L in [0, nmax], a >= 0, m >= 0.

constexpr int kSubA = 32;

inline void affine_levels(const float* x, float nmax, float ia, float m, float* L) {
    for (int i = 0; i < kSubA; ++i) L[i] = round_clamp((x[i] + m) * ia, 0.0f, nmax);
}

struct AffineSums {
    float sw, sx, sxx;  // sum w, sum w x, sum w x^2 of the sub-block
};

// Closed-form weighted least squares for x ~ a*L - m with a > 0 and m >= 0 (a positive
// offset is not representable: then m = 0 and a alone is fit). Returns the weighted squared
// error of the fit (from the normal equations), or INFINITY when the levels are degenerate.
float lsq_affine(const float* x, const float* w, const float* L, const AffineSums& s, float* a, float* m) {
    float vl[8] = {}, vll[8] = {}, vlx[8] = {};
    for (int i = 0; i < kSubA; i += 8)
        for (int k = 0; k < 8; ++k) {
            const float wl = w[i + k] * L[i + k];
            vl[k] += wl;
            vll[k] += wl * L[i + k];
            vlx[k] += wl * x[i + k];
        }
    const double sl = hsum8(vl), sll = hsum8(vll), slx = hsum8(vlx);
    const double sw = s.sw, sx = s.sx;
    if (!(sll > 0)) return INFINITY;
    const double det = sw * sll - sl * sl;
    double A = 0, B = 0;  // x ~ A*L + B
    const bool full = det > 1e-6 * sw * sll;
    if (full) {
        A = (sw * slx - sl * sx) / det;
        B = (sll * sx - sl * slx) / det;
    }
    if (!full || B > 0) {
        A = slx / sll;
        B = 0;
    }
    if (!(A > 0)) return INFINITY;
    *a = static_cast<float>(A);
    *m = static_cast<float>(-B);
    // Residual of a least-squares fit: sum w x^2 - A sum w L x - B sum w x (also right for
    // the B = 0 fit, whose normal equation is A sum w L^2 = sum w L x).
    return static_cast<float>(std::max(s.sxx - A * slx - B * sx, 0.0));
}

// Stage A for one sub-block: continuous scale a >= 0 and min m >= 0.
void fit_affine(const float* x, const float* w, int nmax, float* a_out, float* m_out) {
    float lo = x[0], hi = x[0];
    AffineSums s{0, 0, 0};
    for (int i = 0; i < kSubA; ++i) {
        lo = std::min(lo, x[i]);
        hi = std::max(hi, x[i]);
        s.sw += w[i];
        s.sx += w[i] * x[i];
        s.sxx += w[i] * x[i] * x[i];
    }
    if (lo > 0) lo = 0;
    *a_out = 0;
    *m_out = -lo;
    if (!(hi > lo)) return;  // constant non-positive sub-block: all levels 0
    float L[kSubA];
    const float fmax = static_cast<float>(nmax);
    const float range = hi - lo;
    float best_err = INFINITY, best_a = range / fmax, best_m = -lo;
    // Seeds: the sub-block range mapped onto nmax - 1 ... nmax + 1 levels.
    for (int k = 0; k <= 20; ++k) {
        const float iscale = (fmax - 1.0f + 0.1f * static_cast<float>(k)) / range;
        affine_levels(x, fmax, iscale, -lo, L);
        float a, m;
        const float err = lsq_affine(x, w, L, s, &a, &m);
        if (err < best_err) {
            best_err = err;
            best_a = a;
            best_m = m;
        }
    }
    // Polish: re-round the levels against the best fit and refit while that helps.
    for (int it = 0; it < 4 && best_err < INFINITY; ++it) {
        affine_levels(x, fmax, 1.0f / best_a, best_m, L);
        float a, m;
        const float err = lsq_affine(x, w, L, s, &a, &m);
        if (!(err < best_err)) break;
        best_err = err;
        best_a = a;
        best_m = m;
    }
    *a_out = best_a;
    *m_out = best_m;
}

struct AffineCodes {
    uint16_t d16, dmin16;
    uint8_t sc[8], mq[8];
    uint8_t L[kQKK];
    float err;  // weighted squared error, normalised domain
};

// Stages B+C: given the fp16 super-block scales, pick each sub-block's 6-bit scale/min codes
// (the rounded continuous fit and its neighbours) and levels, judged on the exact values the
// decoder produces.
void affine_codes(const Prepared& p, const float* a, const float* m, int nmax, uint16_t d16, uint16_t dmin16,
                  AffineCodes& out) {
    out.d16 = d16;
    out.dmin16 = dmin16;
    out.err = 0;
    const float D = fp16_to_fp32(d16), M = fp16_to_fp32(dmin16);
    const float Dn = D * p.norm, Mn = M * p.norm;
    const float fmax = static_cast<float>(nmax);
    float L[kSubA];
    for (int j = 0; j < 8; ++j) {
        const float* x = p.xn + kSubA * j;
        const float* w = p.w + kSubA * j;
        const int sc0 = Dn > 0 ? round_clamp_int(a[j] / Dn, 0, 63) : 0;
        const int mq0 = Mn > 0 ? round_clamp_int(m[j] / Mn, 0, 63) : 0;
        // Storing zeros (codes 0/0) is always possible; start from its error.
        float vz[8] = {};
        for (int i = 0; i < kSubA; i += 8)
            for (int k = 0; k < 8; ++k) vz[k] += w[i + k] * x[i + k] * x[i + k];
        float best = hsum8(vz);
        out.sc[j] = 0;
        out.mq[j] = 0;
        std::memset(out.L + kSubA * j, 0, kSubA);
        for (int sc = std::max(0, sc0 - 1); sc <= std::min(63, sc0 + 1); ++sc) {
            for (int mq = std::max(0, mq0 - 1); mq <= std::min(63, mq0 + 1); ++mq) {
                const float dl = D * static_cast<float>(sc);  // exactly as the decoder
                const float ml = M * static_cast<float>(mq);
                const float dln = dl * p.norm, mln = ml * p.norm;
                if (dln > 0)
                    affine_levels(x, fmax, 1.0f / dln, mln, L);
                else
                    std::fill(L, L + kSubA, 0.0f);
                float ve[8] = {};
                for (int i = 0; i < kSubA; i += 8)
                    for (int k = 0; k < 8; ++k) {
                        const float diff = (dl * L[i + k] - ml) * p.norm - x[i + k];
                        ve[k] += w[i + k] * diff * diff;
                    }
                const float err = hsum8(ve);
                if (err < best) {
                    best = err;
                    out.sc[j] = static_cast<uint8_t>(sc);
                    out.mq[j] = static_cast<uint8_t>(mq);
                    for (int i = 0; i < kSubA; ++i) out.L[kSubA * j + i] = static_cast<uint8_t>(L[i]);
                }
            }
        }
        out.err += best;
    }
}

void quantize_affine_superblock(const Prepared& p, int nmax, AffineCodes& best) {
    float a[8], m[8];
    float amax = 0, mmax = 0;
    for (int j = 0; j < 8; ++j) {
        fit_affine(p.xn + kSubA * j, p.w + kSubA * j, nmax, &a[j], &m[j]);
        amax = std::max(amax, a[j]);
        mmax = std::max(mmax, m[j]);
    }
    const uint16_t d16 = scale_to_fp16(amax / 63 * p.denorm), dmin16 = scale_to_fp16(mmax / 63 * p.denorm);
    affine_codes(p, a, m, nmax, d16, dmin16, best);
    const bool d_sub = amax > 0 && d16 < 0x0400, m_sub = mmax > 0 && dmin16 < 0x0400;
    if (d_sub || m_sub) {
        // A super-block scale in the fp16 subnormal range has few significant bits: also try
        // coarser super-block scales (smaller codes, more relative precision).
        constexpr float kDivs[] = {63, 16, 4, 1};
        AffineCodes trial;
        for (int id = 0; id < (d_sub ? 4 : 1); ++id)
            for (int im = 0; im < (m_sub ? 4 : 1); ++im) {
                if (id == 0 && im == 0) continue;  // the default, done above
                const uint16_t td = d_sub ? scale_to_fp16(amax / kDivs[id] * p.denorm) : d16;
                const uint16_t tm = m_sub ? scale_to_fp16(mmax / kDivs[im] * p.denorm) : dmin16;
                affine_codes(p, a, m, nmax, td, tm, trial);
                if (trial.err < best.err) best = trial;
            }
    }

    // Stage D: refit (D, M) for x ~ D * (sc_j L_i) - M * mq_j by least squares, then redo
    // B-C around the refit scales; keep whichever is better.
    double suu = 0, suv = 0, svv = 0, sux = 0, svx = 0;
    for (int i = 0; i < kQKK; ++i) {
        const int j = i / kSubA;
        const double u = static_cast<double>(best.sc[j]) * best.L[i], v = best.mq[j], wi = p.w[i], xi = p.xn[i];
        suu += wi * u * u;
        suv += wi * u * v;
        svv += wi * v * v;
        sux += wi * u * xi;
        svx += wi * v * xi;
    }
    if (!(suu > 0)) return;
    double D, M;
    const double det = suu * svv - suv * suv;
    if (svv > 0 && det > 1e-9 * suu * svv) {
        D = (sux * svv - suv * svx) / det;
        M = (suv * sux - suu * svx) / det;
    } else {
        D = sux / suu;
        M = fp16_to_fp32(best.dmin16) * p.norm;
    }
    if (!(D > 0)) return;
    if (!(M > 0)) M = 0;
    const uint16_t rd16 = scale_to_fp16(static_cast<float>(D) * p.denorm);
    const uint16_t rdmin16 = scale_to_fp16(static_cast<float>(M) * p.denorm);
    if (rd16 == best.d16 && rdmin16 == best.dmin16) return;
    AffineCodes trial;
    affine_codes(p, a, m, nmax, rd16, rdmin16, trial);
    if (trial.err < best.err) best = trial;
}

template <int kBits>
void quantize_q45_k(const float* src, uint8_t* dst, int64_t nb, const char* type) {
    constexpr int nmax = (1 << kBits) - 1;
    Prepared p;
    AffineCodes codes;
    for (int64_t ib = 0; ib < nb; ++ib) {
        if (prepare(src + ib * kQKK, ib, type, p))
            quantize_affine_superblock(p, nmax, codes);
        else
            std::memset(&codes, 0, sizeof codes);
        uint8_t scales[12];
        pack_scale_min_k4(codes.sc, codes.mq, scales);
        if constexpr (kBits == 4) {
            BlockQ4_K b;
            b.d = codes.d16;
            b.dmin = codes.dmin16;
            std::memcpy(b.scales, scales, 12);
            for (int c = 0; c < 4; ++c)
                for (int l = 0; l < 32; ++l)
                    b.qs[32 * c + l] = static_cast<uint8_t>(codes.L[64 * c + l] | (codes.L[64 * c + 32 + l] << 4));
            store_block(dst, ib, b);
        } else {
            BlockQ5_K b;
            b.d = codes.d16;
            b.dmin = codes.dmin16;
            std::memcpy(b.scales, scales, 12);
            std::memset(b.qh, 0, sizeof b.qh);
            for (int c = 0; c < 4; ++c)
                for (int l = 0; l < 32; ++l)
                    b.qs[32 * c + l] = static_cast<uint8_t>((codes.L[64 * c + l] & 0x0f) |
                                                            ((codes.L[64 * c + 32 + l] & 0x0f) << 4));
            for (int i = 0; i < kQKK; ++i)
                b.qh[i % 32] = static_cast<uint8_t>(b.qh[i % 32] | ((codes.L[i] >> 4) << (i / 32)));
            store_block(dst, ib, b);
        }
    }
}

// ---------------------------------------------------------------- symmetric (Q6_K)
// Sub-blocks of 16: x ~ a*L, L in [-32, 31], a signed (int8 code times the fp16 scale).

constexpr int kSubS = 16;

inline void sym_levels(const float* x, float ia, float* L) {
    for (int i = 0; i < kSubS; ++i) L[i] = round_clamp(x[i] * ia, -32.0f, 31.0f);
}

// Stage A for one sub-block: the signed scale a maximising (sum w x L)^2 / sum w L^2, the
// error reduction of the optimal scale for levels L.
float fit_symmetric(const float* x, const float* w) {
    float v = 0;  // signed element of largest magnitude
    for (int i = 0; i < kSubS; ++i)
        if (std::fabs(x[i]) > std::fabs(v)) v = x[i];
    if (v == 0) return 0;
    float L[kSubS];
    float best_score = -1, best_a = -v / 32;
    auto score_levels = [&]() {
        float vxl[8] = {}, vll[8] = {};
        for (int i = 0; i < kSubS; i += 8)
            for (int k = 0; k < 8; ++k) {
                const float wl = w[i + k] * L[i + k];
                vxl[k] += wl * x[i + k];
                vll[k] += wl * L[i + k];
            }
        const float sxl = hsum8(vxl), sll = hsum8(vll);
        if (!(sll > 0)) return false;
        const float score = sxl * sxl / sll;
        if (!(score > best_score)) return false;
        best_score = score;
        best_a = sxl / sll;
        return true;
    };
    // Seeds: the largest element mapped near level -32 (using the extra negative level) or +31.
    for (int k = 0; k <= 10; ++k) {
        const float t = -4.0f + 0.5f * static_cast<float>(k);
        sym_levels(x, -(32.0f + t) / v, L);
        score_levels();
        sym_levels(x, (31.0f + t) / v, L);
        score_levels();
    }
    for (int it = 0; it < 3 && best_a != 0; ++it) {  // polish: re-round and refit
        sym_levels(x, 1.0f / best_a, L);
        if (!score_levels()) break;
    }
    return best_a;
}

struct SymCodes {
    uint16_t d16;
    int8_t sc[16];
    int8_t L[kQKK];
    float err;
};

// Stages B+C for Q6_K: int8 sub-block scale codes (rounded fit and neighbours) and levels.
void sym_codes(const Prepared& p, const float* a, uint16_t d16, SymCodes& out) {
    out.d16 = d16;
    out.err = 0;
    const float D = fp16_to_fp32(d16);
    const float Dn = D * p.norm;
    float L[kSubS];
    for (int j = 0; j < 16; ++j) {
        const float* x = p.xn + kSubS * j;
        const float* w = p.w + kSubS * j;
        const int sc0 = Dn > 0 ? round_clamp_int(a[j] / Dn, -128, 127) : 0;
        // Storing zeros (code 0) is always possible; start from its error.
        float vz[8] = {};
        for (int i = 0; i < kSubS; i += 8)
            for (int k = 0; k < 8; ++k) vz[k] += w[i + k] * x[i + k] * x[i + k];
        float best = hsum8(vz);
        out.sc[j] = 0;
        std::memset(out.L + kSubS * j, 0, kSubS);
        for (int sc = std::max(-128, sc0 - 1); sc <= std::min(127, sc0 + 1); ++sc) {
            const float dl = D * static_cast<float>(sc);  // exactly as the decoder
            const float dln = dl * p.norm;
            if (dln != 0)
                sym_levels(x, 1.0f / dln, L);
            else
                std::fill(L, L + kSubS, 0.0f);
            float ve[8] = {};
            for (int i = 0; i < kSubS; i += 8)
                for (int k = 0; k < 8; ++k) {
                    const float diff = dl * L[i + k] * p.norm - x[i + k];
                    ve[k] += w[i + k] * diff * diff;
                }
            const float err = hsum8(ve);
            if (err < best) {
                best = err;
                out.sc[j] = static_cast<int8_t>(sc);
                for (int i = 0; i < kSubS; ++i) out.L[kSubS * j + i] = static_cast<int8_t>(L[i]);
            }
        }
        out.err += best;
    }
}

void quantize_sym_superblock(const Prepared& p, SymCodes& best) {
    float a[16];
    float amax = 0;
    for (int j = 0; j < 16; ++j) {
        a[j] = fit_symmetric(p.xn + kSubS * j, p.w + kSubS * j);
        amax = std::max(amax, std::fabs(a[j]));
    }
    const uint16_t d16 = scale_to_fp16(amax / 127 * p.denorm);
    sym_codes(p, a, d16, best);
    if (amax > 0 && d16 < 0x0400) {  // fp16 subnormal super-block scale: also try coarser ones
        constexpr float kDivs[] = {64, 16, 4, 1};
        SymCodes trial;
        for (float dd : kDivs) {
            sym_codes(p, a, scale_to_fp16(amax / dd * p.denorm), trial);
            if (trial.err < best.err) best = trial;
        }
    }
    // Stage D: refit D for x ~ D * (sc_j L_i), redo B-C, keep the better.
    double suu = 0, sux = 0;
    for (int i = 0; i < kQKK; ++i) {
        const double u = static_cast<double>(best.sc[i / kSubS]) * best.L[i];
        suu += p.w[i] * u * u;
        sux += p.w[i] * u * p.xn[i];
    }
    if (!(suu > 0) || !(sux > 0)) return;
    const uint16_t rd16 = scale_to_fp16(static_cast<float>(sux / suu) * p.denorm);
    if (rd16 == best.d16) return;
    SymCodes trial;
    sym_codes(p, a, rd16, trial);
    if (trial.err < best.err) best = trial;
}

}  // namespace

void quantize_q4_k(const float* src, uint8_t* dst, int64_t nb) { quantize_q45_k<4>(src, dst, nb, "Q4_K"); }

void quantize_q5_k(const float* src, uint8_t* dst, int64_t nb) { quantize_q45_k<5>(src, dst, nb, "Q5_K"); }

void quantize_q6_k(const float* src, uint8_t* dst, int64_t nb) {
    Prepared p;
    SymCodes codes;
    for (int64_t ib = 0; ib < nb; ++ib) {
        if (prepare(src + ib * kQKK, ib, "Q6_K", p))
            quantize_sym_superblock(p, codes);
        else
            std::memset(&codes, 0, sizeof codes);
        BlockQ6_K b;
        std::memset(b.ql, 0, sizeof b.ql);
        std::memset(b.qh, 0, sizeof b.qh);
        for (int j = 0; j < 16; ++j) b.scales[j] = codes.sc[j];
        b.d = codes.d16;
        for (int e = 0; e < kQKK; ++e) {
            const int q = codes.L[e] + 32;  // 0..63
            const int h = e / 128, r = e % 128;
            b.ql[64 * h + r % 64] = static_cast<uint8_t>(b.ql[64 * h + r % 64] | ((q & 0x0f) << (4 * (r / 64))));
            b.qh[32 * h + r % 32] = static_cast<uint8_t>(b.qh[32 * h + r % 32] | ((q >> 4) << (2 * (r / 32))));
        }
        store_block(dst, ib, b);
    }
}

}  // namespace unigemma::quant::detail
