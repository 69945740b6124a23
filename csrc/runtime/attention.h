// Attention of a micro-batch of queries over a KV-cache layer, computed directly on the
// cache's element type (F32 / F16 / Q8_0 / Q4_0):
//   score_j = scale * q . K[j]  (q quantized once to the K type's activation format: F32 for
//             F32/F16 caches, Q8_0 for Q8_0/Q4_0; the kernel table's vec_dot does the row dot)
//   p = softmax(score) in float32 over the visible keys j in [lo, hi]:
//             lo = pos - window + 1 (sliding layers) or 0 (full layers);
//             hi = pos, or key_end[t] (the last position of an image block) when given
//   out = sum_j p_j V[j]  (V rows dequantized one at a time, accumulated in float32)
// GQA: query head h reads KV head h / (n_head / n_kv_head). Work is split over
// (query, head) pairs on the thread pool.
#pragma once
#include <cstdint>

#include "ops/cpu/kernels.h"
#include "runtime/kv_cache.h"

namespace unigemma::runtime {

struct AttentionBatch {
    const float* q = nullptr;  // [n_tokens][n_head][head_dim], normed and rotated
    float* out = nullptr;      // [n_tokens][n_head][head_dim]
    int64_t n_tokens = 0;
    int64_t pos0 = 0;          // position of the first query; query t is at pos0 + t
    int n_head = 0;
    float scale = 1.0f;
    int64_t window = 0;        // 0: full attention (causal only)
    // Optional [n_tokens]: last key position query t sees (>= its own position). nullptr:
    // causal. Set on sliding layers for image blocks (bidirectional within the block).
    const int64_t* key_end = nullptr;
};

void attention(const cpu::KernelTable& k, const KVLayer& kv, const AttentionBatch& b, int n_threads);

// One query (no K/V of its own: the MTP drafter's cross-attention into the target's cache)
// over the keys at the explicit positions [lo, hi], every one of which the layer must hold.
// q, out: [n_head][head_dim]; the same per-head math as attention() above.
void attention_range(const cpu::KernelTable& k, const KVLayer& kv, const float* q, float* out, int n_head,
                     float scale, int64_t lo, int64_t hi, int n_threads);

}  // namespace unigemma::runtime
