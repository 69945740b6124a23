// Build and machine facts for `unigemma info`.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <thread>

#include "ops/cpu/cpu_features.h"
#include "ops/webgpu/factory.h"
#ifdef UNIGEMMA_HAVE_CUDA
#include "ops/cuda/device_query.h"
#endif

namespace py = pybind11;

void init_info(py::module_& m) {
    m.def("build_info", []() {
        py::dict d;
        const auto& f = unigemma::cpu::features();
        py::dict feats;
        feats["avx2"] = f.avx2; feats["fma"] = f.fma; feats["f16c"] = f.f16c;
        feats["avx512f"] = f.avx512f; feats["avx512bw"] = f.avx512bw; feats["avx512vl"] = f.avx512vl; feats["avx512dq"] = f.avx512dq;
        feats["avx512vnni"] = f.avx512vnni; feats["neon"] = f.neon; feats["dotprod"] = f.dotprod;
        d["cpu_features"] = feats;
        d["available_isas"] = unigemma::cpu::available_isas();
        d["selected_isa"] = unigemma::cpu::selected_isa();
        d["hardware_threads"] = std::thread::hardware_concurrency();
#ifdef UNIGEMMA_HAVE_CUDA
        d["cuda"] = true;
        py::list devs;
        for (const auto& dev : unigemma::cuda::list_devices()) {
            py::dict x;
            x["name"] = dev.name;
            x["compute_capability"] = dev.compute_capability;
            x["total_bytes"] = dev.total_bytes;
            devs.append(x);
        }
        d["cuda_devices"] = devs;
#else
        d["cuda"] = false;
#endif
        d["webgpu"] = unigemma::webgpu::built();
        d["webgpu_headers"] = std::string(unigemma::webgpu::headers_version());
#if defined(__SANITIZE_ADDRESS__)
        d["sanitizers"] = true;
#else
        d["sanitizers"] = false;
#endif
        d["compiler"] = __VERSION__;
        return d;
    });
}
