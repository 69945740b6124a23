#!/usr/bin/env bash
# Cross-compiles the CPU kernel self-test (tools/harness/kernel_selftest.cpp) for aarch64 with
# Debian's toolchain and runs it under qemu-user, twice:
#   -cpu max         NEON + dotprod: tests "scalar", "neon" (sdot kernels) and "neon-nodotprod";
#   -cpu cortex-a57  NEON without dotprod: tests "scalar" and "neon" (smull/sadalp kernels).
# Needs: apt-get install -y g++-aarch64-linux-gnu qemu-user
# Usage: tools/harness/run_neon_selftest.sh [selftest args...]   (env: CXX_AARCH64, QEMU_AARCH64,
# BUILD_DIR to keep the objects between runs). Exit status: non-zero if any run fails.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CXX=${CXX_AARCH64:-aarch64-linux-gnu-g++}
QEMU=${QEMU_AARCH64:-qemu-aarch64}
OUT=${BUILD_DIR:-$(mktemp -d)}
mkdir -p "$OUT/obj"

command -v "$CXX" >/dev/null || { echo "missing $CXX (apt-get install g++-aarch64-linux-gnu)"; exit 2; }
command -v "$QEMU" >/dev/null || { echo "missing $QEMU (apt-get install qemu-user)"; exit 2; }

FLAGS=(-std=c++17 -O2 -I"$ROOT/csrc" -Wall -Wextra)
objs=()
compile() {  # src [extra flags...]
    local src=$1; shift
    local obj="$OUT/obj/$(echo "${src#$ROOT/csrc/}" | tr '/' '_' | sed 's/\.cpp$/.o/')"
    "$CXX" "${FLAGS[@]}" "$@" -c "$src" -o "$obj"
    objs+=("$obj")
}

# The same per-file rules as CMakeLists.txt: quant/ without FP contraction, neon_dotprod*.cpp
# with the dotprod target, x86-only files left out.
compile "$ROOT/csrc/gguf/ggml_types.cpp"
for f in "$ROOT"/csrc/quant/*.cpp; do compile "$f" -ffp-contract=off; done
for f in "$ROOT"/csrc/ops/cpu/*.cpp; do
    case "$(basename "$f")" in
        avx2*|avx512*) ;;
        neon_dotprod*) compile "$f" -march=armv8.2-a+dotprod+fp16 ;;
        *) compile "$f" ;;
    esac
done
rm -f "$OUT/libcore.a"
aarch64-linux-gnu-ar rcs "$OUT/libcore.a" "${objs[@]}" 2>/dev/null || ar rcs "$OUT/libcore.a" "${objs[@]}"
"$CXX" "${FLAGS[@]}" -static "$ROOT/tools/harness/kernel_selftest.cpp" "$OUT/libcore.a" -lpthread \
    -o "$OUT/kernel_selftest"

status=0
for cpu in max cortex-a57; do
    echo "== qemu-aarch64 -cpu $cpu"
    if ! "$QEMU" -cpu "$cpu" "$OUT/kernel_selftest" "$@"; then status=1; fi
done
exit $status
