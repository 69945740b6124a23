// Kernel self-test: for every ISA path this CPU can run (available_isas() plus the test
// variants avx512-novnni / neon-nodotprod), compares every entry of its kernel table with the
// scalar table on random data, including sizes that are not multiples of the vector widths:
//   * quantize_act: bit-identical;
//   * vec_dot / tile_dot: |isa - scalar| <= 4 (terms + 16) eps S, where S = sum over elements
//     of (|scale part of w| + |min part of w|) |x| (dequantized); terms = blocks for quantized
//     formats, n / 4 for float weights (summed in >= 4 lanes);
//     tile_dot is also checked against the path's own vec_dot;
//   * elementwise ops: add/mul/scale bit-identical, the rest within a few 1e-6 relative.
// The last line printed is "N passed, M failed"; the exit status is non-zero on failure.
//
// Native build (x86-64; from the repo root), one object per ISA file with its own flags:
//   g++ -std=c++17 -O2 -Icsrc -mavx2 -mfma -mf16c -c csrc/ops/cpu/avx2.cpp -o /tmp/avx2.o
//   g++ -std=c++17 -O2 -Icsrc -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni
//       -mavx2 -mfma -mf16c -c csrc/ops/cpu/avx512.cpp -o /tmp/avx512.o
//   g++ -std=c++17 -O2 -Icsrc csrc/gguf/ggml_types.cpp csrc/quant/*.cpp
//       csrc/ops/cpu/cpu_features.cpp csrc/ops/cpu/kernel_table.cpp csrc/ops/cpu/scalar.cpp
//       /tmp/avx2.o /tmp/avx512.o tools/harness/kernel_selftest.cpp -lpthread -o /tmp/kst
// aarch64 under qemu: tools/harness/run_neon_selftest.sh.
// Options: --isa NAME (only that path), --seed N, --bench (single-thread GEMV timing of
// Q4_0 / Q4_K / Q6_K / Q8_0 / BF16 3840 x 15360 per path instead of the tests).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "gguf/ggml_types.h"
#include "ops/cpu/cpu_features.h"
#include "ops/cpu/kernels.h"
#include "quant/fp16.h"
#include "quant/quant.h"

using namespace unigemma;
using cpu::KernelTable;
using gguf::GGMLType;

namespace {

int g_pass = 0, g_fail = 0;
std::mt19937_64 g_rng(12345);

void check(bool ok, const std::string& what) {
    if (ok) {
        ++g_pass;
    } else {
        ++g_fail;
        if (g_fail <= 60) std::printf("FAIL %s\n", what.c_str());
    }
}

float randn() {
    static std::normal_distribution<float> nd(0.0f, 1.0f);
    return nd(g_rng);
}
double unif(double a, double b) { return std::uniform_real_distribution<double>(a, b)(g_rng); }
int irand(int a, int b) { return std::uniform_int_distribution<int>(a, b)(g_rng); }

struct Fmt {
    GGMLType t;
    const char* name;
    int block, bytes;
    std::vector<int> scale_ofs, min_ofs;
};

const std::vector<Fmt>& formats() {
    static const std::vector<Fmt> f = {
        {GGMLType::F32, "F32", 1, 4, {}, {}},
        {GGMLType::F16, "F16", 1, 2, {}, {}},
        {GGMLType::BF16, "BF16", 1, 2, {}, {}},
        {GGMLType::Q8_0, "Q8_0", 32, 34, {0}, {}},
        {GGMLType::Q4_0, "Q4_0", 32, 18, {0}, {}},
        {GGMLType::Q4_1, "Q4_1", 32, 20, {0}, {2}},
        {GGMLType::Q5_0, "Q5_0", 32, 22, {0}, {}},
        {GGMLType::Q5_1, "Q5_1", 32, 24, {0}, {2}},
        {GGMLType::Q2_K, "Q2_K", 256, 84, {80}, {82}},
        {GGMLType::Q3_K, "Q3_K", 256, 110, {108}, {}},
        {GGMLType::Q4_K, "Q4_K", 256, 144, {0}, {2}},
        {GGMLType::Q5_K, "Q5_K", 256, 176, {0}, {2}},
        {GGMLType::Q6_K, "Q6_K", 256, 210, {208}, {}},
    };
    return f;
}

int act_bytes(GGMLType a, int64_t n) {
    switch (a) {
        case GGMLType::F32: return static_cast<int>(4 * n);
        case GGMLType::Q8_0: return static_cast<int>(n / 32 * 34);
        case GGMLType::Q8_1: return static_cast<int>(n / 32 * 36);
        case GGMLType::Q8_K: return static_cast<int>(n / 256 * 292);
        default: return 0;
    }
}

std::vector<float> rand_floats(int64_t n, double mag) {
    std::vector<float> x(static_cast<size_t>(n));
    double gm = mag;
    for (int64_t i = 0; i < n; ++i) {
        if (i % 32 == 0) gm = mag * std::pow(10.0, unif(-2, 0));
        x[i] = (irand(0, 49) == 0) ? 0.0f : static_cast<float>(randn() * gm);
    }
    return x;
}

// One row of n elements of format f: quantized from floats or random bytes with finite scales.
std::vector<uint8_t> make_row(const Fmt& f, int64_t n, double mag) {
    const size_t rb = quant::row_bytes(f.t, n);
    std::vector<uint8_t> raw(rb);
    if (f.block == 1 || (quant::can_quantize(f.t) && irand(0, 1))) {
        auto x = rand_floats(n, mag);
        quant::quantize_rows(f.t, x.data(), raw.data(), 1, n, 1);
        return raw;
    }
    for (auto& b : raw) b = static_cast<uint8_t>(irand(0, 255));
    for (int64_t b = 0; b < n / f.block; ++b) {
        for (int ofs : f.scale_ofs) {
            uint16_t h = quant::fp32_to_fp16(static_cast<float>(randn() * mag * std::pow(10.0, unif(-3, -1))));
            std::memcpy(raw.data() + b * f.bytes + ofs, &h, 2);
        }
        for (int ofs : f.min_ofs) {
            uint16_t h = quant::fp32_to_fp16(static_cast<float>(randn() * mag * std::pow(10.0, unif(-3, -1))));
            std::memcpy(raw.data() + b * f.bytes + ofs, &h, 2);
        }
    }
    return raw;
}

// |scale part| + |min part| of every element of a weight row.
std::vector<double> weight_abs(const Fmt& f, const uint8_t* raw, int64_t n) {
    std::vector<float> w(static_cast<size_t>(n)), p(static_cast<size_t>(n));
    quant::dequantize_row(f.t, raw, w.data(), n);
    std::vector<double> a(static_cast<size_t>(n));
    if (f.min_ofs.empty()) {
        for (int64_t i = 0; i < n; ++i) a[i] = std::fabs(w[i]);
        return a;
    }
    std::vector<uint8_t> z(raw, raw + quant::row_bytes(f.t, n));
    for (int64_t b = 0; b < n / f.block; ++b)
        for (int ofs : f.min_ofs) z[b * f.bytes + ofs] = z[b * f.bytes + ofs + 1] = 0;
    quant::dequantize_row(f.t, z.data(), p.data(), n);
    for (int64_t i = 0; i < n; ++i) a[i] = std::fabs(p[i]) + std::fabs(static_cast<double>(p[i]) - w[i]);
    return a;
}

std::vector<double> act_abs(GGMLType a, const uint8_t* raw, int64_t n) {
    std::vector<double> x(static_cast<size_t>(n));
    if (a == GGMLType::F32) {
        for (int64_t i = 0; i < n; ++i) {
            float v;
            std::memcpy(&v, raw + 4 * i, 4);
            x[i] = std::fabs(v);
        }
    } else if (a == GGMLType::Q8_1) {
        for (int64_t b = 0; b < n / 32; ++b) {
            uint16_t d;
            std::memcpy(&d, raw + b * 36, 2);
            for (int j = 0; j < 32; ++j)
                x[b * 32 + j] = std::fabs(quant::fp16_to_fp32(d) * static_cast<int8_t>(raw[b * 36 + 4 + j]));
        }
    } else {
        std::vector<float> y(static_cast<size_t>(n));
        quant::dequantize_row(a, raw, y.data(), n);
        for (int64_t i = 0; i < n; ++i) x[i] = std::fabs(y[i]);
    }
    return x;
}

double dot_bound(const Fmt& f, GGMLType a, const uint8_t* w, const uint8_t* x, int64_t n) {
    const auto wa = weight_abs(f, w, n);
    const auto xa = act_abs(a, x, n);
    double S = 0;
    for (int64_t i = 0; i < n; ++i) S += wa[i] * xa[i];
    if (a == GGMLType::Q8_1) {  // |m * s| terms of the affine formats
        for (int64_t b = 0; b < n / 32; ++b) {
            uint16_t m, s;
            std::memcpy(&m, w + b * f.bytes + 2, 2);
            std::memcpy(&s, x + b * 36 + 2, 2);
            S += std::fabs(quant::fp16_to_fp32(m) * quant::fp16_to_fp32(s));
        }
    }
    const double eps = 1.1920928955078125e-07;
    const double terms = f.block == 1 ? static_cast<double>(n) / 4 : static_cast<double>(n / f.block);
    return 4.0 * (terms + 16) * eps * S + 1e-35;
}

std::string fmt_num(double v) {
    char b[64];
    std::snprintf(b, sizeof b, "%.9g", v);
    return b;
}

// ------------------------------------------------------------------ tests

void test_quantize_act(const KernelTable& k, const KernelTable& s) {
    const GGMLType acts[] = {GGMLType::F32, GGMLType::Q8_0, GGMLType::Q8_1, GGMLType::Q8_K};
    for (GGMLType a : acts) {
        const int blk = a == GGMLType::Q8_K ? 256 : a == GGMLType::F32 ? 1 : 32;
        for (int trial = 0; trial < 12; ++trial) {
            const int64_t n = blk * (blk == 1 ? irand(1, 300) : irand(1, blk == 256 ? 5 : 40));
            const double mags[] = {1e-4, 1e-2, 1.0, 100.0, a == GGMLType::Q8_1 ? 1000.0 : 1e5};
            auto x = rand_floats(n, mags[trial % 5]);
            if (trial == 11) std::fill(x.begin(), x.end(), 0.0f);
            std::vector<uint8_t> ya(act_bytes(a, n) + 16, 0xAB), yb(act_bytes(a, n) + 16, 0xAB);
            k.quantize_act[static_cast<int>(a)](x.data(), ya.data(), n);
            s.quantize_act[static_cast<int>(a)](x.data(), yb.data(), n);
            check(ya == yb, std::string(k.isa) + " quantize_act " + gguf::type_traits(static_cast<uint32_t>(a)).name +
                                " n=" + std::to_string(n));
        }
    }
}

void test_dots(const KernelTable& k, const KernelTable& s) {
    for (const Fmt& f : formats()) {
        const int id = static_cast<int>(f.t);
        if (!s.vec_dot[id]) continue;
        const GGMLType a = cpu::activation_type(f.t);
        for (int trial = 0; trial < 14; ++trial) {
            int64_t n;
            if (f.block == 1)
                n = trial < 6 ? irand(1, 70) : irand(1, 1200);
            else
                n = f.block * (f.block == 256 ? irand(1, 5) : irand(1, 48));
            const double wm[] = {1e-2, 1.0, 1e3};
            const double xm[] = {1e-3, 1.0, 100.0, a == GGMLType::Q8_1 ? 1000.0 : 1e5};
            const int nr = irand(1, cpu::kTileRows), nc = irand(1, cpu::kTileCols);
            const size_t wb = quant::row_bytes(f.t, n), xb = static_cast<size_t>(act_bytes(a, n));
            const size_t ws = wb + (trial % 3 == 0 ? 13 : 0), xs = xb + (trial % 4 == 0 ? 7 : 0);
            std::vector<uint8_t> W(ws * nr), X(xs * nc);
            for (int r = 0; r < nr; ++r) {
                auto row = make_row(f, n, wm[trial % 3]);
                std::memcpy(W.data() + r * ws, row.data(), wb);
            }
            for (int c = 0; c < nc; ++c) {
                auto x = rand_floats(n, xm[trial % 4]);
                s.quantize_act[static_cast<int>(a)](x.data(), X.data() + c * xs, n);
            }
            std::vector<float> out(static_cast<size_t>(nc * (nr + 1)), NAN);
            k.tile_dot[id](n, nr, nc, out.data(), nr + 1, W.data(), ws, X.data(), xs);
            for (int c = 0; c < nc; ++c)
                for (int r = 0; r < nr; ++r) {
                    const uint8_t* w = W.data() + r * ws;
                    const uint8_t* x = X.data() + c * xs;
                    float ref = 0, got = 0;
                    s.vec_dot[id](n, &ref, w, x);
                    k.vec_dot[id](n, &got, w, x);
                    const double bound = dot_bound(f, a, w, x, n);
                    const std::string tag = std::string(k.isa) + " " + f.name + " n=" + std::to_string(n);
                    check(std::fabs(static_cast<double>(got) - ref) <= bound,
                          tag + " vec_dot " + fmt_num(got) + " vs scalar " + fmt_num(ref) + " bound " +
                              fmt_num(bound));
                    const float t = out[c * (nr + 1) + r];
                    check(std::fabs(static_cast<double>(t) - ref) <= bound,
                          tag + " tile_dot " + std::to_string(nr) + "x" + std::to_string(nc) + " [" +
                              std::to_string(r) + "," + std::to_string(c) + "] " + fmt_num(t) + " vs scalar " +
                              fmt_num(ref) + " bound " + fmt_num(bound));
                }
            for (int c = 0; c < nc; ++c)  // the gap column (out_stride = nr + 1) is untouched
                check(std::isnan(out[c * (nr + 1) + nr]), std::string(k.isa) + " " + f.name + " tile_dot stride");
        }
    }
}

bool close(float a, float b, double rtol, double atol) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    return std::fabs(static_cast<double>(a) - b) <= atol + rtol * std::fabs(static_cast<double>(b));
}

void test_elementwise(const KernelTable& k, const KernelTable& s) {
    const std::string isa = k.isa;
    for (int trial = 0; trial < 24; ++trial) {
        const int64_t n = trial < 12 ? irand(1, 40) : irand(1, 3000);
        const double mags[] = {1e-3, 1.0, 4.0, 30.0, 1e4};
        const double mag = mags[trial % 5];
        std::vector<float> x(n), w(n), b(n), ya(n), yb(n);
        for (int64_t i = 0; i < n; ++i) {
            x[i] = static_cast<float>(randn() * mag);
            w[i] = 1.0f + randn();
            b[i] = randn();
        }
        const std::string tag = " n=" + std::to_string(n) + " mag=" + fmt_num(mag);
        const double eps = 1.1920928955078125e-07;
        const double red = (static_cast<double>(n) / 8 + 64) * eps;
        auto cmp = [&](const char* op, double rtol, double atol_per_mag) {
            bool ok = true;
            for (int64_t i = 0; i < n; ++i) ok = ok && close(ya[i], yb[i], rtol, atol_per_mag);
            check(ok, isa + " " + op + tag);
        };
        k.rms_norm(ya.data(), x.data(), w.data(), n, 1e-6f);
        s.rms_norm(yb.data(), x.data(), w.data(), n, 1e-6f);
        cmp("rms_norm", 2 * red, 1e-30);
        k.rms_norm(ya.data(), x.data(), nullptr, n, 1e-6f);
        s.rms_norm(yb.data(), x.data(), nullptr, n, 1e-6f);
        cmp("rms_norm(no w)", 2 * red, 1e-30);
        k.layer_norm(ya.data(), x.data(), w.data(), b.data(), n, 1e-5f);
        s.layer_norm(yb.data(), x.data(), w.data(), b.data(), n, 1e-5f);
        cmp("layer_norm", 4 * red, 4 * red * 4);
        k.layer_norm(ya.data(), x.data(), nullptr, nullptr, n, 1e-5f);
        s.layer_norm(yb.data(), x.data(), nullptr, nullptr, n, 1e-5f);
        cmp("layer_norm(no w,b)", 4 * red, 4 * red);
        {
            k.gelu_tanh(ya.data(), x.data(), n);
            s.gelu_tanh(yb.data(), x.data(), n);
            bool ok = true;
            for (int64_t i = 0; i < n; ++i) ok = ok && close(ya[i], yb[i], 1e-6, 4e-6 * std::fabs(x[i]) + 1e-30);
            check(ok, isa + " gelu_tanh" + tag);
            k.gelu_tanh_mul(ya.data(), x.data(), w.data(), n);
            s.gelu_tanh_mul(yb.data(), x.data(), w.data(), n);
            ok = true;
            for (int64_t i = 0; i < n; ++i)
                ok = ok && close(ya[i], yb[i], 1e-6, 4e-6 * std::fabs(x[i] * w[i]) + 1e-30);
            check(ok, isa + " gelu_tanh_mul" + tag);
        }
        {
            std::vector<float> xm = x;
            if (trial % 3 == 0)
                for (int64_t i = 0; i < n; i += 3) xm[i] = -INFINITY;
            if (trial % 6 == 0 && n < 20) std::fill(xm.begin(), xm.end(), -INFINITY);
            k.softmax(ya.data(), xm.data(), n);
            s.softmax(yb.data(), xm.data(), n);
            cmp("softmax", 1e-5 + red, 2e-38);
        }
        for (float cap : {30.0f, 1.0f}) {
            k.softcap(ya.data(), x.data(), n, cap);
            s.softcap(yb.data(), x.data(), n, cap);
            bool ok = true;
            for (int64_t i = 0; i < n; ++i)
                ok = ok && close(ya[i], yb[i], 4 * eps, 2e-6 * cap * std::fmin(1.0, std::fabs(x[i]) / cap) + 1e-38);
            check(ok, isa + " softcap " + fmt_num(cap) + tag);
        }
        k.add(ya.data(), x.data(), b.data(), n);
        s.add(yb.data(), x.data(), b.data(), n);
        check(ya == yb, isa + " add" + tag);
        k.mul(ya.data(), x.data(), b.data(), n);
        s.mul(yb.data(), x.data(), b.data(), n);
        check(ya == yb, isa + " mul" + tag);
        k.scale(ya.data(), x.data(), 0.37f, n);
        s.scale(yb.data(), x.data(), 0.37f, n);
        check(ya == yb, isa + " scale" + tag);
        ya = x;  // in place
        k.add(ya.data(), ya.data(), b.data(), n);
        s.add(yb.data(), x.data(), b.data(), n);
        check(ya == yb, isa + " add in place" + tag);
    }
    for (int trial = 0; trial < 24; ++trial) {
        const int64_t half = std::vector<int>{1, 2, 3, 5, 8, 13, 16, 32, 64, 128, 256}[trial % 11];
        const int64_t d = 2 * half;
        const float pos = std::vector<float>{0.f, 1.f, 7.f, 1000.f, 131071.f}[trial % 5];
        const double base = trial % 2 ? 1e6 : 1e4;
        std::vector<float> inv(half), xa(d), xb(d);
        for (int64_t i = 0; i < half; ++i) inv[i] = static_cast<float>(std::pow(base, -static_cast<double>(i) / half));
        if (trial % 4 == 3)
            for (int64_t i = half / 2; i < half; ++i) inv[i] = 0.0f;
        for (auto& v : xa) v = randn();
        xb = xa;
        const auto x0 = xa;
        k.rope_neox(xa.data(), d, pos, inv.data());
        s.rope_neox(xb.data(), d, pos, inv.data());
        bool ok = true;
        for (int64_t i = 0; i < d; ++i) {
            const int64_t j = i % half;
            ok = ok && std::fabs(static_cast<double>(xa[i]) - xb[i]) <= 4e-6 * (std::fabs(x0[j]) + std::fabs(x0[j + half]));
            if (inv[j] == 0.0f) ok = ok && xa[i] == x0[i];
        }
        check(ok, isa + " rope_neox d=" + std::to_string(d) + " pos=" + fmt_num(pos));
    }
}

void bench(const std::vector<std::string>& isas) {
    const int64_t rows = std::getenv("ROWS") ? std::atoll(std::getenv("ROWS")) : 15360;
    const int64_t n = 3840;
    const GGMLType types[] = {GGMLType::Q4_0, GGMLType::Q4_K, GGMLType::Q6_K, GGMLType::Q8_0, GGMLType::BF16};
    const auto* s = cpu::scalar_table();
    for (GGMLType t : types) {
        const Fmt* f = nullptr;
        for (const auto& ff : formats())
            if (ff.t == t) f = &ff;
        const size_t rb = quant::row_bytes(t, n);
        std::vector<uint8_t> W(rb * rows);
        for (int64_t r = 0; r < rows; ++r) {
            auto row = make_row(*f, n, 1.0);
            std::memcpy(W.data() + r * rb, row.data(), rb);
        }
        const GGMLType a = cpu::activation_type(t);
        auto x = rand_floats(n, 1.0);
        std::vector<uint8_t> X(act_bytes(a, n));
        s->quantize_act[static_cast<int>(a)](x.data(), X.data(), n);
        std::vector<float> out(rows);
        for (const auto& isa : isas) {
            const auto& k = cpu::kernels_for(isa);
            double best = 1e9;
            for (int rep = 0; rep < 3; ++rep) {
                auto t0 = std::chrono::steady_clock::now();
                for (int64_t r = 0; r < rows; ++r) k.vec_dot[static_cast<int>(t)](n, &out[r], W.data() + r * rb, X.data());
                best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
            }
            double best41 = 1e9;  // GEMV through 4 x 1 tiles
            for (int rep = 0; rep < 3; ++rep) {
                auto t0 = std::chrono::steady_clock::now();
                for (int64_t r = 0; r + 4 <= rows; r += 4)
                    k.tile_dot[static_cast<int>(t)](n, 4, 1, &out[r], 1, W.data() + r * rb, rb, X.data(), X.size());
                best41 = std::min(best41, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
            }
            double best4 = 1e9;
            std::vector<float> o4(4 * 4);
            for (int rep = 0; rep < 2; ++rep) {  // 4x4 tiles over 4 identical columns
                std::vector<uint8_t> X4(X.size() * 4);
                for (int c = 0; c < 4; ++c) std::memcpy(X4.data() + c * X.size(), X.data(), X.size());
                auto t0 = std::chrono::steady_clock::now();
                for (int64_t r = 0; r + 4 <= rows; r += 4)
                    k.tile_dot[static_cast<int>(t)](n, 4, 4, o4.data(), 4, W.data() + r * rb, rb, X4.data(), X.size());
                best4 = std::min(best4, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
            }
            std::printf("%-14s %-5s gemv %dx%d: %7.2f ms %6.2f GB/s | 4x1 tiles %6.2f GB/s | 4x4 tiles: %7.2f ms "
                        "for 4 cols (%6.1f GFLOP/s)\n",
                        isa.c_str(), f->name, static_cast<int>(n), static_cast<int>(rows), best * 1e3,
                        W.size() / best / 1e9, W.size() / best41 / 1e9, best4 * 1e3, 2.0 * rows * n * 4 / best4 / 1e9);
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::string only;
    bool do_bench = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--isa" && i + 1 < argc) only = argv[++i];
        else if (a == "--seed" && i + 1 < argc) g_rng.seed(std::strtoull(argv[++i], nullptr, 10));
        else if (a == "--bench") do_bench = true;
    }
    std::vector<std::string> isas = cpu::available_isas();
    for (const auto& v : cpu::kernel_variants()) isas.push_back(v);
    if (!only.empty()) isas = {only};
    std::printf("isa paths:");
    for (const auto& s : isas) std::printf(" %s", s.c_str());
    std::printf("\n");
    try {
        if (do_bench) {
            bench(isas);
            return 0;
        }
        const KernelTable& s = *cpu::scalar_table();
        for (const auto& isa : isas) {
            const KernelTable& k = cpu::kernels_for(isa);
            const int before = g_fail;
            test_quantize_act(k, s);
            test_dots(k, s);
            test_elementwise(k, s);
            std::printf("%s: %s\n", isa.c_str(), g_fail == before ? "ok" : "FAILED");
        }
    } catch (const std::exception& e) {
        std::printf("error: %s\n", e.what());
        ++g_fail;
    }
    std::printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
