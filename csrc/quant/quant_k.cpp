// K-quant formats (256-element super-blocks): dequantization of Q2_K, Q3_K, Q4_K, Q5_K,
// Q6_K, Q8_K and quantization to Q4_K, Q5_K, Q6_K.
//
// Dequantization does gguf.quants' float32 operations in its order, so it is bit-identical
// (compiled with -ffp-contract=off: a fused d*q - m would differ in the last bit).
//
// Quantization (gguf.quants has none for these formats) is our own search:
//   A. each sub-block gets a continuous fit, a weighted least-squares scale (and, for
//      Q4_K/Q5_K, a non-negative "min" offset): a grid of inverse scales seeds the integer
//      levels, each seed is refit in closed form, and the best is then polished by
//      alternating "round levels" / "refit scale+min" steps;
//   B. the super-block scales (fp16) are set from the largest sub-block scale/min, and the
//      sub-block scales/mins are rounded to their integer grids (6-bit, or int8 for Q6_K);
//   C. each sub-block tries the neighbouring integer scale/min codes, re-rounding its
//      levels against the exact dequantized values, and keeps the best;
//   D. the fp16 super-block scales are refit by least squares given the integer codes and
//      levels, and B-C rerun from the refit values; the better of the two results is kept.
// Errors are weighted by w_i = rms + |x_i| (rms of the super-block), which favours the
// larger weights a little over pure MSE. All search arithmetic runs on the super-block
// divided by a power of two (exact), so huge or tiny inputs neither overflow nor underflow
// the sums. Inputs must be finite (InputError otherwise).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "common/error.h"
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
        float* y = dst + i * kQKK;
        for (int j = 0; j < kQKK / 16; ++j) {
            const float dl = d * static_cast<float>(b.scales[j]);
            for (int k = 0; k < 16; ++k) {
                const int e = 16 * j + k;
                const int h = e / 128, r = e % 128;
                const int low = (b.ql[64 * h + r % 64] >> (4 * (r / 64))) & 0x0f;
                const int high = (b.qh[32 * h + r % 32] >> (2 * (r / 32))) & 3;
                y[e] = dl * static_cast<float>((low | (high << 4)) - 32);
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

inline int nearest_int(float v) { return static_cast<int>(std::lrintf(v)); }

inline int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Rounds a positive real-domain super-block scale to fp16, saturating instead of reaching
// inf (a value too large for fp16 then saturates the block instead of turning into inf/NaN).
inline uint16_t scale_to_fp16(float v) {
    if (!(v > 0.0f)) return 0;
    return fp32_to_fp16(std::min(v, kFp16Max));
}

// Common per-super-block preparation: finiteness check, power-of-two normalisation and the
// error weights. Returns false for an all-zero block.
struct Prepared {
    float xn[kQKK];  // x * norm, |xn| < 2
    float w[kQKK];   // error weights
    float norm;      // 2^-e
    float denorm;    // 2^e
};

bool prepare(const float* x, int64_t block_index, const char* type, Prepared& p) {
    float amax = 0.0f;
    for (int i = 0; i < kQKK; ++i) {
        if (!std::isfinite(x[i]))
            throw InputError(std::string("[quantize] ") + type + ": non-finite value at element " +
                             std::to_string(block_index * kQKK + i) + " of a row");
        amax = std::max(amax, std::fabs(x[i]));
    }
    // The smallest non-zero magnitude any of these formats can store is 2^-24 (fp16 scale
    // 2^-24 times code 1 times level 1), so a block this small is best stored as zeros; the
    // cut also keeps norm = 2^-e finite below.
    if (amax < 0x1p-30f) return false;
    const int e = std::ilogb(amax);  // -30 .. 127
    p.norm = std::ldexp(1.0f, -e);   // exact (2^-127 is a float subnormal, still exact)
    p.denorm = std::ldexp(1.0f, e);
    float sumsq = 0.0f;
    for (int i = 0; i < kQKK; ++i) {
        p.xn[i] = std::ldexp(x[i], -e);
        sumsq += p.xn[i] * p.xn[i];
    }
    const float rms = std::sqrt(sumsq / kQKK);
    for (int i = 0; i < kQKK; ++i) p.w[i] = rms + std::fabs(p.xn[i]);
    return true;
}

// ---------------------------------------------------------------- affine (Q4_K / Q5_K)

// Closed-form weighted least squares for x ~ a*L - m with a > 0, m >= 0.
bool lsq_affine(const float* x, const float* w, const uint8_t* L, int n, float* a, float* m) {
    double sw = 0, sl = 0, sll = 0, sx = 0, slx = 0;
    for (int i = 0; i < n; ++i) {
        const double wi = w[i], li = L[i];
        sw += wi;
        sl += wi * li;
        sll += wi * li * li;
        sx += wi * x[i];
        slx += wi * li * x[i];
    }
    if (sll <= 0) return false;
    const double det = sw * sll - sl * sl;
    double A, B;  // x ~ A*L + B
    if (det > 1e-12 * sw * sll) {
        A = (sw * slx - sl * sx) / det;
        B = (sll * sx - sl * slx) / det;
    } else {
        A = slx / sll;
        B = 0;
    }
    if (B > 0) {  // a positive offset is not representable: fit the scale alone
        B = 0;
        A = slx / sll;
    }
    if (!(A > 0)) return false;
    *a = static_cast<float>(A);
    *m = static_cast<float>(-B);
    return true;
}

float affine_error(const float* x, const float* w, const uint8_t* L, int n, float a, float m) {
    float err = 0;
    for (int i = 0; i < n; ++i) {
        const float diff = a * L[i] - m - x[i];
        err += w[i] * diff * diff;
    }
    return err;
}

void affine_levels(const float* x, int n, int nmax, float a, float m, uint8_t* L) {
    const float ia = 1.0f / a;
    for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(clampi(nearest_int((x[i] + m) * ia), 0, nmax));
}

// Stage A for one sub-block: continuous scale a >= 0 and min m >= 0.
void fit_affine(const float* x, const float* w, int n, int nmax, float* a_out, float* m_out) {
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; ++i) {
        lo = std::min(lo, x[i]);
        hi = std::max(hi, x[i]);
    }
    if (lo > 0) lo = 0;
    if (!(hi > lo)) {  // constant non-positive sub-block
        *a_out = 0;
        *m_out = -lo;
        return;
    }
    uint8_t L[32], Lbest[32];
    float best_err = INFINITY, best_a = (hi - lo) / nmax, best_m = -lo;
    const float range = hi - lo;
    for (int k = 0; k <= 20; ++k) {
        const float iscale = (static_cast<float>(nmax) - 1.0f + 0.1f * static_cast<float>(k)) / range;
        for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(clampi(nearest_int(iscale * (x[i] - lo)), 0, nmax));
        float a, m;
        if (!lsq_affine(x, w, L, n, &a, &m)) continue;
        const float err = affine_error(x, w, L, n, a, m);
        if (err < best_err) {
            best_err = err;
            best_a = a;
            best_m = m;
            std::memcpy(Lbest, L, static_cast<size_t>(n));
        }
    }
    for (int it = 0; it < 4 && best_err < INFINITY; ++it) {
        affine_levels(x, n, nmax, best_a, best_m, L);
        if (std::memcmp(L, Lbest, static_cast<size_t>(n)) == 0) break;
        float a, m;
        if (!lsq_affine(x, w, L, n, &a, &m)) break;
        const float err = affine_error(x, w, L, n, a, m);
        if (!(err < best_err)) break;
        best_err = err;
        best_a = a;
        best_m = m;
        std::memcpy(Lbest, L, static_cast<size_t>(n));
    }
    *a_out = best_a;
    *m_out = best_m;
}

// Result of stages B-D for an affine super-block.
struct AffineCodes {
    uint16_t d16, dmin16;
    uint8_t sc[8], mq[8];
    uint8_t L[kQKK];
    float err;
};

// Stages B+C: given fp16 super scales, choose integer codes and levels.
void affine_codes(const Prepared& p, const float* a, const float* m, int nmax, uint16_t d16, uint16_t dmin16,
                  AffineCodes& out) {
    out.d16 = d16;
    out.dmin16 = dmin16;
    out.err = 0;
    const float D = fp16_to_fp32(d16), M = fp16_to_fp32(dmin16);
    const float Dn = D * p.norm, Mn = M * p.norm;
    uint8_t L[32];
    for (int j = 0; j < 8; ++j) {
        const float* x = p.xn + 32 * j;
        const float* w = p.w + 32 * j;
        const int sc0 = Dn > 0 ? clampi(nearest_int(a[j] / Dn), 0, 63) : 0;
        const int mq0 = Mn > 0 ? clampi(nearest_int(m[j] / Mn), 0, 63) : 0;
        float best = INFINITY;
        for (int sc = std::max(0, sc0 - 1); sc <= std::min(63, sc0 + 1); ++sc) {
            for (int mq = std::max(0, mq0 - 1); mq <= std::min(63, mq0 + 1); ++mq) {
                // Exact dequantized values, as the decoder computes them, then normalised.
                const float dl = D * static_cast<float>(sc);
                const float ml = M * static_cast<float>(mq);
                const float dln = dl * p.norm, mln = ml * p.norm;
                if (dln > 0)
                    affine_levels(x, 32, nmax, dln, mln, L);
                else
                    std::memset(L, 0, sizeof L);
                float err = 0;
                for (int i = 0; i < 32; ++i) {
                    const float y = (dl * static_cast<float>(L[i]) - ml) * p.norm;
                    const float diff = y - x[i];
                    err += w[i] * diff * diff;
                }
                if (err < best) {
                    best = err;
                    out.sc[j] = static_cast<uint8_t>(sc);
                    out.mq[j] = static_cast<uint8_t>(mq);
                    std::memcpy(out.L + 32 * j, L, 32);
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
        fit_affine(p.xn + 32 * j, p.w + 32 * j, 32, nmax, &a[j], &m[j]);
        amax = std::max(amax, a[j]);
        mmax = std::max(mmax, m[j]);
    }
    affine_codes(p, a, m, nmax, scale_to_fp16(amax / 63 * p.denorm), scale_to_fp16(mmax / 63 * p.denorm), best);

    // Stage D: refit (D, M) for x ~ D * (sc_j L_i) - M * mq_j by least squares, then
    // redo B-C around the refit scales; keep whichever is better.
    for (int it = 0; it < 2; ++it) {
        double suu = 0, suv = 0, svv = 0, sux = 0, svx = 0;
        for (int i = 0; i < kQKK; ++i) {
            const int j = i / 32;
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
        if (svv > 0 && det > 1e-12 * suu * svv) {
            D = (sux * svv - suv * svx) / det;
            M = (suv * sux - suu * svx) / det;
        } else {
            D = sux / suu;
            M = fp16_to_fp32(best.dmin16) * p.norm;
        }
        if (!(D > 0)) return;
        if (!(M > 0)) M = 0;
        const uint16_t d16 = scale_to_fp16(static_cast<float>(D) * p.denorm);
        const uint16_t dmin16 = scale_to_fp16(static_cast<float>(M) * p.denorm);
        if (d16 == best.d16 && dmin16 == best.dmin16) return;
        AffineCodes trial;
        affine_codes(p, a, m, nmax, d16, dmin16, trial);
        if (!(trial.err < best.err)) return;
        best = trial;
    }
}

// ---------------------------------------------------------------- symmetric (Q6_K)

// Stage A for one Q6_K sub-block: continuous signed scale a with x ~ a*L, L in [-32, 31].
float fit_symmetric(const float* x, const float* w, int n) {
    float v = 0;
    for (int i = 0; i < n; ++i)
        if (std::fabs(x[i]) > std::fabs(v)) v = x[i];
    if (v == 0) return 0;
    int8_t L[16];
    float best_score = -1, best_a = -v / 32;
    auto try_levels = [&](void) -> float {  // returns the refit scale, updates best
        float sxl = 0, sll = 0;
        for (int i = 0; i < n; ++i) {
            sxl += w[i] * x[i] * L[i];
            sll += w[i] * L[i] * L[i];
        }
        if (!(sll > 0)) return 0;
        const float score = sxl * sxl / sll;  // error reduction of the optimal scale
        const float a = sxl / sll;
        if (score > best_score) {
            best_score = score;
            best_a = a;
        }
        return a;
    };
    // Seeds: the largest element maps near level -32 (using the extra negative level) or +31.
    for (int k = 0; k <= 10; ++k) {
        const float t = -4.0f + 0.5f * static_cast<float>(k);
        const float iscales[2] = {-(32.0f + t) / v, (31.0f + t) / v};
        for (float is : iscales) {
            for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(clampi(nearest_int(is * x[i]), -32, 31));
            try_levels();
        }
    }
    for (int it = 0; it < 3 && best_a != 0; ++it) {
        const float prev = best_score;
        const float ia = 1.0f / best_a;
        for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(clampi(nearest_int(x[i] * ia), -32, 31));
        try_levels();
        if (!(best_score > prev)) break;
    }
    return best_a;
}

struct SymCodes {
    uint16_t d16;
    int8_t sc[16];
    int8_t L[kQKK];
    float err;
};

void sym_codes(const Prepared& p, const float* a, uint16_t d16, SymCodes& out) {
    out.d16 = d16;
    out.err = 0;
    const float D = fp16_to_fp32(d16);
    const float Dn = D * p.norm;
    int8_t L[16];
    for (int j = 0; j < 16; ++j) {
        const float* x = p.xn + 16 * j;
        const float* w = p.w + 16 * j;
        const int sc0 = Dn > 0 ? clampi(nearest_int(a[j] / Dn), -128, 127) : 0;
        float best = INFINITY;
        for (int sc = std::max(-128, sc0 - 1); sc <= std::min(127, sc0 + 1); ++sc) {
            const float dl = D * static_cast<float>(sc);
            const float dln = dl * p.norm;
            if (dln != 0) {
                const float ia = 1.0f / dln;
                for (int i = 0; i < 16; ++i) L[i] = static_cast<int8_t>(clampi(nearest_int(x[i] * ia), -32, 31));
            } else {
                std::memset(L, 0, sizeof L);
            }
            float err = 0;
            for (int i = 0; i < 16; ++i) {
                const float y = dl * static_cast<float>(L[i]) * p.norm;
                const float diff = y - x[i];
                err += w[i] * diff * diff;
            }
            if (err < best) {
                best = err;
                out.sc[j] = static_cast<int8_t>(sc);
                std::memcpy(out.L + 16 * j, L, 16);
            }
        }
        out.err += best;
    }
}

void quantize_sym_superblock(const Prepared& p, SymCodes& best) {
    float a[16];
    float amax = 0;
    for (int j = 0; j < 16; ++j) {
        a[j] = fit_symmetric(p.xn + 16 * j, p.w + 16 * j, 16);
        amax = std::max(amax, std::fabs(a[j]));
    }
    sym_codes(p, a, scale_to_fp16(amax / 127 * p.denorm), best);
    for (int it = 0; it < 2; ++it) {  // Stage D: refit D for x ~ D * (sc_j L_i)
        double suu = 0, sux = 0;
        for (int i = 0; i < kQKK; ++i) {
            const double u = static_cast<double>(best.sc[i / 16]) * best.L[i];
            suu += p.w[i] * u * u;
            sux += p.w[i] * u * p.xn[i];
        }
        if (!(suu > 0) || !(sux > 0)) return;
        const uint16_t d16 = scale_to_fp16(static_cast<float>(sux / suu) * p.denorm);
        if (d16 == best.d16) return;
        SymCodes trial;
        sym_codes(p, a, d16, trial);
        if (!(trial.err < best.err)) return;
        best = trial;
    }
}

template <int kBits>
void quantize_q45_k(const float* src, uint8_t* dst, int64_t nb, const char* type) {
    constexpr int nmax = (1 << kBits) - 1;
    Prepared p;
    AffineCodes codes;
    for (int64_t ib = 0; ib < nb; ++ib) {
        const float* x = src + ib * kQKK;
        const bool nonzero = prepare(x, ib, type, p);
        if (nonzero) {
            quantize_affine_superblock(p, nmax, codes);
        } else {
            std::memset(&codes, 0, sizeof codes);
        }
        uint8_t scales[12];
        pack_scale_min_k4(codes.sc, codes.mq, scales);
        if constexpr (kBits == 4) {
            BlockQ4_K b;
            b.d = codes.d16;
            b.dmin = codes.dmin16;
            std::memcpy(b.scales, scales, 12);
            for (int c = 0; c < 4; ++c)
                for (int l = 0; l < 32; ++l)
                    b.qs[32 * c + l] =
                        static_cast<uint8_t>(codes.L[64 * c + l] | (codes.L[64 * c + 32 + l] << 4));
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

}  // namespace

void quantize_q4_k(const float* src, uint8_t* dst, int64_t nb) { quantize_q45_k<4>(src, dst, nb, "Q4_K"); }

void quantize_q5_k(const float* src, uint8_t* dst, int64_t nb) { quantize_q45_k<5>(src, dst, nb, "Q5_K"); }

void quantize_q6_k(const float* src, uint8_t* dst, int64_t nb) {
    Prepared p;
    SymCodes codes;
    for (int64_t ib = 0; ib < nb; ++ib) {
        const float* x = src + ib * kQKK;
        if (!prepare(x, ib, "Q6_K", p)) std::memset(&codes, 0, sizeof codes);
        else quantize_sym_superblock(p, codes);
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
