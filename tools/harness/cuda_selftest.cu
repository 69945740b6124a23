// CUDA kernel self-test: runs every kernel of ops/cuda on random data and compares it with
// the host twins (ops/cuda/block_math.cuh, sampler_math.cuh) or a CPU reference. Run it
// first on a machine with a GPU (tools/harness/README.md):
//   cmake -S . -B build-cuda -G Ninja -DUNIGEMMA_CUDA=ON && cmake --build build-cuda --target cuda_selftest
//   ./build-cuda/cuda_selftest            (--seed N)
// Per kernel it prints the max error next to its tolerance; the last line is
// "N passed, M failed" and the exit status is non-zero on any failure or CUDA error.
// Tolerances:
//   gemv            bitwise equal to twin_row_dot (same order of operations)
//   gemm            |y - ref| <= 3e-3 * sum|w x| (ref: float64 of the CPU-dequantized weights;
//                   two half roundings of 2^-11 per product)
//   get_rows        bitwise equal to quant::dequantize_row * scale
//   kv_store        bitwise equal to quant::quantize_rows (F16, Q8_0)
//   rms_norm, add, scale, gelu_tanh_mul, softcap, rope_neox
//                   <= 4e-6 relative to max(1, |ref|) against the CPU scalar kernels
//                   (tanh / sin / cos / sqrt are CUDA's, not glibc's)
//   attention       <= 2e-5 * max|V| against a float64 softmax over the dequantized cache;
//                   and one-query launches bitwise equal to the batched launch (batch invariance)
//   sample          token, status and kept count equal to twin_sample; argmax equal to the CPU
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "gguf/ggml_types.h"
#include "ops/cpu/kernels.h"
#include "ops/cuda/block_math.cuh"
#include "ops/cuda/kernels.h"
#include "ops/cuda/sampler_math.cuh"
#include "quant/quant.h"

using namespace unigemma;
namespace uc = unigemma::cuda;

namespace {

int g_pass = 0, g_fail = 0;
std::mt19937_64 g_rng(1234);

void report(const std::string& name, double err, double tol) {
    const bool ok = err <= tol;  // NaN fails
    std::printf("%-44s max err %-12.4g tol %-10.3g %s\n", name.c_str(), err, tol, ok ? "ok" : "FAIL");
    (ok ? g_pass : g_fail)++;
}

void ck(cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw uc::CudaError(std::string(what) + ": " + cudaGetErrorString(e));
}

template <typename T>
struct Dev {
    T* p = nullptr;
    size_t n = 0;
    explicit Dev(size_t count) : n(count) { ck(cudaMalloc(&p, std::max<size_t>(1, n) * sizeof(T)), "cudaMalloc"); }
    Dev(const std::vector<T>& h) : Dev(h.size()) { up(h); }
    ~Dev() { cudaFree(p); }
    Dev(const Dev&) = delete;
    void up(const std::vector<T>& h) { ck(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), "upload"); }
    std::vector<T> down() const {
        std::vector<T> h(n);
        ck(cudaDeviceSynchronize(), "kernel");
        ck(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), "download");
        return h;
    }
};

std::vector<float> randn(size_t n, float s = 1.0f) {
    std::normal_distribution<float> d(0.0f, s);
    std::vector<float> v(n);
    for (auto& x : v) x = d(g_rng);
    return v;
}

std::vector<uint8_t> quantize(int type, const std::vector<float>& x, int64_t rows, int64_t cols) {
    std::vector<uint8_t> q(quant::row_bytes(static_cast<gguf::GGMLType>(type), cols) * rows);
    quant::quantize_rows(static_cast<gguf::GGMLType>(type), x.data(), q.data(), rows, cols, 1);
    return q;
}

std::vector<float> dequant(int type, const std::vector<uint8_t>& q, int64_t n) {
    std::vector<float> o(n);
    quant::dequantize_row(static_cast<gguf::GGMLType>(type), q.data(), o.data(), n);
    return o;
}

const int kTypes[] = {uc::kTF32, uc::kTF16, uc::kTBF16, uc::kTQ4_0, uc::kTQ8_0, uc::kTQ4_K, uc::kTQ6_K};
const char* tname(int t) { return gguf::type_traits(static_cast<uint32_t>(t)).name; }

void test_matmul() {
    const int64_t rows = 131, cols = 2304;
    for (int t : kTypes) {
        const auto w = quantize(t, randn(rows * cols), rows, cols);
        const auto wf = dequant(t, w, rows * cols);
        const int64_t rb = uc::row_bytes_of(t, cols);
        Dev<uint8_t> dw(w);
        for (int nt : {1, 3, 8}) {
            const auto x = randn(nt * cols);
            Dev<float> dx(x), dy(nt * rows);
            uc::gemv(t, dw.p, rows, cols, dx.p, nt, dy.p, nullptr);
            const auto y = dy.down();
            double bad = 0;
            uc::dispatch_type(t, [&](auto tc) {
                for (int c = 0; c < nt; ++c)
                    for (int64_t r = 0; r < rows; ++r) {
                        const float ref = uc::twin_row_dot<decltype(tc)::value>(w.data() + r * rb, x.data() + c * cols, cols);
                        if (std::memcmp(&ref, &y[c * rows + r], 4) != 0) bad = std::max(bad, std::fabs(double(ref) - y[c * rows + r]) + 1e-300);
                    }
            });
            report(std::string("gemv ") + tname(t) + " n_tok=" + std::to_string(nt) + " (vs twin, bitwise)", bad, 0.0);
        }
        for (int64_t n : {1, 77}) {
            auto x = randn(n * cols);
            if (n > 1) for (int64_t i = 0; i < cols; ++i) x[cols + i] *= 3e5f;  // a row beyond half's range
            Dev<float> dx(x), dy(n * rows), sc(n);
            uc::gemm(t, dw.p, rows, cols, dx.p, n, dy.p, sc.p, nullptr);
            const auto y = dy.down();
            double worst = 0;
            for (int64_t c = 0; c < n; ++c)
                for (int64_t r = 0; r < rows; ++r) {
                    double ref = 0, mag = 0;
                    for (int64_t i = 0; i < cols; ++i) {
                        ref += double(wf[r * cols + i]) * x[c * cols + i];
                        mag += std::fabs(double(wf[r * cols + i]) * x[c * cols + i]);
                    }
                    worst = std::max(worst, std::fabs(y[c * rows + r] - ref) / (mag + 1e-30));
                }
            report(std::string("gemm ") + tname(t) + " n=" + std::to_string(n) + " (err / sum|wx|)", worst, 3e-3);
        }
        // get_rows: embedding lookup, exact decode * scale
        std::vector<int32_t> ids = {5, 0, 130, 5};
        Dev<int32_t> did(ids);
        Dev<float> dout(ids.size() * cols);
        uc::get_rows(t, dw.p, cols, did.p, int64_t(ids.size()), 7.5f, dout.p, nullptr);
        const auto o = dout.down();
        double bad = 0;
        for (size_t k = 0; k < ids.size(); ++k)
            for (int64_t i = 0; i < cols; ++i) {
                const float ref = wf[ids[k] * cols + i] * 7.5f;
                if (std::memcmp(&ref, &o[k * cols + i], 4) != 0) bad = std::max(bad, std::fabs(double(ref) - o[k * cols + i]) + 1e-300);
            }
        report(std::string("get_rows ") + tname(t) + " (bitwise)", bad, 0.0);
    }
}

double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
    double w = 0;
    for (size_t i = 0; i < a.size(); ++i) w = std::max(w, std::fabs(double(a[i]) - b[i]) / std::max(1.0, std::fabs(double(b[i]))));
    return w;
}

void test_elementwise() {
    const cpu::KernelTable& K = cpu::kernels_for("scalar");
    const int64_t rows = 9, n = 3840;
    auto x = randn(rows * n, 3.0f), w = randn(n), g = randn(rows * n, 2.0f);
    Dev<float> dx(x), dw(w), dg(g), dy(rows * n);
    std::vector<float> ref(rows * n);
    uc::rms_norm(dy.p, dx.p, dw.p, rows, n, 1e-6f, nullptr);
    for (int64_t r = 0; r < rows; ++r) K.rms_norm(ref.data() + r * n, x.data() + r * n, w.data(), n, 1e-6f);
    report("rms_norm (vs CPU scalar)", rel_err(dy.down(), ref), 4e-6);
    uc::gelu_tanh_mul(dy.p, dg.p, dx.p, rows * n, nullptr);
    K.gelu_tanh_mul(ref.data(), g.data(), x.data(), rows * n);
    report("gelu_tanh_mul (vs CPU scalar)", rel_err(dy.down(), ref), 4e-6);
    uc::softcap(dy.p, dx.p, rows * n, 30.0f, nullptr);
    K.softcap(ref.data(), x.data(), rows * n, 30.0f);
    report("softcap (vs CPU scalar)", rel_err(dy.down(), ref), 4e-6);
    uc::add(dy.p, dx.p, dg.p, rows * n, nullptr);
    K.add(ref.data(), x.data(), g.data(), rows * n);
    report("add (vs CPU scalar)", rel_err(dy.down(), ref), 0.0);
    uc::scale(dy.p, dx.p, 0.37f, rows * n, nullptr);
    K.scale(ref.data(), x.data(), 0.37f, rows * n);
    report("scale (vs CPU scalar)", rel_err(dy.down(), ref), 0.0);
    // RoPE, head_dim 256 with the upper quarter of inv_freq zero (partial rotation), far positions
    const int hd = 256, nh = 3, nt = 5;
    const int64_t pos0 = 100000;
    std::vector<float> inv(hd / 2);
    for (int i = 0; i < hd / 2; ++i) inv[i] = i < 96 ? std::pow(1e6f, -2.0f * i / hd) : 0.0f;
    auto q = randn(nt * nh * hd);
    Dev<float> dq(q), dinv(inv);
    uc::rope_neox(dq.p, nt, nh, hd, pos0, dinv.p, nullptr);
    auto qr = q;
    for (int t = 0; t < nt; ++t)
        for (int h = 0; h < nh; ++h) K.rope_neox(qr.data() + (t * nh + h) * hd, hd, float(pos0 + t), inv.data());
    report("rope_neox (vs CPU scalar)", rel_err(dq.down(), qr), 4e-6);
}

// float64 attention over the dequantized cache rows of positions [lo, hi]
void attn_ref(const std::vector<std::vector<float>>& K, const std::vector<std::vector<float>>& V, const float* q,
              int hd, float scale, int64_t lo, int64_t hi, double* out) {
    std::vector<double> s(hi - lo + 1);
    double m = -INFINITY;
    for (int64_t j = lo; j <= hi; ++j) {
        double d = 0;
        for (int i = 0; i < hd; ++i) d += double(q[i]) * K[j][i];
        s[j - lo] = d * scale;
        m = std::max(m, s[j - lo]);
    }
    double l = 0;
    for (auto& v : s) l += (v = std::exp(v - m));
    for (int i = 0; i < hd; ++i) {
        double o = 0;
        for (int64_t j = lo; j <= hi; ++j) o += s[j - lo] * V[j][i];
        out[i] = o / l;
    }
}

void test_attention() {
    for (int hd : {256, 512})
        for (int kvt : {uc::kTF16, uc::kTQ8_0})
            for (int sliding : {0, 1}) {
                const int n_kv = 2, n_head = 4;
                const int64_t n_ctx = 2600, window = sliding ? 1100 : 0;
                const int64_t cap = sliding ? 1100 + 64 + 64 : n_ctx;
                const int64_t rb = kvt == uc::kTQ8_0 ? hd / 32 * 34 : 2 * hd;
                Dev<uint8_t> dk(cap * n_kv * rb), dv(cap * n_kv * rb);
                uc::KVView kv{dk.p, dv.p, kvt, kvt, n_kv, hd, cap, bool(sliding)};
                // fill positions 0 .. n_ctx - 1 in chunks (a ring wraps); keep what each position held
                std::vector<std::vector<float>> Kf(n_ctx), Vf(n_ctx);
                double vmax = 0;
                const int64_t chunk = 64;
                std::vector<float> ks, vs;
                for (int64_t p0 = 0; p0 < n_ctx; p0 += chunk) {
                    ks = randn(chunk * n_kv * hd);
                    vs = randn(chunk * n_kv * hd);
                    Dev<float> a(ks), b(vs);
                    uc::kv_store(kv, a.p, b.p, chunk, p0, nullptr);
                    ck(cudaDeviceSynchronize(), "kv_store");
                    for (int64_t t = 0; t < chunk; ++t) {
                        // reference rows of kv head 1 (the one the queries below use), as the CPU stores them
                        const auto kq = quantize(kvt, std::vector<float>(ks.begin() + (t * n_kv + 1) * hd, ks.begin() + (t * n_kv + 2) * hd), 1, hd);
                        const auto vq = quantize(kvt, std::vector<float>(vs.begin() + (t * n_kv + 1) * hd, vs.begin() + (t * n_kv + 2) * hd), 1, hd);
                        Kf[p0 + t] = dequant(kvt, kq, hd);
                        Vf[p0 + t] = dequant(kvt, vq, hd);
                        for (float v : Vf[p0 + t]) vmax = std::max(vmax, double(std::fabs(v)));
                    }
                }
                // the last chunk's stored bytes against the CPU encoder
                {
                    const auto hk = dk.down();
                    double bad = 0;
                    for (int64_t t = 0; t < chunk; ++t)
                        for (int h = 0; h < n_kv; ++h) {
                            const int64_t pos = n_ctx - chunk + t, slot = sliding ? pos % cap : pos;
                            const auto ref = quantize(kvt, std::vector<float>(ks.begin() + (t * n_kv + h) * hd, ks.begin() + (t * n_kv + h + 1) * hd), 1, hd);
                            if (std::memcmp(ref.data(), hk.data() + (slot * n_kv + h) * rb, rb) != 0) bad = 1;
                        }
                    report(std::string("kv_store ") + tname(kvt) + " hd=" + std::to_string(hd) + (sliding ? " ring" : "") + " (bitwise)", bad, 0.0);
                }
                // queries: the last n_tok positions (their keys are in the cache), heads 2..3 use kv head 1
                for (int n_tok : {1, 23}) {
                    const int64_t pos0 = n_ctx - n_tok;
                    auto q = randn(n_tok * n_head * hd, 0.08f);
                    std::vector<int64_t> key_end(n_tok);
                    for (int t = 0; t < n_tok; ++t) key_end[t] = (n_tok > 1 && t >= 5 && t < 15) ? pos0 + 14 : pos0 + t;
                    const bool use_ke = sliding && n_tok > 1;
                    Dev<float> dq(q), dout(n_tok * n_head * hd);
                    Dev<int64_t> dke(key_end);
                    const size_t wsb = uc::attention_workspace_bytes(n_head, hd, n_ctx);
                    Dev<uint8_t> ws(wsb);
                    uc::AttnArgs a{dq.p, dout.p, n_tok, pos0, n_head, 0.9f, window, use_ke ? dke.p : nullptr, pos0 + 14};
                    uc::attention(kv, a, ws.p, wsb, nullptr);
                    const auto out = dout.down();
                    double worst = 0;
                    std::vector<double> ref(hd);
                    for (int t = 0; t < n_tok; ++t)
                        for (int h = 2; h < 4; ++h) {
                            const int64_t pos = pos0 + t;
                            const int64_t lo = window ? std::max<int64_t>(0, pos - window + 1) : 0;
                            const int64_t hi = use_ke ? key_end[t] : pos;
                            attn_ref(Kf, Vf, q.data() + (t * n_head + h) * hd, hd, 0.9f, lo, hi, ref.data());
                            for (int i = 0; i < hd; ++i)
                                worst = std::max(worst, std::fabs(out[(t * n_head + h) * hd + i] - ref[i]) / vmax);
                        }
                    const std::string nm = std::string("attention hd=") + std::to_string(hd) + " " + tname(kvt) +
                                           (sliding ? " window" : " full") + (use_ke ? "+key_end" : "") + " n_tok=" + std::to_string(n_tok);
                    report(nm + " (vs f64)", worst, 2e-5);
                    if (n_tok > 1) {
                        // batch invariance: query 7 alone (with its key_end) gives the same bits
                        Dev<float> q1(std::vector<float>(q.begin() + 7 * n_head * hd, q.begin() + 8 * n_head * hd)), o1(n_head * hd);
                        Dev<int64_t> ke1(std::vector<int64_t>{key_end[7]});
                        uc::AttnArgs b{q1.p, o1.p, 1, pos0 + 7, n_head, 0.9f, window, use_ke ? ke1.p : nullptr, key_end[7]};
                        uc::attention(kv, b, ws.p, wsb, nullptr);
                        const auto single = o1.down();
                        const bool same = std::memcmp(single.data(), out.data() + 7 * n_head * hd, n_head * hd * 4) == 0;
                        report(nm + " one query == batch (bitwise)", same ? 0.0 : 1.0, 0.0);
                    }
                }
            }
}

void test_sampler() {
    const int32_t V = 262144;
    auto l = randn(V, 3.0f);
    for (int i = 0; i < 40; ++i) l[g_rng() % V] = -INFINITY;
    for (int i = 0; i < 40; ++i) l[g_rng() % V] = l[11];
    Dev<float> dl(l);
    Dev<int32_t> res(3);
    Dev<uint8_t> ws(uc::sample_workspace_bytes(V));
    struct Case { int32_t k; float p, minp, temp; };
    const Case cases[] = {{40, 1.0f, 0.0f, 1.0f}, {40, 0.9f, 0.0f, 0.7f}, {0, 0.9f, 0.0f, 1.0f},
                          {3000, 0.95f, 0.05f, 1.3f}, {0, 1.0f, 0.1f, 1.0f}, {0, 1.0f, 0.0f, 1.0f}};
    int bad = 0, n = 0;
    for (const Case& c : cases)
        for (double u : {0.0, 0.25, 0.5, 0.999}) {
            uc::sample(dl.p, V, c.k, c.p, c.minp, c.temp, u, res.p, ws.p, nullptr);
            const auto r = res.down();
            int st = 0, kept = 0;
            const int32_t tok = uc::twin_sample(l.data(), V, c.k, c.p, c.minp, c.temp, u, &st, &kept);
            ++n;
            if (r[0] != tok || r[1] != st || r[2] != kept) {
                ++bad;
                std::printf("  sample k=%d p=%g min_p=%g T=%g u=%g: device (%d, %d, %d) twin (%d, %d, %d)\n", c.k, c.p,
                            c.minp, c.temp, u, r[0], r[1], r[2], tok, st, kept);
            }
        }
    report("sample (" + std::to_string(n) + " cases vs twin, mismatches)", bad, 0.0);
    uc::argmax(dl.p, V, res.p, nullptr);
    const int32_t want = int32_t(std::max_element(l.begin(), l.end()) - l.begin());
    report("argmax (vs std::max_element)", res.down()[0] == want ? 0.0 : 1.0, 0.0);
}

}  // namespace

int main(int argc, char** argv) {
    for (int i = 1; i + 1 < argc; ++i)
        if (std::string(argv[i]) == "--seed") g_rng.seed(std::strtoull(argv[i + 1], nullptr, 10));
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        std::printf("no CUDA device: nothing tested\n");
        return 2;
    }
    cudaDeviceProp p{};
    cudaGetDeviceProperties(&p, 0);
    std::printf("device 0: %s (sm_%d%d)\n", p.name, p.major, p.minor);
    try {
        test_matmul();
        test_elementwise();
        test_attention();
        test_sampler();
    } catch (const std::exception& e) {
        std::printf("error: %s\n", e.what());
        ++g_fail;
    }
    std::printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
