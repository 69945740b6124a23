// Context: the text forward pass over micro-batches (math in text_model.h).
//
// Activations of one micro-batch of n tokens live in float32 buffers, token-major:
//   x [n][H] residual stream; a [n][H] normed input; q [n][n_head*hd]; k, v [n][n_kv*hd];
//   att [n][n_head*hd]; g, u [n][n_ff]. Every matmul is one cpu::matmul call over the n tokens
// (GEMM for a prefill, GEMV for a decode step), reading the weights in place from the mapping.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/error.h"
#include "model/text_model.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/matmul.h"
#include "ops/cpu/panels.h"
#include "quant/quant.h"
#include "runtime/attention.h"

namespace unigemma::model {

namespace {

void mm(const cpu::KernelTable& k, const Weight& w, const float* x, int64_t n, float* y, int nt, int levels) {
    cpu::PanelType pt{};
    if (w.panels && levels == 1 && cpu::panel_type_for(w.type, &pt)) {
        cpu::matmul_panels(k, pt, w.panels, w.rows, w.cols, x, n, y, nt);
        return;
    }
    cpu::matmul(k, w.type, w.data, w.rows, w.cols, w.row_bytes, x, n, y, nt, levels);
}

}  // namespace

Context::Context(std::shared_ptr<const TextModel> m, const ContextParams& p) : m_(std::move(m)), p_(p) {
    const auto& hp = m_->hparams();
    if (p_.n_ctx <= 0) throw InputError("[context] n_ctx must be positive, got " + std::to_string(p_.n_ctx));
    if (p_.n_ctx > kMaxContext)
        throw InputError("[context] n_ctx " + std::to_string(p_.n_ctx) + " is above the supported maximum of " +
                         std::to_string(kMaxContext) + " tokens");
    if (p_.n_ubatch <= 0) throw InputError("[context] n_ubatch must be positive");
    p_.n_ubatch = std::min(p_.n_ubatch, p_.n_ctx);  // a micro-batch never exceeds the context
    if (p_.n_threads < 0) throw InputError("[context] n_threads must be >= 0");
    if (p_.act_levels != 1 && p_.act_levels != 2) throw InputError("[context] act_levels must be 1 or 2");
    kv_.resize(static_cast<size_t>(hp.n_layer));
    for (int i = 0; i < hp.n_layer; ++i) {
        const LayerSpec& s = hp.layers[static_cast<size_t>(i)];
        if (s.kv_source != i) continue;
        kv_[static_cast<size_t>(i)] = std::make_unique<runtime::KVLayer>(
            runtime::KVLayerSpec{s.sliding, s.n_kv_head, s.head_dim}, hp.window, p_.n_ctx, p_.n_ubatch, p_.k_type,
            p_.v_type);
    }
}

size_t Context::kv_bytes_allocated() const {
    size_t t = 0;
    for (const auto& l : kv_)
        if (l) t += l->bytes_allocated();
    return t;
}

const runtime::KVLayer& Context::kv_layer(int il) const {
    const auto& hp = m_->hparams();
    if (il < 0 || il >= hp.n_layer) throw InputError("[context] layer index " + std::to_string(il) + " out of range");
    return *kv_[static_cast<size_t>(hp.layers[static_cast<size_t>(il)].kv_source)];
}

void Context::reserve_all() {
    for (auto& l : kv_)
        if (l) l->reserve(p_.n_ctx);
}

void Context::reset() {
    for (auto& l : kv_)
        if (l) l->clear();
    n_past_ = 0;
}

bool Context::truncate(int64_t n) {
    if (n < 0) throw InputError("[context] truncate to a negative length");
    if (n >= n_past_) return n == n_past_;
    const int64_t w = m_->hparams().window;
    for (const auto& l : kv_) {
        if (!l || !l->sliding()) continue;
        for (int64_t p = std::max<int64_t>(0, n - w + 1); p < n; ++p)
            if (!l->holds(p)) return false;
    }
    for (auto& l : kv_)
        if (l) l->forget_from(n);
    n_past_ = n;
    return true;
}

void Context::eval(const int32_t* tokens, int64_t n, bool all_logits, float* logits_out,
                   const std::function<void()>& check_interrupt, const EvalInput& in) {
    if (n <= 0) throw InputError("[context] eval needs at least one token");
    if (n_past_ + n > p_.n_ctx)
        throw ContextOverflowError("[context] " + std::to_string(n_past_) + " cached + " + std::to_string(n) +
                                   " new tokens exceed the context of " + std::to_string(p_.n_ctx) + " tokens");
    const int64_t V = m_->hparams().n_vocab;
    for (int64_t i = 0; i < n; ++i)
        if (tokens[i] < 0 || tokens[i] >= V)
            throw InputError("[context] token id " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                             " is outside the vocabulary [0, " + std::to_string(V) + ")");
    const int8_t* kinds = in.kinds;
    if (kinds) {
        for (int64_t i = 0; i < n; ++i) {
            if (kinds[i] < kTokenInput || kinds[i] > kCausalEmbd)
                throw InputError("[context] input kind " + std::to_string(kinds[i]) + " at index " +
                                 std::to_string(i) + " is not 0 (token), 1 (image/video) or 2 (audio)");
            if (kinds[i] != kTokenInput && !in.embd)
                throw InputError("[context] position " + std::to_string(i) + " takes an embedding but none was given");
        }
        // Bidirectional blocks must fit one micro-batch (a split block would hide its later half
        // from its earlier half, unlike the reference).
        for (int64_t i = 0; i < n;) {
            if (kinds[i] != kBidirectionalEmbd) { ++i; continue; }
            int64_t j = i;
            while (j < n && kinds[j] == kBidirectionalEmbd) ++j;
            if (j - i > p_.n_ubatch)
                throw InputError("[context] an image block of " + std::to_string(j - i) +
                                 " positions does not fit the micro-batch of n_ubatch=" + std::to_string(p_.n_ubatch) +
                                 " (raise n_ubatch)");
            i = j;
        }
    }
    for (auto& l : kv_)
        if (l) l->reserve(n_past_ + n);
    last_hidden_.clear();
    for (int64_t s = 0; s < n;) {
        int64_t nb = std::min(p_.n_ubatch, n - s);
        // never end a micro-batch inside a bidirectional block: stop before the block instead
        if (kinds && s + nb < n && kinds[s + nb] == kBidirectionalEmbd && kinds[s + nb - 1] == kBidirectionalEmbd) {
            int64_t b = s + nb - 1;
            while (b > s && kinds[b - 1] == kBidirectionalEmbd) --b;
            if (b > s) nb = b - s;  // b == s cannot happen: blocks fit n_ubatch (checked above)
        }
        const bool last = s + nb == n;
        float* out = nullptr;
        if (logits_out && all_logits) out = logits_out + s * V;
        if (logits_out && !all_logits && last) out = logits_out;
        EvalInput sub;
        if (kinds) {
            sub.kinds = kinds + s;
            sub.embd = in.embd ? in.embd + s * m_->hparams().n_embd : nullptr;
        }
        eval_ubatch(tokens + s, nb, all_logits, out, check_interrupt, sub);
        s += nb;
    }
    m_->file().check_intact();  // weights read as zeros past a truncation of the mapped file
}

void Context::eval_ubatch(const int32_t* tokens, int64_t n, bool all_logits, float* logits_out,
                          const std::function<void()>& check_interrupt, const EvalInput& in) {
    Segment seg{this, 0, n, in.kinds};
    forward(&seg, 1, tokens, n, in, all_logits, logits_out, check_interrupt);
}

void Context::decode_batch(const std::vector<Context*>& ctxs, const int32_t* tokens, float* logits_out,
                           const std::function<void()>& check_interrupt) {
    if (ctxs.empty()) throw InputError("[decode_batch] needs at least one context");
    const Context* c0 = ctxs[0];
    if (!c0) throw InputError("[decode_batch] context 0 is None");
    const int64_t V = c0->m_->hparams().n_vocab;
    std::vector<Segment> segs;
    segs.reserve(ctxs.size());
    for (size_t i = 0; i < ctxs.size(); ++i) {
        Context* c = ctxs[i];
        const std::string at = "[decode_batch] context " + std::to_string(i);
        if (!c) throw InputError(at + " is None");
        if (c->m_.get() != c0->m_.get()) throw InputError(at + " belongs to another model");
        if (c->p_.act_levels != c0->p_.act_levels) throw InputError(at + " has another act_precision");
        for (size_t j = 0; j < i; ++j)
            if (ctxs[j] == c) throw InputError(at + " appears twice (one token per context per step)");
        if (c->n_past_ + 1 > c->p_.n_ctx)
            throw ContextOverflowError(at + " is full (" + std::to_string(c->n_past_) + " of " +
                                       std::to_string(c->p_.n_ctx) + " positions)");
        if (tokens[i] < 0 || tokens[i] >= V)
            throw InputError(at + ": token id " + std::to_string(tokens[i]) + " is outside the vocabulary [0, " +
                             std::to_string(V) + ")");
        segs.push_back(Segment{c, static_cast<int64_t>(i), 1, nullptr});
    }
    for (Context* c : ctxs) {
        for (auto& l : c->kv_)
            if (l) l->reserve(c->n_past_ + 1);
        c->last_hidden_.clear();
    }
    forward(segs.data(), segs.size(), tokens, static_cast<int64_t>(ctxs.size()), EvalInput{}, true, logits_out,
            check_interrupt);
    c0->model().file().check_intact();  // weights read as zeros past a truncation of the mapped file
}

// The forward pass over n rows that belong to one or more contexts (segments of consecutive
// rows, each continuing its own context at its n_past). Every matmul runs once over all n rows
// (one weight read per step for every sequence of a continuous batch); norms, RoPE, the KV
// store and attention are per segment. A row's result does not depend on the other rows: the
// matmul drivers and attention are row-invariant (decode == batch, bitwise).
void Context::forward(Segment* segs, size_t n_seg, const int32_t* tokens, int64_t n, const EvalInput& in,
                      bool all_logits, float* logits_out, const std::function<void()>& check_interrupt) {
    const Context& c0 = *segs[0].ctx;
    const TextModel& m = *c0.m_;
    const TextHParams& hp = m.hparams();
    const cpu::KernelTable& K = cpu::kernels();
    const int nt = c0.p_.n_threads;
    const int levels = c0.p_.act_levels;
    const int64_t H = hp.n_embd;
    const float eps = hp.eps;

    std::vector<float> x(static_cast<size_t>(n * H)), a(x.size()), o(x.size());
    // pos[t]: absolute position of row t in its own context
    std::vector<int64_t> pos(static_cast<size_t>(n));
    for (size_t si = 0; si < n_seg; ++si)
        for (int64_t t = 0; t < segs[si].n; ++t) pos[static_cast<size_t>(segs[si].row0 + t)] = segs[si].ctx->n_past_ + t;
    const Weight& E = m.token_embd();
    for (int64_t t = 0; t < n; ++t) {
        if (in.kinds && in.kinds[t] != kTokenInput) {  // soft token: the embedder's row, not scaled
            std::copy(in.embd + t * H, in.embd + (t + 1) * H, x.data() + t * H);
            continue;
        }
        quant::dequantize_row(E.type, E.data + static_cast<size_t>(tokens[t]) * E.row_bytes, x.data() + t * H, H);
        K.scale(x.data() + t * H, x.data() + t * H, hp.embed_scale, H);
    }
    // key_end[t]: last position query t sees on sliding layers (its block's end for image tokens)
    std::vector<std::vector<int64_t>> key_end(n_seg);
    for (size_t si = 0; si < n_seg; ++si) {
        const int8_t* kinds = segs[si].kinds;
        const int64_t sn = segs[si].n, p0 = segs[si].ctx->n_past_;
        if (!kinds || !std::any_of(kinds, kinds + sn, [](int8_t k) { return k == kBidirectionalEmbd; })) continue;
        auto& ke = key_end[si];
        ke.resize(static_cast<size_t>(sn));
        for (int64_t t = sn - 1; t >= 0; --t) {
            const bool blk = kinds[t] == kBidirectionalEmbd;
            const bool cont = blk && t + 1 < sn && kinds[t + 1] == kBidirectionalEmbd;
            ke[static_cast<size_t>(t)] = cont ? ke[static_cast<size_t>(t + 1)] : p0 + t;
        }
    }
    std::vector<float> q, kb, vb, att, g, u;
    for (int il = 0; il < hp.n_layer; ++il) {
        if (check_interrupt) check_interrupt();
        const LayerSpec& s = hp.layers[static_cast<size_t>(il)];
        const LayerWeights& w = m.layer(il);
        const int hd = s.head_dim;
        const int64_t qw = int64_t(s.n_head) * hd, kw = int64_t(s.n_kv_head) * hd;
        for (int64_t t = 0; t < n; ++t) K.rms_norm(a.data() + t * H, x.data() + t * H, w.attn_norm, H, eps);
        q.resize(static_cast<size_t>(n * qw));
        mm(K, w.q, a.data(), n, q.data(), nt, levels);
        for (int64_t t = 0; t < n; ++t)
            for (int h = 0; h < s.n_head; ++h) {
                float* qh = q.data() + t * qw + int64_t(h) * hd;
                K.rms_norm(qh, qh, w.q_norm, hd, eps);
                K.rope_neox(qh, hd, static_cast<float>(pos[static_cast<size_t>(t)]), s.inv_freq);
            }
        if (s.kv_source == il) {
            kb.resize(static_cast<size_t>(n * kw));
            vb.resize(kb.size());
            mm(K, w.k, a.data(), n, kb.data(), nt, levels);
            if (s.has_v)
                mm(K, w.v, a.data(), n, vb.data(), nt, levels);
            else
                std::copy(kb.begin(), kb.end(), vb.begin());  // k_eq_v: V is the raw K projection
            for (size_t si = 0; si < n_seg; ++si) {
                runtime::KVLayer& kv = *segs[si].ctx->kv_[static_cast<size_t>(il)];
                for (int64_t t = segs[si].row0; t < segs[si].row0 + segs[si].n; ++t)
                    for (int h = 0; h < s.n_kv_head; ++h) {
                        float* kh = kb.data() + t * kw + int64_t(h) * hd;
                        float* vh = vb.data() + t * kw + int64_t(h) * hd;
                        K.rms_norm(kh, kh, w.k_norm, hd, eps);
                        K.rope_neox(kh, hd, static_cast<float>(pos[static_cast<size_t>(t)]), s.inv_freq);
                        if (hp.v_norm) K.rms_norm(vh, vh, nullptr, hd, eps);
                        kv.store(pos[static_cast<size_t>(t)], h, kh, vh);
                    }
            }
        }
        att.resize(q.size());
        for (size_t si = 0; si < n_seg; ++si) {
            const Segment& sg = segs[si];
            runtime::AttentionBatch ab;
            ab.q = q.data() + sg.row0 * qw;
            ab.out = att.data() + sg.row0 * qw;
            ab.n_tokens = sg.n;
            ab.pos0 = sg.ctx->n_past_;
            ab.n_head = s.n_head;
            ab.scale = hp.attn_scale;
            ab.window = s.sliding ? hp.window : 0;
            ab.key_end = s.sliding && !key_end[si].empty() ? key_end[si].data() : nullptr;
            runtime::attention(K, *sg.ctx->kv_[static_cast<size_t>(s.kv_source)], ab, nt);
        }
        mm(K, w.o, att.data(), n, o.data(), nt, levels);
        for (int64_t t = 0; t < n; ++t) {
            float* ot = o.data() + t * H;
            K.rms_norm(ot, ot, w.post_attn_norm, H, eps);
            K.add(x.data() + t * H, x.data() + t * H, ot, H);
            K.rms_norm(a.data() + t * H, x.data() + t * H, w.ffn_norm, H, eps);
        }
        const int64_t F = s.n_ff;
        g.resize(static_cast<size_t>(n * F));
        u.resize(g.size());
        mm(K, w.gate, a.data(), n, g.data(), nt, levels);
        mm(K, w.up, a.data(), n, u.data(), nt, levels);
        K.gelu_tanh_mul(g.data(), g.data(), u.data(), n * F);
        mm(K, w.down, g.data(), n, o.data(), nt, levels);
        for (int64_t t = 0; t < n; ++t) {
            float* ot = o.data() + t * H;
            float* xt = x.data() + t * H;
            K.rms_norm(ot, ot, w.post_ffw_norm, H, eps);
            K.add(xt, xt, ot, H);
            if (w.output_scale != 1.0f) K.scale(xt, xt, w.output_scale, H);
        }
    }
    for (size_t si = 0; si < n_seg; ++si) segs[si].ctx->n_past_ += segs[si].n;
    if (!logits_out) return;
    // Head only for the rows whose logits are wanted (with all_logits: every row; else the
    // last row, which only the single-segment path asks for).
    const int64_t r0 = all_logits ? 0 : n - 1;
    const int64_t rows = n - r0;
    for (int64_t t = 0; t < rows; ++t) K.rms_norm(a.data() + t * H, x.data() + (r0 + t) * H, m.output_norm(), H, eps);
    for (size_t si = 0; si < n_seg; ++si) {
        const int64_t lo = std::max(segs[si].row0, r0), hi = segs[si].row0 + segs[si].n;
        if (lo < hi)
            segs[si].ctx->last_hidden_.insert(segs[si].ctx->last_hidden_.end(), a.begin() + (lo - r0) * H,
                                              a.begin() + (hi - r0) * H);
    }
    const int64_t V = hp.n_vocab;
    mm(K, m.output(), a.data(), rows, logits_out, nt, levels);
    if (hp.final_softcap > 0.0f) K.softcap(logits_out, logits_out, rows * V, hp.final_softcap);
}

}  // namespace unigemma::model
