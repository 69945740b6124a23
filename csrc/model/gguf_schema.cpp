#include "model/gguf_schema.h"

#include <cstring>
#include <vector>

#include "base/error.h"

namespace unigemma::model {

using gguf::GGUFFile;
using gguf::TensorInfo;
using gguf::Value;
using gguf::ValueType;

namespace {

[[noreturn]] void fail(const std::string& msg) { throw GGUFError("[gguf] " + msg); }

std::string shape_str(const std::vector<uint64_t>& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
}

// Reads "<arch>.<name>" as a u32-like scalar, or (when per_layer) an int array of n_layer.
class Hparams {
public:
    Hparams(const GGUFFile& f, std::string arch) : f_(f), arch_(std::move(arch)) {}
    std::string key(const std::string& k) const { return arch_ + "." + k; }
    bool has(const std::string& k) const { return f_.find(key(k)) != nullptr; }
    uint64_t u(const std::string& k) const { return f_.get_uint(key(k)); }
    uint64_t u_or(const std::string& k, uint64_t dflt) const { return has(k) ? u(k) : dflt; }
    // Scalar or per-layer integer array.
    std::vector<uint64_t> per_layer(const std::string& k, uint64_t n_layer) const {
        const Value* v = f_.find(key(k));
        if (!v) fail("missing required key '" + key(k) + "'");
        if (v->type != ValueType::ARRAY) return std::vector<uint64_t>(n_layer, u(k));
        if (v->count != n_layer)
            fail("key '" + key(k) + "': array has " + std::to_string(v->count) + " entries, block_count is " +
                 std::to_string(n_layer));
        std::vector<uint64_t> out(n_layer);
        for (uint64_t i = 0; i < n_layer; ++i) {
            int64_t x;
            switch (v->elem_type) {
                case ValueType::INT32: { int32_t t; std::memcpy(&t, v->elems + 4 * i, 4); x = t; break; }
                case ValueType::UINT32: { uint32_t t; std::memcpy(&t, v->elems + 4 * i, 4); x = t; break; }
                case ValueType::INT64: { std::memcpy(&x, v->elems + 8 * i, 8); break; }
                case ValueType::UINT64: { uint64_t t; std::memcpy(&t, v->elems + 8 * i, 8); x = (int64_t)t; break; }
                default: fail("key '" + key(k) + "': expected an integer array, got array of " +
                              gguf::value_type_name(v->elem_type));
            }
            if (x < 0) fail("key '" + key(k) + "'[" + std::to_string(i) + "] is negative");
            out[i] = static_cast<uint64_t>(x);
        }
        return out;
    }
    std::vector<bool> bool_array(const std::string& k, uint64_t n) const {
        const Value* v = f_.find(key(k));
        if (!v) fail("missing required key '" + key(k) + "'");
        if (v->type != ValueType::ARRAY || v->elem_type != ValueType::BOOL)
            fail("key '" + key(k) + "': expected a BOOL array");
        if (v->count != n)
            fail("key '" + key(k) + "': has " + std::to_string(v->count) + " entries, block_count is " + std::to_string(n));
        std::vector<bool> out(n);
        for (uint64_t i = 0; i < n; ++i) out[i] = v->elems[i] != 0;
        return out;
    }
    void require(std::initializer_list<const char*> keys) const {
        for (const char* k : keys) (void)u(k);
    }

private:
    const GGUFFile& f_;
    std::string arch_;
};

class TensorChecker {
public:
    explicit TensorChecker(const GGUFFile& f) : f_(f) {}
    // Checks shape (ne order) if present; returns presence. Throws if required and absent.
    bool check(const std::string& name, std::vector<uint64_t> ne, bool required) const {
        const TensorInfo* t = f_.find_tensor(name);
        if (!t) {
            if (required) fail("missing required tensor '" + name + "'");
            return false;
        }
        std::vector<uint64_t> got(t->ne, t->ne + t->n_dims);
        // trailing 1-dims are equivalent ([H] == [H, 1])
        while (got.size() > 1 && got.back() == 1) got.pop_back();
        while (ne.size() > 1 && ne.back() == 1) ne.pop_back();
        if (got != ne)
            fail("tensor '" + name + "': shape " + shape_str(got) + " disagrees with the hyper-parameters, expected " +
                 shape_str(ne));
        return true;
    }
    const TensorInfo* find(const std::string& name) const { return f_.find_tensor(name); }

private:
    const GGUFFile& f_;
};

uint64_t vocab_size(const GGUFFile& f, const TensorChecker& tc) {
    if (const Value* v = f.find("tokenizer.ggml.tokens")) {
        if (v->type != ValueType::ARRAY || v->elem_type != ValueType::STRING)
            fail("key 'tokenizer.ggml.tokens': expected an array of STRING");
        return v->count;
    }
    const TensorInfo* t = tc.find("token_embd.weight");
    if (!t) fail("missing required tensor 'token_embd.weight'");
    return t->n_dims >= 2 ? t->ne[1] : 0;
}

std::string blk(uint64_t i, const char* name) { return "blk." + std::to_string(i) + "." + name + ".weight"; }

void check_layer_count(const Hparams& hp, uint64_t n_layer) {
    if (n_layer == 0 || n_layer > kMaxLayers)
        fail("key '" + hp.key("block_count") + "': " + std::to_string(n_layer) + " layers (1 to " +
             std::to_string(kMaxLayers) + " supported)");
}

void validate_gemma4_like(const GGUFFile& f, const std::string& arch, bool assistant) {
    Hparams hp(f, arch);
    hp.require({"context_length", "embedding_length", "attention.head_count", "attention.key_length",
                "attention.value_length", "attention.key_length_swa", "attention.value_length_swa",
                "attention.sliding_window"});
    (void)f.get_float(hp.key("attention.layer_norm_rms_epsilon"));
    const uint64_t L = hp.u("block_count");
    check_layer_count(hp, L);
    const uint64_t H = hp.u("embedding_length");
    const uint64_t nh = hp.u("attention.head_count");
    const uint64_t hd_f = hp.u("attention.key_length"), hd_s = hp.u("attention.key_length_swa");
    if (hp.u("attention.value_length") != hd_f)
        fail("key '" + hp.key("attention.value_length") + "' must equal attention.key_length");
    if (hp.u("attention.value_length_swa") != hd_s)
        fail("key '" + hp.key("attention.value_length_swa") + "' must equal attention.key_length_swa");
    if (H == 0 || nh == 0 || hd_f == 0 || hd_s == 0) fail("key '" + arch + ".*': zero model dimension");
    if (hp.u("attention.sliding_window") == 0) fail("key '" + hp.key("attention.sliding_window") + "' is zero");
    const auto swa = hp.bool_array("attention.sliding_window_pattern", L);
    const auto n_ff = hp.per_layer("feed_forward_length", L);
    const uint64_t n_shared = hp.u_or("attention.shared_kv_layers", 0);
    if (n_shared > L) fail("key '" + hp.key("attention.shared_kv_layers") + "' exceeds block_count");
    std::vector<uint64_t> nkv(L, 0);
    if (!assistant || hp.has("attention.head_count_kv")) nkv = hp.per_layer("attention.head_count_kv", L);
    if (!assistant && hp.u_or("embedding_length_per_layer_input", 0) != 0)
        fail("key '" + hp.key("embedding_length_per_layer_input") + "': per-layer embeddings are not supported");
    if (!assistant && !f.find(hp.key("embedding_length_per_layer_input")))
        fail("missing required key '" + hp.key("embedding_length_per_layer_input") + "'");

    TensorChecker tc(f);
    const uint64_t V = vocab_size(f, tc);
    tc.check("token_embd.weight", {H, V}, true);
    tc.check("output.weight", {H, V}, false);
    tc.check("output_norm.weight", {H}, true);
    tc.check("rope_freqs.weight", {hd_f / 2}, false);
    for (uint64_t i = 0; i < L; ++i) {
        const uint64_t hd = swa[i] ? hd_s : hd_f;
        const bool owns_kv = !assistant && i < L - n_shared;
        if (nh * hd == 0 || n_ff[i] == 0) fail("layer " + std::to_string(i) + ": zero dimension");
        tc.check(blk(i, "attn_norm"), {H}, true);
        tc.check(blk(i, "attn_q"), {H, nh * hd}, true);
        tc.check(blk(i, "attn_q_norm"), {hd}, true);
        tc.check(blk(i, "attn_k"), {H, nkv[i] * hd}, owns_kv);
        tc.check(blk(i, "attn_v"), {H, nkv[i] * hd}, false);
        tc.check(blk(i, "attn_k_norm"), {hd}, owns_kv);
        tc.check(blk(i, "attn_output"), {nh * hd, H}, true);
        tc.check(blk(i, "post_attention_norm"), {H}, true);
        tc.check(blk(i, "ffn_norm"), {H}, true);
        tc.check(blk(i, "ffn_gate"), {H, n_ff[i]}, true);
        tc.check(blk(i, "ffn_up"), {H, n_ff[i]}, true);
        tc.check(blk(i, "ffn_down"), {n_ff[i], H}, true);
        tc.check(blk(i, "post_ffw_norm"), {H}, true);
        tc.check(blk(i, "layer_output_scale"), {1}, assistant);
    }
    if (assistant) {
        const uint64_t Ht = hp.u("embedding_length_out");
        if (Ht == 0) fail("key '" + hp.key("embedding_length_out") + "' is zero");
        tc.check("nextn.pre_projection.weight", {2 * Ht, H}, true);
        tc.check("nextn.post_projection.weight", {H, Ht}, true);
        if (const TensorInfo* c = tc.find("masked_embd_centroids.weight")) {
            if (c->ne[0] != H) fail("tensor 'masked_embd_centroids.weight': row length " + std::to_string(c->ne[0]) +
                                    " disagrees with embedding_length " + std::to_string(H));
            const TensorInfo* o = tc.find("masked_embd_ordering");
            if (!o) fail("tensor 'masked_embd_centroids.weight' present without 'masked_embd_ordering'");
            if (o->n_elements != V)
                fail("tensor 'masked_embd_ordering': " + std::to_string(o->n_elements) + " entries, vocabulary has " +
                     std::to_string(V));
            if (V % c->ne[1] != 0)
                fail("tensor 'masked_embd_centroids.weight': " + std::to_string(c->ne[1]) +
                     " centroids do not divide the vocabulary of " + std::to_string(V));
        }
    }
}

// Side file of the drafter's ordered-embedding head (written by our converter because
// llama.cpp refuses a drafter file that holds these tensors).
void validate_centroids(const GGUFFile& f) {
    Hparams hp(f, "gemma4-assistant-centroids");
    const uint64_t H = hp.u("embedding_length"), V = hp.u("vocab_size");
    const uint64_t nc = hp.u("num_centroids"), top_k = hp.u("top_k");
    if (H == 0 || nc == 0 || V % nc != 0)
        fail("key '" + hp.key("num_centroids") + "': " + std::to_string(nc) + " centroids do not divide the vocabulary of " +
             std::to_string(V));
    if (top_k == 0 || top_k > nc) fail("key '" + hp.key("top_k") + "': must be in [1, num_centroids]");
    TensorChecker tc(f);
    tc.check("masked_embd_centroids.weight", {H, nc}, true);
    tc.check("masked_embd_ordering", {V}, true);
    if (tc.find("masked_embd_ordering")->type != static_cast<uint32_t>(gguf::GGMLType::I32))
        fail("tensor 'masked_embd_ordering': must be I32");
}

void validate_gemma3(const GGUFFile& f) {
    Hparams hp(f, "gemma3");
    hp.require({"context_length", "embedding_length", "feed_forward_length", "attention.head_count",
                "attention.head_count_kv"});
    (void)f.get_float(hp.key("attention.layer_norm_rms_epsilon"));
    const uint64_t L = hp.u("block_count");
    check_layer_count(hp, L);
    const uint64_t H = hp.u("embedding_length"), nh = hp.u("attention.head_count");
    const uint64_t nkv = hp.u("attention.head_count_kv");
    const uint64_t hd = hp.u_or("attention.key_length", nh ? H / nh : 0);
    const auto n_ff = hp.per_layer("feed_forward_length", L);
    if (H == 0 || nh == 0 || nkv == 0 || hd == 0) fail("key 'gemma3.*': zero model dimension");
    if (nh % nkv != 0) fail("key 'gemma3.attention.head_count_kv': does not divide head_count");
    TensorChecker tc(f);
    const uint64_t V = vocab_size(f, tc);
    tc.check("token_embd.weight", {H, V}, true);
    tc.check("output.weight", {H, V}, false);
    tc.check("output_norm.weight", {H}, true);
    for (uint64_t i = 0; i < L; ++i) {
        tc.check(blk(i, "attn_norm"), {H}, true);
        tc.check(blk(i, "attn_q"), {H, nh * hd}, true);
        tc.check(blk(i, "attn_k"), {H, nkv * hd}, true);
        tc.check(blk(i, "attn_v"), {H, nkv * hd}, true);
        tc.check(blk(i, "attn_q_norm"), {hd}, true);
        tc.check(blk(i, "attn_k_norm"), {hd}, true);
        tc.check(blk(i, "attn_output"), {nh * hd, H}, true);
        tc.check(blk(i, "post_attention_norm"), {H}, true);
        tc.check(blk(i, "ffn_norm"), {H}, true);
        tc.check(blk(i, "ffn_gate"), {H, n_ff[i]}, true);
        tc.check(blk(i, "ffn_up"), {H, n_ff[i]}, true);
        tc.check(blk(i, "ffn_down"), {n_ff[i], H}, true);
        tc.check(blk(i, "post_ffw_norm"), {H}, true);
    }
}

void validate_clip(const GGUFFile& f) {
    TensorChecker tc(f);
    auto has_flag = [&](const char* k) { return f.find(k) && f.get_bool(k); };
    const bool vision = has_flag("clip.has_vision_encoder"), audio = has_flag("clip.has_audio_encoder");
    if (!vision && !audio) fail("key 'clip.has_vision_encoder'/'clip.has_audio_encoder': neither is true");
    if (vision && f.find("clip.vision.projector_type") && f.get_string("clip.vision.projector_type") == "gemma4uv") {
        const uint64_t D = f.get_uint("clip.vision.embedding_length");
        const uint64_t H = f.get_uint("clip.vision.projection_dim");
        const uint64_t p = f.get_uint("clip.vision.patch_size") * 3;  // teacher patch x 3x3 merge
        const uint64_t n_in = p * p * 3;
        tc.check("v.patch_norm.1.weight", {n_in}, true);
        tc.check("v.patch_norm.1.bias", {n_in}, true);
        tc.check("v.patch_embd.weight", {n_in, D}, true);
        tc.check("v.patch_embd.bias", {D}, true);
        for (const char* n : {"v.patch_norm.2", "v.patch_norm.3"}) {
            tc.check(std::string(n) + ".weight", {D}, true);
            tc.check(std::string(n) + ".bias", {D}, true);
        }
        const TensorInfo* pe = tc.find("v.position_embd.weight");
        if (!pe) fail("missing required tensor 'v.position_embd.weight'");
        tc.check("v.position_embd.weight", {D, pe->ne[1], 2}, true);
        tc.check("mm.input_projection.weight", {D, H}, true);
    }
    if (audio && f.find("clip.audio.projector_type") && f.get_string("clip.audio.projector_type") == "gemma4ua") {
        const uint64_t H = f.get_uint("clip.audio.projection_dim");
        const uint64_t n = f.get_uint("clip.audio.embedding_length");
        tc.check("mm.a.input_projection.weight", {n, H}, true);
    }
}

}  // namespace

void validate_model_file(const GGUFFile& f) {
    const std::string arch = f.get_string("general.architecture");
    if (arch == "gemma4") validate_gemma4_like(f, arch, false);
    else if (arch == "gemma4-assistant") validate_gemma4_like(f, arch, true);
    else if (arch == "gemma3") validate_gemma3(f);
    else if (arch == "clip") validate_clip(f);
    else if (arch == "gemma4-assistant-centroids") validate_centroids(f);
}

}  // namespace unigemma::model
