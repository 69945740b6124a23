// Attention of a micro-batch of queries over a KV-cache layer, flash-attention style on the
// CPU, reading the cache in its stored type (F32 / F16 / Q8_0 / Q4_0):
//   score_j = scale * q . K[j]        over the visible keys j in [lo, hi]:
//             lo = pos - window + 1 (sliding layers) or 0 (full layers);
//             hi = pos, or key_end[t] (the last position of an image block) when given
//   out = sum_j softmax(score)_j V[j]  in float32
//
// Tiling (ops/cpu/attention.cpp): one task = a block of consecutive queries x the query heads
// of a few KV heads (GQA groups): per KV head R = n_queries * group rows of head_dim floats
// (R about 32 in prefill). Cache rows are read position by position across the task's KV
// heads (adjacent in memory: streams at the read bandwidth, a single head's rows do not). The task
// walks the key blocks that intersect its rows' visible ranges (blocks of key_block(head_dim)
// keys aligned to absolute positions, so a sliding layer touches O(window) keys), converts
// each K / V block to float32 once for all R rows, and updates every row with an online
// softmax (running max m, running sum l, output rescaled when m grows):
//   S = Q K_blk^T (kernels.h attn_scores), P = exp(scale S - m) (attn_softmax),
//   O = alpha O + P V_blk (attn_pv), and at the end out = O / l.
//
// Numerics contract: the output of one query depends only on that query, its positions and
// the cache, never on the other queries of the batch, on n_tokens / pos0 splitting or on the
// thread count (bitwise): every kernel is a per-row function with a fixed order of
// operations, key blocks are aligned to absolute positions, a row only ever touches the
// blocks and columns it can see. Speculative decoding's verify-vs-decode equality relies on it.
#pragma once
#include <cstdint>

#include "ops/cpu/kernels.h"
#include "ops/kv_cache.h"

namespace unigemma::cpu {

using ops::KVLayer;

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
// q, out: [n_head][head_dim]; the same per-row math as attention() above.
void attention_range(const cpu::KernelTable& k, const KVLayer& kv, const float* q, float* out, int n_head,
                     float scale, int64_t lo, int64_t hi, int n_threads);

// Keys per block for a head_dim (one head's float32 K or V block is 32 KiB at most).
// Blocks start at multiples of this position.
int key_block(int head_dim);

}  // namespace unigemma::cpu
