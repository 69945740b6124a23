#include "ops/webgpu/wgpu_api.h"

#include <dlfcn.h>

#include <mutex>

#include "base/error.h"

namespace unigemma::webgpu {

const Api& load_api(const std::string& path) {
    static std::mutex mu;
    static Api api;
    static std::string loaded;
    std::lock_guard<std::mutex> lock(mu);
    if (!loaded.empty()) {
        if (path != loaded)
            throw DeviceError("[webgpu] the wgpu-native library is already loaded from '" + loaded +
                              "'; cannot load '" + path + "' as well");
        return api;
    }
    // RTLD_LOCAL: the symbols stay private to us (wgpu-py may load the same file in-process;
    // dlopen then hands back the same handle).
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char* why = dlerror();
        throw DeviceError("[webgpu] cannot load the wgpu-native library '" + path + "': " + (why ? why : "unknown"));
    }
    Api a;
#define UNIGEMMA_WGPU_RESOLVE(name)                                                                          \
    a.name = reinterpret_cast<decltype(a.name)>(dlsym(h, #name));                                           \
    if (!a.name) {                                                                                           \
        dlclose(h);                                                                                          \
        throw DeviceError("[webgpu] '" + path + "' has no symbol " #name " (not the pinned wgpu-native?)"); \
    }
    UNIGEMMA_WGPU_FUNCTIONS(UNIGEMMA_WGPU_RESOLVE)
#undef UNIGEMMA_WGPU_RESOLVE
    api = a;
    loaded = path;
    return api;
}

}  // namespace unigemma::webgpu
