// Error types shared by every layer. C++ code reachable from Python throws these (never
// abort/exit); bindings/init_errors.cpp maps each to a Python exception class.
// Messages start with the op or area in brackets, MLX-style: "[gguf] tensor 'x': ...".
#pragma once
#include <stdexcept>
#include <string>

namespace unigemma::base {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
// Malformed or inconsistent GGUF file (format or model schema).
struct GGUFError : Error {
    using Error::Error;
};
// Valid file, but the model cannot be built from it (unsupported feature, bad config).
struct ModelError : Error {
    using Error::Error;
};
// Bad argument or input data from the caller.
struct InputError : Error {
    using Error::Error;
};
// Prompt or batch longer than the context can hold.
struct ContextOverflowError : InputError {
    using InputError::InputError;
};
// A GPU device is missing, refused a request (allocation, shader, submission) or was lost.
struct DeviceError : Error {
    using Error::Error;
};
// The caller asked to stop (Ctrl-C seen by a binding's interrupt check); maps to KeyboardInterrupt.
struct Interrupted : Error {
    Interrupted() : Error("interrupted") {}
};

}  // namespace unigemma::base

// Every layer names these unqualified inside namespace unigemma (unigemma::InputError, ...).
namespace unigemma {
using base::ContextOverflowError;
using base::DeviceError;
using base::Error;
using base::GGUFError;
using base::InputError;
using base::Interrupted;
using base::ModelError;
}  // namespace unigemma
