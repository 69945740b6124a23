// Run-time CPU feature detection (CPUID on x86-64, HWCAP on aarch64) and the ISA path
// choice that the kernel dispatch table follows. UNIGEMMA_ISA=scalar|avx2|avx512|neon
// overrides the choice (for tests and benchmarks); asking for a path the CPU lacks throws.
#pragma once
#include <string>
#include <vector>

namespace unigemma::cpu {

struct Features {
    bool avx2 = false, fma = false, f16c = false;
    bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false, avx512vnni = false;
    bool neon = false, dotprod = false;
};

const Features& features();
// Paths this CPU can run, best last (always starts with "scalar").
std::vector<std::string> available_isas();
// The chosen path: UNIGEMMA_ISA if set (validated), else the best available.
std::string selected_isa();

}  // namespace unigemma::cpu
