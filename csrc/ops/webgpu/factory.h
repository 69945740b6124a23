// Entry to the WebGPU backend that needs none of its headers (the model layer and the
// bindings include this whether or not the build found webgpu.h).
#pragma once
#include <map>
#include <memory>
#include <string>

#include "ops/backend.h"

namespace unigemma::webgpu {

// Whether this build has the WebGPU backend (compiled against the pinned wgpu headers).
bool built();
// The PyPI wgpu version whose headers this build compiled against ("" when not built).
const char* headers_version();
// Opens the process's WebGPU device on the wgpu-native library at lib_path (once; later calls
// return the same device) and returns what the adapter offers (name, backend, limits,
// features) as strings. Throws DeviceError: not built, no library, no adapter, no device.
std::map<std::string, std::string> open_device(const std::string& lib_path);
bool device_open();
// A backend on the open device. `weights` is the model's slot for its device weight copies
// (created on first use, shared by every backend given the same slot). Throws DeviceError
// when no device is open.
std::unique_ptr<ops::Backend> make_backend(std::shared_ptr<void>& weights);
// Bytes of our buffers alive on the device (0 when none is open).
uint64_t device_bytes();

}  // namespace unigemma::webgpu
