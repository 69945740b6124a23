// Dev harness for the matmul driver (ops/cpu/matmul): checks one shape against the scalar
// path and times it, outside Python (for perf / callgrind). Build (from the repo root, after
// any build of the core library, e.g. `cmake -S . -B build-h -G Ninja && cmake --build build-h
// --target unigemma_core`):
//   g++ -std=c++17 -O2 -g -Icsrc tools/harness/matmul_harness.cpp build-h/libunigemma_core.a -lpthread
//       -o /tmp/matmul_harness
// Usage: matmul_harness TYPE ROWS COLS [TOKENS=1] [THREADS=0] [ISA=selected] [SECONDS=1]
//   e.g. perf record -g /tmp/matmul_harness q4_0 15360 3840 1 2 avx512 5
// Prints the max |difference| to the scalar path relative to max |y|, then ms per call, GB/s
// of weights and GFLOP/s. A GEMV rotates over copies of the matrix totalling >= 256 MiB so
// that the weights come from memory, as in a model.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "ops/cpu/cpu_features.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/matmul.h"
#include "quant/quant.h"

using namespace unigemma;

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s TYPE ROWS COLS [TOKENS] [THREADS] [ISA] [SECONDS]\n", argv[0]);
        return 2;
    }
    try {
        const auto type = gguf::type_from_name(argv[1]);
        const int64_t rows = std::atoll(argv[2]), cols = std::atoll(argv[3]);
        const int64_t tokens = argc > 4 ? std::atoll(argv[4]) : 1;
        const int threads = argc > 5 ? std::atoi(argv[5]) : 0;
        const std::string isa = argc > 6 ? argv[6] : cpu::selected_isa();
        const double seconds = argc > 7 ? std::atof(argv[7]) : 1.0;
        if (rows <= 0 || cols <= 0 || tokens <= 0) throw InputError("sizes must be positive");

        const size_t rb = quant::row_bytes(type, cols);
        const size_t mat = rb * static_cast<size_t>(rows);
        // Random rows (at most 256 distinct, repeated) quantized to the type.
        const int64_t base_rows = std::min<int64_t>(rows, 256);
        std::mt19937 rng(42);
        std::normal_distribution<float> nd(0.0f, 1.0f);
        std::vector<float> base(static_cast<size_t>(base_rows * cols));
        for (auto& v : base) v = nd(rng);
        std::vector<uint8_t> base_q(rb * static_cast<size_t>(base_rows));
        quant::quantize_rows(type, base.data(), base_q.data(), base_rows, cols, 0);
        const size_t copies = tokens == 1 ? std::max<size_t>(1, ((size_t(256) << 20) + mat - 1) / mat) : 1;
        std::vector<uint8_t> w(mat * copies);
        for (size_t c = 0; c < copies; ++c)
            for (int64_t r = 0; r < rows; ++r)
                std::copy_n(base_q.data() + static_cast<size_t>(r % base_rows) * rb, rb,
                            w.data() + c * mat + static_cast<size_t>(r) * rb);
        std::vector<float> x(static_cast<size_t>(tokens * cols));
        for (auto& v : x) v = nd(rng);
        std::vector<float> y(static_cast<size_t>(tokens * rows)), y_ref(y.size());

        const auto& k = cpu::kernels_for(isa);
        cpu::matmul(cpu::kernels_for("scalar"), type, w.data(), rows, cols, rb, x.data(), tokens, y_ref.data(), 0);
        cpu::matmul(k, type, w.data(), rows, cols, rb, x.data(), tokens, y.data(), threads);
        double max_diff = 0, max_y = 0;
        for (size_t i = 0; i < y.size(); ++i) {
            max_diff = std::max(max_diff, std::fabs(static_cast<double>(y[i]) - y_ref[i]));
            max_y = std::max(max_y, std::fabs(static_cast<double>(y_ref[i])));
        }
        std::printf("%s %s rows=%lld cols=%lld tokens=%lld threads=%d: max|y - scalar| / max|y| = %.3g\n", argv[1],
                    isa.c_str(), static_cast<long long>(rows), static_cast<long long>(cols),
                    static_cast<long long>(tokens), threads, max_y > 0 ? max_diff / max_y : max_diff);

        using Clock = std::chrono::steady_clock;
        const auto start = Clock::now();
        double best = 1e30;
        int64_t calls = 0;
        while (std::chrono::duration<double>(Clock::now() - start).count() < seconds || calls < 3) {
            const auto t0 = Clock::now();
            for (size_t c = 0; c < copies; ++c)
                cpu::matmul(k, type, w.data() + c * mat, rows, cols, rb, x.data(), tokens, y.data(), threads);
            best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count() / copies);
            calls += static_cast<int64_t>(copies);
        }
        const double flops = 2.0 * rows * cols * tokens;
        std::printf("best %.3f ms/call over %lld calls: %.2f GB/s of weights, %.1f GFLOP/s\n", best * 1e3,
                    static_cast<long long>(calls), mat / best / 1e9, flops / best / 1e9);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
