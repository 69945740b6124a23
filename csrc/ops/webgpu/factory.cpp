#include "ops/webgpu/factory.h"

#include <mutex>

#include "base/error.h"

#if defined(UNIGEMMA_HAVE_WEBGPU)
#include "ops/webgpu/webgpu_backend.h"
#endif

namespace unigemma::webgpu {

#if defined(UNIGEMMA_HAVE_WEBGPU)

namespace {
std::mutex g_mu;
// The device lives as long as the process: releasing it from a static destructor at exit
// races the driver's own teardown.
std::shared_ptr<Device>* g_device = nullptr;
}  // namespace

bool built() { return true; }
const char* headers_version() { return UNIGEMMA_WGPU_VERSION; }

std::map<std::string, std::string> open_device(const std::string& lib_path) {
    std::lock_guard<std::mutex> lock(g_mu);
    if (!g_device) g_device = new std::shared_ptr<Device>(Device::open(lib_path));
    const AdapterInfo& i = (*g_device)->info();
    return {
        {"vendor", i.vendor},
        {"device", i.device},
        {"description", i.description},
        {"architecture", i.architecture},
        {"backend", i.backend},
        {"adapter_type", i.adapter_type},
        {"vendor_id", std::to_string(i.vendor_id)},
        {"device_id", std::to_string(i.device_id)},
        {"subgroup_min_size", std::to_string(i.subgroup_min)},
        {"subgroup_max_size", std::to_string(i.subgroup_max)},
        {"max_buffer_size", std::to_string(i.max_buffer_size)},
        {"max_storage_buffer_binding_size", std::to_string(i.max_storage_binding)},
        {"max_compute_workgroup_storage_size", std::to_string(i.max_workgroup_storage)},
        {"max_compute_invocations_per_workgroup", std::to_string(i.max_invocations)},
        {"max_storage_buffers_per_shader_stage", std::to_string(i.max_storage_buffers)},
        {"min_storage_buffer_offset_alignment", std::to_string(i.storage_offset_alignment)},
        {"shader_f16", i.shader_f16 ? "1" : "0"},
        {"subgroups", i.subgroups ? "1" : "0"},
        {"timestamp_query", i.timestamp_query ? "1" : "0"},
    };
}

bool device_open() {
    std::lock_guard<std::mutex> lock(g_mu);
    return g_device != nullptr;
}

std::unique_ptr<ops::Backend> make_backend(std::shared_ptr<void>& weights) {
    std::shared_ptr<Device> d;
    {
        std::lock_guard<std::mutex> lock(g_mu);
        if (!g_device) throw DeviceError("[webgpu] no WebGPU device is open (unigemma.webgpu.open_device() first)");
        d = *g_device;
    }
    if (!weights) weights = std::make_shared<WeightCache>(d);
    return std::make_unique<WebGpuBackend>(d, std::static_pointer_cast<WeightCache>(weights));
}

uint64_t device_bytes() {
    std::lock_guard<std::mutex> lock(g_mu);
    return g_device ? (*g_device)->bytes_alive() : 0;
}

#else

bool built() { return false; }
const char* headers_version() { return ""; }
std::map<std::string, std::string> open_device(const std::string&) {
    throw DeviceError("[webgpu] this build of unigemma has no WebGPU backend (the wgpu headers were not found at build time)");
}
bool device_open() { return false; }
std::unique_ptr<ops::Backend> make_backend(std::shared_ptr<void>&) {
    throw DeviceError("[webgpu] this build of unigemma has no WebGPU backend");
}
uint64_t device_bytes() { return 0; }

#endif

}  // namespace unigemma::webgpu
