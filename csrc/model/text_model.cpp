// TextModel: hyper-parameters and weight views of a gemma4 / gemma3 GGUF (see text_model.h).
#include "model/text_model.h"

#include <cmath>
#include <cstring>

#include "base/error.h"
#include "model/gguf_schema.h"
#include "model/weight_binding.h"
#include "quant/quant.h"

namespace unigemma::model {

namespace {

using gguf::GGUFFile;
using gguf::ValueType;
using detail::float_or;
using detail::rope_inv_freq;

constexpr const char* kTag = "[model]";

}  // namespace

TextModel::TextModel(const std::string& path) : TextModel(std::make_shared<const GGUFFile>(path)) {}

TextModel::TextModel(std::shared_ptr<const GGUFFile> file) : file_(std::move(file)) {
    validate_model_file(*file_);
    load();
    std::vector<Weight*> mats;
    for (auto& l : layers_)
        for (Weight* w : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) mats.push_back(w);
    // The head too (a tied head's token lookups still read the GGUF rows).
    mats.push_back(&output_);
    panels_ = PanelStore::repack(mats, 0);
    file_->check_intact();  // the repack copied weights out of the mapping
}

size_t TextModel::weight_bytes() const { return static_cast<size_t>(file_->tensor_data_bytes()); }

void TextModel::load() {
    const GGUFFile& f = *file_;
    const std::string arch = f.get_string("general.architecture");
    if (arch == "gemma4") {
        hp_.arch = Arch::Gemma4;
    } else if (arch == "gemma3") {
        hp_.arch = Arch::Gemma3;
    } else {
        throw ModelError("[model] architecture '" + arch + "' is not a text model this runtime runs (gemma4, gemma3)");
    }
    hp_.arch_name = arch;
    const std::string a = arch + ".";
    const bool g4 = hp_.arch == Arch::Gemma4;
    hp_.n_layer = static_cast<int>(f.get_uint(a + "block_count"));
    hp_.n_embd = static_cast<int64_t>(f.get_uint(a + "embedding_length"));
    hp_.n_ctx_train = static_cast<int64_t>(f.get_uint(a + "context_length"));
    hp_.window = static_cast<int64_t>(f.get_uint(a + "attention.sliding_window"));
    hp_.eps = static_cast<float>(f.get_float(a + "attention.layer_norm_rms_epsilon"));
    hp_.final_softcap = float_or(f, a + "final_logit_softcapping", 0.0f);
    hp_.v_norm = g4;
    const int L = hp_.n_layer;
    if (L <= 0) throw ModelError("[model] block_count must be positive");
    if (hp_.window <= 0) throw ModelError("[model] " + a + "attention.sliding_window must be positive");

    // Embedding and head.
    auto bind = [&](const std::string& name, bool required) { return detail::bind_weight(f, name, required, kTag); };
    auto vec = [&](const std::string& name, int64_t n, bool required) {
        return detail::bind_f32(f, name, n, required, kTag);
    };
    token_embd_ = bind("token_embd.weight", true);
    if (token_embd_.cols != hp_.n_embd) throw ModelError("[model] token_embd.weight rows are not embedding_length wide");
    hp_.n_vocab = token_embd_.rows;
    output_ = bind("output.weight", false);
    if (!output_) output_ = token_embd_;
    if (output_.cols != hp_.n_embd || output_.rows != hp_.n_vocab)
        throw ModelError("[model] output.weight must be [n_embd, n_vocab]");
    output_norm_ = vec("output_norm.weight", hp_.n_embd, true);

    // Embedding scale: the source checkpoint's value when our converter recorded it (HF rounds
    // sqrt(H) to the weight dtype: 62.0 for 3840 in bf16), else llama.cpp's fp32 sqrt(H).
    hp_.embed_scale = float_or(f, "unigemma.embedding_scale", std::sqrt(static_cast<float>(hp_.n_embd)));

    // Layer pattern.
    std::vector<bool> sliding(static_cast<size_t>(L));
    if (const auto* pv = f.find(a + "attention.sliding_window_pattern"); pv && pv->type == ValueType::ARRAY) {
        if (pv->elem_type != ValueType::BOOL || pv->count != static_cast<uint64_t>(L))
            throw ModelError("[model] " + a + "attention.sliding_window_pattern must be a bool array of block_count");
        for (int i = 0; i < L; ++i) sliding[static_cast<size_t>(i)] = pv->elems[i] != 0;
    } else if (g4) {
        throw ModelError("[model] missing metadata key " + a + "attention.sliding_window_pattern");
    } else {
        // Gemma 3 (llama.cpp files store no pattern): 5 sliding layers, then 1 full.
        for (int i = 0; i < L; ++i) sliding[static_cast<size_t>(i)] = (i + 1) % 6 != 0;
    }

    const auto n_head = detail::per_layer_uint(f, a + "attention.head_count", L, kTag);
    const int hd_full = static_cast<int>(f.get_uint(a + "attention.key_length"));
    const int hd_swa = g4 ? static_cast<int>(f.get_uint(a + "attention.key_length_swa")) : hd_full;
    const int shared = g4 && f.find(a + "attention.shared_kv_layers")
                           ? static_cast<int>(f.get_uint(a + "attention.shared_kv_layers")) : 0;
    if (shared < 0 || shared > L - 1) throw ModelError("[model] attention.shared_kv_layers out of range");

    // RoPE tables. Sliding: default RoPE over the whole head. Full: Gemma 4 proportional
    // (pairs past partial_rotary_factor * hd/2 unrotated; llama.cpp encodes them as a
    // rope_freqs factor of 1e30), Gemma 3 default with an optional linear scaling factor.
    const float base_full = static_cast<float>(f.get_float(a + "rope.freq_base"));
    const float base_swa = float_or(f, a + "rope.freq_base_swa", 10000.0f);
    inv_freq_.resize(2);
    inv_freq_[0] = rope_inv_freq(base_swa, hd_swa, hd_swa / 2, 1.0f);
    float factor = 1.0f;
    if (g4) {
        factor = float_or(f, "unigemma.rope.factor", 1.0f);
    } else if (f.find(a + "rope.scaling.type") && f.get_string(a + "rope.scaling.type") == "linear") {
        factor = float_or(f, a + "rope.scaling.factor", 1.0f);
    }
    const int rotated = detail::rope_rotated_pairs(f, hd_full, kTag);
    inv_freq_[1] = rope_inv_freq(base_full, hd_full, rotated, factor);

    // Gemma 3 scales queries by 1/sqrt(query_pre_attn_scalar), which GGUF does not store: it is
    // head_dim for every size except 27B (62 layers), where it is hidden / heads (168, not
    // the head_dim 128). Gemma 4 normalizes q and k instead: scale 1.
    hp_.attn_scale = 1.0f;
    if (!g4)
        hp_.attn_scale = L == 62 ? 1.0f / std::sqrt(static_cast<float>(hp_.n_embd / n_head[0]))
                                 : 1.0f / std::sqrt(static_cast<float>(hd_full));

    hp_.layers.resize(static_cast<size_t>(L));
    layers_.resize(static_cast<size_t>(L));
    const int first_shared = L - shared;
    for (int i = 0; i < L; ++i) {
        LayerSpec& s = hp_.layers[static_cast<size_t>(i)];
        LayerWeights& w = layers_[static_cast<size_t>(i)];
        const std::string p = "blk." + std::to_string(i) + ".";
        s.sliding = sliding[static_cast<size_t>(i)];
        s.head_dim = s.sliding ? hd_swa : hd_full;
        s.n_head = static_cast<int>(n_head[static_cast<size_t>(i)]);
        s.inv_freq = inv_freq_[s.sliding ? 0 : 1].data();
        w.attn_norm = vec(p + "attn_norm.weight", hp_.n_embd, true);
        w.q = bind(p + "attn_q.weight", true);
        w.o = bind(p + "attn_output.weight", true);
        w.q_norm = vec(p + "attn_q_norm.weight", s.head_dim, true);
        if (w.q.cols != hp_.n_embd || w.q.rows != int64_t(s.n_head) * s.head_dim)
            throw ModelError("[model] " + p + "attn_q.weight must be [n_embd, n_head * head_dim]");
        if (w.o.rows != hp_.n_embd || w.o.cols != w.q.rows)
            throw ModelError("[model] " + p + "attn_output.weight must be [n_head * head_dim, n_embd]");
        if (i < first_shared) {
            s.kv_source = i;
            w.k = bind(p + "attn_k.weight", true);
            w.v = bind(p + "attn_v.weight", false);
            w.k_norm = vec(p + "attn_k_norm.weight", s.head_dim, true);
            if (w.k.cols != hp_.n_embd || w.k.rows % s.head_dim != 0)
                throw ModelError("[model] " + p + "attn_k.weight must be [n_embd, n_kv_head * head_dim]");
            s.n_kv_head = static_cast<int>(w.k.rows / s.head_dim);
            s.has_v = static_cast<bool>(w.v);
            if (w.v && (w.v.cols != w.k.cols || w.v.rows != w.k.rows))
                throw ModelError("[model] " + p + "attn_v.weight must have the shape of attn_k.weight");
        } else {
            // KV-shared layer: the last KV-owning layer of the same type (transformers' rule).
            for (int j = first_shared - 1; j >= 0; --j)
                if (sliding[static_cast<size_t>(j)] == s.sliding) {
                    s.kv_source = j;
                    break;
                }
            if (s.kv_source < 0)
                throw ModelError("[model] KV-shared layer " + std::to_string(i) + " has no earlier " +
                                 (s.sliding ? "sliding" : "full") + " layer to share K/V with");
            const LayerSpec& src = hp_.layers[static_cast<size_t>(s.kv_source)];
            s.n_kv_head = src.n_kv_head;
            if (src.head_dim != s.head_dim) throw ModelError("[model] KV-shared layer head_dim mismatch");
        }
        if (s.n_kv_head <= 0 || s.n_head % s.n_kv_head != 0)
            throw ModelError("[model] layer " + std::to_string(i) + ": n_head " + std::to_string(s.n_head) +
                             " is not a multiple of n_kv_head " + std::to_string(s.n_kv_head));
        w.post_attn_norm = vec(p + "post_attention_norm.weight", hp_.n_embd, true);
        w.ffn_norm = vec(p + "ffn_norm.weight", hp_.n_embd, true);
        w.post_ffw_norm = vec(p + "post_ffw_norm.weight", hp_.n_embd, true);
        w.gate = bind(p + "ffn_gate.weight", true);
        w.up = bind(p + "ffn_up.weight", true);
        w.down = bind(p + "ffn_down.weight", true);
        s.n_ff = w.gate.rows;
        if (w.gate.cols != hp_.n_embd || w.up.cols != hp_.n_embd || w.up.rows != s.n_ff || w.down.rows != hp_.n_embd ||
            w.down.cols != s.n_ff)
            throw ModelError("[model] " + p + "ffn_gate/up/down shapes disagree");
        if (const float* sc = vec(p + "layer_output_scale.weight", 1, false)) w.output_scale = *sc;
    }
}

size_t kv_cache_bytes(const TextModel& m, const ContextParams& p) {
    size_t total = 0;
    for (const auto& s : m.hparams().layers) {
        if (s.kv_source != &s - m.hparams().layers.data()) continue;
        total += ops::KVLayer::bytes_at({s.sliding, s.n_kv_head, s.head_dim}, m.hparams().window, p.n_ctx,
                                            p.n_ubatch, p.k_type, p.v_type);
    }
    return total;
}

}  // namespace unigemma::model
