// Kernel table dispatch: activation partner of each weight type, the per-ISA tables with
// their empty entries filled from the scalar table, and the table of the selected path.
#include <algorithm>
#include <map>
#include <memory>
#include <mutex>

#include "base/error.h"
#include "ops/cpu/cpu_features.h"
#include "ops/cpu/kernels.h"

namespace unigemma::cpu {

GGMLType activation_type(GGMLType weight) {
    switch (weight) {
        case GGMLType::F32:
        case GGMLType::F16:
        case GGMLType::BF16: return GGMLType::F32;
        case GGMLType::Q4_0:
        case GGMLType::Q5_0:
        case GGMLType::Q8_0: return GGMLType::Q8_0;
        case GGMLType::Q4_1:
        case GGMLType::Q5_1: return GGMLType::Q8_1;
        case GGMLType::Q2_K:
        case GGMLType::Q3_K:
        case GGMLType::Q4_K:
        case GGMLType::Q5_K:
        case GGMLType::Q6_K: return GGMLType::Q8_K;
        default: break;
    }
    const auto tr = gguf::type_traits(static_cast<uint32_t>(weight));
    throw InputError(std::string("[kernels] no matmul kernel for weight type ") +
                     (tr.name ? tr.name : "id " + std::to_string(static_cast<uint32_t>(weight))));
}

std::vector<std::string> kernel_variants() {
    std::vector<std::string> out;
    const auto avail = available_isas();
    auto has = [&](const char* s) { return std::find(avail.begin(), avail.end(), s) != avail.end(); };
    const Features& f = features();
    if (has("avx512") && f.avx512vnni) out.push_back("avx512-novnni");
    if (has("neon") && f.dotprod) out.push_back("neon-nodotprod");
    return out;
}

namespace {

const KernelTable* raw_table(const std::string& isa) {
    if (isa == "scalar") return scalar_table();
#if defined(__x86_64__) || defined(_M_X64)
    if (isa == "avx2") return avx2_table();
    if (isa == "avx512") return avx512_table();
    if (isa == "avx512-novnni") return avx512_novnni_table();
#endif
#if defined(__aarch64__)
    if (isa == "neon") return neon_table();
    if (isa == "neon-nodotprod") return neon_nodotprod_table();
#endif
    return nullptr;
}

template <class T>
void fill(T& dst, const T& src) {
    if (!dst) dst = src;
}

std::unique_ptr<KernelTable> merged(const KernelTable& t, const KernelTable& s) {
    auto m = std::make_unique<KernelTable>(t);
    for (int i = 0; i < kMaxTypeId; ++i) {
        fill(m->vec_dot[i], s.vec_dot[i]);
        fill(m->tile_dot[i], s.tile_dot[i]);
        fill(m->quantize_act[i], s.quantize_act[i]);
        fill(m->axpy_row[i], s.axpy_row[i]);
    }
    fill(m->rms_norm, s.rms_norm);
    fill(m->layer_norm, s.layer_norm);
    fill(m->gelu_tanh, s.gelu_tanh);
    fill(m->gelu_tanh_mul, s.gelu_tanh_mul);
    fill(m->softmax, s.softmax);
    fill(m->softcap, s.softcap);
    fill(m->add, s.add);
    fill(m->mul, s.mul);
    fill(m->scale, s.scale);
    fill(m->rope_neox, s.rope_neox);
    if (!m->isa) m->isa = s.isa;
    return m;
}

std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
}

}  // namespace

const KernelTable& kernels_for(const std::string& isa) {
    static std::mutex mu;
    static std::map<std::string, std::unique_ptr<KernelTable>> cache;
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = cache.find(isa); it != cache.end()) return *it->second;

    auto avail = available_isas();
    const auto variants = kernel_variants();
    const bool runnable = std::find(avail.begin(), avail.end(), isa) != avail.end() ||
                          std::find(variants.begin(), variants.end(), isa) != variants.end();
    if (!runnable) {
        avail.insert(avail.end(), variants.begin(), variants.end());
        throw InputError("[kernels] ISA path '" + isa + "' is not available on this CPU (available: " + join(avail) +
                         ")");
    }
    const KernelTable* t = raw_table(isa);
    if (!t) throw InputError("[kernels] ISA path '" + isa + "' is not compiled into this build");
    const KernelTable* s = scalar_table();
    auto m = merged(*t, *s);
    add_attention_kernels(*m, isa);
    const KernelTable& ref = *m;
    cache.emplace(isa, std::move(m));
    return ref;
}

const KernelTable& kernels() {
    static const KernelTable& t = kernels_for(selected_isa());
    return t;
}

}  // namespace unigemma::cpu
