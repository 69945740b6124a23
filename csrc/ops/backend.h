// The backend seam: where tensors live and how the ops of a forward pass run. The model
// (model/text_forward.cpp) says which ops run in which order, once, against this interface;
// a backend (ops/cpu today; WebGPU and CUDA next) owns memory and kernels.
//
// Memory. Activations are float32 matrices [rows][cols], row-major (Tensor). A backend hands
// out activation memory through alloc(); a context allocates its arena once (sized for its
// micro-batch) and carves tensors out of it, so a decode step allocates nothing. Tensor::data
// is an address in the backend's memory: a host pointer on the CPU, a device pointer for
// CUDA; a backend without raw device pointers (WebGPU) hands out addresses of its own (base +
// offset into one buffer) and resolves them. Weights are named by their host view
// (WeightView, norm vectors as const float*): the CPU reads them in place; a device backend
// uploads each once (place_weights) and keys its copies by the host address.
// Per-row metadata that the host computes (token ids, positions, image-block ends) is passed
// as host arrays; a device backend uploads it with the step.
//
// Ops are batched over rows (tokens) and heads, so a device backend records one command
// stream per forward and reads back only what read() asks for (the logits rows). Every op's
// result for a row depends only on that row (and, for attention, on the cache): a token gives
// the same bits alone or inside a batch on every backend that honours this contract, which
// speculative verification and continuous batching rely on.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "gguf/ggml_types.h"
#include "ops/kv_cache.h"

namespace unigemma::ops {

using gguf::GGMLType;

// A weight matrix, PyTorch order [rows = out][cols = in], as the file stores it (GGUF rows of
// `type` blocks, row_bytes apart) plus an optional backend layout of the same matrix
// (CPU: Q4_0 / Q4_K repacked into 16-row panels, ops/cpu/panels.h; nullptr when not repacked).
struct WeightView {
    const uint8_t* data = nullptr;
    GGMLType type = GGMLType::F32;
    int64_t rows = 0, cols = 0;
    size_t row_bytes = 0;
    const uint8_t* panels = nullptr;
    explicit operator bool() const { return data != nullptr; }
};

// float32 [rows][cols] in a backend's memory; rows are cols floats apart (dense).
struct Tensor {
    float* data = nullptr;
    int64_t rows = 0, cols = 0;
    Tensor rows_of(int64_t r0, int64_t n) const { return Tensor{data + r0 * cols, n, cols}; }
    int64_t size() const { return rows * cols; }
};

// Backend memory of n_floats float32 values; freed with the object.
class Buffer {
public:
    virtual ~Buffer() = default;
    virtual float* data() = 0;
    virtual size_t n_floats() const = 0;
};

// One attention call: queries of one sequence over one KV layer. q, out: [n_tokens][n_head *
// head_dim] (q normed and rotated); query t sits at position pos0 + t and sees keys
// (pos - window, pos] (window 0: every earlier key), or up to key_end[t] (host [n_tokens],
// image blocks on sliding layers; nullptr: causal).
struct AttentionCall {
    int64_t pos0 = 0;
    int n_head = 0;
    float scale = 1.0f;
    int64_t window = 0;
    const int64_t* key_end = nullptr;
};

// Whether a backend's matmul() / matmul_rows() read a weight of a given type and row length.
struct MatmulSupport {
    enum Kind { Ok, NoKernel, RowLength };
    Kind kind = Ok;
    std::string why;  // not Ok: a phrase naming the type ("type Q2_K has no kernel on the avx2 path")
    explicit operator bool() const { return kind == Ok; }
};

class Backend {
public:
    virtual ~Backend() = default;
    virtual const char* name() const = 0;

    virtual std::unique_ptr<Buffer> alloc(size_t n_floats) = 0;
    // NoKernel: no kernel for `type` here; RowLength: rows of `cols` elements are not whole
    // blocks of the type (or of its activation format). A model checks its weights at load.
    virtual MatmulSupport matmul_support(GGMLType type, int64_t cols) const = 0;

    // One forward pass is the ops between these two calls: a device backend records them into
    // one submission and the host copies that read() asked for are complete when
    // end_forward() returns (the CPU runs each op as it is called: both are no-ops). A forward
    // that throws (an interrupt between layers) never reaches end_forward(): the next
    // begin_forward() discards what was recorded.
    virtual void begin_forward() {}
    virtual void end_forward() {}

    // x[t] = E[tokens[t]] * scale for token rows; rows whose kinds[t] != 0 take embd[t]
    // (host [n][cols], soft tokens: not scaled). kinds / embd may be nullptr (all tokens).
    virtual void embed(const WeightView& E, const int32_t* tokens, const int8_t* kinds, const float* embd, float scale,
                       Tensor x) = 0;
    // y = x . W^T over every row: y[t][r] = dot(W[r], x[t]). act_levels: activation precision
    // of quantized weights (1: 8-bit, 2: 8-bit + 8-bit residual).
    virtual void matmul(const WeightView& w, Tensor x, Tensor y, int act_levels) = 0;
    // y[t] = x[t] / rms(x[t]) * w (w nullptr: no weight), per row of cols elements.
    virtual void rms_norm(Tensor y, Tensor x, const float* w, float eps) = 0;
    // Per row t, per head h of head_dim elements of x (in place): x = rms(x) * w (w nullptr: no
    // weight), then NeoX RoPE at position pos[t] with inv_freq (head_dim / 2; nullptr: none).
    virtual void head_norm_rope(Tensor x, int head_dim, const float* w, float eps, const int64_t* pos,
                                const float* inv_freq) = 0;
    virtual void add(Tensor x, Tensor y) = 0;                 // x += y
    virtual void scale(Tensor x, float s) = 0;                // x *= s
    virtual void copy(Tensor dst, Tensor src) = 0;            // same shape
    virtual void gelu_tanh_mul(Tensor g, Tensor u) = 0;       // g = gelu_tanh(g) * u
    virtual void softcap(Tensor x, float cap) = 0;            // x = cap * tanh(x / cap)

    // Per row t of x [n][cols]: y[t] = (x[t] - mean) / sqrt(var + eps) * w + b, mean and
    // variance over the row's cols elements in float32 (the kernel table's layer_norm).
    virtual void layer_norm(Tensor y, Tensor x, const float* w, const float* b, float eps) = 0;
    // LayerNorm whose statistics are accumulated in double, two passes over x[t] in its own
    // order (mean, then the sum of squared deviations): for inputs whose mean is far from 0
    // (pixels in [0, 1]), where a float32 variance loses most of its bits. The output takes
    // its elements in another order: y[t][i] = (x[t][src[i]] - mean) * rstd * w[i] + b[i]
    // (src: host [cols], a permutation of the row constant over the model's life, like a
    // weight; nullptr: src[i] = i). y and x are the same shape and distinct.
    virtual void layer_norm_f64(Tensor y, Tensor x, const int32_t* src, const float* w, const float* b,
                                float eps) = 0;
    virtual void add_bias(Tensor x, const float* b) = 0;  // x[t] += b (b: cols floats) for every row
    // Two rows of an embedding table (host [*][cols] floats, like a weight) summed, then added:
    // x[t] += (table[ra[t]] + table[rb[t]]), the sum rounded once before the add (ra, rb: host
    // [n] row indices). The vision embedder's x (column) + y (row) position embedding.
    virtual void add_table_rows(Tensor x, const float* table, const int64_t* ra, const int64_t* rb) = 0;

    // K / V rows [n][n_kv_head * head_dim] of positions pos[t] (host) into the cache, in its types.
    virtual void kv_store(KVLayer& kv, Tensor k, Tensor v, const int64_t* pos) = 0;
    virtual void attention(const KVLayer& kv, Tensor q, Tensor out, const AttentionCall& call) = 0;
    // Cross attention without K / V of its own (the MTP drafter reading the target's cache):
    // every row of q, out [n][n_head * head_dim] (q normed and rotated) attends to the keys at
    // the positions [lo, hi] of kv, all of which the layer must hold; per row the same math
    // (and bits) as attention().
    virtual void attention_range(const KVLayer& kv, Tensor q, Tensor out, int n_head, float scale, int64_t lo,
                                 int64_t hi) = 0;
    // y[t][i] = dot(W[row_ids[i]], x[t]) for i < y.cols (row_ids: host [y.cols], each in
    // [0, w.rows)): the logits of a few thousand scattered vocabulary rows (the drafter's
    // ordered-embedding head) without reading the others. Per element the bits of matmul()'s
    // one-row product over the GGUF rows (never the panel layout).
    virtual void matmul_rows(const WeightView& w, const int32_t* row_ids, Tensor x, Tensor y, int act_levels) = 0;

    // A [rows][cols] tensor for results that read() then copies to `host`: the host memory
    // itself where the backend computes in host memory (CPU: no copy of a 262144-wide
    // logits row), else backend scratch.
    virtual Tensor output_tensor(float* host, int64_t rows, int64_t cols) = 0;
    // Copies x to host memory (floats [rows][cols]); nothing to do when x is that memory.
    virtual void read(Tensor x, float* host) = 0;
    // Copies host floats [rows][cols] into x (inputs that the host holds: a hidden state
    // handed back by the caller, image patches, audio frames).
    virtual void write(Tensor x, const float* host) = 0;
};

}  // namespace unigemma::ops
