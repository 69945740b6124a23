#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace unigemma::cuda {

struct DeviceInfo {
    std::string name;
    int compute_capability;  // major*10 + minor
    size_t total_bytes;
};

// Devices visible to the CUDA runtime; empty when there is no driver or GPU.
std::vector<DeviceInfo> list_devices();

}  // namespace unigemma::cuda
