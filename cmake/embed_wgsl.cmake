# Writes OUT, a C++ source defining unigemma::webgpu::shader_source(name) over the WGSL files
# given in SOURCES (a ;-list), each as a raw string literal keyed by its file stem.
# Run as: cmake -DOUT=... -DSOURCES=... -P embed_wgsl.cmake
set(body "// Generated from csrc/ops/webgpu/shaders/*.wgsl by cmake/embed_wgsl.cmake: do not edit.\n")
string(APPEND body "#include <cstring>\n\n#include \"ops/webgpu/shaders.h\"\n\nnamespace unigemma::webgpu {\n\n")
string(APPEND body "const char* shader_source(const char* name) {\n")
foreach(f ${SOURCES})
  get_filename_component(stem ${f} NAME_WE)
  file(READ ${f} text)
  string(FIND "${text}" ")WGSL\"" bad)
  if(NOT bad EQUAL -1)
    message(FATAL_ERROR "${f} contains the raw-string delimiter )WGSL\"")
  endif()
  string(APPEND body "    if (std::strcmp(name, \"${stem}\") == 0)\n        return R\"WGSL(${text})WGSL\";\n")
endforeach()
string(APPEND body "    return nullptr;\n}\n\n}  // namespace unigemma::webgpu\n")
file(WRITE ${OUT}.tmp "${body}")
file(RENAME ${OUT}.tmp ${OUT})
