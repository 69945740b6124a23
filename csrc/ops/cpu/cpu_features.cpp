#include "ops/cpu/cpu_features.h"

#include <algorithm>
#include <cstdlib>

#include "base/error.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#elif defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace unigemma::cpu {

namespace {
Features detect() {
    Features f;
#if defined(__x86_64__) || defined(_M_X64)
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        f.fma = (c >> 12) & 1;
        f.f16c = (c >> 29) & 1;
        bool osxsave = (c >> 27) & 1;
        unsigned long long xcr0 = 0;
        if (osxsave) {
            unsigned lo, hi;
            __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
            xcr0 = (static_cast<unsigned long long>(hi) << 32) | lo;
        }
        bool ymm = (xcr0 & 0x6) == 0x6;     // SSE + AVX state enabled by the OS
        bool zmm = (xcr0 & 0xe6) == 0xe6;   // + opmask and ZMM state
        if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
            f.avx2 = ymm && ((b >> 5) & 1);
            f.avx512f = zmm && ((b >> 16) & 1);
            f.avx512bw = zmm && ((b >> 30) & 1);
            f.avx512dq = zmm && ((b >> 17) & 1);
            f.avx512vl = zmm && ((b >> 31) & 1);
            f.avx512vnni = zmm && ((c >> 11) & 1);
        }
        if (!ymm) f.fma = f.f16c = false;
    }
#elif defined(__aarch64__)
    f.neon = true;
#if defined(__linux__) && defined(HWCAP_ASIMDDP)
    f.dotprod = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#endif
#endif
    return f;
}
}  // namespace

const Features& features() {
    static const Features f = detect();
    return f;
}

std::vector<std::string> available_isas() {
    const Features& f = features();
    std::vector<std::string> out{"scalar"};
    if (f.avx2 && f.fma && f.f16c) out.push_back("avx2");
    if (f.avx2 && f.fma && f.f16c && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq) out.push_back("avx512");
    if (f.neon) out.push_back("neon");
    return out;
}

std::string selected_isa() {
    auto avail = available_isas();
    if (const char* env = std::getenv("UNIGEMMA_ISA"); env && *env) {
        std::string want(env);
        if (std::find(avail.begin(), avail.end(), want) == avail.end()) {
            std::string list;
            for (auto& s : avail) list += (list.empty() ? "" : ", ") + s;
            throw InputError("[cpu] UNIGEMMA_ISA=" + want + " is not available on this CPU (available: " + list + ")");
        }
        return want;
    }
    return avail.back();
}

}  // namespace unigemma::cpu
