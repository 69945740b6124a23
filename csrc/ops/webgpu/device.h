// One WebGPU device per process (wgpu-native through wgpu_api.h): adapter choice, limits,
// buffers, compute pipelines (compiled once per kernel variant), submission and read-back.
// Every failure the device reports (no adapter, a refused allocation, a shader the driver
// rejects, a validation error, a lost device) becomes a DeviceError naming what failed; no
// call here aborts or blocks forever.
#pragma once
#include <cstddef>
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ops/webgpu/wgpu_api.h"

namespace unigemma::webgpu {

struct AdapterInfo {
    std::string vendor, architecture, device, description, backend, adapter_type;
    uint32_t vendor_id = 0, device_id = 0, subgroup_min = 0, subgroup_max = 0;
    uint64_t max_buffer_size = 0, max_storage_binding = 0;
    uint32_t max_workgroup_storage = 0, max_invocations = 0, max_storage_buffers = 0;
    uint32_t storage_offset_alignment = 0, uniform_offset_alignment = 0, max_workgroups_per_dim = 0;
    bool shader_f16 = false, subgroups = false, timestamp_query = false;
};

class Device {
public:
    // The process's device on the wgpu-native library at `lib_path` (opened on first call;
    // later calls return it). Throws DeviceError when the library, an adapter or a device is
    // missing, naming which and why.
    static std::shared_ptr<Device> open(const std::string& lib_path);
    ~Device();
    Device(const Device&) = delete;
    Device& operator=(const Device&) = delete;

    const Api& api() const { return api_; }
    WGPUDevice device() const { return device_; }
    WGPUQueue queue() const { return queue_; }
    const AdapterInfo& info() const { return info_; }

    // A buffer of padded_size(bytes) with `usage`; `what` names it in errors.
    WGPUBuffer create_buffer(uint64_t bytes, WGPUBufferUsage usage, const std::string& what);
    // Releases a buffer from create_buffer(bytes, ...) (the same `bytes`) and its accounting.
    void release_buffer(WGPUBuffer b, uint64_t bytes);
    // What create_buffer allocates for `bytes`: at least 16, a multiple of 16 (room to bind a
    // tail that is not whole words as whole words).
    static uint64_t padded_size(uint64_t bytes) { return (std::max<uint64_t>(bytes, 16) + 15) / 16 * 16; }
    // A compute pipeline and its bind-group layout. Bindings are declared explicitly (an
    // entry point need not use all of them): `layout` has one letter per binding from 0,
    // u = uniform, r = read-only storage, s = read-write storage.
    struct Pipeline {
        WGPUComputePipeline pipe = nullptr;
        WGPUBindGroupLayout layout = nullptr;
    };
    // Entry point `entry` of `source`, compiled on first use and cached by `key`; a shader the
    // compiler or driver rejects throws DeviceError naming `key`.
    const Pipeline& pipeline(const std::string& key, const std::string& source, const char* entry, const char* layout);
    void write(WGPUBuffer b, uint64_t offset, const void* data, size_t bytes);
    // Submits and waits until the device has finished; throws the first error it reported.
    void submit_and_wait(WGPUCommandBuffer cmd);
    // Copies `bytes` of a MapRead buffer to host memory (after submit_and_wait).
    void read_mapped(WGPUBuffer staging, size_t bytes, void* dst);
    // Throws the first uncaptured error or device loss seen since the last call.
    void check();

    // Bytes of buffers alive on the device (what our buffers hold, not the driver's overhead).
    uint64_t bytes_alive() const { return bytes_alive_; }

private:
    Device(const Api& api);
    void pump();  // runs ready callbacks
    void error_callback(const std::string& what);
    const Api& api_;
    WGPUInstance instance_ = nullptr;
    WGPUAdapter adapter_ = nullptr;
    WGPUDevice device_ = nullptr;
    WGPUQueue queue_ = nullptr;
    AdapterInfo info_;
    std::mutex mu_;
    std::string pending_error_;
    bool lost_ = false;
    std::mutex pipelines_mu_;
    std::map<std::string, Pipeline> pipelines_;  // entries are never removed: references stay valid
    std::atomic<uint64_t> bytes_alive_{0};
};

}  // namespace unigemma::webgpu
