// Dev harness for quant/: times quantize/dequantize on Gaussian data and prints the relative
// RMSE of the round trip. Build (from the repo root):
//   g++ -std=c++17 -O2 -ffp-contract=off -Icsrc csrc/quant/*.cpp csrc/gguf/ggml_types.cpp
//       tools/harness/quant_harness.cpp -lpthread -o /tmp/quant_harness
// Usage: quant_harness [type ...] (default: every quantizable type), env ROWS / COLS / THREADS.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "quant/quant.h"

using namespace unigemma;

int main(int argc, char** argv) {
    const int64_t rows = std::getenv("ROWS") ? std::atoll(std::getenv("ROWS")) : 256;
    const int64_t cols = std::getenv("COLS") ? std::atoll(std::getenv("COLS")) : 4096;
    const int threads = std::getenv("THREADS") ? std::atoi(std::getenv("THREADS")) : 1;
    std::vector<std::string> types;
    for (int i = 1; i < argc; ++i) types.push_back(argv[i]);
    if (types.empty()) types = {"Q4_K", "Q5_K", "Q6_K", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "F16", "BF16"};

    std::mt19937 rng(1234);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(rows * cols)), y(x.size());
    for (auto& v : x) v = nd(rng);

    for (const auto& name : types) {
        try {
            const auto t = gguf::type_from_name(name);
            std::vector<uint8_t> q(quant::row_bytes(t, cols) * static_cast<size_t>(rows));
            auto t0 = std::chrono::steady_clock::now();
            quant::quantize_rows(t, x.data(), q.data(), rows, cols, threads);
            auto t1 = std::chrono::steady_clock::now();
            const size_t rb = quant::row_bytes(t, cols);
            for (int64_t r = 0; r < rows; ++r) quant::dequantize_row(t, q.data() + r * rb, y.data() + r * cols, cols);
            auto t2 = std::chrono::steady_clock::now();
            double se = 0, sx = 0;
            for (size_t i = 0; i < x.size(); ++i) {
                const double d = static_cast<double>(y[i]) - x[i];
                se += d * d;
                sx += static_cast<double>(x[i]) * x[i];
            }
            const double qs = std::chrono::duration<double>(t1 - t0).count();
            const double ds = std::chrono::duration<double>(t2 - t1).count();
            std::printf("%-5s rel_rmse %.5f  quantize %8.2f Melem/s  dequantize %8.1f Melem/s\n", name.c_str(),
                        std::sqrt(se / sx), x.size() / qs / 1e6, x.size() / ds / 1e6);
        } catch (const Error& e) {
            std::printf("%s: error: %s\n", name.c_str(), e.what());
        }
    }
    return 0;
}
