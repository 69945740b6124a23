// Python bindings for quant/: quantize(float32 2-D) -> raw blocks, dequantize(raw) -> float32.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "base/error.h"
#include "quant/quant.h"

namespace py = pybind11;
using namespace unigemma;

void init_quant(py::module_& m) {
    m.def(
        "quantize",
        [](py::array_t<float, py::array::c_style | py::array::forcecast> x, const std::string& type_name,
           int n_threads) {
            auto t = gguf::type_from_name(type_name);
            if (!quant::can_quantize(t)) throw InputError("[quantize] type " + type_name + " cannot be quantized to");
            if (x.ndim() < 1) throw InputError("[quantize] input must have at least 1 dimension");
            int64_t n_per_row = x.shape(x.ndim() - 1);
            int64_t n_rows = n_per_row ? x.size() / n_per_row : 0;
            auto tr = gguf::type_traits(static_cast<uint32_t>(t));
            if (n_per_row == 0 || n_per_row % tr.block_size != 0)
                throw InputError("[quantize] row length " + std::to_string(n_per_row) + " is not a multiple of the " +
                                 tr.name + " block size " + std::to_string(tr.block_size));
            size_t rb = quant::row_bytes(t, n_per_row);
            py::array_t<uint8_t> out(static_cast<py::ssize_t>(rb * n_rows));
            const float* src = x.data();
            void* dst = out.mutable_data();
            {
                py::gil_scoped_release nogil;
                quant::quantize_rows(t, src, dst, n_rows, n_per_row, n_threads);
            }
            return out;
        },
        py::arg("x"), py::arg("type"), py::arg("n_threads") = 0,
        "Quantize rows of x (last axis = row) to GGML type `type`; returns the raw bytes.");

    m.def(
        "dequantize",
        [](py::array_t<uint8_t, py::array::c_style | py::array::forcecast> raw, const std::string& type_name,
           int64_t n_elements) {
            auto t = gguf::type_from_name(type_name);
            if (!quant::can_dequantize(t)) throw InputError("[dequantize] type " + type_name + " is not supported");
            auto tr = gguf::type_traits(static_cast<uint32_t>(t));
            if (n_elements < 0 || n_elements % tr.block_size != 0)
                throw InputError("[dequantize] element count " + std::to_string(n_elements) +
                                 " is not a multiple of the " + tr.name + " block size");
            size_t need = quant::row_bytes(t, n_elements);
            if (static_cast<size_t>(raw.size()) < need)
                throw InputError("[dequantize] " + std::to_string(n_elements) + " " + tr.name + " elements need " +
                                 std::to_string(need) + " bytes, got " + std::to_string(raw.size()));
            py::array_t<float> out(n_elements);
            const uint8_t* src = raw.data();
            float* dst = out.mutable_data();
            {
                py::gil_scoped_release nogil;
                quant::dequantize_row(t, src, dst, n_elements);
            }
            return out;
        },
        py::arg("raw"), py::arg("type"), py::arg("n_elements"),
        "Dequantize n_elements of GGML type `type` from raw bytes to float32.");
}
