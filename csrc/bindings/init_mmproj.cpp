// Python bindings of the multimodal projector (vision + audio embedders of a clip GGUF).
// Inputs are converted with numpy.asarray (lists, torch CPU tensors work); dtypes are checked
// by kind (floating pixels / samples, integer positions), never silently reinterpreted.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "model/mm_projector.h"

namespace py = pybind11;
using namespace unigemma;

namespace {

std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

py::array as_array(const py::object& o, const char* what, const char* op) {
    try {
        return py::module_::import("numpy").attr("asarray")(o).cast<py::array>();
    } catch (const py::error_already_set& e) {
        throw InputError(std::string("[mmproj] ") + op + ": " + what + " is not array-like (" + e.what() + ")");
    }
}

// A C-contiguous float32 copy/view of a floating-point array of shape (n, width).
py::array_t<float, py::array::c_style> float_rows(const py::object& o, int64_t width, const char* what,
                                                   const char* op, const char* hint) {
    py::array a = as_array(o, what, op);
    const char kind = a.dtype().kind();
    if (kind != 'f')
        throw InputError(std::string("[mmproj] ") + op + ": " + what + " must be floating point (float32), got dtype " +
                         std::string(py::str(a.dtype())) + hint);
    if (a.ndim() != 2 || a.shape(1) != width)
        throw InputError(std::string("[mmproj] ") + op + ": " + what + " must have shape (n, " + std::to_string(width) +
                         "), got " + shape_str(a));
    return py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(a);
}

std::vector<int32_t> positions(const py::object& o, int64_t n) {
    py::array a = as_array(o, "positions", "embed_image");
    const char kind = a.dtype().kind();
    if (kind != 'i' && kind != 'u')
        throw InputError("[mmproj] embed_image: positions must be integers (x = column, y = row), got dtype " +
                         std::string(py::str(a.dtype())));
    if (a.ndim() != 2 || a.shape(1) != 2)
        throw InputError("[mmproj] embed_image: positions must have shape (n, 2), got " + shape_str(a));
    if (a.shape(0) != n)
        throw InputError("[mmproj] embed_image: " + std::to_string(a.shape(0)) + " positions for " + std::to_string(n) +
                         " patches");
    std::vector<int32_t> out(static_cast<size_t>(2 * n));
    if (kind == 'u') {
        auto u = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>::ensure(a);
        const uint64_t* p = u.data();
        for (int64_t i = 0; i < 2 * n; ++i)
            out[static_cast<size_t>(i)] = p[i] > uint64_t(std::numeric_limits<int32_t>::max())
                                              ? std::numeric_limits<int32_t>::max()
                                              : static_cast<int32_t>(p[i]);
    } else {
        auto s = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
        const int64_t* p = s.data();
        // out-of-int32 values become a value the range check rejects, with the row named there
        for (int64_t i = 0; i < 2 * n; ++i)
            out[static_cast<size_t>(i)] = p[i] > std::numeric_limits<int32_t>::max()   ? std::numeric_limits<int32_t>::max()
                                          : p[i] < std::numeric_limits<int32_t>::min() ? std::numeric_limits<int32_t>::min()
                                                                                       : static_cast<int32_t>(p[i]);
    }
    return out;
}

}  // namespace

void init_mmproj(py::module_& m) {
    using model::MMProjector;
    py::class_<MMProjector, std::shared_ptr<MMProjector>>(m, "MMProjector",
        "Gemma 4 Unified multimodal projector (clip GGUF with gemma4uv / gemma4ua embedders).")
        .def(py::init([](const py::object& path, int n_threads, const std::string& backend) {
                 const std::string p = py::str(py::module_::import("os").attr("fspath")(path));
                 py::gil_scoped_release nogil;
                 return std::make_shared<MMProjector>(p, n_threads, backend);
             }),
             py::arg("path"), py::arg("n_threads") = 0, py::arg("backend") = "cpu",
             "Opens and validates an mmproj GGUF (ours or llama.cpp's). n_threads 0 = the pool default.")
        .def_property_readonly("has_vision", &MMProjector::has_vision)
        .def_property_readonly("has_audio", &MMProjector::has_audio)
        .def_property_readonly("hidden_size", &MMProjector::hidden_size, "H: width of every output row")
        .def_property_readonly("vision_embed_dim", [](const MMProjector& p) { return p.vision().n_embd; },
                               "D_v (0 without a vision embedder)")
        .def_property_readonly("patch_size", [](const MMProjector& p) { return p.vision().patch_size; },
                               "model patch in pixels (48); a patch row holds patch_size^2 * 3 values")
        .def_property_readonly("patch_values", [](const MMProjector& p) { return p.vision().n_in; })
        .def_property_readonly("posemb_size", [](const MMProjector& p) { return p.vision().n_pos; },
                               "positions per axis of the factorised position table (x, y in [0, posemb_size))")
        .def_property_readonly("audio_frame_size", [](const MMProjector& p) { return p.audio().frame; },
                               "samples per audio frame / token (640; 0 without an audio embedder)")
        .def_property_readonly("vision_rms_norm_eps", [](const MMProjector& p) { return p.vision().rms_eps; })
        .def_property_readonly("audio_rms_norm_eps", [](const MMProjector& p) { return p.audio().rms_eps; })
        .def(
            "embed_image",
            [](const MMProjector& p, const py::object& pixel_values, const py::object& pos) {
                if (!p.has_vision()) throw InputError("[mmproj] this projector has no vision embedder");
                const int64_t w = p.vision().n_in;
                auto px = float_rows(pixel_values, w, "pixel_values", "embed_image",
                                     " (the processor's patches rescaled to [0, 1])");
                const int64_t n = px.shape(0);
                std::vector<int32_t> xy = positions(pos, n);
                const int64_t n_valid = p.count_image_tokens(xy.data(), n);
                py::array_t<float> out({n_valid, p.hidden_size()});
                float* dst = out.mutable_data();
                const float* src = px.data();
                {
                    py::gil_scoped_release nogil;
                    p.embed_image(src, xy.data(), n, dst);
                }
                return out;
            },
            py::arg("pixel_values"), py::arg("positions"),
            "pixel_values: float (n, 6912) HWC-flattened 48x48x3 patches as the HF processor makes them; positions: "
            "int (n, 2) (x = column, y = row), (-1, -1) = padding patch (skipped). Returns float32 (n_valid, H).")
        .def(
            "embed_audio",
            [](const MMProjector& p, const py::object& frames) {
                if (!p.has_audio()) throw InputError("[mmproj] this projector has no audio embedder");
                auto fr = float_rows(frames, p.audio().frame, "frames", "embed_audio",
                                     " (16 kHz samples in [-1, 1])");
                const int64_t n = fr.shape(0);
                py::array_t<float> out({n, p.hidden_size()});
                float* dst = out.mutable_data();
                const float* src = fr.data();
                {
                    py::gil_scoped_release nogil;
                    p.embed_audio(src, n, dst);
                }
                return out;
            },
            py::arg("frames"), "frames: float (n, 640) 16 kHz samples, one row per token. Returns float32 (n, H).")
        .def("__repr__", [](const MMProjector& p) {
            return "<MMProjector H=" + std::to_string(p.hidden_size()) + " vision=" +
                   (p.has_vision() ? "D_v " + std::to_string(p.vision().n_embd) : std::string("no")) +
                   " audio=" + (p.has_audio() ? "yes" : "no") + ">";
        });
}
