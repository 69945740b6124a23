// AssistantModel (gemma4-assistant GGUF + optional centroid head) and Drafter (one draft step
// against a target Context). Math and layout in assistant_model.h.
#include "model/assistant_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/error.h"
#include "model/gguf_schema.h"
#include "model/weight_binding.h"
#include "model/backend_choice.h"

namespace unigemma::model {

namespace {

using gguf::GGUFFile;
using gguf::TensorInfo;
using gguf::Value;
using detail::float_or;

constexpr const char* kTag = "[assistant]";
constexpr const char* kArch = "gemma4-assistant";
constexpr const char* kCentroidArch = "gemma4-assistant-centroids";
constexpr int64_t kDefaultTopK = 32;  // transformers' centroid_intermediate_top_k default

[[noreturn]] void model_error(const std::string& msg) { throw ModelError(std::string(kTag) + " " + msg); }

// The reader and the schema say "[gguf] ..."; here the same problem is the drafter file's.
template <class F>
auto retag(F&& fn) -> decltype(fn()) {
    try {
        return fn();
    } catch (const GGUFError& e) {
        std::string m = e.what();
        if (m.rfind("[gguf] ", 0) != 0) throw;
        throw GGUFError(std::string(kTag) + " " + m.substr(7));
    }
}

std::string arch_of(const GGUFFile& f) {
    return f.find("general.architecture") ? f.get_string("general.architecture") : std::string();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// AssistantModel
// ---------------------------------------------------------------------------------------------

AssistantModel::AssistantModel(const std::string& path, const std::string& centroids_path) {
    retag([&] {
        file_ = std::make_shared<const GGUFFile>(path);
        const std::string arch = arch_of(*file_);
        if (arch != kArch)
            model_error("'" + path + "' is " +
                        (arch.empty() ? std::string("a GGUF without general.architecture") : "a '" + arch + "' model") +
                        ", not an MTP drafter (architecture gemma4-assistant, the *-assistant.gguf file)");
        validate_model_file(*file_);
        load();
        if (!centroids_path.empty()) {
            centroid_file_ = std::make_shared<const GGUFFile>(centroids_path);
            const std::string carch = arch_of(*centroid_file_);
            if (carch != kCentroidArch)
                model_error("centroid file '" + centroids_path + "' is " +
                            (carch.empty() ? std::string("a GGUF without general.architecture")
                                           : "a '" + carch + "' file") +
                            ", not a drafter centroid head (architecture gemma4-assistant-centroids)");
            validate_model_file(*centroid_file_);
            load_centroids(*centroid_file_, "centroid file '" + centroids_path + "'");
        }
        return 0;
    });
}

void AssistantModel::load() {
    const GGUFFile& f = *file_;
    const std::string a = std::string(kArch) + ".";
    hp_.arch_name = kArch;
    const int L = static_cast<int>(f.get_uint(a + "block_count"));
    hp_.n_layer = L;
    hp_.n_embd = static_cast<int64_t>(f.get_uint(a + "embedding_length"));
    hp_.n_embd_out = static_cast<int64_t>(f.get_uint(a + "embedding_length_out"));
    hp_.window = static_cast<int64_t>(f.get_uint(a + "attention.sliding_window"));
    hp_.eps = static_cast<float>(f.get_float(a + "attention.layer_norm_rms_epsilon"));
    const int64_t H = hp_.n_embd, Ht = hp_.n_embd_out;
    if (!(hp_.eps > 0.0f && hp_.eps < 1.0f)) model_error(a + "attention.layer_norm_rms_epsilon must be in (0, 1)");

    auto bind = [&](const std::string& name, bool required) { return detail::bind_weight(f, name, required, kTag); };
    auto vec = [&](const std::string& name, int64_t n, bool required) {
        return detail::bind_f32(f, name, n, required, kTag);
    };
    auto matrix = [&](const std::string& name, int64_t cols, int64_t rows) {
        Weight w = bind(name, true);
        if (w.cols != cols || w.rows != rows)
            model_error("tensor " + name + " must be [" + std::to_string(rows) + ", " + std::to_string(cols) +
                        "] (PyTorch order), got [" + std::to_string(w.rows) + ", " + std::to_string(w.cols) + "]");
        detail::check_matmul_weight(w, name, kTag);
        return w;
    };

    // Head: the tied token_embd (llama.cpp's loader duplicates it as output; a file may also
    // carry output.weight).
    Weight emb = bind("token_embd.weight", true);
    hp_.n_vocab = emb.rows;
    head_ = bind("output.weight", false);
    if (!head_) head_ = emb;
    if (head_.cols != H || head_.rows != hp_.n_vocab)
        model_error("the head (token_embd / output) must be [n_vocab, embedding_length " + std::to_string(H) + "]");
    detail::check_matmul_weight(head_, head_.data == emb.data ? "token_embd.weight" : "output.weight", kTag);
    output_norm_ = vec("output_norm.weight", H, true);
    pre_proj_ = matrix("nextn.pre_projection.weight", 2 * Ht, H);
    post_proj_ = matrix("nextn.post_projection.weight", H, Ht);

    // Layer pattern, head layout, RoPE (the target's conventions, §2.1 / §2.4).
    const Value* pv = f.find(a + "attention.sliding_window_pattern");  // schema: BOOL array of L
    const auto n_head = detail::per_layer_uint(f, a + "attention.head_count", L, kTag);
    std::vector<int64_t> n_kv(static_cast<size_t>(L), 0);
    if (f.find(a + "attention.head_count_kv")) n_kv = detail::per_layer_uint(f, a + "attention.head_count_kv", L, kTag);
    const int hd_full = static_cast<int>(f.get_uint(a + "attention.key_length"));
    const int hd_swa = static_cast<int>(f.get_uint(a + "attention.key_length_swa"));
    const float base_full = static_cast<float>(f.get_float(a + "rope.freq_base"));
    const float base_swa = float_or(f, a + "rope.freq_base_swa", 10000.0f);
    const float factor = float_or(f, "unigemma.rope.factor", 1.0f);
    inv_freq_.resize(2);
    inv_freq_[0] = detail::rope_inv_freq(base_swa, hd_swa, hd_swa / 2, 1.0f);
    inv_freq_[1] = detail::rope_inv_freq(base_full, hd_full, detail::rope_rotated_pairs(f, hd_full, kTag), factor);

    hp_.layers.resize(static_cast<size_t>(L));
    layers_.resize(static_cast<size_t>(L));
    for (int i = 0; i < L; ++i) {
        LayerSpec& s = hp_.layers[static_cast<size_t>(i)];
        LayerWeights& w = layers_[static_cast<size_t>(i)];
        const std::string p = "blk." + std::to_string(i) + ".";
        s.sliding = pv->elems[i] != 0;
        s.head_dim = s.sliding ? hd_swa : hd_full;
        s.n_head = static_cast<int>(n_head[static_cast<size_t>(i)]);
        s.n_kv_head = static_cast<int>(n_kv[static_cast<size_t>(i)]);
        s.kv_source = -1;
        s.inv_freq = inv_freq_[s.sliding ? 0 : 1].data();
        if (s.n_head <= 0 || s.head_dim <= 0) model_error("layer " + std::to_string(i) + ": zero head count or head_dim");
        if (s.n_kv_head > 0 && s.n_head % s.n_kv_head != 0)
            model_error("layer " + std::to_string(i) + ": n_head " + std::to_string(s.n_head) +
                        " is not a multiple of n_kv_head " + std::to_string(s.n_kv_head));
        const int64_t qw = int64_t(s.n_head) * s.head_dim;
        w.attn_norm = vec(p + "attn_norm.weight", H, true);
        w.q = matrix(p + "attn_q.weight", H, qw);
        w.q_norm = vec(p + "attn_q_norm.weight", s.head_dim, true);
        w.o = matrix(p + "attn_output.weight", qw, H);
        w.post_attn_norm = vec(p + "post_attention_norm.weight", H, true);
        w.ffn_norm = vec(p + "ffn_norm.weight", H, true);
        w.post_ffw_norm = vec(p + "post_ffw_norm.weight", H, true);
        const Weight gate = bind(p + "ffn_gate.weight", true);
        s.n_ff = gate.rows;
        w.gate = matrix(p + "ffn_gate.weight", H, s.n_ff);
        w.up = matrix(p + "ffn_up.weight", H, s.n_ff);
        w.down = matrix(p + "ffn_down.weight", s.n_ff, H);
        w.output_scale = *vec(p + "layer_output_scale.weight", 1, true);  // required for the drafter
    }

    // Centroid head: our converter records that the checkpoint had one (the tensors go to the
    // side file); a file may also hold the tensors itself (gguf-py names them).
    hp_.ordered_embeddings_declared = f.find("unigemma.assistant.num_centroids") != nullptr;
    if (f.find_tensor("masked_embd_centroids.weight")) load_centroids(f, "the drafter file");
}

void AssistantModel::load_centroids(const GGUFFile& f, const std::string& where) {
    const bool side = arch_of(f) == kCentroidArch;
    const std::string c = std::string(kCentroidArch) + ".";
    const int64_t H = hp_.n_embd, V = hp_.n_vocab;
    int64_t top_k = kDefaultTopK;
    if (side) {
        const auto h = static_cast<int64_t>(f.get_uint(c + "embedding_length"));
        const auto v = static_cast<int64_t>(f.get_uint(c + "vocab_size"));
        if (h != H || v != V)
            model_error(where + " is for hidden size " + std::to_string(h) + " / vocabulary " + std::to_string(v) +
                        ", this drafter has " + std::to_string(H) + " / " + std::to_string(V));
        top_k = static_cast<int64_t>(f.get_uint(c + "top_k"));
    } else if (file_->find("unigemma.assistant.centroid_top_k")) {
        top_k = static_cast<int64_t>(file_->get_uint("unigemma.assistant.centroid_top_k"));
    }
    centroids_ = detail::bind_weight(f, "masked_embd_centroids.weight", true, kTag);
    const int64_t nc = centroids_.rows;
    if (centroids_.cols != H) model_error(where + ": masked_embd_centroids.weight rows are not embedding_length wide");
    if (nc <= 0 || V % nc != 0)
        model_error(where + ": " + std::to_string(nc) + " centroids do not divide the vocabulary of " + std::to_string(V));
    if (side && static_cast<int64_t>(f.get_uint(c + "num_centroids")) != nc)
        model_error(where + ": num_centroids disagrees with masked_embd_centroids.weight");
    if (file_->find("unigemma.assistant.num_centroids") &&
        static_cast<int64_t>(file_->get_uint("unigemma.assistant.num_centroids")) != nc)
        model_error(where + " has " + std::to_string(nc) + " centroids, the drafter file declares " +
                    std::to_string(file_->get_uint("unigemma.assistant.num_centroids")));
    if (top_k <= 0 || top_k > nc) model_error(where + ": top_k " + std::to_string(top_k) + " is outside [1, " +
                                              std::to_string(nc) + "]");
    detail::check_matmul_weight(centroids_, "masked_embd_centroids.weight", kTag);
    const TensorInfo* o = f.find_tensor("masked_embd_ordering");
    if (!o) model_error(where + ": missing tensor masked_embd_ordering");
    if (static_cast<GGMLType>(o->type) != GGMLType::I32 || o->n_elements != static_cast<uint64_t>(V))
        model_error(where + ": masked_embd_ordering must be I32 with " + std::to_string(V) + " entries");
    ordering_ = reinterpret_cast<const int32_t*>(o->data);
    for (int64_t i = 0; i < V; ++i)
        if (ordering_[i] < 0 || ordering_[i] >= V)
            model_error(where + ": masked_embd_ordering[" + std::to_string(i) + "] = " + std::to_string(ordering_[i]) +
                        " is outside the vocabulary [0, " + std::to_string(V) + ")");
    hp_.n_centroids = nc;
    hp_.top_k = top_k;
}

// ---------------------------------------------------------------------------------------------
// Drafter
// ---------------------------------------------------------------------------------------------

Drafter::Drafter(std::shared_ptr<const AssistantModel> assistant, std::shared_ptr<const TextModel> target,
                 int n_threads, int act_levels, const std::string& backend)
    : a_(std::move(assistant)), t_(std::move(target)), n_threads_(n_threads), act_levels_(act_levels) {
    if (!a_ || !t_) throw InputError("[drafter] assistant and target models are required");
    if (n_threads < 0) throw InputError("[drafter] n_threads must be >= 0");
    if (act_levels != 1 && act_levels != 2) throw InputError("[drafter] act_levels must be 1 or 2");
    const AssistantHParams& ah = a_->hparams();
    const TextHParams& th = t_->hparams();
    auto mismatch = [](const std::string& m) { throw ModelError("[drafter] " + m); };
    if (th.arch != Arch::Gemma4) mismatch("the target is a '" + th.arch_name + "' model; the drafter needs a gemma4 target");
    if (ah.n_embd_out != th.n_embd)
        mismatch("the drafter reads target hidden states of " + std::to_string(ah.n_embd_out) +
                 " (embedding_length_out), the target's hidden size is " + std::to_string(th.n_embd));
    if (ah.n_vocab != th.n_vocab)
        mismatch("the drafter's vocabulary has " + std::to_string(ah.n_vocab) + " tokens, the target's " +
                 std::to_string(th.n_vocab));
    if (ah.window > th.window)
        mismatch("the drafter's sliding_window " + std::to_string(ah.window) + " exceeds the target's " +
                 std::to_string(th.window) + " (the target's sliding cache keeps only its own window)");
    // Source layers: the last KV-owning target layer of each type (transformers' "store").
    int last_kv[2] = {-1, -1};  // [0]: sliding, [1]: full
    for (int j = 0; j < th.n_layer; ++j) {
        const LayerSpec& s = th.layers[static_cast<size_t>(j)];
        if (s.kv_source == j) last_kv[s.sliding ? 0 : 1] = j;
    }
    src_.resize(static_cast<size_t>(ah.n_layer));
    size_t q_max = 0, ff_max = 0;
    for (int i = 0; i < ah.n_layer; ++i) {
        const LayerSpec& d = ah.layers[static_cast<size_t>(i)];
        const char* kind = d.sliding ? "sliding" : "full";
        const int j = last_kv[d.sliding ? 0 : 1];
        if (j < 0) mismatch("drafter layer " + std::to_string(i) + " is " + kind + ", the target has no " + kind +
                            " layer with K/V to read");
        const LayerSpec& s = th.layers[static_cast<size_t>(j)];
        const std::string who = "drafter layer " + std::to_string(i) + " (" + kind + ")";
        const std::string src = "target layer " + std::to_string(j) + ", whose K/V it reads,";
        if (d.head_dim != s.head_dim)
            mismatch(who + " has head_dim " + std::to_string(d.head_dim) + ", " + src + " has " +
                     std::to_string(s.head_dim));
        if (d.n_kv_head > 0 && d.n_kv_head != s.n_kv_head)
            mismatch(who + " declares " + std::to_string(d.n_kv_head) + " KV heads, " + src + " has " +
                     std::to_string(s.n_kv_head));
        if (d.n_head % s.n_kv_head != 0)
            mismatch(who + " has " + std::to_string(d.n_head) + " query heads, not a multiple of the " +
                     std::to_string(s.n_kv_head) + " KV heads of " + src.substr(0, src.find(',')));
        src_[static_cast<size_t>(i)] = j;
        q_max = std::max(q_max, static_cast<size_t>(d.n_head) * static_cast<size_t>(d.head_dim));
        ff_max = std::max(ff_max, static_cast<size_t>(d.n_ff));
    }
    // on the GPU the drafter's weights join the target's device copies (it reads the target's
    // token embedding, which is then uploaded once)
    backend_ = make_backend(backend, n_threads_, t_->device_weights(), "[drafter]");
    const int64_t H = ah.n_embd, qw = static_cast<int64_t>(q_max), ff = static_cast<int64_t>(ff_max);
    arena_ = backend_->alloc(static_cast<size_t>(2 * ah.n_embd_out + 3 * H + 2 * qw + 2 * ff));
    float* base = arena_->data();
    auto take = [&](int64_t cols) {
        const ops::Tensor t{base, 1, cols};
        base += cols;
        return t;
    };
    in2_ = take(2 * ah.n_embd_out);
    x_ = take(H);
    a_buf_ = take(H);
    o_ = take(H);
    q_ = take(qw);
    att_ = take(qw);
    g_ = take(ff);
    u_ = take(ff);
    if (a_->has_centroid_head()) {
        const auto nc = static_cast<size_t>(ah.n_centroids);
        const auto sel = static_cast<size_t>(ah.top_k * (ah.n_vocab / ah.n_centroids));
        cl_.resize(nc);
        order_idx_.resize(nc);
        sel_ids_.resize(sel);
        sel_logits_.resize(sel);
    }
}

void Drafter::step(const Context& ctx, int32_t token, int64_t pos, const float* h_in, float* logits_out,
                   float* h_out) {
    if (&ctx.model() != t_.get())
        throw InputError("[drafter] the context runs a different TextModel than the drafter's target");
    const AssistantModel& am = *a_;
    const AssistantHParams& ah = am.hparams();
    const TextHParams& th = t_->hparams();
    if (token < 0 || token >= th.n_vocab)
        throw InputError("[drafter] token id " + std::to_string(token) + " is outside the vocabulary [0, " +
                         std::to_string(th.n_vocab) + ")");
    if (pos < 1 || pos > ctx.n_past())
        throw InputError("[drafter] pos " + std::to_string(pos) + " must be in [1, n_past = " +
                         std::to_string(ctx.n_past()) + "] (the drafter reads the target's cached positions < pos)");
    if (!h_in || !logits_out || !h_out) throw InputError("[drafter] null buffer");
    if (std::strcmp(ctx.backend_name(), backend_->name()) != 0)
        throw InputError(std::string("[drafter] the target context runs on ") + ctx.backend_name() +
                         ", the drafter on " + backend_->name() + " (its KV cache lives there): make both the same");
    // Key ranges per layer, every position checked before any compute.
    const int64_t lo_swa = std::max<int64_t>(0, pos - ah.window - 1), hi = pos - 1;
    for (int il = 0; il < ah.n_layer; ++il) {
        const ops::KVLayer& kv = ctx.kv_layer(src_[static_cast<size_t>(il)]);
        const int64_t lo = ah.layers[static_cast<size_t>(il)].sliding ? lo_swa : 0;
        for (int64_t p = lo; p <= hi; ++p)
            if (!kv.holds(p))
                throw InputError("[drafter] the target cache no longer holds position " + std::to_string(p) +
                                 " that drafter layer " + std::to_string(il) + " reads (target layer " +
                                 std::to_string(src_[static_cast<size_t>(il)]) +
                                 "); rolled back past its ring? re-evaluate the target");
    }

    std::lock_guard<std::mutex> lock(mu_);
    ops::Backend& B = *backend_;
    const int lv = act_levels_;
    const int64_t Ht = ah.n_embd_out;
    const float eps = ah.eps;
    // a tensor of one row and `cols` columns at the start of a wider activation row
    auto narrow = [](ops::Tensor t, int64_t cols) { return ops::Tensor{t.data, 1, cols}; };

    // x = pre_projection [E_t[token] * embed_scale_t ; h_in]
    B.embed(t_->token_embd(), &token, nullptr, nullptr, th.embed_scale, narrow(in2_, Ht));
    B.write(ops::Tensor{in2_.data + Ht, 1, Ht}, h_in);
    B.matmul(am.pre_projection(), in2_, x_, lv);

    for (int il = 0; il < ah.n_layer; ++il) {
        const LayerSpec& s = ah.layers[static_cast<size_t>(il)];
        const LayerWeights& w = am.layer(il);
        const ops::Tensor q = narrow(q_, int64_t(s.n_head) * s.head_dim), att = narrow(att_, q.cols);
        B.rms_norm(a_buf_, x_, w.attn_norm, eps);
        B.matmul(w.q, a_buf_, q, lv);
        B.head_norm_rope(q, s.head_dim, w.q_norm, eps, &pos, s.inv_freq);
        const ops::KVLayer& kv = ctx.kv_layer(src_[static_cast<size_t>(il)]);
        B.attention_range(kv, q, att, s.n_head, 1.0f, s.sliding ? lo_swa : 0, hi);
        B.matmul(w.o, att, o_, lv);
        B.rms_norm(o_, o_, w.post_attn_norm, eps);
        B.add(x_, o_);
        B.rms_norm(a_buf_, x_, w.ffn_norm, eps);
        const ops::Tensor g = narrow(g_, s.n_ff), u = narrow(u_, s.n_ff);
        B.matmul(w.gate, a_buf_, g, lv);
        B.matmul(w.up, a_buf_, u, lv);
        B.gelu_tanh_mul(g, u);
        B.matmul(w.down, g, o_, lv);
        B.rms_norm(o_, o_, w.post_ffw_norm, eps);
        B.add(x_, o_);
        B.scale(x_, w.output_scale);  // also when 1: the same ops as ever
    }
    // z (post final norm) -> next h and logits
    const ops::Tensor z = a_buf_;
    B.rms_norm(z, x_, am.output_norm(), eps);
    const ops::Tensor h_next = B.output_tensor(h_out, 1, Ht);
    B.matmul(am.post_projection(), z, h_next, lv);
    B.read(h_next, h_out);
    const Weight& E_a = am.head();
    if (!am.has_centroid_head()) {
        const ops::Tensor logits = B.output_tensor(logits_out, 1, ah.n_vocab);
        B.matmul(E_a, z, logits, lv);
        B.read(logits, logits_out);
        am.check_intact();  // weights read as zeros past a truncation of a mapped file
        t_->file().check_intact();
        return;
    }
    // Centroid head: top_k clusters of K = V / n_centroids tokens each. The choice is made on
    // the host (a partial sort of n_centroids values); only the chosen rows are multiplied.
    const int64_t nc = ah.n_centroids, top_k = ah.top_k, Kc = ah.n_vocab / nc;
    const ops::Tensor cl_t = B.output_tensor(cl_.data(), 1, nc);
    B.matmul(am.centroids(), z, cl_t, lv);
    B.read(cl_t, cl_.data());
    for (int64_t c = 0; c < nc; ++c) order_idx_[static_cast<size_t>(c)] = static_cast<int32_t>(c);
    const float* cl = cl_.data();
    std::nth_element(order_idx_.begin(), order_idx_.begin() + (top_k - 1), order_idx_.end(),
                     [cl](int32_t x, int32_t y) { return cl[x] > cl[y] || (cl[x] == cl[y] && x < y); });
    const int32_t* ord = am.token_ordering();
    for (int64_t j = 0; j < top_k; ++j) {
        const int64_t c = order_idx_[static_cast<size_t>(j)];
        std::copy(ord + c * Kc, ord + (c + 1) * Kc, sel_ids_.data() + j * Kc);
    }
    const int64_t n_sel = top_k * Kc;
    const ops::Tensor sel_t = B.output_tensor(sel_logits_.data(), 1, n_sel);
    B.matmul_rows(E_a, sel_ids_.data(), z, sel_t, lv);
    B.read(sel_t, sel_logits_.data());
    const float mask = *std::min_element(sel_logits_.begin(), sel_logits_.begin() + n_sel) - 1.0f;
    std::fill(logits_out, logits_out + ah.n_vocab, mask);
    for (int64_t i = 0; i < n_sel; ++i) logits_out[sel_ids_[static_cast<size_t>(i)]] = sel_logits_[static_cast<size_t>(i)];
    am.check_intact();  // weights read as zeros past a truncation of a mapped file
    t_->file().check_intact();
}

}  // namespace unigemma::model
