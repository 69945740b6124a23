// The unigemma._core extension: one init_<area>(m) per area, exceptions registered first.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void init_errors(py::module_& m);
void init_gguf(py::module_& m);
void init_quant(py::module_& m);
void init_info(py::module_& m);
void init_kernels(py::module_& m);
void init_matmul(py::module_& m);
void init_model(py::module_& m);
void init_mmproj(py::module_& m);
void init_assistant(py::module_& m);
void init_sampler(py::module_& m);
void init_tokenizer(py::module_& m);
void init_preprocess(py::module_& m);
void init_attention(py::module_& m);
void init_cuda(py::module_& m);
void init_grammar(py::module_& m);
void init_webgpu(py::module_& m);
namespace unigemma::bindings {
void init_interrupt(py::module_& m);
}

PYBIND11_MODULE(_core, m) {
    m.doc() = "unigemma C++ core";
    init_errors(m);
    init_gguf(m);
    init_quant(m);
    init_info(m);
    init_kernels(m);
    init_matmul(m);
    init_model(m);
    init_mmproj(m);
    init_assistant(m);
    init_sampler(m);
    init_tokenizer(m);
    init_preprocess(m);
    init_attention(m);
    init_cuda(m);
    init_webgpu(m);
    init_grammar(m);
    unigemma::bindings::init_interrupt(m);
}
