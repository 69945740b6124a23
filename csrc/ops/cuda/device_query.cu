// CUDA runtime helpers: the devices the runtime can see (`unigemma info`) and the error check
// every launcher uses (kernels.h).
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "ops/cuda/device_query.h"
#include "ops/cuda/kernels.h"

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

void check_cuda(int code, const char* what) {
    if (code == static_cast<int>(cudaSuccess)) return;
    const auto e = static_cast<cudaError_t>(code);
    cudaGetLastError();  // clear a non-sticky error so the next call starts clean
    throw CudaError(std::string("[cuda] ") + what + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

}  // namespace unigemma::cuda
