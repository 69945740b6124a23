// unigemma._core.kernels: direct access to every ISA path's kernel table, for tests.
// Every entry point validates sizes before calling a kernel (InputError otherwise), so no
// kernel ever reads or writes outside the arrays it is given.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "base/error.h"
#include "gguf/ggml_types.h"
#include "ops/cpu/cpu_features.h"
#include "ops/cpu/kernels.h"

namespace py = pybind11;
using namespace unigemma;

namespace {

using FArr = py::array_t<float, py::array::c_style | py::array::forcecast>;
using BArr = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

const cpu::KernelTable& table(const std::string& isa) { return cpu::kernels_for(isa); }

struct TypeInfo {
    gguf::GGMLType type;
    int id;
    std::string name;
    int64_t block;
    int64_t block_bytes;
};

TypeInfo type_info(const std::string& name) {
    const auto t = gguf::type_from_name(name);
    const int id = static_cast<int>(t);
    const auto tr = gguf::type_traits(static_cast<uint32_t>(id));
    if (id < 0 || id >= cpu::kMaxTypeId || !tr.name || tr.block_size == 0)
        throw InputError("[kernels] type " + name + " has no kernels");
    return {t, id, tr.name, static_cast<int64_t>(tr.block_size), static_cast<int64_t>(tr.type_size)};
}

// Bytes of one row of n elements of a type, after checking n against its block size.
int64_t row_bytes(const TypeInfo& t, int64_t n, const char* what) {
    if (n < 0) throw InputError(std::string("[kernels] ") + what + ": negative n");
    if (n % t.block != 0)
        throw InputError(std::string("[kernels] ") + what + ": n = " + std::to_string(n) +
                         " is not a multiple of the " + t.name + " block size " + std::to_string(t.block));
    return n / t.block * t.block_bytes;
}

const float* vec1(const FArr& a, const char* what, int64_t n_expect = -1) {
    if (a.ndim() != 1) throw InputError(std::string("[kernels] ") + what + " must be 1-D");
    if (a.size() < 1) throw InputError(std::string("[kernels] ") + what + " must not be empty");
    if (n_expect >= 0 && a.size() != n_expect)
        throw InputError(std::string("[kernels] ") + what + " has " + std::to_string(a.size()) +
                         " elements, expected " + std::to_string(n_expect));
    return a.data();
}

FArr out_like(int64_t n) { return FArr(static_cast<py::ssize_t>(n)); }

}  // namespace

void init_kernels(py::module_& m) {
    auto k = m.def_submodule("kernels", "Per-ISA CPU kernel tables (for tests).");

    k.def("available_isas", []() {
        auto v = cpu::available_isas();
        auto extra = cpu::kernel_variants();
        v.insert(v.end(), extra.begin(), extra.end());
        return v;
    }, "ISA paths this CPU can run, plus test variants such as avx512-novnni.");

    k.def("table_isa", [](const std::string& isa) { return std::string(table(isa).isa); },
          "The isa name recorded in the (merged) table.");

    k.def("selected_isa", []() { return std::string(cpu::kernels().isa); }, "ISA of the table in use.");

    k.def("activation_type", [](const std::string& weight) {
        const auto w = type_info(weight);
        const auto a = cpu::activation_type(w.type);
        return std::string(gguf::type_traits(static_cast<uint32_t>(a)).name);
    });

    k.def("has_vec_dot", [](const std::string& isa, const std::string& type) {
        return table(isa).vec_dot[type_info(type).id] != nullptr;
    });

    k.def(
        "quantize_act",
        [](const std::string& isa, const std::string& act, const FArr& x) {
            const auto& t = table(isa);
            const auto a = type_info(act);
            auto fn = t.quantize_act[a.id];
            if (!fn) throw InputError("[kernels] no activation quantizer for " + a.name);
            if (x.ndim() != 1) throw InputError("[kernels] quantize_act: x must be 1-D");
            const int64_t n = x.size();
            const int64_t rb = row_bytes(a, n, "quantize_act");
            BArr out(static_cast<py::ssize_t>(rb));
            if (n > 0) fn(x.data(), out.mutable_data(), n);
            return out;
        },
        py::arg("isa"), py::arg("act_type"), py::arg("x"));

    k.def(
        "vec_dot",
        [](const std::string& isa, const std::string& type, const BArr& w, const BArr& x, int64_t n) {
            const auto& t = table(isa);
            const auto wt = type_info(type);
            auto fn = t.vec_dot[wt.id];
            if (!fn) throw InputError("[kernels] no vec_dot for " + wt.name);
            const auto at = type_info(gguf::type_traits(static_cast<uint32_t>(cpu::activation_type(wt.type))).name);
            const int64_t wb = row_bytes(wt, n, "vec_dot weights");
            const int64_t xb = row_bytes(at, n, "vec_dot activations");
            if (w.size() < wb)
                throw InputError("[kernels] vec_dot: weights need " + std::to_string(wb) + " bytes, got " +
                                 std::to_string(w.size()));
            if (x.size() < xb)
                throw InputError("[kernels] vec_dot: activations need " + std::to_string(xb) + " bytes, got " +
                                 std::to_string(x.size()));
            float out = 0.0f;
            fn(n, &out, w.data(), x.data());
            return out;
        },
        py::arg("isa"), py::arg("type"), py::arg("w"), py::arg("x"), py::arg("n"));

    k.def(
        "axpy_row",
        [](const std::string& isa, const std::string& type, float a, const BArr& row, py::array_t<float> acc) {
            const auto& t = table(isa);
            const auto rt = type_info(type);
            auto fn = t.axpy_row[rt.id];
            if (!fn) throw InputError("[kernels] no axpy_row for " + rt.name);
            if (acc.ndim() != 1 || !(acc.flags() & py::array::c_style))
                throw InputError("[kernels] axpy_row: acc must be a contiguous 1-D float32 array");
            const int64_t n = acc.shape(0);
            const int64_t rb = row_bytes(rt, n, "axpy_row");
            if (row.size() < rb)
                throw InputError("[kernels] axpy_row: row needs " + std::to_string(rb) + " bytes, got " +
                                 std::to_string(row.size()));
            fn(n, a, row.data(), acc.mutable_data());
        },
        py::arg("isa"), py::arg("type"), py::arg("a"), py::arg("row"), py::arg("acc"),
        "acc += a * row (row: raw blocks of a KV-cache type), in place.");

    k.def(
        "tile_dot",
        [](const std::string& isa, const std::string& type, int64_t n, int nr, int nc, const BArr& w, const BArr& x,
           int64_t w_stride, int64_t x_stride) {
            const auto& t = table(isa);
            const auto wt = type_info(type);
            auto fn = t.tile_dot[wt.id];
            if (!fn) throw InputError("[kernels] no tile_dot for " + wt.name);
            if (nr < 1 || nr > cpu::kTileRows || nc < 1 || nc > cpu::kTileCols)
                throw InputError("[kernels] tile_dot: need 1 <= nr <= " + std::to_string(cpu::kTileRows) +
                                 " and 1 <= nc <= " + std::to_string(cpu::kTileCols));
            const auto at = type_info(gguf::type_traits(static_cast<uint32_t>(cpu::activation_type(wt.type))).name);
            const int64_t wb = row_bytes(wt, n, "tile_dot weights");
            const int64_t xb = row_bytes(at, n, "tile_dot activations");
            if (w_stride == 0) w_stride = wb;
            if (x_stride == 0) x_stride = xb;
            if (w_stride < wb || x_stride < xb) throw InputError("[kernels] tile_dot: stride shorter than a row");
            if (w.size() < (nr - 1) * w_stride + wb)
                throw InputError("[kernels] tile_dot: weight buffer too small for " + std::to_string(nr) + " rows");
            if (x.size() < (nc - 1) * x_stride + xb)
                throw InputError("[kernels] tile_dot: activation buffer too small for " + std::to_string(nc) +
                                 " rows");
            py::array_t<float> out({static_cast<py::ssize_t>(nc), static_cast<py::ssize_t>(nr)});
            fn(n, nr, nc, out.mutable_data(), nr, w.data(), static_cast<size_t>(w_stride), x.data(),
               static_cast<size_t>(x_stride));
            return out;
        },
        py::arg("isa"), py::arg("type"), py::arg("n"), py::arg("nr"), py::arg("nc"), py::arg("w"), py::arg("x"),
        py::arg("w_stride") = 0, py::arg("x_stride") = 0,
        "out[c, r] = dot(weight row r, activation row c); strides in bytes (0 = packed rows).");

    k.def(
        "rms_norm",
        [](const std::string& isa, const FArr& x, const py::object& w, float eps) {
            const auto& t = table(isa);
            const float* xp = vec1(x, "x");
            const int64_t n = x.size();
            FArr wa;
            const float* wp = nullptr;
            if (!w.is_none()) {
                wa = w.cast<FArr>();
                wp = vec1(wa, "w", n);
            }
            auto y = out_like(n);
            t.rms_norm(y.mutable_data(), xp, wp, n, eps);
            return y;
        },
        py::arg("isa"), py::arg("x"), py::arg("w") = py::none(), py::arg("eps") = 1e-6f);

    k.def(
        "layer_norm",
        [](const std::string& isa, const FArr& x, const py::object& w, const py::object& b, float eps) {
            const auto& t = table(isa);
            const float* xp = vec1(x, "x");
            const int64_t n = x.size();
            FArr wa, ba;
            const float* wp = nullptr;
            const float* bp = nullptr;
            if (!w.is_none()) {
                wa = w.cast<FArr>();
                wp = vec1(wa, "w", n);
            }
            if (!b.is_none()) {
                ba = b.cast<FArr>();
                bp = vec1(ba, "b", n);
            }
            auto y = out_like(n);
            t.layer_norm(y.mutable_data(), xp, wp, bp, n, eps);
            return y;
        },
        py::arg("isa"), py::arg("x"), py::arg("w") = py::none(), py::arg("b") = py::none(),
        py::arg("eps") = 1e-6f);

    k.def(
        "gelu_tanh",
        [](const std::string& isa, const FArr& x) {
            const auto& t = table(isa);
            const float* xp = vec1(x, "x");
            auto y = out_like(x.size());
            t.gelu_tanh(y.mutable_data(), xp, x.size());
            return y;
        },
        py::arg("isa"), py::arg("x"));

    k.def(
        "gelu_tanh_mul",
        [](const std::string& isa, const FArr& g, const FArr& u) {
            const auto& t = table(isa);
            const float* gp = vec1(g, "gate");
            const float* up = vec1(u, "up", g.size());
            auto y = out_like(g.size());
            t.gelu_tanh_mul(y.mutable_data(), gp, up, g.size());
            return y;
        },
        py::arg("isa"), py::arg("gate"), py::arg("up"));

    k.def(
        "softmax",
        [](const std::string& isa, const FArr& x) {
            const auto& t = table(isa);
            const float* xp = vec1(x, "x");
            auto y = out_like(x.size());
            t.softmax(y.mutable_data(), xp, x.size());
            return y;
        },
        py::arg("isa"), py::arg("x"));

    k.def(
        "softcap",
        [](const std::string& isa, const FArr& x, float cap) {
            const auto& t = table(isa);
            const float* xp = vec1(x, "x");
            if (!(cap > 0.0f)) throw InputError("[kernels] softcap: cap must be > 0");
            auto y = out_like(x.size());
            t.softcap(y.mutable_data(), xp, x.size(), cap);
            return y;
        },
        py::arg("isa"), py::arg("x"), py::arg("cap"));

    k.def(
        "add",
        [](const std::string& isa, const FArr& a, const FArr& b) {
            const auto& t = table(isa);
            const float* ap = vec1(a, "a");
            const float* bp = vec1(b, "b", a.size());
            auto y = out_like(a.size());
            t.add(y.mutable_data(), ap, bp, a.size());
            return y;
        },
        py::arg("isa"), py::arg("a"), py::arg("b"));

    k.def(
        "mul",
        [](const std::string& isa, const FArr& a, const FArr& b) {
            const auto& t = table(isa);
            const float* ap = vec1(a, "a");
            const float* bp = vec1(b, "b", a.size());
            auto y = out_like(a.size());
            t.mul(y.mutable_data(), ap, bp, a.size());
            return y;
        },
        py::arg("isa"), py::arg("a"), py::arg("b"));

    k.def(
        "scale",
        [](const std::string& isa, const FArr& x, float s) {
            const auto& t = table(isa);
            const float* xp = vec1(x, "x");
            auto y = out_like(x.size());
            t.scale(y.mutable_data(), xp, s, x.size());
            return y;
        },
        py::arg("isa"), py::arg("x"), py::arg("s"));

    k.def(
        "rope_neox",
        [](const std::string& isa, const FArr& x, float pos, const FArr& inv_freq) {
            const auto& t = table(isa);
            const float* xp = vec1(x, "x");
            const int64_t d = x.size();
            if (d % 2 != 0) throw InputError("[kernels] rope_neox: head dim must be even");
            const float* fp = vec1(inv_freq, "inv_freq", d / 2);
            auto y = out_like(d);
            float* yp = y.mutable_data();
            for (int64_t i = 0; i < d; ++i) yp[i] = xp[i];
            t.rope_neox(yp, d, pos, fp);
            return y;
        },
        py::arg("isa"), py::arg("x"), py::arg("pos"), py::arg("inv_freq"));
}
