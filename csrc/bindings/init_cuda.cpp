// Host twins of the CUDA backend's shared block math (ops/cuda/block_math.cuh), compiled on
// every build (no CUDA needed): the tests check the device code's arithmetic on machines
// without a GPU. This file is compiled with -ffp-contract=off (CMakeLists.txt), as the
// header's numerics contract requires.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <string>
#include <vector>

#include "base/error.h"
#include "gguf/ggml_types.h"
#include "ops/cuda/block_math.cuh"
#include "ops/cuda/sampler_math.cuh"
#include "model/text_model.h"
#include "ops/kv_cache.h"
#include "model/offload_plan.h"

namespace py = pybind11;
using namespace unigemma;

namespace {

int twin_type(const std::string& name, const char* op) {
    const int t = static_cast<int>(gguf::type_from_name(name));
    if (!cuda::supported_type(t))
        throw InputError(std::string(op) + " type " + name + " is not read by the CUDA backend");
    return t;
}

int64_t check_cols(int t, int64_t cols, const char* op) {
    const int64_t blk = int64_t(cuda::kUnit) * cuda::units_per_block(t);
    if (cols <= 0 || cols % blk != 0)
        throw InputError(std::string(op) + " " + std::to_string(cols) + " elements is not a positive multiple of " +
                         std::to_string(blk));
    return cols;
}

}  // namespace

static py::dict plan_dict(const model::OffloadPlan& p) {
    py::dict d;
    py::list on;
    for (bool b : p.on_gpu) on.append(b);
    d["on_gpu"] = on;
    d["n_gpu"] = p.n_gpu;
    d["n_requested"] = p.n_requested;
    d["head_on_gpu"] = p.head_on_gpu;
    d["gpu_bytes"] = p.gpu_bytes;
    d["cpu_bytes"] = p.cpu_bytes;
    d["max_fit"] = p.max_fit;
    return d;
}

static py::dict input_dict(const model::OffloadInput& in) {
    py::dict d;
    d["layer_weight_bytes"] = in.layer_weight_bytes;
    d["layer_kv_bytes"] = in.layer_kv_bytes;
    d["kv_source"] = in.kv_source;
    d["head_bytes"] = in.head_bytes;
    d["embd_bytes"] = in.embd_bytes;
    d["head_tied"] = in.head_tied;
    return d;
}

void init_cuda(py::module_& m) {
    m.def(
        "plan_offload",
        [](std::vector<size_t> layer_weight_bytes, std::vector<size_t> layer_kv_bytes, std::vector<int> kv_source,
           size_t head_bytes, size_t embd_bytes, bool head_tied, size_t compute_reserve, size_t device_free,
           int n_gpu_layers) {
            model::OffloadInput in;
            in.layer_weight_bytes = std::move(layer_weight_bytes);
            in.layer_kv_bytes = std::move(layer_kv_bytes);
            in.kv_source = std::move(kv_source);
            in.head_bytes = head_bytes;
            in.embd_bytes = embd_bytes;
            in.head_tied = head_tied;
            in.compute_reserve = compute_reserve;
            in.device_free = device_free;
            in.n_gpu_layers = n_gpu_layers;
            return plan_dict(model::plan_offload(in));
        },
        py::arg("layer_weight_bytes"), py::arg("layer_kv_bytes"), py::arg("kv_source"), py::arg("head_bytes"),
        py::arg("embd_bytes"), py::arg("head_tied"), py::arg("compute_reserve"), py::arg("device_free"),
        py::arg("n_gpu_layers"),
        "Partial-offload plan (model/offload_plan.h): n_gpu_layers -1 = all + head, -2 = auto, N = the last N "
        "layers. Returns on_gpu, n_gpu, n_requested, head_on_gpu, gpu_bytes, cpu_bytes, max_fit.");
    m.def(
        "offload_sizes",
        [](const model::TextModel& t, int64_t n_ctx, int64_t n_ubatch, const std::string& k, const std::string& v) {
            model::ContextParams p;
            if (n_ctx <= 0 || n_ubatch <= 0) throw InputError("[offload] n_ctx and n_ubatch must be positive");
            p.n_ctx = n_ctx;
            p.n_ubatch = std::min(n_ubatch, n_ctx);
            p.k_type = ops::kv_type_from_name(k, "K cache");
            p.v_type = ops::kv_type_from_name(v, "V cache");
            return input_dict(model::offload_input(t, p));
        },
        py::arg("model"), py::arg("n_ctx"), py::arg("n_ubatch") = 512, py::arg("k_type") = "f16",
        py::arg("v_type") = "f16", "Per-layer weight and KV bytes of a TextModel at n_ctx: the inputs of plan_offload.");

    m.def(
        "cuda_twin_dequantize",
        [](const std::string& type_name, py::array_t<uint8_t, py::array::c_style | py::array::forcecast> raw,
           int64_t n) {
            const int t = twin_type(type_name, "[cuda_twin]");
            check_cols(t, n, "[cuda_twin]");
            const int64_t need = cuda::row_bytes_of(t, n);
            if (raw.size() < need)
                throw InputError("[cuda_twin] " + std::to_string(n) + " elements need " + std::to_string(need) +
                                 " bytes, got " + std::to_string(raw.size()));
            py::array_t<float> out(n);
            const uint8_t* src = raw.data();
            float* dst = out.mutable_data();
            cuda::dispatch_type(t, [&](auto tc) { cuda::twin_dequantize<decltype(tc)::value>(src, n, dst); });
            return out;
        },
        py::arg("type"), py::arg("raw"), py::arg("n"),
        "Host twin of the CUDA weight-tile decode: n elements of `type` from raw blocks to float32.");

    m.def(
        "cuda_twin_gemv",
        [](const std::string& type_name, py::array_t<uint8_t, py::array::c_style | py::array::forcecast> w,
           int64_t rows, int64_t cols, py::array_t<float, py::array::c_style | py::array::forcecast> x) {
            const int t = twin_type(type_name, "[cuda_twin]");
            check_cols(t, cols, "[cuda_twin]");
            if (rows < 0) throw InputError("[cuda_twin] negative row count");
            const int64_t rb = cuda::row_bytes_of(t, cols);
            if (w.size() < rb * rows)
                throw InputError("[cuda_twin] " + std::to_string(rows) + " rows need " + std::to_string(rb * rows) +
                                 " weight bytes, got " + std::to_string(w.size()));
            if (x.ndim() != 2 || x.shape(1) != cols)
                throw InputError("[cuda_twin] x must be [n_tokens][" + std::to_string(cols) + "] float32");
            const int64_t n = x.shape(0);
            py::array_t<float> y({n, rows});
            const uint8_t* wp = w.data();
            const float* xp = x.data();
            float* yp = y.mutable_data();
            {
                py::gil_scoped_release nogil;
                cuda::dispatch_type(t, [&](auto tc) {
                    for (int64_t c = 0; c < n; ++c)
                        for (int64_t r = 0; r < rows; ++r)
                            yp[c * rows + r] =
                                cuda::twin_row_dot<decltype(tc)::value>(wp + r * rb, xp + c * cols, cols);
                });
            }
            return y;
        },
        py::arg("type"), py::arg("weight"), py::arg("rows"), py::arg("cols"), py::arg("x"),
        "Host twin of the CUDA GEMV: y[t][r] = W[r] . x[t] in the kernel's exact reduction order.");

    m.def(
        "cuda_twin_sample",
        [](py::array_t<float, py::array::c_style | py::array::forcecast> logits, int32_t top_k, float top_p,
           float min_p, float temperature, double u) {
            if (logits.ndim() != 1 || logits.size() == 0) throw InputError("[cuda_twin] logits must be 1-D, non-empty");
            if (!(temperature > 0.0f)) throw InputError("[cuda_twin] temperature must be > 0 (greedy is an argmax)");
            if (!(u >= 0.0 && u < 1.0)) throw InputError("[cuda_twin] u must be in [0, 1)");
            if (!(top_p > 0.0f && top_p <= 1.0f) || !(min_p >= 0.0f && min_p <= 1.0f))
                throw InputError("[cuda_twin] top_p must be in (0, 1], min_p in [0, 1]");
            const float* l = logits.data();
            const auto V = static_cast<int32_t>(logits.size());
            for (int32_t i = 0; i < V; ++i)
                if (l[i] != l[i]) throw InputError("[cuda_twin] logits[" + std::to_string(i) + "] is NaN");
            int status = 0, n_kept = 0;
            const int32_t tok = cuda::twin_sample(l, V, top_k, top_p, min_p, temperature, u, &status, &n_kept);
            static const char* names[] = {"ok", "fallback", "no_token"};
            return py::make_tuple(tok, names[status], n_kept);
        },
        py::arg("logits"), py::arg("top_k"), py::arg("top_p"), py::arg("min_p"), py::arg("temperature"),
        py::arg("u"),
        "Host twin of the device sampler: (token, status, n_kept); status 'fallback' means the device "
        "hands the row to the CPU sampler.");

    m.def(
        "cuda_twin_encode",
        [](const std::string& type_name, py::array_t<float, py::array::c_style | py::array::forcecast> x) {
            const int t = static_cast<int>(gguf::type_from_name(type_name));
            if (t != cuda::kTF16 && t != cuda::kTQ8_0)
                throw InputError("[cuda_twin] KV rows are stored as F16 or Q8_0, not " + type_name);
            const int64_t n = x.size();
            if (t == cuda::kTQ8_0 && n % 32 != 0) throw InputError("[cuda_twin] Q8_0 needs a multiple of 32 values");
            py::array_t<uint8_t> out(t == cuda::kTF16 ? 2 * n : n / 32 * 34);
            const float* xp = x.data();
            uint8_t* o = out.mutable_data();
            if (t == cuda::kTF16) {
                for (int64_t i = 0; i < n; ++i) {
                    const uint16_t h = cuda::ug_f32_to_f16(xp[i]);
                    o[2 * i] = static_cast<uint8_t>(h & 0xff);
                    o[2 * i + 1] = static_cast<uint8_t>(h >> 8);
                }
            } else {
                for (int64_t b = 0; b < n / 32; ++b) cuda::encode_q8_0_block(xp + 32 * b, o + 34 * b);
            }
            return out;
        },
        py::arg("type"), py::arg("x"), "Host twin of the device KV-cache row encoder (F16 or Q8_0).");
}
