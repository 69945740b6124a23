// unigemma._core.attention: a standalone KV-cache layer and the CPU attention over it, for
// tests and benchmarks (tools/bench_attention.py). Every entry point checks shapes before
// any kernel runs (InputError otherwise); compute runs with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "ops/cpu/kernels.h"
#include "quant/quant.h"
#include "ops/cpu/attention.h"
#include "ops/kv_cache.h"

namespace py = pybind11;
using namespace unigemma;

namespace {

using FArr = py::array_t<float, py::array::c_style | py::array::forcecast>;
using IArr = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using BArr = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

[[noreturn]] void fail(const std::string& msg) { throw InputError("[attention] " + msg); }

const cpu::KernelTable& table(const std::string& isa) { return isa.empty() ? cpu::kernels() : cpu::kernels_for(isa); }

void check_shape(const FArr& a, const char* what, std::vector<py::ssize_t> want) {
    bool ok = a.ndim() == static_cast<py::ssize_t>(want.size());
    for (size_t i = 0; ok && i < want.size(); ++i) ok = want[i] < 0 || a.shape(static_cast<py::ssize_t>(i)) == want[i];
    if (ok) return;
    std::string s = std::string(what) + " has shape (";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    s += "), expected (";
    for (size_t i = 0; i < want.size(); ++i) s += (i ? ", " : "") + (want[i] < 0 ? "*" : std::to_string(want[i]));
    fail(s + ")");
}

FArr copy_of(const FArr& a) {
    FArr c(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
    std::copy(a.data(), a.data() + a.size(), c.mutable_data());
    return c;
}

// One KV layer (ops::KVLayer) plus a lock: calls from several Python threads serialize.
struct PyKV {
    std::unique_ptr<ops::KVLayer> kv;
    int64_t window = 0;
    std::mutex mu;
};

}  // namespace

void init_attention(py::module_& m) {
    auto a = m.def_submodule("attention", "CPU attention over one KV-cache layer (for tests and benchmarks).");

    py::class_<PyKV>(a, "KVCache")
        .def(py::init([](int n_kv_head, int head_dim, const std::string& k_type, const std::string& v_type,
                         bool sliding, int64_t window, int64_t n_ctx, int64_t n_ubatch) {
                 if (n_kv_head <= 0 || head_dim <= 0) fail("n_kv_head and head_dim must be positive");
                 if (n_ctx <= 0 || n_ubatch <= 0) fail("n_ctx and n_ubatch must be positive");
                 if (sliding && window <= 0) fail("a sliding layer needs window > 0");
                 auto p = std::make_unique<PyKV>();
                 ops::KVLayerSpec s{sliding, n_kv_head, head_dim};
                 p->kv = std::make_unique<ops::KVLayer>(
                     s, window, n_ctx, n_ubatch, ops::kv_type_from_name(k_type, "K cache"),
                     ops::kv_type_from_name(v_type, "V cache"));
                 p->window = sliding ? window : 0;
                 return p;
             }),
             py::arg("n_kv_head"), py::arg("head_dim"), py::arg("k_type") = "f16", py::arg("v_type") = "f16",
             py::arg("sliding") = false, py::arg("window") = 0, py::arg("n_ctx") = 4096, py::arg("n_ubatch") = 512)
        .def_property_readonly("bytes_allocated", [](PyKV& p) { return p.kv->bytes_allocated(); })
        .def_property_readonly("window", [](PyKV& p) { return p.window; })
        .def(
            "store",
            [](PyKV& p, int64_t pos0, const FArr& k, const FArr& v) {
                const int nkv = p.kv->n_kv_head(), hd = p.kv->head_dim();
                check_shape(k, "k", {-1, nkv, hd});
                check_shape(v, "v", {k.shape(0), nkv, hd});
                if (pos0 < 0) fail("negative pos0");
                const int64_t n = k.shape(0);
                py::gil_scoped_release nogil;
                std::lock_guard<std::mutex> lock(p.mu);
                p.kv->reserve(pos0 + n);
                for (int64_t t = 0; t < n; ++t)
                    for (int h = 0; h < nkv; ++h)
                        p.kv->store(pos0 + t, h, k.data() + (t * nkv + h) * hd, v.data() + (t * nkv + h) * hd);
            },
            py::arg("pos0"), py::arg("k"), py::arg("v"), "Stores positions pos0.. from k, v [n, n_kv_head, head_dim].")
        .def("holds", [](PyKV& p, int64_t pos) { return p.kv->holds(pos); })
        .def("forget_from", [](PyKV& p, int64_t pos) { p.kv->forget_from(pos); })
        .def(
            "attention",
            [](PyKV& p, const FArr& q, int64_t pos0, std::optional<IArr> key_end, float scale, int n_threads,
               const std::string& isa) {
                const int hd = p.kv->head_dim();
                check_shape(q, "q", {-1, -1, hd});
                const int64_t n = q.shape(0);
                const int n_head = static_cast<int>(q.shape(1));
                if (pos0 < 0) fail("negative pos0");
                if (n_threads < 0) fail("negative n_threads");
                const int64_t* ke = nullptr;
                if (key_end) {
                    if (key_end->ndim() != 1 || key_end->shape(0) != n) fail("key_end must be 1-D with one entry per query");
                    ke = key_end->data();
                    for (int64_t t = 0; t < n; ++t)
                        if (ke[t] < pos0 + t) fail("key_end[" + std::to_string(t) + "] is before the query's position");
                }
                const auto& K = table(isa);
                FArr out({n, static_cast<int64_t>(n_head), static_cast<int64_t>(hd)});
                cpu::AttentionBatch b;
                b.q = q.data();
                b.out = out.mutable_data();
                b.n_tokens = n;
                b.pos0 = pos0;
                b.n_head = n_head;
                b.scale = scale;
                b.window = p.window;
                b.key_end = ke;
                {
                    py::gil_scoped_release nogil;
                    std::lock_guard<std::mutex> lock(p.mu);
                    if (n > 0) cpu::attention(K, *p.kv, b, n_threads);
                }
                return out;
            },
            py::arg("q"), py::arg("pos0"), py::arg("key_end") = py::none(), py::arg("scale") = 1.0f,
            py::arg("n_threads") = 1, py::arg("isa") = "",
            "Queries q [n, n_head, head_dim] at positions pos0.. over the cached keys (causal, the "
            "layer's window when sliding, key_end[t] extends query t's last key); returns [n, n_head, head_dim].")
        .def(
            "attention_range",
            [](PyKV& p, const FArr& q, int64_t lo, int64_t hi, float scale, int n_threads, const std::string& isa) {
                const int hd = p.kv->head_dim();
                check_shape(q, "q", {-1, hd});
                if (n_threads < 0) fail("negative n_threads");
                const int n_head = static_cast<int>(q.shape(0));
                const auto& K = table(isa);
                FArr out({static_cast<int64_t>(n_head), static_cast<int64_t>(hd)});
                {
                    py::gil_scoped_release nogil;
                    std::lock_guard<std::mutex> lock(p.mu);
                    cpu::attention_range(K, *p.kv, q.data(), out.mutable_data(), n_head, scale, lo, hi, n_threads);
                }
                return out;
            },
            py::arg("q"), py::arg("lo"), py::arg("hi"), py::arg("scale") = 1.0f, py::arg("n_threads") = 1,
            py::arg("isa") = "", "One query q [n_head, head_dim] over the keys at positions [lo, hi].");

    // ---- the kernels of one ISA path (kernels.h attn_*), for the ISA-vs-scalar tests
    a.def(
        "row_f32",
        [](const std::string& isa, const std::string& type, const BArr& raw, int64_t n) {
            const auto t = ops::kv_type_from_name(type, "row");
            auto fn = table(isa).kv_row_f32[static_cast<int>(t)];
            if (n <= 0) fail("row_f32: n must be positive");
            ops::check_kv_type(t, static_cast<int>(n), "row");
            if (raw.ndim() != 1 || static_cast<size_t>(raw.size()) != quant::row_bytes(t, n))
                fail("row_f32: raw must be 1-D with " + std::to_string(quant::row_bytes(t, n)) + " bytes");
            FArr out(n);
            fn(n, raw.data(), out.mutable_data());
            return out;
        },
        py::arg("isa"), py::arg("type"), py::arg("raw"), py::arg("n"));
    a.def(
        "scores",
        [](const std::string& isa, const FArr& q, const FArr& k) {
            check_shape(q, "q", {-1, -1});
            check_shape(k, "k", {-1, q.shape(1)});
            const int64_t nr = q.shape(0), nk = k.shape(0), d = q.shape(1);
            if (nr < 1 || nk < 1 || d < 1) fail("scores: empty q or k");
            FArr s({nr, nk});
            table(isa).attn_scores(d, static_cast<int>(nr), static_cast<int>(nk), q.data(), d, k.data(), d,
                                   s.mutable_data(), nk);
            return s;
        },
        py::arg("isa"), py::arg("q"), py::arg("k"), "s[r, j] = q[r] . k[j].");
    a.def(
        "softmax_step",
        [](const std::string& isa, const FArr& s, const IArr& a, const IArr& b, float scale, const FArr& m,
           const FArr& l) {
            check_shape(s, "s", {-1, -1});
            const int64_t nr = s.shape(0), bk = s.shape(1);
            check_shape(m, "m", {nr});
            check_shape(l, "l", {nr});
            if (a.ndim() != 1 || b.ndim() != 1 || a.shape(0) != nr || b.shape(0) != nr) fail("softmax_step: a, b need nr entries");
            std::vector<int> ai(nr), bi(nr);
            for (int64_t r = 0; r < nr; ++r) {
                ai[r] = static_cast<int>(a.data()[r]), bi[r] = static_cast<int>(b.data()[r]);
                if (ai[r] <= bi[r] && (ai[r] < 0 || bi[r] >= bk)) fail("softmax_step: [a, b] outside the block");
            }
            FArr p = copy_of(s), mo = copy_of(m), lo = copy_of(l), al(nr);
            std::fill(al.mutable_data(), al.mutable_data() + nr, std::nanf(""));
            table(isa).attn_softmax(static_cast<int>(nr), p.mutable_data(), bk, ai.data(), bi.data(), scale,
                                    mo.mutable_data(), lo.mutable_data(), al.mutable_data());
            return py::make_tuple(p, mo, lo, al);
        },
        py::arg("isa"), py::arg("s"), py::arg("a"), py::arg("b"), py::arg("scale"), py::arg("m"), py::arg("l"),
        "One online-softmax step; returns (p, m, l, alpha) (s, m, l are not modified).");
    a.def(
        "pv",
        [](const std::string& isa, const IArr& a, const IArr& b, const FArr& p, const FArr& v, const FArr& o) {
            check_shape(p, "p", {-1, -1});
            const int64_t nr = p.shape(0), bk = p.shape(1);
            check_shape(v, "v", {bk, -1});
            const int64_t d = v.shape(1);
            check_shape(o, "o", {nr, d});
            if (d < 1) fail("pv: empty rows");
            if (a.ndim() != 1 || b.ndim() != 1 || a.shape(0) != nr || b.shape(0) != nr) fail("pv: a, b need nr entries");
            std::vector<int> ai(nr), bi(nr);
            for (int64_t r = 0; r < nr; ++r) {
                ai[r] = static_cast<int>(a.data()[r]), bi[r] = static_cast<int>(b.data()[r]);
                if (ai[r] <= bi[r] && (ai[r] < 0 || bi[r] >= bk)) fail("pv: [a, b] outside the block");
            }
            FArr out = copy_of(o);
            table(isa).attn_pv(d, static_cast<int>(nr), ai.data(), bi.data(), p.data(), bk, v.data(), d,
                               out.mutable_data(), d);
            return out;
        },
        py::arg("isa"), py::arg("a"), py::arg("b"), py::arg("p"), py::arg("v"), py::arg("o"),
        "o[r] + sum_{j in [a[r], b[r]]} p[r, j] v[j] (o is not modified).");
    a.def("key_block", &cpu::key_block, py::arg("head_dim"));
}
