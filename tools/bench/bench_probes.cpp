// Machine probes for `unigemma bench kernels`: STREAM-style read bandwidth and peak FMA rate.
// This file gets no ISA flags from CMake (its name has no ISA prefix), so the vector code
// carries per-function target attributes and is only entered when features() says so.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "base/error.h"
#include "ops/cpu/cpu_features.h"
#include "bench/bench_probes.h"
#include "base/thread_pool.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define UG_PROBE_X86 1
#elif defined(__aarch64__)
#include <arm_neon.h>
#define UG_PROBE_NEON 1
#endif

namespace unigemma::bench {

using cpu::Features;
using cpu::features;
using cpu::available_isas;

namespace {

constexpr size_t kFloatsPerStep = 64;  // 256 bytes: 8 accumulators x one 32-byte vector

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ---- read kernels: sum n floats (n a multiple of kFloatsPerStep), 8 independent accumulators

float sum_scalar(const float* p, size_t n) {
    float a[8] = {};
    for (size_t i = 0; i < n; i += 8)
        for (int j = 0; j < 8; ++j) a[j] += p[i + j];
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

#if defined(UG_PROBE_X86)
__attribute__((target("avx2"))) float sum_avx2(const float* p, size_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (size_t i = 0; i < n; i += kFloatsPerStep) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
        a4 = _mm256_add_ps(a4, _mm256_load_ps(p + i + 32));
        a5 = _mm256_add_ps(a5, _mm256_load_ps(p + i + 40));
        a6 = _mm256_add_ps(a6, _mm256_load_ps(p + i + 48));
        a7 = _mm256_add_ps(a7, _mm256_load_ps(p + i + 56));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    alignas(32) float out[8];
    _mm256_store_ps(out, s);
    return ((out[0] + out[1]) + (out[2] + out[3])) + ((out[4] + out[5]) + (out[6] + out[7]));
}
#endif

#if defined(UG_PROBE_NEON)
float sum_neon(const float* p, size_t n) {
    float32x4_t a[8];
    for (auto& v : a) v = vdupq_n_f32(0.0f);
    for (size_t i = 0; i < n; i += kFloatsPerStep)
        for (int j = 0; j < 8; ++j) a[j] = vaddq_f32(a[j], vaddq_f32(vld1q_f32(p + i + 8 * j), vld1q_f32(p + i + 8 * j + 4)));
    float32x4_t s = vaddq_f32(vaddq_f32(vaddq_f32(a[0], a[1]), vaddq_f32(a[2], a[3])),
                              vaddq_f32(vaddq_f32(a[4], a[5]), vaddq_f32(a[6], a[7])));
    return vaddvq_f32(s);
}
#endif

using SumFn = float (*)(const float*, size_t);

SumFn pick_sum() {
#if defined(UG_PROBE_X86)
    if (features().avx2) return sum_avx2;
#elif defined(UG_PROBE_NEON)
    return sum_neon;
#endif
    return sum_scalar;
}

// ---- FMA chains: `iters` rounds of independent a = a * m + c chains; returns flops done.

struct FmaResult {
    double flops;
    float sink;
};

FmaResult fma_scalar(int64_t iters) {
    float a[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const float m = 0.999999f, c = 1e-7f;
    for (int64_t i = 0; i < iters; ++i)
        for (int j = 0; j < 8; ++j) a[j] = a[j] * m + c;
    float s = 0;
    for (float v : a) s += v;
    return {2.0 * 8 * static_cast<double>(iters), s};
}

#if defined(UG_PROBE_X86)
#define UG_FMA_12(OP) OP(0) OP(1) OP(2) OP(3) OP(4) OP(5) OP(6) OP(7) OP(8) OP(9) OP(10) OP(11)
#define UG_FMA_24(OP) UG_FMA_12(OP) OP(12) OP(13) OP(14) OP(15) OP(16) OP(17) OP(18) OP(19) OP(20) OP(21) OP(22) OP(23)

__attribute__((target("avx2,fma"))) FmaResult fma_avx2(int64_t iters) {
#define UG_DECL(i) __m256 a##i = _mm256_set1_ps(1.0f + (i));
#define UG_STEP(i) a##i = _mm256_fmadd_ps(a##i, m, c);
#define UG_SUM(i) s = _mm256_add_ps(s, a##i);
    UG_FMA_12(UG_DECL)
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int64_t i = 0; i < iters; ++i) {
        UG_FMA_12(UG_STEP)
    }
    __m256 s = _mm256_setzero_ps();
    UG_FMA_12(UG_SUM)
    alignas(32) float out[8];
    _mm256_store_ps(out, s);
    return {2.0 * 12 * 8 * static_cast<double>(iters), out[0] + out[7]};
#undef UG_DECL
#undef UG_STEP
#undef UG_SUM
}

__attribute__((target("avx512f"))) FmaResult fma_avx512(int64_t iters) {
#define UG_DECL(i) __m512 a##i = _mm512_set1_ps(1.0f + (i));
#define UG_STEP(i) a##i = _mm512_fmadd_ps(a##i, m, c);
#define UG_SUM(i) s = _mm512_add_ps(s, a##i);
    UG_FMA_24(UG_DECL)
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int64_t i = 0; i < iters; ++i) {
        UG_FMA_24(UG_STEP)
    }
    __m512 s = _mm512_setzero_ps();
    UG_FMA_24(UG_SUM)
    alignas(64) float out[16];
    _mm512_store_ps(out, s);
    return {2.0 * 24 * 16 * static_cast<double>(iters), out[0] + out[15]};
#undef UG_DECL
#undef UG_STEP
#undef UG_SUM
}
#endif

#if defined(UG_PROBE_NEON)
FmaResult fma_neon(int64_t iters) {
    float32x4_t a[16];
    for (int j = 0; j < 16; ++j) a[j] = vdupq_n_f32(1.0f + j);
    const float32x4_t m = vdupq_n_f32(0.999999f), c = vdupq_n_f32(1e-7f);
    for (int64_t i = 0; i < iters; ++i)
        for (int j = 0; j < 16; ++j) a[j] = vfmaq_f32(c, a[j], m);
    float32x4_t s = vdupq_n_f32(0.0f);
    for (int j = 0; j < 16; ++j) s = vaddq_f32(s, a[j]);
    return {2.0 * 16 * 4 * static_cast<double>(iters), vaddvq_f32(s)};
}
#endif

using FmaFn = FmaResult (*)(int64_t);

FmaFn pick_fma(const std::string& isa_in) {
    const Features& f = features();
    std::string isa = isa_in;
    if (isa.empty()) {
        const auto avail = available_isas();
        isa = avail.back();
    }
#if defined(UG_PROBE_X86)
    if (isa == "avx512" || isa == "avx512-novnni") {
        if (!f.avx512f) throw InputError("[bench] this CPU has no AVX-512");
        return fma_avx512;
    }
    if (isa == "avx2") {
        if (!(f.avx2 && f.fma)) throw InputError("[bench] this CPU has no AVX2+FMA");
        return fma_avx2;
    }
#elif defined(UG_PROBE_NEON)
    if (isa == "neon" || isa == "neon-nodotprod") return fma_neon;
#endif
    (void)f;
    if (isa == "scalar") return fma_scalar;
    throw InputError("[bench] ISA path '" + isa + "' is not available on this CPU");
}

}  // namespace

double bench_read_bandwidth(size_t bytes, int n_threads, int reps) {
    if (bytes < (size_t(1) << 20) || bytes > (size_t(1) << 40))
        throw InputError("[bench] read-bandwidth buffer must be 1 MiB .. 1 TiB, got " + std::to_string(bytes));
    if (reps < 1) throw InputError("[bench] reps must be >= 1");
    if (n_threads < 0) throw InputError("[bench] negative thread count");
    const size_t n_floats = bytes / sizeof(float);
    const size_t alloc = (bytes + 4095) / 4096 * 4096;
    auto* buf = static_cast<float*>(std::aligned_alloc(4096, alloc));
    if (!buf) throw InputError("[bench] cannot allocate " + std::to_string(bytes) + " bytes");
    struct Free {
        float* p;
        ~Free() { std::free(p); }
    } guard{buf};

    const SumFn sum = pick_sum();
    auto slice = [&](int t, int n, size_t& begin, size_t& len) {
        len = n_floats / static_cast<size_t>(n) / kFloatsPerStep * kFloatsPerStep;
        begin = static_cast<size_t>(t) * len;
    };
    // First touch by the threads that will read (NUMA placement), with a value that keeps
    // the sums finite.
    base::parallel_run(n_threads, [&](int t, int n) {
        size_t b, len;
        slice(t, n, b, len);
        std::fill(buf + b, buf + b + len, 1.0f);
    });
    std::vector<float> partial(base::kMaxThreads);
    double best = std::numeric_limits<double>::infinity();
    size_t read_bytes = 0;
    for (int r = 0; r < reps; ++r) {
        int used = 1;
        const auto t0 = Clock::now();
        base::parallel_run(n_threads, [&](int t, int n) {
            size_t b, len;
            slice(t, n, b, len);
            partial[static_cast<size_t>(t)] = sum(buf + b, len);
            if (t == 0) used = n;
        });
        best = std::min(best, seconds_since(t0));
        size_t b, len;
        slice(0, used, b, len);
        read_bytes = len * sizeof(float) * static_cast<size_t>(used);
    }
    volatile float sink = partial[0];
    (void)sink;
    return static_cast<double>(read_bytes) / best / 1e9;
}

double bench_peak_gflops(int n_threads, const std::string& isa, int reps) {
    if (reps < 1) throw InputError("[bench] reps must be >= 1");
    if (n_threads < 0) throw InputError("[bench] negative thread count");
    const FmaFn fn = pick_fma(isa);
    // Calibrate on one thread: ~20 ms per pass.
    int64_t iters = 1 << 14;
    for (;;) {
        const auto t0 = Clock::now();
        volatile float s = fn(iters).sink;
        (void)s;
        if (seconds_since(t0) >= 0.02 || iters >= (int64_t(1) << 34)) break;
        iters *= 2;
    }
    std::vector<double> flops(base::kMaxThreads);
    std::vector<float> sinks(base::kMaxThreads);
    double best = 0;
    for (int r = 0; r < reps; ++r) {
        int used = 1;
        const auto t0 = Clock::now();
        base::parallel_run(n_threads, [&](int t, int n) {
            const FmaResult res = fn(iters);
            flops[static_cast<size_t>(t)] = res.flops;
            sinks[static_cast<size_t>(t)] = res.sink;
            if (t == 0) used = n;
        });
        const double dt = seconds_since(t0);
        double total = 0;
        for (int t = 0; t < used; ++t) total += flops[static_cast<size_t>(t)];
        best = std::max(best, total / dt / 1e9);
    }
    volatile float sink = sinks[0];
    (void)sink;
    return best;
}

}  // namespace unigemma::bench
