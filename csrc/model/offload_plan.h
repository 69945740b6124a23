// Placement of the text decoder between the GPU and the CPU (partial offload), decided on the
// host from byte counts alone (pure logic, tested without a GPU).
//
// n_gpu_layers (the llama.cpp option, with its direction):
//   -1  every layer and the output head on the GPU; InputError when that does not fit.
//   -2  "auto": the largest N that fits (the head too when every layer fits).
//   N   (0 <= N <= n_layer) the LAST N layers on the GPU (the first ones run on the CPU, so a
//       prefill streams through CPU layers first and the logits come out of the GPU);
//       N == n_layer also puts the head on the GPU. N > n_layer is an InputError.
// KV sharing: a layer attends to the cache of its kv_source layer; a GPU layer whose source is
// on the CPU pulls that source onto the GPU too (caches never cross the bus per step), so the
// GPU set is "last N layers plus their sources", and the plan reports it.
// The token-embedding table stays on the CPU (lookups of a few rows per step) unless the head
// is tied to it and on the GPU, in which case the head's copy serves both.
// Fit: weights + KV (at n_ctx) of the GPU layers + head (if placed) + compute reserve
//      <= device free bytes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace unigemma::model {
class TextModel;
struct ContextParams;
}  // namespace unigemma::model

namespace unigemma::model {

constexpr int kOffloadAll = -1;
constexpr int kOffloadAuto = -2;

struct OffloadInput {
    std::vector<size_t> layer_weight_bytes;  // per layer: matrices + norm vectors
    std::vector<size_t> layer_kv_bytes;      // per layer at n_ctx (0 for a KV-shared layer)
    std::vector<int> kv_source;              // per layer (itself when it owns its cache)
    size_t head_bytes = 0;                   // output matrix (the embedding table when tied)
    size_t embd_bytes = 0;                   // token-embedding table
    bool head_tied = true;
    size_t compute_reserve = 0;              // activations, workspaces, CUDA graphs
    size_t device_free = 0;
    int n_gpu_layers = kOffloadAll;
};

struct OffloadPlan {
    std::vector<bool> on_gpu;  // per layer
    int n_gpu = 0;             // layers on the GPU (including pulled-in KV sources)
    int n_requested = 0;       // N after resolving -1 / -2
    bool head_on_gpu = false;
    size_t gpu_bytes = 0;      // everything placed on the GPU, compute reserve included
    size_t cpu_bytes = 0;      // weights + KV left on the CPU (embedding table included)
    int max_fit = 0;           // largest N that fits (what -2 picks)
};

// Throws InputError (naming the numbers) for a request that does not fit or is out of range.
OffloadPlan plan_offload(const OffloadInput& in);

// Byte counts of a loaded model at a context's size (everything but compute_reserve,
// device_free and n_gpu_layers).
OffloadInput offload_input(const model::TextModel& m, const model::ContextParams& p);

}  // namespace unigemma::model
