// quant.h entry points: argument checks, per-type dispatch, the plain float formats
// (F32 / F16 / BF16) and the row-parallel quantization driver.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "quant/fp16.h"
#include "quant/quant.h"
#include "quant/quant_internal.h"

namespace unigemma::quant {

namespace {

using DequantFn = void (*)(const uint8_t* src, float* dst, int64_t nb);
using QuantFn = void (*)(const float* src, uint8_t* dst, int64_t nb);

// ---- plain float formats (block size 1, "nb" = element count)

void dequantize_f32(const uint8_t* src, float* dst, int64_t n) {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}
void quantize_f32(const float* src, uint8_t* dst, int64_t n) {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

void dequantize_f16(const uint8_t* src, float* dst, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = fp16_to_fp32(h);
    }
}
void quantize_f16(const float* src, uint8_t* dst, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = fp32_to_fp16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
    }
}

void dequantize_bf16(const uint8_t* src, float* dst, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = bf16_to_fp32(h);
    }
}
void quantize_bf16(const float* src, uint8_t* dst, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = fp32_to_bf16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
    }
}

struct Kernels {
    DequantFn dequant;
    QuantFn quant;
};

Kernels kernels_for(GGMLType t) {
    switch (t) {
        case GGMLType::F32: return {dequantize_f32, quantize_f32};
        case GGMLType::F16: return {dequantize_f16, quantize_f16};
        case GGMLType::BF16: return {dequantize_bf16, quantize_bf16};
        case GGMLType::Q4_0: return {detail::dequantize_q4_0, detail::quantize_q4_0};
        case GGMLType::Q4_1: return {detail::dequantize_q4_1, detail::quantize_q4_1};
        case GGMLType::Q5_0: return {detail::dequantize_q5_0, detail::quantize_q5_0};
        case GGMLType::Q5_1: return {detail::dequantize_q5_1, detail::quantize_q5_1};
        case GGMLType::Q8_0: return {detail::dequantize_q8_0, detail::quantize_q8_0};
        case GGMLType::Q2_K: return {detail::dequantize_q2_k, nullptr};
        case GGMLType::Q3_K: return {detail::dequantize_q3_k, nullptr};
        case GGMLType::Q4_K: return {detail::dequantize_q4_k, detail::quantize_q4_k};
        case GGMLType::Q5_K: return {detail::dequantize_q5_k, detail::quantize_q5_k};
        case GGMLType::Q6_K: return {detail::dequantize_q6_k, detail::quantize_q6_k};
        case GGMLType::Q8_K: return {detail::dequantize_q8_k, nullptr};
        default: return {nullptr, nullptr};
    }
}

std::string type_label(GGMLType t) {
    const auto tr = gguf::type_traits(static_cast<uint32_t>(t));
    return tr.name ? std::string(tr.name) : "type id " + std::to_string(static_cast<uint32_t>(t));
}

// Block size of a supported type, after checking n against it.
int64_t checked_blocks(const char* op, GGMLType t, int64_t n) {
    const auto tr = gguf::type_traits(static_cast<uint32_t>(t));
    if (!tr.name || tr.block_size == 0) throw InputError(std::string(op) + " unknown " + type_label(t));
    if (n < 0) throw InputError(std::string(op) + " negative element count " + std::to_string(n));
    if (n % tr.block_size != 0)
        throw InputError(std::string(op) + " " + std::to_string(n) + " elements is not a multiple of the " + tr.name +
                         " block size " + std::to_string(tr.block_size));
    return n / tr.block_size;
}

}  // namespace

bool can_dequantize(GGMLType t) { return kernels_for(t).dequant != nullptr; }

bool can_quantize(GGMLType t) { return kernels_for(t).quant != nullptr; }

size_t row_bytes(GGMLType t, int64_t n) {
    const int64_t nb = checked_blocks("[quant]", t, n);
    return static_cast<size_t>(nb) * gguf::type_traits(static_cast<uint32_t>(t)).type_size;
}

void dequantize_row(GGMLType t, const void* src, float* dst, int64_t n) {
    const Kernels k = kernels_for(t);
    if (!k.dequant) throw InputError("[dequantize] unsupported type " + type_label(t));
    const int64_t nb = checked_blocks("[dequantize]", t, n);
    if (nb == 0) return;
    if (!src || !dst) throw InputError("[dequantize] null buffer");
    k.dequant(static_cast<const uint8_t*>(src), dst, nb);
}

size_t quantize_rows(GGMLType t, const float* src, void* dst, int64_t n_rows, int64_t n_per_row, int n_threads) {
    const Kernels k = kernels_for(t);
    if (!k.quant) throw InputError("[quantize] unsupported type " + type_label(t));
    if (n_rows < 0) throw InputError("[quantize] negative row count " + std::to_string(n_rows));
    const int64_t nb = checked_blocks("[quantize]", t, n_per_row);
    const size_t rb = row_bytes(t, n_per_row);
    if (n_rows == 0 || nb == 0) return 0;
    if (!src || !dst) throw InputError("[quantize] null buffer");
    if (n_threads < 0) throw InputError("[quantize] negative thread count " + std::to_string(n_threads));

    auto* out = static_cast<uint8_t*>(dst);
    auto do_row = [&](int64_t r) { k.quant(src + r * n_per_row, out + static_cast<size_t>(r) * rb, nb); };

    // Each row is quantized on its own, so the output does not depend on how rows are
    // shared out. Threads pull chunks of rows from a counter; small jobs stay on the caller.
    size_t hw = n_threads > 0 ? static_cast<size_t>(n_threads) : std::thread::hardware_concurrency();
    if (hw == 0) hw = 1;
    const int64_t elements = n_rows * n_per_row;
    constexpr int64_t kMinElementsPerThread = 1 << 14;
    int64_t want = std::max<int64_t>(1, elements / kMinElementsPerThread);
    want = std::min<int64_t>({want, static_cast<int64_t>(hw), n_rows});
    if (n_threads > 0) want = std::min<int64_t>({n_threads, n_rows, 256});  // explicit request: honour it
    const int64_t workers = std::max<int64_t>(1, want);

    if (workers == 1) {
        for (int64_t r = 0; r < n_rows; ++r) do_row(r);
        return rb * static_cast<size_t>(n_rows);
    }

    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(64, n_rows / (workers * 8)));
    std::atomic<int64_t> next{0};
    std::atomic<bool> failed{false};
    std::exception_ptr first_error;
    std::mutex error_mutex;
    auto worker = [&]() {
        try {
            for (;;) {
                if (failed.load(std::memory_order_relaxed)) return;
                const int64_t r0 = next.fetch_add(chunk);
                if (r0 >= n_rows) return;
                const int64_t r1 = std::min(n_rows, r0 + chunk);
                for (int64_t r = r0; r < r1; ++r) do_row(r);
            }
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!first_error) first_error = std::current_exception();
            failed.store(true);
        }
    };

    std::vector<std::thread> pool;
    pool.reserve(static_cast<size_t>(workers - 1));
    try {
        for (int64_t i = 1; i < workers; ++i) pool.emplace_back(worker);
    } catch (...) {
        // Could not start a thread: the threads we have (and this one) finish the job.
    }
    worker();
    for (auto& th : pool) th.join();
    if (first_error) std::rethrow_exception(first_error);
    return rb * static_cast<size_t>(n_rows);
}

}  // namespace unigemma::quant
