// Launch helpers shared by the .cu files of ops/cuda (internal).
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "ops/cuda/kernels.h"

namespace unigemma::cuda::detail {

inline cudaStream_t as_stream(Stream s) { return static_cast<cudaStream_t>(s); }

// After a launch: a bad configuration shows up here (a fault inside the kernel later).
inline void check_launch(const char* what) { check_cuda(static_cast<int>(cudaGetLastError()), what); }

inline unsigned blocks_for(int64_t n, int per_block) { return static_cast<unsigned>((n + per_block - 1) / per_block); }

[[noreturn]] inline void bad_arg(const std::string& msg) { throw InputError("[cuda] " + msg); }

}  // namespace unigemma::cuda::detail
