// Text decoder of Gemma 4 (arch "gemma4", our files and llama.cpp's) and Gemma 3 (arch
// "gemma3", llama.cpp's files): hyper-parameters read from GGUF metadata and tensor shapes,
// weights bound as views into the mapped file (no copies), and a Context that runs the
// forward pass over micro-batches with its own KV cache.
//
// Forward pass (reference: transformers gemma4_unified; Gemma 3 differences noted):
//   x = E[id] * embed_scale                        (Gemma 4: sqrt(H) rounded as the source
//                                                   checkpoint's dtype did, from our metadata)
//   per layer:  a = rms(x) * attn_norm
//               q = rms_h(Wq a) * q_norm -> RoPE;  k = rms_h(Wk a) * k_norm -> RoPE;
//               v = rms_h(Wv a)  (no weight; Gemma 3: no v norm; k_eq_v: v from Wk a)
//               x += rms(Wo attn(q, K, V)) * post_attention_norm
//               x += rms(Wdown (gelu_tanh(Wgate b) * Wup b)) * post_ffw_norm,  b = rms(x) * ffn_norm
//               x *= layer_output_scale (when present)
//   logits = softcap(rms(x) * output_norm . E^T)   (tied head unless output.weight exists)
// Attention scores are q.k * attn_scale (Gemma 4: 1.0; Gemma 3: 1/sqrt(key_length)); sliding
// layers see keys with q_pos - k_pos < window, full layers every earlier key.
//
// Multimodal input (EvalInput::kinds): a position may take its input vector from a given
// embedding row (image / video / audio soft token; not scaled) instead of E[id]. Positions of
// kind kBidirectional (image and video tokens) form blocks (maximal runs); on sliding layers a
// block's tokens also see the later tokens of the same block (transformers'
// create_masks_for_vision_model: (causal OR same block) AND q_pos - k_pos < window); full layers
// stay causal. A block is never split across micro-batches, so it must fit in n_ubatch.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gguf/gguf_file.h"
#include "model/weight_panels.h"
#include "ops/backend.h"
#include "ops/kv_cache.h"

namespace unigemma::model {

using gguf::GGMLType;

// Weight (weight_panels.h): a matrix as the backends see it (ops::WeightView): GGUF rows, plus
// the CPU's 16-row panels for Q4_0 / Q4_K when repacked at load (owned by the model).

struct LayerSpec {
    bool sliding = false;
    int n_head = 0, n_kv_head = 0, head_dim = 0;
    int64_t n_ff = 0;
    int kv_source = -1;      // layer whose cache this layer attends to (itself if it owns K/V)
    bool has_v = true;       // false: V is the raw K projection (attention_k_eq_v)
    const float* inv_freq = nullptr;  // head_dim/2 RoPE inverse frequencies (0 = not rotated)
};

struct LayerWeights {
    const float* attn_norm = nullptr;
    Weight q, k, v, o;
    const float* q_norm = nullptr;
    const float* k_norm = nullptr;
    const float* post_attn_norm = nullptr;
    const float* ffn_norm = nullptr;
    Weight gate, up, down;
    const float* post_ffw_norm = nullptr;
    float output_scale = 1.0f;  // layer_output_scale (Gemma 4), 1 if absent
};

enum class Arch { Gemma4, Gemma3 };

struct TextHParams {
    Arch arch = Arch::Gemma4;
    std::string arch_name;
    int n_layer = 0;
    int64_t n_embd = 0, n_vocab = 0, n_ctx_train = 0;
    int64_t window = 0;
    float eps = 1e-6f;
    float embed_scale = 1.0f;
    float attn_scale = 1.0f;
    float final_softcap = 0.0f;  // 0: none
    bool v_norm = true;          // Gemma 4: scale-less RMSNorm on V; Gemma 3: none
    std::vector<LayerSpec> layers;
};

class TextModel {
public:
    // Opens and validates `path` (throws GGUFError / ModelError naming the key or tensor).
    explicit TextModel(const std::string& path);
    explicit TextModel(std::shared_ptr<const gguf::GGUFFile> file);
    const TextHParams& hparams() const { return hp_; }
    const LayerWeights& layer(int i) const { return layers_[static_cast<size_t>(i)]; }
    const Weight& token_embd() const { return token_embd_; }
    const Weight& output() const { return output_; }
    const float* output_norm() const { return output_norm_; }
    const gguf::GGUFFile& file() const { return *file_; }
    std::shared_ptr<const gguf::GGUFFile> file_ptr() const { return file_; }
    size_t weight_bytes() const;
    // Bytes of weights held repacked in panels (0: none; see weight_panels.h).
    size_t panel_bytes() const { return panels_ ? panels_->bytes() : 0; }
    // The slot for this model's device weight copies (ops/webgpu/factory.h): filled by the
    // first GPU context, shared by every later one, freed with the model.
    std::shared_ptr<void>& device_weights() const { return device_weights_; }

private:
    void load();
    mutable std::shared_ptr<void> device_weights_;
    std::unique_ptr<PanelStore> panels_;
    std::shared_ptr<const gguf::GGUFFile> file_;
    TextHParams hp_;
    std::vector<LayerWeights> layers_;
    Weight token_embd_, output_;
    const float* output_norm_ = nullptr;
    std::vector<std::vector<float>> inv_freq_;  // [0]: sliding, [1]: full
};

// Largest context a Context accepts (64x the 262144 tokens Gemma 4 was trained for).
constexpr int64_t kMaxContext = int64_t(1) << 24;

struct ContextParams {
    int64_t n_ctx = 4096;
    int64_t n_ubatch = 512;  // tokens per micro-batch of a prefill
    int n_threads = 0;       // 0: the pool default
    GGMLType k_type = GGMLType::F16;
    GGMLType v_type = GGMLType::F16;
    // Activation precision of quantized matmuls: 1 = 8-bit (llama.cpp's), 2 = 8-bit plus the
    // 8-bit residual (~15 bits; see cpu::matmul).
    int act_levels = 1;
    // Where the forward runs: "cpu" or "webgpu" (the open WebGPU device; DeviceError if none).
    std::string backend = "cpu";
};

// Per-position input kinds of Context::eval.
enum : int8_t {
    kTokenInput = 0,          // x = E[id] * embed_scale
    kBidirectionalEmbd = 1,   // x = embd row; bidirectional within its block on sliding layers
    kCausalEmbd = 2,          // x = embd row; plain causal attention (audio)
};

struct EvalInput {
    const float* embd = nullptr;   // [n][n_embd]; row t read only where kinds[t] != kTokenInput
    const int8_t* kinds = nullptr; // [n] or nullptr (all tokens)
};

// Bytes of KV cache a context would allocate at full n_ctx (sliding layers are fixed rings).
size_t kv_cache_bytes(const TextModel& m, const ContextParams& p);

class Context {
public:
    Context(std::shared_ptr<const TextModel> m, const ContextParams& p);
    // Appends tokens at positions n_past() .. and runs them through the model in micro-batches.
    // logits_out: if non-null, receives float32 logits (soft-capped) for the rows selected by
    // `all_logits` (every new token) or else the last token only: [rows][n_vocab].
    // `hidden_out` (optional): the final-norm input (last hidden state) of the same rows, [rows][n_embd].
    // `check_interrupt` is called between micro-batches and layers (may throw to stop; the
    // cache then keeps only the micro-batches that completed).
    // `in`: embedding rows and kinds for multimodal positions (see EvalInput); a bidirectional
    // block must lie inside this call and hold at most n_ubatch positions (else InputError).
    void eval(const int32_t* tokens, int64_t n, bool all_logits, float* logits_out,
              const std::function<void()>& check_interrupt = {}, const EvalInput& in = {});
    int64_t n_past() const { return n_past_; }
    // Post-final-norm hidden states (the input of the head) of the rows whose logits the last
    // eval call returned, [rows][n_embd]: what the MTP drafter reads. Empty when the last call
    // asked for no logits.
    const std::vector<float>& last_hidden() const { return last_hidden_; }
    // The KV cache layer that layer `il` attends to (its own, or its KV-sharing source).
    const ops::KVLayer& kv_layer(int il) const;
    // Drops positions >= n. Returns false (and changes nothing) when a sliding-window ring no
    // longer holds the window that position n - 1 needs; the caller then re-evaluates from 0.
    bool truncate(int64_t n);
    void reset();
    // Allocates (and touches: zero-filled) every layer's cache for n_ctx positions now instead
    // of growing it as the context fills, as llama.cpp does at context creation.
    void reserve_all();
    size_t kv_bytes_allocated() const;
    // Continuous batching: appends one token to each of `ctxs` (distinct contexts of one model,
    // same act_precision) in one forward pass; every matmul reads the weights once for all of
    // them. logits_out: [ctxs.size()][n_vocab], row i for ctxs[i]; each row is bitwise what
    // ctxs[i]->eval of that token alone returns. Throws (changing nothing) on a full context,
    // a bad token id or mixed models.
    static void decode_batch(const std::vector<Context*>& ctxs, const int32_t* tokens, float* logits_out,
                             const std::function<void()>& check_interrupt = {});
    const ContextParams& params() const { return p_; }
    const char* backend_name() const { return backend_->name(); }
    const TextModel& model() const { return *m_; }

private:
    // Rows [row0, row0 + n) of a forward pass continue `ctx` at its n_past; kinds: the rows'
    // input kinds (nullptr: all tokens).
    struct Segment {
        Context* ctx;
        int64_t row0, n;
        const int8_t* kinds;
    };
    // Activation tensors of a forward pass over `rows` rows (widths: the widest layer's).
    struct Activations {
        ops::Tensor x, a, o, q, k, v, att, g, u;
    };
    static void forward(Segment* segs, size_t n_seg, const int32_t* tokens, int64_t n, const EvalInput& in,
                        bool all_logits, float* logits_out, const std::function<void()>& check_interrupt);
    void eval_ubatch(const int32_t* tokens, int64_t n, bool all_logits, float* logits_out,
                     const std::function<void()>& check_interrupt, const EvalInput& in);
    // Carves the activations of `rows` rows out of the kept arena (decode and verify steps:
    // allocated once, on first use) or out of `transient` (a prefill micro-batch: one
    // allocation per forward, released after it, so an idle context holds only the small one).
    Activations activations(int64_t rows, std::unique_ptr<ops::Buffer>& transient);
    std::shared_ptr<const TextModel> m_;
    ContextParams p_;
    std::unique_ptr<ops::Backend> backend_;
    std::vector<std::unique_ptr<ops::KVLayer>> kv_;  // per layer; nullptr for KV-shared layers
    int64_t n_past_ = 0;
    std::vector<float> last_hidden_;
    // Host-side per-row metadata of a forward, kept between calls (capacity only grows).
    std::vector<int64_t> pos_, key_end_;
    std::unique_ptr<ops::Buffer> arena_;  // activations of up to kKeptRows rows
    int64_t max_qw_ = 0, max_kw_ = 0, max_ff_ = 0;  // widest layer's q, k/v and FFN rows
};

}  // namespace unigemma::model
