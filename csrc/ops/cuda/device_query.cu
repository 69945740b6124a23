// CUDA backend entry point (compile-only until the CUDA issue): reports the devices the
// runtime can see, for `unigemma info`. Kernels land in this directory.
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "ops/cuda/device_query.h"

namespace unigemma::cuda {

std::vector<DeviceInfo> list_devices() {
    std::vector<DeviceInfo> out;
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no driver" error; no devices is not a failure
        return out;
    }
    for (int i = 0; i < n; ++i) {
        cudaDeviceProp p{};
        if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
        out.push_back({std::string(p.name), p.major * 10 + p.minor, static_cast<size_t>(p.totalGlobalMem)});
    }
    return out;
}

}  // namespace unigemma::cuda
