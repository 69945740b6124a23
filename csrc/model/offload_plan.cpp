// Partial-offload planner (the contract is in offload_plan.h).
#include "model/offload_plan.h"

#include <string>

#include "base/error.h"
#include "gguf/gguf_file.h"
#include "model/text_model.h"
#include "ops/kv_cache.h"

namespace unigemma::model {

namespace {

std::string mib(size_t b) { return std::to_string((b + (1u << 19)) >> 20) + " MiB"; }

// GPU set for the last n layers (plus their KV sources) and its bytes.
struct Placement {
    std::vector<bool> on;
    size_t weights = 0, kv = 0;
    int count = 0;
};

Placement place(const OffloadInput& in, int n) {
    const int L = static_cast<int>(in.layer_weight_bytes.size());
    Placement p;
    p.on.assign(static_cast<size_t>(L), false);
    for (int i = L - n; i < L; ++i) p.on[static_cast<size_t>(i)] = true;
    for (int i = L - n; i < L; ++i) p.on[static_cast<size_t>(in.kv_source[static_cast<size_t>(i)])] = true;
    for (int i = 0; i < L; ++i)
        if (p.on[static_cast<size_t>(i)]) {
            p.weights += in.layer_weight_bytes[static_cast<size_t>(i)];
            p.kv += in.layer_kv_bytes[static_cast<size_t>(i)];
            ++p.count;
        }
    return p;
}

size_t gpu_total(const OffloadInput& in, const Placement& p, bool head) {
    return p.weights + p.kv + (head ? in.head_bytes : 0) + in.compute_reserve;
}

}  // namespace

OffloadPlan plan_offload(const OffloadInput& in) {
    const int L = static_cast<int>(in.layer_weight_bytes.size());
    if (L == 0) throw InputError("[offload] the model has no layers");
    if (in.layer_kv_bytes.size() != static_cast<size_t>(L) || in.kv_source.size() != static_cast<size_t>(L))
        throw InputError("[offload] per-layer lists differ in length");
    for (int i = 0; i < L; ++i) {
        const int s = in.kv_source[static_cast<size_t>(i)];
        if (s < 0 || s > i) throw InputError("[offload] layer " + std::to_string(i) + ": kv_source " + std::to_string(s) + " is not an earlier layer");
    }
    const int req = in.n_gpu_layers;
    if (req < kOffloadAuto || req > L)
        throw InputError("[offload] n_gpu_layers " + std::to_string(req) + " is outside -2 (auto), -1 (all), 0.." +
                         std::to_string(L));

    OffloadPlan plan;
    // largest N that fits (the head goes with N == L)
    for (int n = L; n >= 0; --n) {
        if (gpu_total(in, place(in, n), n == L) <= in.device_free) {
            plan.max_fit = n;
            break;
        }
        if (n == 0) plan.max_fit = -1;  // not even the compute reserve fits
    }
    const int n = req == kOffloadAll ? L : req == kOffloadAuto ? (plan.max_fit < 0 ? 0 : plan.max_fit) : req;
    const Placement p = place(in, n);
    const bool head = n == L;
    const size_t need = gpu_total(in, p, head);
    if (n > 0 && need > in.device_free) {
        std::string msg = "[offload] " + std::to_string(n) + " of " + std::to_string(L) + " layers" +
                          (head ? " and the output head" : "") + " need " + mib(need) + " on the GPU (weights " +
                          mib(p.weights) + ", KV cache " + mib(p.kv) + (head ? ", head " + mib(in.head_bytes) : "") +
                          ", compute " + mib(in.compute_reserve) + "), the device has " + mib(in.device_free) + " free";
        msg += plan.max_fit >= 0 ? "; n_gpu_layers <= " + std::to_string(plan.max_fit) + " fits (or a smaller n_ctx)"
                                 : "; not even the compute buffers fit";
        throw InputError(msg);
    }
    plan.on_gpu = n > 0 ? p.on : std::vector<bool>(static_cast<size_t>(L), false);
    plan.n_gpu = n > 0 ? p.count : 0;
    plan.n_requested = n;
    plan.head_on_gpu = head && n > 0;
    plan.gpu_bytes = n > 0 ? need : 0;
    size_t cpu = 0;
    for (int i = 0; i < L; ++i)
        if (!plan.on_gpu[static_cast<size_t>(i)])
            cpu += in.layer_weight_bytes[static_cast<size_t>(i)] + in.layer_kv_bytes[static_cast<size_t>(i)];
    const bool embd_on_gpu = plan.head_on_gpu && in.head_tied;
    if (!embd_on_gpu) cpu += in.embd_bytes;
    if (!plan.head_on_gpu && !in.head_tied) cpu += in.head_bytes;
    plan.cpu_bytes = cpu;
    return plan;
}

OffloadInput offload_input(const model::TextModel& m, const model::ContextParams& p) {
    const auto& hp = m.hparams();
    OffloadInput in;
    auto wb = [](const model::Weight& w) { return w ? static_cast<size_t>(w.rows) * w.row_bytes : size_t(0); };
    for (int i = 0; i < hp.n_layer; ++i) {
        const auto& s = hp.layers[static_cast<size_t>(i)];
        const auto& w = m.layer(i);
        size_t b = wb(w.q) + wb(w.k) + wb(w.v) + wb(w.o) + wb(w.gate) + wb(w.up) + wb(w.down);
        b += sizeof(float) * (4 * static_cast<size_t>(hp.n_embd) + 2 * static_cast<size_t>(s.head_dim));  // norms
        in.layer_weight_bytes.push_back(b);
        in.kv_source.push_back(s.kv_source);
        in.layer_kv_bytes.push_back(s.kv_source == i ? ops::KVLayer::bytes_at({s.sliding, s.n_kv_head, s.head_dim}, hp.window,
                                                                          p.n_ctx, p.n_ubatch, p.k_type, p.v_type)
                                                     : 0);
    }
    in.embd_bytes = wb(m.token_embd());
    // tied: no output.weight in the file (the model may hold the head in a repacked copy, so
    // pointer equality does not tell)
    in.head_tied = m.file().find_tensor("output.weight") == nullptr;
    in.head_bytes = wb(m.output()) + sizeof(float) * static_cast<size_t>(hp.n_embd);  // + output_norm
    return in;
}

}  // namespace unigemma::model
