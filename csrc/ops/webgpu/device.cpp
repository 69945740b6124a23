#include "ops/webgpu/device.h"

#include <chrono>
#include <cstring>
#include <thread>

#include "base/error.h"

namespace unigemma::webgpu {

namespace {

// A wait on the device that outlives this is reported as a hang instead of blocking forever.
constexpr double kWaitSeconds = 120.0;

const char* backend_name(WGPUBackendType t) {
    switch (t) {
        case WGPUBackendType_Vulkan: return "Vulkan";
        case WGPUBackendType_Metal: return "Metal";
        case WGPUBackendType_D3D12: return "D3D12";
        case WGPUBackendType_D3D11: return "D3D11";
        case WGPUBackendType_OpenGL: return "OpenGL";
        case WGPUBackendType_OpenGLES: return "OpenGLES";
        default: return "other";
    }
}

const char* adapter_type_name(WGPUAdapterType t) {
    switch (t) {
        case WGPUAdapterType_DiscreteGPU: return "discrete GPU";
        case WGPUAdapterType_IntegratedGPU: return "integrated GPU";
        case WGPUAdapterType_CPU: return "CPU";
        default: return "unknown";
    }
}

const char* error_type_name(WGPUErrorType t) {
    switch (t) {
        case WGPUErrorType_Validation: return "validation error";
        case WGPUErrorType_OutOfMemory: return "out of memory";
        case WGPUErrorType_Internal: return "internal error";
        default: return "error";
    }
}

// Polls `done` with the device (or instance) pumping callbacks, up to kWaitSeconds.
template <class Pump, class Done>
void wait_for(Pump pump, Done done, const char* what) {
    const auto t0 = std::chrono::steady_clock::now();
    while (!done()) {
        pump();
        if (done()) break;
        if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > kWaitSeconds)
            throw DeviceError(std::string("[webgpu] ") + what + " did not complete within " +
                              std::to_string(int(kWaitSeconds)) + " s (device hung?)");
        std::this_thread::yield();
    }
}

struct ScopeResult {
    bool done = false;
    WGPUErrorType type = WGPUErrorType_NoError;
    std::string message;
};

// Pops the innermost error scope of `dev` into *r (filled when its callback runs).
void pop_scope(const Api& api, WGPUDevice dev, ScopeResult* r) {
    WGPUPopErrorScopeCallbackInfo cb{};
    cb.mode = WGPUCallbackMode_AllowProcessEvents;
    cb.callback = [](WGPUPopErrorScopeStatus, WGPUErrorType type, WGPUStringView message, void* u1, void*) {
        auto* s = static_cast<ScopeResult*>(u1);
        s->type = type;
        s->message = str(message);
        s->done = true;
    };
    cb.userdata1 = r;
    api.wgpuDevicePopErrorScope(dev, cb);
}

}  // namespace

Device::Device(const Api& api) : api_(api) {}

Device::~Device() {
    for (auto& kv : pipelines_) {
        api_.wgpuComputePipelineRelease(kv.second.pipe);
        api_.wgpuBindGroupLayoutRelease(kv.second.layout);
    }
    if (queue_) api_.wgpuQueueRelease(queue_);
    if (device_) api_.wgpuDeviceRelease(device_);
    if (adapter_) api_.wgpuAdapterRelease(adapter_);
    if (instance_) api_.wgpuInstanceRelease(instance_);
}

std::shared_ptr<Device> Device::open(const std::string& lib_path) {
    static std::mutex mu;
    static std::weak_ptr<Device> current;
    std::lock_guard<std::mutex> lock(mu);
    if (auto d = current.lock()) return d;
    const Api& api = load_api(lib_path);
    std::shared_ptr<Device> d(new Device(api));

    // Native GPU APIs only (Vulkan, Metal, D3D12): a GL context is not a compute device.
    WGPUInstanceExtras extras{};
    extras.chain.sType = static_cast<WGPUSType>(WGPUSType_InstanceExtras);
    extras.backends = WGPUInstanceBackend_Primary;
    WGPUInstanceDescriptor idesc{};
    idesc.nextInChain = &extras.chain;
    d->instance_ = api.wgpuCreateInstance(&idesc);
    if (!d->instance_) throw DeviceError("[webgpu] wgpuCreateInstance failed");

    struct AdapterReply {
        bool done = false;
        WGPUAdapter adapter = nullptr;
        std::string message;
    } ar;
    WGPURequestAdapterOptions opts{};
    opts.powerPreference = WGPUPowerPreference_HighPerformance;
    WGPURequestAdapterCallbackInfo acb{};
    acb.mode = WGPUCallbackMode_AllowProcessEvents;
    acb.callback = [](WGPURequestAdapterStatus status, WGPUAdapter adapter, WGPUStringView message, void* u1, void*) {
        auto* r = static_cast<AdapterReply*>(u1);
        if (status == WGPURequestAdapterStatus_Success) r->adapter = adapter;
        r->message = str(message);
        r->done = true;
    };
    acb.userdata1 = &ar;
    api.wgpuInstanceRequestAdapter(d->instance_, &opts, acb);
    wait_for([&] { api.wgpuInstanceProcessEvents(d->instance_); }, [&] { return ar.done; }, "requesting an adapter");
    if (!ar.adapter)
        throw DeviceError("[webgpu] no GPU adapter found (no Vulkan, Metal or D3D12 driver" +
                          (ar.message.empty() ? std::string(")") : "): " + ar.message));
    d->adapter_ = ar.adapter;

    WGPUAdapterInfo ai{};
    api.wgpuAdapterGetInfo(d->adapter_, &ai);
    AdapterInfo& inf = d->info_;
    inf.vendor = str(ai.vendor);
    inf.architecture = str(ai.architecture);
    inf.device = str(ai.device);
    inf.description = str(ai.description);
    inf.backend = backend_name(ai.backendType);
    inf.adapter_type = adapter_type_name(ai.adapterType);
    inf.vendor_id = ai.vendorID;
    inf.device_id = ai.deviceID;
    inf.subgroup_min = ai.subgroupMinSize;
    inf.subgroup_max = ai.subgroupMaxSize;
    api.wgpuAdapterInfoFreeMembers(ai);
    WGPULimits lim{};
    api.wgpuAdapterGetLimits(d->adapter_, &lim);
    inf.shader_f16 = api.wgpuAdapterHasFeature(d->adapter_, WGPUFeatureName_ShaderF16);
    inf.subgroups = api.wgpuAdapterHasFeature(d->adapter_, WGPUFeatureName_Subgroups);
    inf.timestamp_query = api.wgpuAdapterHasFeature(d->adapter_, WGPUFeatureName_TimestampQuery);

    // Ask for everything the adapter offers (the defaults cap a binding at 128 MiB and a
    // buffer at 256 MiB, below what real GPUs give); kernels use only core WGSL.
    std::vector<WGPUFeatureName> features;
    if (inf.timestamp_query) features.push_back(WGPUFeatureName_TimestampQuery);
    struct DeviceReply {
        bool done = false;
        WGPUDevice device = nullptr;
        std::string message;
    } dr;
    WGPUDeviceDescriptor ddesc{};
    ddesc.label = sv("unigemma");
    ddesc.requiredFeatureCount = features.size();
    ddesc.requiredFeatures = features.data();
    ddesc.requiredLimits = &lim;
    ddesc.deviceLostCallbackInfo.mode = WGPUCallbackMode_AllowSpontaneous;
    ddesc.deviceLostCallbackInfo.callback = [](WGPUDevice const*, WGPUDeviceLostReason reason, WGPUStringView message,
                                               void* u1, void*) {
        if (reason == WGPUDeviceLostReason_Destroyed || reason == WGPUDeviceLostReason_CallbackCancelled) return;
        auto* self = static_cast<Device*>(u1);
        std::lock_guard<std::mutex> lock(self->mu_);
        self->lost_ = true;
        if (self->pending_error_.empty()) self->pending_error_ = "the device was lost: " + str(message);
    };
    ddesc.deviceLostCallbackInfo.userdata1 = d.get();
    ddesc.uncapturedErrorCallbackInfo.callback = [](WGPUDevice const*, WGPUErrorType type, WGPUStringView message,
                                                    void* u1, void*) {
        static_cast<Device*>(u1)->error_callback(std::string(error_type_name(type)) + ": " + str(message));
    };
    ddesc.uncapturedErrorCallbackInfo.userdata1 = d.get();
    WGPURequestDeviceCallbackInfo dcb{};
    dcb.mode = WGPUCallbackMode_AllowProcessEvents;
    dcb.callback = [](WGPURequestDeviceStatus status, WGPUDevice device, WGPUStringView message, void* u1, void*) {
        auto* r = static_cast<DeviceReply*>(u1);
        if (status == WGPURequestDeviceStatus_Success) r->device = device;
        r->message = str(message);
        r->done = true;
    };
    dcb.userdata1 = &dr;
    api.wgpuAdapterRequestDevice(d->adapter_, &ddesc, dcb);
    wait_for([&] { api.wgpuInstanceProcessEvents(d->instance_); }, [&] { return dr.done; }, "requesting a device");
    if (!dr.device) throw DeviceError("[webgpu] the adapter '" + inf.device + "' refused a device: " + dr.message);
    d->device_ = dr.device;
    d->queue_ = api.wgpuDeviceGetQueue(d->device_);
    WGPULimits got{};
    api.wgpuDeviceGetLimits(d->device_, &got);
    inf.max_buffer_size = got.maxBufferSize;
    inf.max_storage_binding = got.maxStorageBufferBindingSize;
    inf.max_workgroup_storage = got.maxComputeWorkgroupStorageSize;
    inf.max_invocations = got.maxComputeInvocationsPerWorkgroup;
    inf.max_storage_buffers = got.maxStorageBuffersPerShaderStage;
    inf.storage_offset_alignment = got.minStorageBufferOffsetAlignment;
    inf.uniform_offset_alignment = got.minUniformBufferOffsetAlignment;
    inf.max_workgroups_per_dim = got.maxComputeWorkgroupsPerDimension;
    current = d;
    return d;
}

void Device::error_callback(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    if (pending_error_.empty()) pending_error_ = what;
}

void Device::pump() {
    api_.wgpuDevicePoll(device_, false, nullptr);
    api_.wgpuInstanceProcessEvents(instance_);
}

void Device::check() {
    std::string e;
    {
        std::lock_guard<std::mutex> lock(mu_);
        e.swap(pending_error_);
    }
    if (!e.empty()) throw DeviceError("[webgpu] " + e);
    if (lost_) throw DeviceError("[webgpu] the device was lost");
}

WGPUBuffer Device::create_buffer(uint64_t bytes, WGPUBufferUsage usage, const std::string& what) {
    check();
    bytes = padded_size(bytes);
    if (bytes > info_.max_buffer_size)
        throw DeviceError("[webgpu] " + what + ": " + std::to_string(bytes) + " bytes exceed the adapter's largest buffer (" +
                          std::to_string(info_.max_buffer_size) + " bytes)");
    api_.wgpuDevicePushErrorScope(device_, WGPUErrorFilter_OutOfMemory);
    api_.wgpuDevicePushErrorScope(device_, WGPUErrorFilter_Validation);
    WGPUBufferDescriptor bd{};
    bd.label = sv(what);
    bd.usage = usage;
    bd.size = bytes;
    WGPUBuffer b = api_.wgpuDeviceCreateBuffer(device_, &bd);
    ScopeResult r[2];
    for (auto& res : r) pop_scope(api_, device_, &res);
    wait_for([&] { pump(); }, [&] { return r[0].done && r[1].done; }, "allocating a buffer");
    for (const auto& res : r)
        if (res.type != WGPUErrorType_NoError) {
            if (b) api_.wgpuBufferRelease(b);
            throw DeviceError("[webgpu] the device refused " + what + " (" + std::to_string(bytes) +
                              " bytes): " + error_type_name(res.type) + ": " + res.message);
        }
    if (!b) throw DeviceError("[webgpu] the device refused " + what + " (" + std::to_string(bytes) + " bytes)");
    bytes_alive_ += bytes;
    return b;
}

void Device::release_buffer(WGPUBuffer b, uint64_t bytes) {
    if (!b) return;
    api_.wgpuBufferRelease(b);
    bytes_alive_ -= padded_size(bytes);
}

const Device::Pipeline& Device::pipeline(const std::string& key, const std::string& source, const char* entry,
                                         const char* layout) {
    // backends of several threads share the device (the server's engine, media embedding)
    std::lock_guard<std::mutex> lock(pipelines_mu_);
    auto it = pipelines_.find(key);
    if (it != pipelines_.end()) return it->second;
    check();
    api_.wgpuDevicePushErrorScope(device_, WGPUErrorFilter_Validation);
    std::vector<WGPUBindGroupLayoutEntry> entries;
    for (uint32_t i = 0; layout[i]; ++i) {
        WGPUBindGroupLayoutEntry e{};
        e.binding = i;
        e.visibility = WGPUShaderStage_Compute;
        e.buffer.type = layout[i] == 'u' ? WGPUBufferBindingType_Uniform
                        : layout[i] == 'r' ? WGPUBufferBindingType_ReadOnlyStorage
                                           : WGPUBufferBindingType_Storage;
        entries.push_back(e);
    }
    WGPUBindGroupLayoutDescriptor bd{};
    bd.label = sv(key);
    bd.entryCount = entries.size();
    bd.entries = entries.data();
    WGPUBindGroupLayout bgl = api_.wgpuDeviceCreateBindGroupLayout(device_, &bd);
    WGPUPipelineLayoutDescriptor pld{};
    pld.bindGroupLayoutCount = 1;
    pld.bindGroupLayouts = &bgl;
    WGPUPipelineLayout pl = api_.wgpuDeviceCreatePipelineLayout(device_, &pld);
    WGPUShaderSourceWGSL src{};
    src.chain.sType = WGPUSType_ShaderSourceWGSL;
    src.code = sv(source);
    WGPUShaderModuleDescriptor md{};
    md.nextInChain = &src.chain;
    md.label = sv(key);
    WGPUShaderModule mod = api_.wgpuDeviceCreateShaderModule(device_, &md);
    WGPUComputePipelineDescriptor pd{};
    pd.label = sv(key);
    pd.layout = pl;
    pd.compute.module = mod;
    pd.compute.entryPoint = sv(entry);
    WGPUComputePipeline p = mod ? api_.wgpuDeviceCreateComputePipeline(device_, &pd) : nullptr;
    if (mod) api_.wgpuShaderModuleRelease(mod);
    api_.wgpuPipelineLayoutRelease(pl);
    ScopeResult r;
    pop_scope(api_, device_, &r);
    wait_for([&] { pump(); }, [&] { return r.done; }, "compiling a shader");
    if (r.type != WGPUErrorType_NoError || !p) {
        if (p) api_.wgpuComputePipelineRelease(p);
        api_.wgpuBindGroupLayoutRelease(bgl);
        throw DeviceError("[webgpu] kernel '" + key + "' was rejected: " + r.message);
    }
    return pipelines_.emplace(key, Pipeline{p, bgl}).first->second;
}

void Device::write(WGPUBuffer b, uint64_t offset, const void* data, size_t bytes) {
    if (bytes == 0) return;
    if (bytes % 4 == 0) {
        api_.wgpuQueueWriteBuffer(queue_, b, offset, data, bytes);
        return;
    }
    // writeBuffer takes multiples of 4 bytes: pad the tail
    std::vector<uint8_t> tmp((bytes + 3) / 4 * 4, 0);
    std::memcpy(tmp.data(), data, bytes);
    api_.wgpuQueueWriteBuffer(queue_, b, offset, tmp.data(), tmp.size());
}

void Device::submit_and_wait(WGPUCommandBuffer cmd) {
    WGPUSubmissionIndex idx = api_.wgpuQueueSubmitForIndex(queue_, 1, &cmd);
    api_.wgpuCommandBufferRelease(cmd);
    // wait=true blocks until that submission is done (bounded by the driver); a lost device
    // returns at once and check() reports it
    api_.wgpuDevicePoll(device_, true, &idx);
    api_.wgpuInstanceProcessEvents(instance_);
    check();
}

void Device::read_mapped(WGPUBuffer staging, size_t bytes, void* dst) {
    struct MapReply {
        bool done = false;
        bool ok = false;
        std::string message;
    } mr;
    WGPUBufferMapCallbackInfo cb{};
    cb.mode = WGPUCallbackMode_AllowProcessEvents;
    cb.callback = [](WGPUMapAsyncStatus status, WGPUStringView message, void* u1, void*) {
        auto* r = static_cast<MapReply*>(u1);
        r->ok = status == WGPUMapAsyncStatus_Success;
        r->message = str(message);
        r->done = true;
    };
    cb.userdata1 = &mr;
    const size_t padded = (bytes + 3) / 4 * 4;
    api_.wgpuBufferMapAsync(staging, WGPUMapMode_Read, 0, padded, cb);
    wait_for([&] { api_.wgpuDevicePoll(device_, true, nullptr); api_.wgpuInstanceProcessEvents(instance_); },
             [&] { return mr.done; }, "reading results back");
    if (!mr.ok) throw DeviceError("[webgpu] mapping a read-back buffer failed: " + mr.message);
    const void* p = api_.wgpuBufferGetConstMappedRange(staging, 0, padded);
    if (!p) {
        api_.wgpuBufferUnmap(staging);
        throw DeviceError("[webgpu] mapping a read-back buffer returned no memory");
    }
    std::memcpy(dst, p, bytes);
    api_.wgpuBufferUnmap(staging);
    check();
}

}  // namespace unigemma::webgpu
