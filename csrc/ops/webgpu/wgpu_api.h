// The wgpu-native C API (webgpu.h + wgpu.h of the pinned PyPI `wgpu` wheel), loaded at run
// time with dlopen: the core compiles against the wheel's headers but never links the
// library, so a build without a GPU runtime still imports, and the library the Python side
// finds (python/unigemma/webgpu.py owns the pin) is the one that runs.
#pragma once
#include <string>

#include <webgpu.h>
#include <wgpu.h>

namespace unigemma::webgpu {

// Every entry point the backend calls; each member is a pointer with the header's signature.
#define UNIGEMMA_WGPU_FUNCTIONS(X)                                                                               \
    X(wgpuCreateInstance) X(wgpuInstanceRelease) X(wgpuInstanceRequestAdapter) X(wgpuInstanceProcessEvents)    \
    X(wgpuAdapterGetInfo) X(wgpuAdapterInfoFreeMembers) X(wgpuAdapterGetLimits) X(wgpuAdapterHasFeature)       \
    X(wgpuAdapterRequestDevice) X(wgpuAdapterRelease) X(wgpuDeviceGetQueue) X(wgpuDeviceRelease)               \
    X(wgpuDeviceCreateBuffer) X(wgpuDeviceCreateShaderModule) X(wgpuDeviceCreateComputePipeline)              \
    X(wgpuDeviceCreateBindGroup) X(wgpuDeviceCreateCommandEncoder) X(wgpuDevicePushErrorScope)                \
    X(wgpuDevicePopErrorScope) X(wgpuDevicePoll) X(wgpuDeviceGetLimits) X(wgpuDeviceHasFeature)                \
    X(wgpuDeviceCreateBindGroupLayout) X(wgpuDeviceCreatePipelineLayout) X(wgpuPipelineLayoutRelease) X(wgpuComputePipelineRelease) X(wgpuBindGroupLayoutRelease)      \
    X(wgpuShaderModuleRelease) X(wgpuBindGroupRelease) X(wgpuBufferRelease) X(wgpuBufferDestroy)              \
    X(wgpuBufferMapAsync) X(wgpuBufferGetConstMappedRange) X(wgpuBufferUnmap) X(wgpuCommandEncoderRelease)   \
    X(wgpuCommandEncoderBeginComputePass) X(wgpuCommandEncoderCopyBufferToBuffer) X(wgpuCommandEncoderFinish) \
    X(wgpuCommandEncoderClearBuffer) X(wgpuComputePassEncoderSetPipeline) X(wgpuComputePassEncoderSetBindGroup) \
    X(wgpuComputePassEncoderDispatchWorkgroups) X(wgpuComputePassEncoderEnd) X(wgpuComputePassEncoderRelease) \
    X(wgpuCommandBufferRelease) X(wgpuQueueSubmitForIndex) X(wgpuQueueWriteBuffer) X(wgpuQueueRelease)

struct Api {
#define UNIGEMMA_WGPU_MEMBER(name) decltype(&::name) name = nullptr;
    UNIGEMMA_WGPU_FUNCTIONS(UNIGEMMA_WGPU_MEMBER)
#undef UNIGEMMA_WGPU_MEMBER
};

// Loads the library at `path` once per process (later calls must name the same file) and
// resolves every entry point; throws DeviceError naming the file or the missing symbol.
const Api& load_api(const std::string& path);

inline WGPUStringView sv(const char* s) { return WGPUStringView{s, WGPU_STRLEN}; }
inline WGPUStringView sv(const std::string& s) { return WGPUStringView{s.data(), s.size()}; }
inline std::string str(WGPUStringView v) {
    if (!v.data) return {};
    return v.length == WGPU_STRLEN ? std::string(v.data) : std::string(v.data, v.length);
}

}  // namespace unigemma::webgpu
