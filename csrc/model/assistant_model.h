// The MTP drafter ("assistant") of Gemma 4 Unified: GGUF architecture `gemma4-assistant`
// (our converter's `*-assistant.gguf` and llama.cpp's, same keys and tensors; reference §4),
// plus the optional ordered-embedding ("centroid") head from our side file
// `*-assistant-centroids.gguf` (arch `gemma4-assistant-centroids`), which llama.cpp drops.
//
// A draft step (transformers' Gemma4UnifiedAssistantForCausalLM.forward, one position):
//   x  = pre_projection [E_t[token] * embed_scale_t ; h_in]   [2*H_t] -> [H_a]   (E_t: the
//                                                             target's embedding and scale)
//   per layer i (every layer is a KV consumer: q only, K/V read from the target's cache):
//        a = rms(x) * attn_norm
//        q = rms_h(Wq a) * q_norm -> RoPE at `pos` (the drafter's own RoPE tables)
//        x += rms(Wo attn(q, target K/V of layer src(i), keys in range(i))) * post_attention_norm
//        x += rms(Wdown (gelu_tanh(Wgate b) * Wup b)) * post_ffw_norm,  b = rms(x) * ffn_norm
//        x *= layer_output_scale
//   z      = rms(x) * output_norm
//   h_out  = post_projection z                               [H_a] -> [H_t]  (next step's h_in)
//   logits = E_a z  (tied head, no softcap), or the centroid head (below)
//
// Source layers (transformers' "store" layers): a sliding drafter layer reads the target's last
// KV-owning sliding layer, a full one the target's last KV-owning full layer (llama.cpp reads
// layer L-2 / L-1 through the target's reuse map, the same layers when the target ends
// [sliding, full]). Its head_dim and KV-head count must equal that layer's.
//
// Visible keys for a query at position `pos` (every step of a draft round uses the position
// of the round's first token): full layers all target positions < pos; sliding layers the
// positions [pos - W - 1, pos - 1], W = the drafter's sliding_window. That is W + 1 keys: the
// assistant builds a bidirectional sliding mask |q_idx - kv_idx| <= W over the shared K/V
// (q_idx 0) and flips it, so it sees the last W + 1 entries of the K/V the target hands over,
// whose last entry is position pos - 1 when the target's cache holds only accepted positions
// (decision 3 of the reference README; llama.cpp shows only the last W - 1).
//
// Centroid head (Gemma4UnifiedAssistantMaskedEmbedder): c = C z over num_centroids centroid
// rows; the top_k centroids are chosen; the vocabulary is ordered into num_centroids clusters
// of K = V / num_centroids tokens (token_ordering viewed as [num_centroids][K]); logits are
// computed only for the top_k * K tokens of the chosen clusters, every other token gets
// (minimum computed logit - 1). Only top_k * K rows of E_a are read, not V.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gguf/gguf_file.h"
#include "model/text_model.h"

namespace unigemma::model {

struct AssistantHParams {
    std::string arch_name;
    int n_layer = 0;
    int64_t n_embd = 0;      // H_a
    int64_t n_embd_out = 0;  // H_t: width of the target hidden state (embedding_length_out)
    int64_t n_vocab = 0;
    int64_t window = 0;      // sliding_window W
    float eps = 1e-6f;
    // per layer: sliding, n_head, head_dim, n_ff, inv_freq; n_kv_head from the file's
    // head_count_kv when present (0: not stated; taken from the target); kv_source unused (-1)
    std::vector<LayerSpec> layers;
    bool ordered_embeddings_declared = false;  // the file says the checkpoint had a centroid head
    int64_t n_centroids = 0;                   // 0: no centroid head loaded
    int64_t top_k = 0;
};

class AssistantModel {
public:
    // Opens and validates `path` (and the centroid side file, if given). Throws GGUFError
    // (malformed file, shapes disagreeing with the keys) or ModelError (wrong architecture,
    // unsupported type, missing tensor), each message starting with "[assistant]".
    explicit AssistantModel(const std::string& path, const std::string& centroids_path = "");

    const AssistantHParams& hparams() const { return hp_; }
    const LayerWeights& layer(int i) const { return layers_[static_cast<size_t>(i)]; }
    const Weight& head() const { return head_; }  // E_a [V][H_a] (tied token_embd)
    const float* output_norm() const { return output_norm_; }
    const Weight& pre_projection() const { return pre_proj_; }    // [H_a][2 H_t]
    const Weight& post_projection() const { return post_proj_; }  // [H_t][H_a]
    bool has_centroid_head() const { return hp_.n_centroids > 0; }
    const Weight& centroids() const { return centroids_; }  // [n_centroids][H_a]
    const int32_t* token_ordering() const { return ordering_; }  // [V]
    const gguf::GGUFFile& file() const { return *file_; }
    // GGUFFile::check_intact for the drafter file and the centroid file, if separate
    void check_intact() const {
        file_->check_intact();
        if (centroid_file_) centroid_file_->check_intact();
    }

private:
    void load();
    void load_centroids(const gguf::GGUFFile& f, const std::string& where);
    std::shared_ptr<const gguf::GGUFFile> file_, centroid_file_;
    AssistantHParams hp_;
    std::vector<LayerWeights> layers_;
    Weight head_, pre_proj_, post_proj_, centroids_;
    const float* output_norm_ = nullptr;
    const int32_t* ordering_ = nullptr;
    std::vector<std::vector<float>> inv_freq_;  // [0]: sliding, [1]: full
};

// Runs draft steps of an AssistantModel against a target TextModel's Context. Not for
// concurrent use from several threads (a step locks the drafter's scratch).
class Drafter {
public:
    // Checks that the drafter fits the target (gemma4 target, H_t, vocabulary, window, and per
    // layer the source layer's head_dim / KV heads); ModelError "[drafter] ..." naming the
    // mismatch. n_threads 0 = pool default; act_levels as ContextParams::act_levels; backend
    // as ContextParams::backend, and the same as the target contexts' it steps over (the
    // drafter reads their KV cache where it lives).
    Drafter(std::shared_ptr<const AssistantModel> assistant, std::shared_ptr<const TextModel> target, int n_threads = 0,
            int act_levels = 1, const std::string& backend = "cpu");

    // One draft step at position `pos` (1 <= pos <= target_ctx.n_past(); keys < pos are
    // read) for `token` (the last token, not yet in the target's cache) and h_in [H_t] (the
    // target's post-norm hidden state of position pos - 1, or the previous step's h_out).
    // Writes logits_out [V] and h_out [H_t]. InputError on bad arguments or a target cache
    // that no longer holds a needed position.
    void step(const Context& target_ctx, int32_t token, int64_t pos, const float* h_in, float* logits_out,
              float* h_out);

    const AssistantModel& assistant() const { return *a_; }
    const TextModel& target() const { return *t_; }
    int source_layer(int il) const { return src_[static_cast<size_t>(il)]; }

private:
    std::shared_ptr<const AssistantModel> a_;
    std::shared_ptr<const TextModel> t_;
    int n_threads_ = 0;
    int act_levels_ = 1;
    std::vector<int> src_;  // target layer whose cache drafter layer i reads
    std::mutex mu_;
    // The forward runs on the backend seam (ops/backend.h), as the text model's Context does.
    // Activations of the one row a step computes, carved once from one backend buffer:
    //   in2 [1][2 H_t] = [scaled target embedding ; h_in]; x, a, o [1][H_a] (residual, normed
    //   input, sublayer output); q, att [1][max n_head * head_dim]; g, u [1][max n_ff].
    std::unique_ptr<ops::Backend> backend_;
    std::unique_ptr<ops::Buffer> arena_;
    ops::Tensor in2_, x_, a_buf_, o_, q_, att_, g_, u_;
    // Centroid head, host side: the centroid logits (read back to choose the clusters), the
    // chosen tokens and their logits, scattered into the caller's [V] row.
    std::vector<float> cl_, sel_logits_;
    std::vector<int32_t> sel_ids_, order_idx_;
};

}  // namespace unigemma::model
