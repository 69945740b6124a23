#include "model/backend_choice.h"

#include "base/error.h"
#include "ops/cpu/cpu_backend.h"
#include "ops/webgpu/factory.h"

namespace unigemma::model {

std::unique_ptr<ops::Backend> make_backend(const std::string& name, int n_threads, std::shared_ptr<void>& weights,
                                           const char* who) {
    if (name == "cpu") return std::make_unique<cpu::CpuBackend>(n_threads);
    if (name == "webgpu") return webgpu::make_backend(weights);
    throw InputError(std::string(who) + " backend must be 'cpu' or 'webgpu', got '" + name + "'");
}

}  // namespace unigemma::model
