// WGSL sources of shaders/*.wgsl, embedded at build time (CMakeLists.txt writes them into a
// generated source file). name: the file's stem ("matmul", "quant", ...).
#pragma once

namespace unigemma::webgpu {

// nullptr for an unknown name
const char* shader_source(const char* name);

}  // namespace unigemma::webgpu
