// unigemma._core WebGPU surface: opening the device, and BackendOps, which runs one seam op
// (ops/backend.h) on a chosen backend with numpy inputs and outputs, so that tests compare
// every backend op by op with the CPU (and a float64 reference) on the same inputs.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <vector>

#include "base/error.h"
#include "gguf/ggml_types.h"
#include "ops/backend.h"
#include "model/backend_choice.h"
#include "ops/kv_cache.h"
#include "ops/webgpu/factory.h"

namespace py = pybind11;
using namespace unigemma;

namespace {

using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;
using I32 = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;
using I64 = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using U8 = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

// One op's worth of backend state: a fresh backend (and fresh device weight copies: a numpy
// array's address may be reused by the next call's array).
struct Run {
    std::shared_ptr<void> weights;
    std::unique_ptr<ops::Backend> b;
    std::vector<std::unique_ptr<ops::Buffer>> bufs;
    explicit Run(const std::string& name) : b(model::make_backend(name, 0, weights, "[backend_ops]")) {}
    ops::Tensor tensor(int64_t rows, int64_t cols) {
        bufs.push_back(b->alloc(static_cast<size_t>(std::max<int64_t>(rows * cols, 1))));
        return ops::Tensor{bufs.back()->data(), rows, cols};
    }
    ops::Tensor in(const F32& a) {
        if (a.ndim() != 2) throw InputError("[backend_ops] inputs are 2-D float32 arrays");
        ops::Tensor t = tensor(a.shape(0), a.shape(1));
        b->write(t, a.data());
        return t;
    }
    py::array_t<float> out(ops::Tensor t) {
        py::array_t<float> r({t.rows, t.cols});
        b->read(t, r.mutable_data());
        return r;
    }
};

ops::WeightView view(const U8& w, uint32_t type, int64_t cols) {
    if (w.ndim() != 2) throw InputError("[backend_ops] a weight is a 2-D uint8 array [rows][row_bytes]");
    const auto tr = gguf::type_traits(type);
    if (!tr.name) throw InputError("[backend_ops] unknown type id " + std::to_string(type));
    ops::WeightView v;
    v.data = w.data();
    v.type = static_cast<gguf::GGMLType>(type);
    v.rows = w.shape(0);
    v.cols = cols;
    v.row_bytes = static_cast<size_t>(w.shape(1));
    if (cols % tr.block_size != 0 || v.row_bytes != cols / tr.block_size * tr.type_size)
        throw InputError("[backend_ops] rows of " + std::to_string(v.row_bytes) + " bytes are not " +
                         std::to_string(cols) + " " + tr.name + " elements");
    return v;
}

const float* opt(const py::object& o, std::vector<float>& keep) {
    if (o.is_none()) return nullptr;
    F32 a = o.cast<F32>();
    keep.assign(a.data(), a.data() + a.size());
    return keep.data();
}

}  // namespace

void init_webgpu(py::module_& m) {
    m.def("webgpu_built", &webgpu::built, "Whether this build has the WebGPU backend.");
    m.def("webgpu_open", &webgpu::open_device, py::arg("lib_path"),
          "Opens the process's WebGPU device on the wgpu-native library at lib_path (once) and returns the "
          "adapter's description and limits; DeviceError when there is no adapter or device.");
    m.def("webgpu_is_open", &webgpu::device_open);
    m.def("webgpu_device_bytes", &webgpu::device_bytes, "Bytes of unigemma's buffers alive on the device.");

    py::class_<Run>(m, "BackendOps",
                    "Runs single seam ops (ops/backend.h) on 'cpu' or 'webgpu' with numpy inputs: the op-by-op "
                    "comparison of backends. Each call uses a fresh backend.")
        .def_static(
            "matmul",
            [](const std::string& be, const U8& w, uint32_t type, int64_t cols, const F32& x, py::object ids,
               int act_levels) {
                Run r(be);
                const ops::WeightView v = view(w, type, cols);
                const ops::Tensor xt = r.in(x);
                std::vector<int32_t> id;
                if (!ids.is_none()) {
                    I32 a = ids.cast<I32>();
                    id.assign(a.data(), a.data() + a.size());
                }
                const ops::Tensor y = r.tensor(xt.rows, id.empty() ? v.rows : int64_t(id.size()));
                r.b->begin_forward();
                if (id.empty())
                    r.b->matmul(v, xt, y, act_levels);
                else
                    r.b->matmul_rows(v, id.data(), xt, y, act_levels);
                auto out = r.out(y);
                r.b->end_forward();
                return out;
            },
            py::arg("backend"), py::arg("w"), py::arg("type"), py::arg("cols"), py::arg("x"), py::arg("ids") = py::none(),
            py::arg("act_levels") = 1)
        .def_static(
            "embed",
            [](const std::string& be, const U8& w, uint32_t type, int64_t cols, const I32& tokens, float scale,
               py::object kinds, py::object embd) {
                Run r(be);
                const ops::WeightView v = view(w, type, cols);
                const int64_t n = tokens.size();
                for (int64_t i = 0; i < n; ++i)
                    if (tokens.data()[i] < 0 || tokens.data()[i] >= v.rows) throw InputError("[backend_ops] token id out of range");
                std::vector<int8_t> kd;
                if (!kinds.is_none()) {
                    auto a = kinds.cast<py::array_t<int8_t, py::array::c_style | py::array::forcecast>>();
                    kd.assign(a.data(), a.data() + a.size());
                }
                std::vector<float> ed;
                const float* e = opt(embd, ed);
                const ops::Tensor x = r.tensor(n, cols);
                r.b->begin_forward();
                r.b->embed(v, tokens.data(), kd.empty() ? nullptr : kd.data(), e, scale, x);
                auto out = r.out(x);
                r.b->end_forward();
                return out;
            },
            py::arg("backend"), py::arg("w"), py::arg("type"), py::arg("cols"), py::arg("tokens"), py::arg("scale") = 1.0f,
            py::arg("kinds") = py::none(), py::arg("embd") = py::none())
        .def_static(
            "rowwise",
            [](const std::string& be, const std::string& op, const F32& x, py::object y, py::object w, py::object b,
               float eps, float s, int head_dim, py::object pos, py::object inv_freq, py::object src, int repeat) {
                if (repeat < 1) throw InputError("[backend_ops] repeat must be >= 1");
                Run r(be);
                const ops::Tensor xt = r.in(x);
                ops::Tensor yt{};
                if (!y.is_none()) yt = r.in(y.cast<F32>());
                std::vector<float> wk, bk, fk;
                const float* wp = opt(w, wk);
                const float* bp = opt(b, bk);
                const float* fp = opt(inv_freq, fk);
                std::vector<int64_t> pk;
                if (!pos.is_none()) {
                    I64 a = pos.cast<I64>();
                    pk.assign(a.data(), a.data() + a.size());
                }
                std::vector<int32_t> sk;
                if (!src.is_none()) {
                    I32 a = src.cast<I32>();
                    sk.assign(a.data(), a.data() + a.size());
                }
                ops::Tensor out = xt;
                r.b->begin_forward();
                // `repeat` times in one forward (one submission on a device backend): an in-place
                // op accumulates, as a forward's many dispatches fill the backend's arenas
                for (int rep = 0; rep < repeat; ++rep) {
                if (op == "rms_norm") {
                    out = r.tensor(xt.rows, xt.cols);
                    r.b->rms_norm(out, xt, wp, eps);
                } else if (op == "head_norm_rope") {
                    r.b->head_norm_rope(xt, head_dim, wp, eps, pk.empty() ? nullptr : pk.data(), fp);
                } else if (op == "add") {
                    r.b->add(xt, yt);
                } else if (op == "scale") {
                    r.b->scale(xt, s);
                } else if (op == "copy") {
                    r.b->copy(xt, yt);
                } else if (op == "gelu_tanh_mul") {
                    r.b->gelu_tanh_mul(xt, yt);
                } else if (op == "softcap") {
                    r.b->softcap(xt, s);
                } else if (op == "add_bias") {
                    r.b->add_bias(xt, wp);
                } else if (op == "layer_norm") {
                    out = r.tensor(xt.rows, xt.cols);
                    r.b->layer_norm(out, xt, wp, bp, eps);
                } else if (op == "layer_norm_f64") {
                    out = r.tensor(xt.rows, xt.cols);
                    r.b->layer_norm_f64(out, xt, sk.empty() ? nullptr : sk.data(), wp, bp, eps);
                } else if (op == "add_table_rows") {
                    // w: the table (flattened [*][cols]); pos: ra then rb (2 x rows)
                    r.b->add_table_rows(xt, wp, pk.data(), pk.data() + xt.rows);
                } else {
                    throw InputError("[backend_ops] unknown op '" + op + "'");
                }
                }
                auto res = r.out(out);
                r.b->end_forward();
                return res;
            },
            py::arg("backend"), py::arg("op"), py::arg("x"), py::arg("y") = py::none(), py::arg("w") = py::none(),
            py::arg("b") = py::none(), py::arg("eps") = 1e-6f, py::arg("s") = 1.0f, py::arg("head_dim") = 0,
            py::arg("pos") = py::none(), py::arg("inv_freq") = py::none(), py::arg("src") = py::none(),
            py::arg("repeat") = 1)
        .def_static(
            "attention",
            [](const std::string& be, const F32& k, const F32& v, const I64& kpos, const F32& q, int n_kv_head,
               int head_dim, int n_head, int64_t pos0, float scale, int64_t window, bool sliding, int64_t n_ctx,
               int64_t n_ubatch, const std::string& kt, const std::string& vt, py::object key_end, int64_t lo,
               int64_t hi) {
                Run r(be);
                ops::KVLayer kv(ops::KVLayerSpec{sliding, n_kv_head, head_dim}, window, n_ctx, n_ubatch,
                                ops::kv_type_from_name(kt, "K cache"), ops::kv_type_from_name(vt, "V cache"));
                std::vector<int64_t> kp(kpos.data(), kpos.data() + kpos.size());
                int64_t end = 0;
                for (int64_t p : kp) end = std::max(end, p + 1);
                kv.reserve(std::max(end, pos0 + q.shape(0)));
                const ops::Tensor kt_ = r.in(k), vt_ = r.in(v), qt = r.in(q);
                const ops::Tensor out = r.tensor(qt.rows, qt.cols);
                std::vector<int64_t> ke;
                if (!key_end.is_none()) {
                    I64 a = key_end.cast<I64>();
                    ke.assign(a.data(), a.data() + a.size());
                }
                r.b->begin_forward();
                r.b->kv_store(kv, kt_, vt_, kp.data());
                if (lo >= 0) {
                    r.b->attention_range(kv, qt, out, n_head, scale, lo, hi);
                } else {
                    ops::AttentionCall c;
                    c.pos0 = pos0;
                    c.n_head = n_head;
                    c.scale = scale;
                    c.window = window;
                    c.key_end = ke.empty() ? nullptr : ke.data();
                    r.b->attention(kv, qt, out, c);
                }
                auto res = r.out(out);
                r.b->end_forward();
                return res;
            },
            py::arg("backend"), py::arg("k"), py::arg("v"), py::arg("kpos"), py::arg("q"), py::arg("n_kv_head"),
            py::arg("head_dim"), py::arg("n_head"), py::arg("pos0"), py::arg("scale") = 1.0f, py::arg("window") = 0,
            py::arg("sliding") = false, py::arg("n_ctx") = 4096, py::arg("n_ubatch") = 512, py::arg("k_type") = "f32",
            py::arg("v_type") = "f32", py::arg("key_end") = py::none(), py::arg("lo") = -1, py::arg("hi") = -1)
        .def_static(
            "alloc",
            [](const std::string& be, int64_t n_floats) {
                Run r(be);
                auto buf = r.b->alloc(static_cast<size_t>(n_floats));
                return buf->n_floats();
            },
            py::arg("backend"), py::arg("n_floats"), "Allocates (and frees) a buffer: the refusal path.");
}
