// NEON kernel table for aarch64 (base ARMv8-A, no extra target flags). Quantized dots use
// smull/smlal + sadalp here; when the CPU has the dot product extension, neon_table() takes
// the quantized entries from neon_dotprod.cpp (sdot) instead, while neon_nodotprod_table()
// keeps these (for CPUs without it, and to test this path on CPUs with it).
// Same contracts as scalar.cpp (which documents the activation formats); kernel templates in
// neon_impl.h.
#include "ops/cpu/cpu_features.h"
#include "ops/cpu/neon_impl.h"

namespace unigemma::cpu {

void neon_dotprod_fill(KernelTable& t);  // neon_dotprod.cpp

namespace {

// ------------------------------------------------------------------ activations

// 4 floats -> 4 int32 of round_half_even(clamp(v * id, -127, 127)) (fmaxnm/fminnm: as fmax).
inline int32x4_t q8_lanes(float32x4_t v, float32x4_t id) {
    v = vmulq_f32(v, id);
    v = vminnmq_f32(vmaxnmq_f32(v, vdupq_n_f32(-127.0f)), vdupq_n_f32(127.0f));
    return vcvtnq_s32_f32(v);
}

// 16 int32 -> 16 int8 (values already within int8).
inline int8x16_t narrow16(int32x4_t a, int32x4_t b, int32x4_t c, int32x4_t d) {
    const int16x8_t ab = vcombine_s16(vqmovn_s32(a), vqmovn_s32(b));
    const int16x8_t cd = vcombine_s16(vqmovn_s32(c), vqmovn_s32(d));
    return vcombine_s8(vqmovn_s16(ab), vqmovn_s16(cd));
}

inline float absmax(const float* x, int n) {
    float32x4_t m = vdupq_n_f32(0.0f);
    for (int j = 0; j < n; j += 4) m = vmaxnmq_f32(m, vabsq_f32(vld1q_f32(x + j)));
    return vmaxnmvq_f32(m);
}

// Quantizes 32 floats with id into q (32 int8); returns their sum.
inline int quant32(const float* x, float32x4_t id, uint8_t* q) {
    int32x4_t v[8];
    for (int k = 0; k < 8; ++k) v[k] = q8_lanes(vld1q_f32(x + 4 * k), id);
    vst1q_s8(reinterpret_cast<int8_t*>(q), narrow16(v[0], v[1], v[2], v[3]));
    vst1q_s8(reinterpret_cast<int8_t*>(q + 16), narrow16(v[4], v[5], v[6], v[7]));
    int32x4_t s = vaddq_s32(vaddq_s32(v[0], v[1]), vaddq_s32(v[2], v[3]));
    s = vaddq_s32(s, vaddq_s32(vaddq_s32(v[4], v[5]), vaddq_s32(v[6], v[7])));
    return vaddvq_s32(s);
}

void quantize_q8_0_act(const float* x, void* y, int64_t n) {
    auto* out = static_cast<uint8_t*>(y);
    for (int64_t i = 0; i < n / 32; ++i) {
        const float* xb = x + 32 * i;
        const uint16_t d16 = scale_to_fp16_up(absmax(xb, 32) / 127.0f);
        const float dr = fp16_to_fp32(d16);
        uint8_t* ob = out + 34 * i;
        std::memcpy(ob, &d16, 2);
        quant32(xb, vdupq_n_f32(dr > 0.0f ? 1.0f / dr : 0.0f), ob + 2);
    }
}

void quantize_q8_1_act(const float* x, void* y, int64_t n) {
    auto* out = static_cast<uint8_t*>(y);
    for (int64_t i = 0; i < n / 32; ++i) {
        const float* xb = x + 32 * i;
        const uint16_t d16 = scale_to_fp16_up(absmax(xb, 32) / 127.0f);
        const float dr = fp16_to_fp32(d16);
        uint8_t* ob = out + 36 * i;
        const int sum = quant32(xb, vdupq_n_f32(dr > 0.0f ? 1.0f / dr : 0.0f), ob + 4);
        const float s = dr * static_cast<float>(sum);
        const uint16_t s16 = static_cast<uint16_t>(scale_to_fp16(std::fabs(s)) | (s < 0.0f ? 0x8000u : 0u));
        std::memcpy(ob, &d16, 2);
        std::memcpy(ob + 2, &s16, 2);
    }
}

void quantize_q8_k_act(const float* x, void* y, int64_t n) {
    auto* out = static_cast<uint8_t*>(y);
    for (int64_t i = 0; i < n / 256; ++i) {
        const float* xb = x + 256 * i;
        float d = absmax(xb, 256) / 127.0f;
        if (!(d >= FLT_MIN)) d = 0.0f;
        const float32x4_t id = vdupq_n_f32(d > 0.0f ? 1.0f / d : 0.0f);
        uint8_t* ob = out + 292 * i;
        std::memcpy(ob, &d, 4);
        int16_t bsums[16];
        for (int g = 0; g < 16; ++g) {
            int32x4_t v[4];
            for (int k = 0; k < 4; ++k) v[k] = q8_lanes(vld1q_f32(xb + 16 * g + 4 * k), id);
            vst1q_s8(reinterpret_cast<int8_t*>(ob + 4 + 16 * g), narrow16(v[0], v[1], v[2], v[3]));
            bsums[g] = static_cast<int16_t>(vaddvq_s32(vaddq_s32(vaddq_s32(v[0], v[1]), vaddq_s32(v[2], v[3]))));
        }
        std::memcpy(ob + 260, bsums, 32);
    }
}

void quantize_f32_act(const float* x, void* y, int64_t n) {
    if (n > 0) std::memmove(y, x, static_cast<size_t>(n) * sizeof(float));
}

// ------------------------------------------------------------------ vector math

inline float32x4_t pow2i(float32x4_t k) {  // 2^k for integral k in [-126, 127]
    return vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vcvtnq_s32_f32(k), vdupq_n_s32(127)), 23));
}

inline float32x4_t poly(float32x4_t r, const float* c, int n) {  // c[0] r^(n-1) + ... + c[n-1]
    float32x4_t p = vdupq_n_f32(c[0]);
    for (int i = 1; i < n; ++i) p = vfmaq_f32(vdupq_n_f32(c[i]), p, r);
    return p;
}

// exp(x) for x in [-87.33, 88] (clamped above; 0 below ln(FLT_MIN)), ~2 ulp.
inline float32x4_t v_exp(float32x4_t x) {
    static const float c[] = {1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f};
    const uint32x4_t small = vcltq_f32(x, vdupq_n_f32(-87.33654f));
    x = vminq_f32(x, vdupq_n_f32(88.0f));
    x = vmaxq_f32(x, vdupq_n_f32(-87.33654f));
    const float32x4_t k = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
    float32x4_t r = vfmsq_f32(x, k, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, k, vdupq_n_f32(-2.12194440e-4f));
    const float32x4_t e = vmulq_f32(poly(r, c, 8), pow2i(k));
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(e), small));
}

// tanh(u) = expm1(2u) / (expm1(2u) + 2), expm1 accurate near 0.
inline float32x4_t v_tanh(float32x4_t u) {
    static const float c[] = {1.0f / 40320, 1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f};
    u = vminq_f32(vmaxq_f32(u, vdupq_n_f32(-9.0f)), vdupq_n_f32(9.0f));
    const float32x4_t v = vaddq_f32(u, u);
    const float32x4_t k = vrndnq_f32(vmulq_f32(v, vdupq_n_f32(1.44269504088896341f)));
    float32x4_t r = vfmsq_f32(v, k, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, k, vdupq_n_f32(-2.12194440e-4f));
    const float32x4_t q = vmulq_f32(poly(r, c, 8), r);
    const float32x4_t s = pow2i(k);
    const float32x4_t e = vfmaq_f32(vsubq_f32(s, vdupq_n_f32(1.0f)), s, q);
    return vdivq_f32(e, vaddq_f32(e, vdupq_n_f32(2.0f)));
}

inline float32x4_t v_gelu(float32x4_t x) {
    const float32x4_t x3 = vmulq_f32(vmulq_f32(x, x), x);
    const float32x4_t u = vmulq_f32(vdupq_n_f32(0.7978845608028654f), vfmaq_f32(x, vdupq_n_f32(0.044715f), x3));
    const float32x4_t e = v_exp(vmulq_f32(u, vdupq_n_f32(-2.0f)));
    return vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0f), e));
}

inline void v_sincos(float32x4_t th, float32x4_t* s, float32x4_t* c) {
    static const float cs[] = {1.0f / 362880, -1.0f / 5040, 1.0f / 120, -1.0f / 6};
    static const float cc[] = {-1.0f / 3628800, 1.0f / 40320, -1.0f / 720, 1.0f / 24, -0.5f, 1.0f};
    const float32x4_t j = vrndnq_f32(vmulq_f32(th, vdupq_n_f32(0.636619772367581343f)));
    float32x4_t r = vfmsq_f32(th, j, vdupq_n_f32(1.5707963705062866f));
    r = vfmsq_f32(r, j, vdupq_n_f32(-4.371138828673793e-08f));
    r = vfmsq_f32(r, j, vdupq_n_f32(-1.7763568394002505e-15f));
    const float32x4_t r2 = vmulq_f32(r, r);
    const float32x4_t ps = vfmaq_f32(r, vmulq_f32(poly(r2, cs, 4), r2), r);
    const float32x4_t pc = poly(r2, cc, 6);
    const int32x4_t q = vcvtnq_s32_f32(j);
    const uint32x4_t swap = vtstq_s32(q, vdupq_n_s32(1));
    const float32x4_t sn = vbslq_f32(swap, pc, ps);
    const float32x4_t cn = vbslq_f32(swap, ps, pc);
    const uint32x4_t sgn_s = vshlq_n_u32(vreinterpretq_u32_s32(vandq_s32(q, vdupq_n_s32(2))), 30);
    const uint32x4_t sgn_c =
        vshlq_n_u32(vreinterpretq_u32_s32(vandq_s32(vaddq_s32(q, vdupq_n_s32(1)), vdupq_n_s32(2))), 30);
    *s = vreinterpretq_f32_u32(veorq_u32(vreinterpretq_u32_f32(sn), sgn_s));
    *c = vreinterpretq_f32_u32(veorq_u32(vreinterpretq_u32_f32(cn), sgn_c));
}

template <class F>
inline void map1(float* y, const float* x, int64_t n, F f) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, f(vld1q_f32(x + i)));
    if (i < n) {
        float t[4] = {};
        std::memcpy(t, x + i, static_cast<size_t>(n - i) * 4);
        vst1q_f32(t, f(vld1q_f32(t)));
        std::memcpy(y + i, t, static_cast<size_t>(n - i) * 4);
    }
}

template <class F>
inline void map2(float* y, const float* a, const float* b, int64_t n, F f) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, f(vld1q_f32(a + i), vld1q_f32(b + i)));
    if (i < n) {
        float ta[4] = {}, tb[4] = {};
        std::memcpy(ta, a + i, static_cast<size_t>(n - i) * 4);
        std::memcpy(tb, b + i, static_cast<size_t>(n - i) * 4);
        vst1q_f32(ta, f(vld1q_f32(ta), vld1q_f32(tb)));
        std::memcpy(y + i, ta, static_cast<size_t>(n - i) * 4);
    }
}

// sum over n floats of f(x) (4 lanes x 2 accumulators; the tail is padded with `pad`, for
// which f must give 0).
template <class F>
inline float reduce(const float* x, int64_t n, F f, float pad = 0.0f) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 = vaddq_f32(a0, f(vld1q_f32(x + i)));
        a1 = vaddq_f32(a1, f(vld1q_f32(x + i + 4)));
    }
    for (; i + 4 <= n; i += 4) a0 = vaddq_f32(a0, f(vld1q_f32(x + i)));
    if (i < n) {
        float t[4] = {pad, pad, pad, pad};
        std::memcpy(t, x + i, static_cast<size_t>(n - i) * 4);
        a1 = vaddq_f32(a1, f(vld1q_f32(t)));
    }
    return vaddvq_f32(vaddq_f32(a0, a1));
}

void rms_norm(float* y, const float* x, const float* w, int64_t n, float eps) {
    const float ss = reduce(x, n, [](float32x4_t v) { return vmulq_f32(v, v); });
    const float32x4_t r = vdupq_n_f32(1.0f / std::sqrt(ss / static_cast<float>(n) + eps));
    if (w)
        map2(y, x, w, n, [r](float32x4_t a, float32x4_t b) { return vmulq_f32(vmulq_f32(a, r), b); });
    else
        map1(y, x, n, [r](float32x4_t a) { return vmulq_f32(a, r); });
}

void layer_norm(float* y, const float* x, const float* w, const float* b, int64_t n, float eps) {
    const float fn = static_cast<float>(n);
    const float mean0 = reduce(x, n, [](float32x4_t v) { return v; }) / fn;
    const float32x4_t mv0 = vdupq_n_f32(mean0);
    const float sq = reduce(
        x, n,
        [mv0](float32x4_t v) {
            const float32x4_t t = vsubq_f32(v, mv0);
            return vmulq_f32(t, t);
        },
        mean0);
    const float dsum = reduce(x, n, [mv0](float32x4_t v) { return vsubq_f32(v, mv0); }, mean0);
    const float mean = mean0 + dsum / fn;
    const float var = std::fmax(sq - dsum * dsum / fn, 0.0f) / fn;
    const float32x4_t mv = vdupq_n_f32(mean);
    const float32x4_t r = vdupq_n_f32(1.0f / std::sqrt(var + eps));
    map1(y, x, n, [mv, r](float32x4_t v) { return vmulq_f32(vsubq_f32(v, mv), r); });
    if (w) map2(y, y, w, n, [](float32x4_t a, float32x4_t c) { return vmulq_f32(a, c); });
    if (b) map2(y, y, b, n, [](float32x4_t a, float32x4_t c) { return vaddq_f32(a, c); });
}

void gelu_tanh(float* y, const float* x, int64_t n) { map1(y, x, n, v_gelu); }

void gelu_tanh_mul(float* y, const float* g, const float* u, int64_t n) {
    map2(y, g, u, n, [](float32x4_t a, float32x4_t b) { return vmulq_f32(v_gelu(a), b); });
}

void softmax(float* y, const float* x, int64_t n) {
    float32x4_t m = vdupq_n_f32(-INFINITY);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) m = vmaxnmq_f32(m, vld1q_f32(x + i));
    float mx = vmaxnmvq_f32(m);
    for (; i < n; ++i) mx = std::fmax(mx, x[i]);
    if (mx == -INFINITY) {
        for (int64_t j = 0; j < n; ++j) y[j] = 0.0f;
        return;
    }
    const float32x4_t mv = vdupq_n_f32(mx);
    map1(y, x, n, [mv](float32x4_t v) { return v_exp(vsubq_f32(v, mv)); });
    const float s = reduce(y, n, [](float32x4_t v) { return v; });
    const float32x4_t inv = vdupq_n_f32(1.0f / s);
    map1(y, y, n, [inv](float32x4_t v) { return vmulq_f32(v, inv); });
}

void softcap(float* y, const float* x, int64_t n, float cap) {
    const float32x4_t c = vdupq_n_f32(cap), ic = vdupq_n_f32(1.0f / cap);
    map1(y, x, n, [c, ic](float32x4_t v) { return vmulq_f32(c, v_tanh(vmulq_f32(v, ic))); });
}

void add(float* y, const float* a, const float* b, int64_t n) {
    map2(y, a, b, n, [](float32x4_t p, float32x4_t q) { return vaddq_f32(p, q); });
}

void mul(float* y, const float* a, const float* b, int64_t n) {
    map2(y, a, b, n, [](float32x4_t p, float32x4_t q) { return vmulq_f32(p, q); });
}

void scale(float* y, const float* x, float s, int64_t n) {
    map1(y, x, n, [s](float32x4_t v) { return vmulq_n_f32(v, s); });
}

void rope_neox(float* x, int64_t d, float pos, const float* inv_freq) {
    const int64_t h = d / 2;
    auto rot = [pos](float32x4_t f, float32x4_t a, float32x4_t b, float32x4_t* oa, float32x4_t* ob) {
        float32x4_t s, c;
        v_sincos(vmulq_n_f32(f, pos), &s, &c);
        *oa = vfmsq_f32(vmulq_f32(a, c), b, s);
        *ob = vfmaq_f32(vmulq_f32(b, c), a, s);
    };
    int64_t i = 0;
    for (; i + 4 <= h; i += 4) {
        float32x4_t oa, ob;
        rot(vld1q_f32(inv_freq + i), vld1q_f32(x + i), vld1q_f32(x + h + i), &oa, &ob);
        vst1q_f32(x + i, oa);
        vst1q_f32(x + h + i, ob);
    }
    if (i < h) {
        float f[4] = {}, a[4] = {}, b[4] = {};
        const size_t k = static_cast<size_t>(h - i) * 4;
        std::memcpy(f, inv_freq + i, k);
        std::memcpy(a, x + i, k);
        std::memcpy(b, x + h + i, k);
        float32x4_t oa, ob;
        rot(vld1q_f32(f), vld1q_f32(a), vld1q_f32(b), &oa, &ob);
        vst1q_f32(a, oa);
        vst1q_f32(b, ob);
        std::memcpy(x + i, a, k);
        std::memcpy(x + h + i, b, k);
    }
}

KernelTable make_table(const char* name) {
    KernelTable t;
    t.isa = name;
    set_kernels<FloatK<LoadF32>::K>(t, GGMLType::F32);
    set_kernels<FloatK<LoadF16>::K>(t, GGMLType::F16);
    set_kernels<FloatK<LoadBF16>::K>(t, GGMLType::BF16);
    fill_quantized<DotBase>(t);
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
    return t;
}

}  // namespace

const KernelTable* neon_nodotprod_table() {
    static const KernelTable t = make_table("neon-nodotprod");
    return &t;
}

const KernelTable* neon_table() {
    static const KernelTable t = [] {
        KernelTable k = make_table("neon");
        if (features().dotprod) neon_dotprod_fill(k);
        return k;
    }();
    return &t;
}

}  // namespace unigemma::cpu
