// Host API of the CUDA kernels (ops/cuda/*.cu). Plain C++: callers need no CUDA header; a
// stream is passed as an opaque pointer (a cudaStream_t; nullptr = the legacy default stream).
// Every pointer argument is device memory unless named otherwise. Launchers check their
// arguments and the launch (cudaGetLastError) and throw unigemma::InputError for bad
// arguments, cuda::CudaError for a CUDA runtime failure; they never abort. Launches are
// asynchronous: a kernel's own fault surfaces at the next synchronizing call.
//
// Layouts are those of the CPU path (model/text_forward.cpp): activations float32,
// token-major ([n_tokens][width]); weights in their GGUF blocks, row-major [rows][row_bytes]
// (block_math.cuh: the types and their exact arithmetic); KV cache rows as ops/kv_cache.h
// ([slot][n_kv_head] rows of head_dim elements, F16 or Q8_0).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/error.h"

namespace unigemma::cuda {

// A CUDA runtime call failed (out of memory, no device, a kernel fault reported late).
struct CudaError : Error {
    using Error::Error;
};

using Stream = void*;

// Weight types the kernels read: GGML ids F32, F16, BF16, Q4_0, Q8_0, Q4_K, Q6_K.
bool weight_type_supported(int ggml_type);

// ---------------------------------------------------------------- matmul (gemv_quant.cu, gemm_wmma.cu)

// Decode GEMV, y[c * rows + r] = W[r] . x[c * cols ..], c < n_tok, 1 <= n_tok <= 8 (a decode
// step, or the speculative verify pass). One warp per row, the reduction order of
// block_math.cuh: the result of a column never depends on n_tok (batch invariant), and equals
// the host twin twin_row_dot bit for bit. cols % 32 == 0 (% 256 for K-quants).
void gemv(int type, const void* w, int64_t rows, int64_t cols, const float* x, int n_tok, float* y, Stream s);

// Prefill GEMM on tensor cores, y[t * rows + r] = W[r] . x[t], t < n (any n >= 1):
// each 32-element weight unit is decoded exactly (decode_unit) and rounded to half in shared
// memory; activations are scaled per token by a power of two 2^-e (e chosen so max |x_t| maps
// into [2^13, 2^14), keeping half far from overflow) and rounded to half; wmma 16x16x16 with
// float32 accumulation; y = acc * 2^e (exact). Error: about 2^-11 relative per product
// (two half roundings), i.e. |y - exact| <~ 1e-3 * sum_i |w_i x_i|. Needs sm_70+.
// `scratch`: n floats of device memory (the per-token scales).
void gemm(int type, const void* w, int64_t rows, int64_t cols, const float* x, int64_t n, float* y, float* scratch,
          Stream s);

// ---------------------------------------------------------------- elementwise (elementwise.cu)
// Same formulas as ops/cpu/scalar.cpp; results differ from the CPU by float32 rounding
// (tanh / sin / cos / sqrt are CUDA's, not glibc's; the RMS sum is reduced in a tree).

// y[r] = x[r] * rsqrt(mean(x[r]^2) + eps) * w (w nullptr: no weight), rows of n; the sum of
// squares in double, as the CPU. y may alias x.
void rms_norm(float* y, const float* x, const float* w, int64_t n_rows, int64_t n, float eps, Stream s);
// NEOX RoPE in place on x[n_tok][n_head][head_dim]: token t at position pos0 + t, pairs
// (i, i + hd/2) rotate by pos * inv_freq[i] (inv_freq device array of hd/2; 0 = unrotated).
void rope_neox(float* x, int64_t n_tok, int n_head, int head_dim, int64_t pos0, const float* inv_freq, Stream s);
void gelu_tanh_mul(float* y, const float* gate, const float* up, int64_t n, Stream s);  // gelu(gate) * up
void softcap(float* y, const float* x, int64_t n, float cap, Stream s);               // cap * tanh(x / cap)
void add(float* y, const float* a, const float* b, int64_t n, Stream s);
void scale(float* y, const float* x, float v, int64_t n, Stream s);
// x[t] = decode(table row ids[t]) * scale, rows of `cols` in `type` (the token embedding);
// ids is a device array of n int32.
void get_rows(int type, const void* table, int64_t cols, const int32_t* ids, int64_t n, float scale, float* x,
              Stream s);

// ---------------------------------------------------------------- KV cache + attention (attention.cu)

struct KVView {
    uint8_t* k = nullptr;  // [cap][n_kv_head] rows
    uint8_t* v = nullptr;
    int k_type = 1, v_type = 1;  // F16 (1) or Q8_0 (8)
    int n_kv_head = 0, head_dim = 0;
    int64_t cap = 0;      // slots
    bool ring = false;    // sliding layer: slot = pos % cap; else slot = pos
};

// Stores k, v [n_tok][n_kv_head][head_dim] floats for positions pos0.. into the cache,
// encoded exactly as the CPU cache does (block_math.cuh encode_q8_0_block / ug_f32_to_f16).
void kv_store(const KVView& kv, const float* k, const float* v, int64_t n_tok, int64_t pos0, Stream s);

struct AttnArgs {
    const float* q = nullptr;  // [n_tok][n_head][head_dim], normed and rotated
    float* out = nullptr;      // [n_tok][n_head][head_dim]
    int64_t n_tok = 0, pos0 = 0;
    int n_head = 0;
    float scale = 1.0f;
    int64_t window = 0;              // 0: full (causal) attention
    const int64_t* key_end = nullptr;  // device [n_tok] or nullptr (ops/cpu/attention.h)
    int64_t key_end_max = 0;          // host-known max of key_end (bounds the launch)
};

// Split-K flash attention (online softmax per split of kAttnSplit keys aligned to absolute
// positions, splits merged in ascending order): a query's result depends only on the query,
// its visible range and the cache (batch invariant). head_dim 256 or 512 (any multiple of 32
// up to 512 works). `workspace` bytes >= attention_workspace_bytes(...); the launcher runs
// the tokens in groups that fit it.
constexpr int kAttnSplit = 1024;
size_t attention_workspace_bytes(int n_head, int head_dim, int64_t n_ctx);
void attention(const KVView& kv, const AttnArgs& a, void* workspace, size_t workspace_bytes, Stream s);

// ---------------------------------------------------------------- sampler (sampler.cu)

// Greedy: the lowest id holding the maximum of logits[V] -> *out (device int32).
void argmax(const float* logits, int32_t V, int32_t* out, Stream s);
// Top-k / top-p / min-p / temperature draw on device (sampler_math.cuh: semantics, the
// fallback cases). `u`: the host generator's uniform. Results (device int32[3]):
// {token, status (SampleStatus), n_kept}. `workspace` >= sample_workspace_bytes(V).
size_t sample_workspace_bytes(int32_t V);
void sample(const float* logits, int32_t V, int32_t top_k, float top_p, float min_p, float temperature, double u,
            int32_t* result, void* workspace, Stream s);

// ---------------------------------------------------------------- runtime helpers (device_query.cu)

// Throws CudaError naming `what` when code != 0 (cudaSuccess); clears the error state.
void check_cuda(int code, const char* what);

}  // namespace unigemma::cuda
