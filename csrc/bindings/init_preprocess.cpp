// Python bindings for preprocess/: the torch-exact antialiased bicubic uint8 resize.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "base/error.h"
#include "preprocess/resize_bicubic_aa.h"

namespace py = pybind11;
using namespace unigemma;

namespace {

// Largest image (input or output, bytes) the binding accepts: 2 GiB.
constexpr int64_t kMaxImageBytes = int64_t(1) << 31;

py::array resize(const py::array& img, int64_t out_h, int64_t out_w, int n_threads) {
    if (!img.dtype().is(py::dtype::of<uint8_t>()))
        throw InputError("[resize_bicubic_aa] image must be uint8, got dtype " +
                         std::string(py::str(img.dtype())));
    if (img.ndim() != 2 && img.ndim() != 3)
        throw InputError("[resize_bicubic_aa] image must be (H, W) or (H, W, C), got " + std::to_string(img.ndim()) +
                         " dimensions");
    const int64_t in_h = img.shape(0), in_w = img.shape(1);
    const int64_t channels = img.ndim() == 3 ? img.shape(2) : 1;
    if (in_h < 1 || in_w < 1 || channels < 1)
        throw InputError("[resize_bicubic_aa] empty image of shape (" + std::to_string(in_h) + ", " +
                         std::to_string(in_w) + ", " + std::to_string(channels) + ")");
    if (in_h > preprocess::kMaxSide || in_w > preprocess::kMaxSide || channels > preprocess::kMaxChannels)
        throw InputError("[resize_bicubic_aa] image of shape (" + std::to_string(in_h) + ", " + std::to_string(in_w) +
                         ", " + std::to_string(channels) + ") exceeds " + std::to_string(preprocess::kMaxSide) +
                         " per side or " + std::to_string(preprocess::kMaxChannels) + " channels");
    if (out_h < 1 || out_w < 1 || out_h > preprocess::kMaxSide || out_w > preprocess::kMaxSide)
        throw InputError("[resize_bicubic_aa] output size " + std::to_string(out_h) + "x" + std::to_string(out_w) +
                         " is outside [1, " + std::to_string(preprocess::kMaxSide) + "] per side");
    // Sides are <= 2^20 and channels <= 64 (checked above), so the products below fit int64.
    if (in_h * in_w * channels > kMaxImageBytes || out_h * out_w * channels > kMaxImageBytes ||
        in_h * out_w * channels > kMaxImageBytes)
        throw InputError("[resize_bicubic_aa] image of " + std::to_string(in_h) + "x" + std::to_string(in_w) + "x" +
                         std::to_string(channels) + " -> " + std::to_string(out_h) + "x" + std::to_string(out_w) +
                         " exceeds the 2 GiB limit");
    // Makes a C-contiguous copy only when the input is strided.
    auto src = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>::ensure(img);
    if (!src) throw py::error_already_set();
    py::array_t<uint8_t> out = img.ndim() == 3 ? py::array_t<uint8_t>({out_h, out_w, channels})
                                               : py::array_t<uint8_t>({out_h, out_w});
    const uint8_t* s = src.data();
    uint8_t* d = out.mutable_data();
    {
        py::gil_scoped_release nogil;
        preprocess::resize_bicubic_aa_u8(s, in_h, in_w, channels, d, out_h, out_w, n_threads);
    }
    return std::move(out);
}

py::tuple taps(int64_t in_size, int64_t out_size) {
    preprocess::AxisTaps t;
    {
        py::gil_scoped_release nogil;
        t = preprocess::compute_axis_taps(in_size, out_size);
    }
    py::array_t<int64_t> first(t.out_size), count(t.out_size);
    py::array_t<int16_t> weights({t.out_size, t.taps_per_output});
    std::copy(t.first.begin(), t.first.end(), first.mutable_data());
    std::copy(t.count.begin(), t.count.end(), count.mutable_data());
    std::copy(t.weights.begin(), t.weights.end(), weights.mutable_data());
    return py::make_tuple(first, count, weights, t.precision);
}

}  // namespace

void init_preprocess(py::module_& m) {
    m.def("resize_bicubic_aa", &resize, py::arg("image"), py::arg("out_h"), py::arg("out_w"),
          py::arg("n_threads") = 0,
          "Antialiased bicubic resize of a uint8 (H, W) or (H, W, C) image to (out_h, out_w[, C]), bit-exact "
          "with torch's CPU uint8 path (torchvision resize BICUBIC, antialias=True). n_threads 0 = pool default.");
    m.def("resize_bicubic_aa_taps", &taps, py::arg("in_size"), py::arg("out_size"),
          "The int16 fixed-point taps of one axis: (first[out], count[out], weights[out, taps], precision). "
          "Output i = clamp((sum_k in[first[i]+k] * weights[i, k] + 2^(precision-1)) >> precision, 0, 255).");
}
