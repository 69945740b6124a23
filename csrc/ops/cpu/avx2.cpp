// AVX2 + FMA + F16C kernel table (work in progress stub).
#include "ops/cpu/kernels.h"
namespace unigemma::cpu {
const KernelTable* avx2_table() {
    static const KernelTable t = [] { KernelTable k; k.isa = "avx2"; return k; }();
    return &t;
}
}  // namespace unigemma::cpu
