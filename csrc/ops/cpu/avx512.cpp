// AVX-512 kernel table (work in progress stub).
#include "ops/cpu/kernels.h"
namespace unigemma::cpu {
const KernelTable* avx512_table() {
    static const KernelTable t = [] { KernelTable k; k.isa = "avx512"; return k; }();
    return &t;
}
const KernelTable* avx512_novnni_table() {
    static const KernelTable t = [] { KernelTable k; k.isa = "avx512-novnni"; return k; }();
    return &t;
}
}  // namespace unigemma::cpu
