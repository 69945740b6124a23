// The scalar kernel table: plain C++ (no intrinsics), always compiled. It is the reference
// every SIMD path is tested against (tools/harness/kernel_selftest.cpp, tests/test_kernels.py)
// and the fallback for entries a SIMD table leaves empty.
//
// Activation quantization (shared contract of every path, bit for bit):
//   Q8_0 / Q8_1: per 32 elements amax = max|x|; d16 = fp16(amax / 127) rounded up
//                (saturated at the largest finite fp16), dr = fp32(d16), id = dr > 0 ? 1 / dr : 0,
//                q = round_half_even(clamp(x * id, -127, 127)). Quantizing with the
//                *rounded* scale keeps q * dr closest to x. Q8_1 adds s = fp16(dr * sum(q))
//                (saturated), so |sum(x)| per block must stay below 65504 for Q4_1/Q5_1
//                dots to be exact (activations are normed, so this holds in practice).
//   Q8_K:        per 256 elements d = amax / 127 (float32; d < FLT_MIN counts as 0),
//                id = d > 0 ? 1 / d : 0, q as above, bsums[g] = sum of q over elements
//                16g..16g+15.
//   F32:         a copy (so callers can treat every weight type alike).
// Integer dot products inside a block are exact; block results are scaled and summed in
// float32 (SIMD paths sum in a different order, so results agree to rounding, not bits).
#include <cfloat>
#include <cmath>
#include <cstring>

#include "ops/cpu/kernel_common.h"
#include "ops/cpu/kernels.h"
#include "quant/block_layouts.h"
#include "quant/fp16.h"

namespace unigemma::cpu {

namespace {

using namespace unigemma::quant;

struct BlockQ8_1 {
    uint16_t d;
    uint16_t s;
    int8_t qs[kQK];
};
static_assert(sizeof(BlockQ8_1) == 36, "Q8_1 block size");

template <class B>
inline B ld(const void* p, int64_t i) {
    B b;
    std::memcpy(&b, static_cast<const uint8_t*>(p) + i * static_cast<int64_t>(sizeof(B)), sizeof(B));
    return b;
}

template <class B>
inline void st(void* p, int64_t i, const B& b) {
    std::memcpy(static_cast<uint8_t*>(p) + i * static_cast<int64_t>(sizeof(B)), &b, sizeof(B));
}

inline float h2f(uint16_t h) { return fp16_to_fp32(h); }

inline int8_t round_q8(float v) {
    v = std::fmin(std::fmax(v, -127.0f), 127.0f);  // also maps NaN to -127 (no UB)
    return static_cast<int8_t>(std::nearbyint(v));
}

// Eight interleaved partial sums (term i goes to sum i % 8), added pairwise at the end:
// the summation error bound is then that of an 8-lane SIMD loop, ~(n/8 + 3) eps sum|terms|.
struct Acc8 {
    float a[8] = {};
    void add(int64_t i, float v) { a[i & 7] += v; }
    float sum() const { return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7])); }
};

// ------------------------------------------------------------------ activations

void quantize_f32_act(const float* x, void* y, int64_t n) {
    if (n > 0) std::memmove(y, x, static_cast<size_t>(n) * sizeof(float));
}

void quantize_q8_0_act(const float* x, void* y, int64_t n) {
    const int64_t nb = n / kQK;
    for (int64_t i = 0; i < nb; ++i) {
        const float* xb = x + i * kQK;
        float amax = 0.0f;
        for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
        BlockQ8_0 b;
        b.d = scale_to_fp16_up(amax / 127.0f);
        const float dr = h2f(b.d);
        const float id = dr > 0.0f ? 1.0f / dr : 0.0f;
        for (int j = 0; j < kQK; ++j) b.qs[j] = round_q8(xb[j] * id);
        st(y, i, b);
    }
}

void quantize_q8_1_act(const float* x, void* y, int64_t n) {
    const int64_t nb = n / kQK;
    for (int64_t i = 0; i < nb; ++i) {
        const float* xb = x + i * kQK;
        float amax = 0.0f;
        for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
        BlockQ8_1 b;
        b.d = scale_to_fp16_up(amax / 127.0f);
        const float dr = h2f(b.d);
        const float id = dr > 0.0f ? 1.0f / dr : 0.0f;
        int sum = 0;
        for (int j = 0; j < kQK; ++j) {
            b.qs[j] = round_q8(xb[j] * id);
            sum += b.qs[j];
        }
        const float s = dr * static_cast<float>(sum);
        const uint16_t sh = scale_to_fp16(std::fabs(s));
        b.s = static_cast<uint16_t>(sh | (s < 0.0f ? 0x8000u : 0u));
        st(y, i, b);
    }
}

void quantize_q8_k_act(const float* x, void* y, int64_t n) {
    const int64_t nb = n / kQKK;
    for (int64_t i = 0; i < nb; ++i) {
        const float* xb = x + i * kQKK;
        float amax = 0.0f;
        for (int j = 0; j < kQKK; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
        BlockQ8_K b;
        float d = amax / 127.0f;
        if (!(d >= FLT_MIN)) d = 0.0f;
        const float id = d > 0.0f ? 1.0f / d : 0.0f;
        b.d = d;
        for (int j = 0; j < kQKK; ++j) b.qs[j] = round_q8(xb[j] * id);
        for (int g = 0; g < kQKK / 16; ++g) {
            int s = 0;
            for (int j = 0; j < 16; ++j) s += b.qs[16 * g + j];
            b.bsums[g] = static_cast<int16_t>(s);
        }
        st(y, i, b);
    }
}

// ------------------------------------------------------------------ float weights

void vec_dot_f32(int64_t n, float* out, const void* w, const void* x) {
    const auto* a = static_cast<const uint8_t*>(w);
    const auto* b = static_cast<const uint8_t*>(x);
    Acc8 s;
    for (int64_t i = 0; i < n; ++i) {
        float wa, xb;
        std::memcpy(&wa, a + 4 * i, 4);
        std::memcpy(&xb, b + 4 * i, 4);
        s.add(i, wa * xb);
    }
    *out = s.sum();
}

void vec_dot_f16(int64_t n, float* out, const void* w, const void* x) {
    const auto* a = static_cast<const uint8_t*>(w);
    const auto* b = static_cast<const uint8_t*>(x);
    Acc8 s;
    for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        float xb;
        std::memcpy(&h, a + 2 * i, 2);
        std::memcpy(&xb, b + 4 * i, 4);
        s.add(i, h2f(h) * xb);
    }
    *out = s.sum();
}

void vec_dot_bf16(int64_t n, float* out, const void* w, const void* x) {
    const auto* a = static_cast<const uint8_t*>(w);
    const auto* b = static_cast<const uint8_t*>(x);
    Acc8 s;
    for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        float xb;
        std::memcpy(&h, a + 2 * i, 2);
        std::memcpy(&xb, b + 4 * i, 4);
        s.add(i, bf16_to_fp32(h) * xb);
    }
    *out = s.sum();
}

// ------------------------------------------------------------------ legacy x Q8_0 / Q8_1

void vec_dot_q8_0(int64_t n, float* out, const void* w, const void* x) {
    const int64_t nb = n / kQK;
    Acc8 s;
    for (int64_t i = 0; i < nb; ++i) {
        const auto a = ld<BlockQ8_0>(w, i);
        const auto b = ld<BlockQ8_0>(x, i);
        int isum = 0;
        for (int j = 0; j < kQK; ++j) isum += a.qs[j] * b.qs[j];
        s.add(i, (h2f(a.d) * h2f(b.d)) * static_cast<float>(isum));
    }
    *out = s.sum();
}

void vec_dot_q4_0(int64_t n, float* out, const void* w, const void* x) {
    const int64_t nb = n / kQK;
    Acc8 s;
    for (int64_t i = 0; i < nb; ++i) {
        const auto a = ld<BlockQ4_0>(w, i);
        const auto b = ld<BlockQ8_0>(x, i);
        int isum = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            isum += ((a.qs[j] & 0x0f) - 8) * b.qs[j];
            isum += ((a.qs[j] >> 4) - 8) * b.qs[j + 16];
        }
        s.add(i, (h2f(a.d) * h2f(b.d)) * static_cast<float>(isum));
    }
    *out = s.sum();
}

void vec_dot_q5_0(int64_t n, float* out, const void* w, const void* x) {
    const int64_t nb = n / kQK;
    Acc8 s;
    for (int64_t i = 0; i < nb; ++i) {
        const auto a = ld<BlockQ5_0>(w, i);
        const auto b = ld<BlockQ8_0>(x, i);
        uint32_t qh;
        std::memcpy(&qh, a.qh, 4);
        int isum = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            const int lo = (a.qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
            const int hi = (a.qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
            isum += (lo - 16) * b.qs[j] + (hi - 16) * b.qs[j + 16];
        }
        s.add(i, (h2f(a.d) * h2f(b.d)) * static_cast<float>(isum));
    }
    *out = s.sum();
}

void vec_dot_q4_1(int64_t n, float* out, const void* w, const void* x) {
    const int64_t nb = n / kQK;
    Acc8 s;
    for (int64_t i = 0; i < nb; ++i) {
        const auto a = ld<BlockQ4_1>(w, i);
        const auto b = ld<BlockQ8_1>(x, i);
        int isum = 0;
        for (int j = 0; j < kQK / 2; ++j) isum += (a.qs[j] & 0x0f) * b.qs[j] + (a.qs[j] >> 4) * b.qs[j + 16];
        s.add(i, (h2f(a.d) * h2f(b.d)) * static_cast<float>(isum) + h2f(a.m) * h2f(b.s));
    }
    *out = s.sum();
}

void vec_dot_q5_1(int64_t n, float* out, const void* w, const void* x) {
    const int64_t nb = n / kQK;
    Acc8 s;
    for (int64_t i = 0; i < nb; ++i) {
        const auto a = ld<BlockQ5_1>(w, i);
        const auto b = ld<BlockQ8_1>(x, i);
        uint32_t qh;
        std::memcpy(&qh, a.qh, 4);
        int isum = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            const int lo = (a.qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
            const int hi = (a.qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
            isum += lo * b.qs[j] + hi * b.qs[j + 16];
        }
        s.add(i, (h2f(a.d) * h2f(b.d)) * static_cast<float>(isum) + h2f(a.m) * h2f(b.s));
    }
    *out = s.sum();
}

// ------------------------------------------------------------------ K-quants x Q8_K

void vec_dot_q2_k(int64_t n, float* out, const void* w, const void* x) {
    const int64_t nb = n / kQKK;
    Acc8 s;
    for (int64_t i = 0; i < nb; ++i) {
        const auto a = ld<BlockQ2_K>(w, i);
        const auto b = ld<BlockQ8_K>(x, i);
        int isum = 0, msum = 0;
        for (int j = 0; j < 16; ++j) {
            int sub = 0;
            for (int k = 0; k < 16; ++k) {
                const int e = 16 * j + k;
                const int h = e / 128, sh = (e % 128) / 32, l = e % 32;
                sub += ((a.qs[32 * h + l] >> (2 * sh)) & 3) * b.qs[e];
            }
            isum += (a.scales[j] & 0x0f) * sub;
            msum += (a.scales[j] >> 4) * b.bsums[j];
        }
        s.add(i, b.d * (h2f(a.d) * static_cast<float>(isum) - h2f(a.dmin) * static_cast<float>(msum)));
    }
    *out = s.sum();
}

void vec_dot_q3_k(int64_t n, float* out, const void* w, const void* x) {
    const int64_t nb = n / kQKK;
    Acc8 s;
    for (int64_t i = 0; i < nb; ++i) {
        const auto a = ld<BlockQ3_K>(w, i);
        const auto b = ld<BlockQ8_K>(x, i);
        int isum = 0;
        for (int j = 0; j < 16; ++j) {
            const int lo = j < 8 ? (a.scales[j] & 0x0f) : (a.scales[j - 8] >> 4);
            const int hi = (a.scales[8 + j % 4] >> (2 * (j / 4))) & 3;
            const int sc = (lo | (hi << 4)) - 32;
            int sub = 0;
            for (int k = 0; k < 16; ++k) {
                const int e = 16 * j + k;
                const int h = e / 128, sh = (e % 128) / 32, l = e % 32;
                const int low = (a.qs[32 * h + l] >> (2 * sh)) & 3;
                const int high = (a.hmask[l] >> (e / 32)) & 1;
                sub += (low - ((high ^ 1) << 2)) * b.qs[e];
            }
            isum += sc * sub;
        }
        s.add(i, (b.d * h2f(a.d)) * static_cast<float>(isum));
    }
    *out = s.sum();
}

void vec_dot_q4_k(int64_t n, float* out, const void* w, const void* x) {
    const int64_t nb = n / kQKK;
    Acc8 s;
    for (int64_t i = 0; i < nb; ++i) {
        const auto a = ld<BlockQ4_K>(w, i);
        const auto b = ld<BlockQ8_K>(x, i);
        uint8_t sc[8], m[8];
        unpack_scale_min_k4(a.scales, sc, m);
        int isum = 0, msum = 0;
        for (int j = 0; j < 8; ++j) {
            const int c = j / 2, shift = 4 * (j % 2);
            int sub = 0;
            for (int l = 0; l < 32; ++l) sub += ((a.qs[32 * c + l] >> shift) & 0x0f) * b.qs[32 * j + l];
            isum += sc[j] * sub;
            msum += m[j] * (b.bsums[2 * j] + b.bsums[2 * j + 1]);
        }
        s.add(i, b.d * (h2f(a.d) * static_cast<float>(isum) - h2f(a.dmin) * static_cast<float>(msum)));
    }
    *out = s.sum();
}

void vec_dot_q5_k(int64_t n, float* out, const void* w, const void* x) {
    const int64_t nb = n / kQKK;
    Acc8 s;
    for (int64_t i = 0; i < nb; ++i) {
        const auto a = ld<BlockQ5_K>(w, i);
        const auto b = ld<BlockQ8_K>(x, i);
        uint8_t sc[8], m[8];
        unpack_scale_min_k4(a.scales, sc, m);
        int isum = 0, msum = 0;
        for (int j = 0; j < 8; ++j) {
            const int c = j / 2, shift = 4 * (j % 2);
            int sub = 0;
            for (int l = 0; l < 32; ++l) {
                const int q = ((a.qs[32 * c + l] >> shift) & 0x0f) | (((a.qh[l] >> j) & 1) << 4);
                sub += q * b.qs[32 * j + l];
            }
            isum += sc[j] * sub;
            msum += m[j] * (b.bsums[2 * j] + b.bsums[2 * j + 1]);
        }
        s.add(i, b.d * (h2f(a.d) * static_cast<float>(isum) - h2f(a.dmin) * static_cast<float>(msum)));
    }
    *out = s.sum();
}

void vec_dot_q6_k(int64_t n, float* out, const void* w, const void* x) {
    const int64_t nb = n / kQKK;
    Acc8 s;
    for (int64_t i = 0; i < nb; ++i) {
        const auto a = ld<BlockQ6_K>(w, i);
        const auto b = ld<BlockQ8_K>(x, i);
        int sub[16] = {};
        for (int h = 0; h < 2; ++h) {
            const uint8_t* ql = a.ql + 64 * h;
            const uint8_t* qh = a.qh + 32 * h;
            const int8_t* q8 = b.qs + 128 * h;
            for (int l = 0; l < 32; ++l) {
                const int q0 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) - 32;
                const int q1 = ((ql[32 + l] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q2 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q3 = ((ql[32 + l] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                sub[8 * h + l / 16] += q0 * q8[l];
                sub[8 * h + 2 + l / 16] += q1 * q8[32 + l];
                sub[8 * h + 4 + l / 16] += q2 * q8[64 + l];
                sub[8 * h + 6 + l / 16] += q3 * q8[96 + l];
            }
        }
        int isum = 0;
        for (int j = 0; j < 16; ++j) isum += a.scales[j] * sub[j];
        s.add(i, (b.d * h2f(a.d)) * static_cast<float>(isum));
    }
    *out = s.sum();
}

// ------------------------------------------------------------------ tiles

template <VecDotFn F>
void tile_of(int64_t n, int nr, int nc, float* out, int64_t out_stride, const void* w, size_t w_stride,
             const void* x, size_t x_stride) {
    const auto* wp = static_cast<const uint8_t*>(w);
    const auto* xp = static_cast<const uint8_t*>(x);
    for (int c = 0; c < nc; ++c)
        for (int r = 0; r < nr; ++r) F(n, out + c * out_stride + r, wp + r * w_stride, xp + c * x_stride);
}

// ------------------------------------------------------------------ elementwise

void rms_norm(float* y, const float* x, const float* w, int64_t n, float eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
    const float r = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
    for (int64_t i = 0; i < n; ++i) y[i] = w ? x[i] * r * w[i] : x[i] * r;
}

void layer_norm(float* y, const float* x, const float* w, const float* b, int64_t n, float eps) {
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) s += x[i];
    const double mean = s / static_cast<double>(n);
    double v = 0.0;
    for (int64_t i = 0; i < n; ++i) v += (x[i] - mean) * (x[i] - mean);
    const float r = static_cast<float>(1.0 / std::sqrt(v / static_cast<double>(n) + eps));
    const float mf = static_cast<float>(mean);
    for (int64_t i = 0; i < n; ++i) {
        float t = (x[i] - mf) * r;
        if (w) t *= w[i];
        if (b) t += b[i];
        y[i] = t;
    }
}

inline float gelu1(float v) {
    constexpr float k = 0.7978845608028654f;  // sqrt(2 / pi)
    return 0.5f * v * (1.0f + std::tanh(k * (v + 0.044715f * v * v * v)));
}

void gelu_tanh(float* y, const float* x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = gelu1(x[i]);
}

void gelu_tanh_mul(float* y, const float* g, const float* u, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = gelu1(g[i]) * u[i];
}

// Softmax; a row that is entirely -inf (fully masked) yields zeros, not NaN.
void softmax(float* y, const float* x, int64_t n) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; ++i) mx = std::fmax(mx, x[i]);
    if (mx == -INFINITY) {
        for (int64_t i = 0; i < n; ++i) y[i] = 0.0f;
        return;
    }
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        y[i] = std::exp(x[i] - mx);
        s += y[i];
    }
    const float inv = static_cast<float>(1.0 / s);
    for (int64_t i = 0; i < n; ++i) y[i] *= inv;
}

void softcap(float* y, const float* x, int64_t n, float cap) {
    const float ic = 1.0f / cap;
    for (int64_t i = 0; i < n; ++i) y[i] = cap * std::tanh(x[i] * ic);
}

void add(float* y, const float* a, const float* b, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

void mul(float* y, const float* a, const float* b, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}

void scale(float* y, const float* x, float s, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * s;
}

void rope_neox(float* x, int64_t d, float pos, const float* inv_freq) {
    const int64_t h = d / 2;
    for (int64_t i = 0; i < h; ++i) {
        const float th = pos * inv_freq[i];
        const float c = std::cos(th), s = std::sin(th);
        const float a = x[i], b = x[i + h];
        x[i] = a * c - b * s;
        x[i + h] = a * s + b * c;
    }
}

// ------------------------------------------------------------------ row axpy (attention V)

void axpy_f32(int64_t n, float a, const void* row, float* acc) {
    const auto* r = static_cast<const float*>(row);
    for (int64_t i = 0; i < n; ++i) acc[i] += a * r[i];
}

void axpy_f16(int64_t n, float a, const void* row, float* acc) {
    const auto* r = static_cast<const uint8_t*>(row);
    for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, r + 2 * i, 2);
        acc[i] += a * fp16_to_fp32(h);
    }
}

// Q8_0 / Q4_0: a * d is formed once per block, then acc += (a d) * q: the same product
// the SIMD paths compute (one rounding of a*d, one FMA-free multiply-add per element).
void axpy_q8_0(int64_t n, float a, const void* row, float* acc) {
    for (int64_t b = 0; b < n / kQK; ++b) {
        const auto blk = ld<BlockQ8_0>(row, b);
        const float ad = a * h2f(blk.d);
        for (int j = 0; j < kQK; ++j) acc[b * kQK + j] += ad * static_cast<float>(blk.qs[j]);
    }
}

void axpy_q4_0(int64_t n, float a, const void* row, float* acc) {
    for (int64_t b = 0; b < n / kQK; ++b) {
        const auto blk = ld<BlockQ4_0>(row, b);
        const float ad = a * h2f(blk.d);
        for (int j = 0; j < kQK / 2; ++j) {
            acc[b * kQK + j] += ad * static_cast<float>((blk.qs[j] & 0x0F) - 8);
            acc[b * kQK + j + kQK / 2] += ad * static_cast<float>((blk.qs[j] >> 4) - 8);
        }
    }
}

KernelTable make_table() {
    KernelTable t;
    t.axpy_row[static_cast<int>(GGMLType::F32)] = axpy_f32;
    t.axpy_row[static_cast<int>(GGMLType::F16)] = axpy_f16;
    t.axpy_row[static_cast<int>(GGMLType::Q8_0)] = axpy_q8_0;
    t.axpy_row[static_cast<int>(GGMLType::Q4_0)] = axpy_q4_0;
    t.isa = "scalar";
    auto set = [&t](GGMLType ty, VecDotFn v, TileDotFn tl) {
        t.vec_dot[static_cast<int>(ty)] = v;
        t.tile_dot[static_cast<int>(ty)] = tl;
    };
    set(GGMLType::F32, vec_dot_f32, tile_of<vec_dot_f32>);
    set(GGMLType::F16, vec_dot_f16, tile_of<vec_dot_f16>);
    set(GGMLType::BF16, vec_dot_bf16, tile_of<vec_dot_bf16>);
    set(GGMLType::Q8_0, vec_dot_q8_0, tile_of<vec_dot_q8_0>);
    set(GGMLType::Q4_0, vec_dot_q4_0, tile_of<vec_dot_q4_0>);
    set(GGMLType::Q4_1, vec_dot_q4_1, tile_of<vec_dot_q4_1>);
    set(GGMLType::Q5_0, vec_dot_q5_0, tile_of<vec_dot_q5_0>);
    set(GGMLType::Q5_1, vec_dot_q5_1, tile_of<vec_dot_q5_1>);
    set(GGMLType::Q2_K, vec_dot_q2_k, tile_of<vec_dot_q2_k>);
    set(GGMLType::Q3_K, vec_dot_q3_k, tile_of<vec_dot_q3_k>);
    set(GGMLType::Q4_K, vec_dot_q4_k, tile_of<vec_dot_q4_k>);
    set(GGMLType::Q5_K, vec_dot_q5_k, tile_of<vec_dot_q5_k>);
    set(GGMLType::Q6_K, vec_dot_q6_k, tile_of<vec_dot_q6_k>);
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
    add_panel_kernels_scalar(t);
    return t;
}

}  // namespace

const KernelTable* scalar_table() {
    static const KernelTable t = make_table();
    return &t;
}

}  // namespace unigemma::cpu
