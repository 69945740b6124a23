#!/usr/bin/env bash
# Builds unigemma._core with AddressSanitizer + UndefinedBehaviorSanitizer into
# build-asan/, next to a copy of the Python package, and prints the environment to run it:
#   eval "$(tools/build_sanitized.sh)"; python -m pytest tests/test_gguf_reader.py
# Python itself is not instrumented, so libasan is preloaded and leak checks are off
# (the interpreter's own allocations would drown real reports).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build-asan"
py="${PYTHON:-python3}"
# -O1 -g1 (line tables): ASan's recommended level, about 1.5x faster to compile than -O2 -g on
# 2 cores, and reports still carry file:line. CUDA off: the device sources are not host code
# ASan can check (their host twins in bindings/init_cuda.cpp are built either way).
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUNIGEMMA_PYTHON=ON -DUNIGEMMA_CUDA=OFF \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" \
  -DUNIGEMMA_SANITIZE=ON -DPython_EXECUTABLE="$(command -v "$py")" \
  -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" >&2
cmake --build "$build" -j "$(nproc)" >&2
rm -rf "$build/pkg" && mkdir -p "$build/pkg"
cp -r "$root/python/unigemma" "$build/pkg/"
cp "$build"/_core*.so "$build/pkg/unigemma/"
cxx="${CXX:-g++}"
echo "export PYTHONPATH='$build/pkg'"
echo "export LD_PRELOAD='$($cxx -print-file-name=libasan.so) $($cxx -print-file-name=libubsan.so)'"
echo "export ASAN_OPTIONS='detect_leaks=0:abort_on_error=1:halt_on_error=1'"
echo "export UBSAN_OPTIONS='print_stacktrace=1:halt_on_error=1'"
