// The backend a context, the projector or the drafter runs on, chosen by name
// (ContextParams::backend): one place for the names and how each backend is made.
#pragma once
#include <memory>
#include <string>

#include "ops/backend.h"

namespace unigemma::model {

// "cpu": the CPU backend on n_threads (0: the pool default). "webgpu": a backend on the open
// WebGPU device (DeviceError when none is open); `weights` is the slot of the device copies it
// uploads (a model's, shared by everything that runs that model's weights). Another name: an
// InputError starting with `who` ("[context]", ...).
std::unique_ptr<ops::Backend> make_backend(const std::string& name, int n_threads, std::shared_ptr<void>& weights,
                                           const char* who);

}  // namespace unigemma::model
