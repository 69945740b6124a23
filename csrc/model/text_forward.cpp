// Context: the text forward pass over micro-batches (math in text_model.h), written once
// against the backend seam (ops/backend.h); the CPU backend runs it today.
//
// Activations of one forward over n rows are float32 tensors, token-major:
//   x [n][H] residual stream; a [n][H] normed input; q [n][n_head*hd]; k, v [n][n_kv*hd];
//   att [n][n_head*hd]; g, u [n][n_ff]. Every matmul is one backend matmul over the n rows
// (GEMM for a prefill, GEMV for a decode step), reading the weights where the backend keeps them.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/error.h"
#include "model/text_model.h"
#include "model/backend_choice.h"

namespace unigemma::model {

namespace {

// Rows whose activations a context keeps allocated between calls: a decode step (1 row), a
// speculative verify (draft + 1 <= 9) or a small continuous batch. Larger forwards (prefill
// micro-batches of up to n_ubatch rows) allocate for the call.
constexpr int64_t kKeptRows = 16;

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
    backend_ = make_backend(p_.backend, p_.n_threads, m_->device_weights(), "[context]");
    kv_.resize(static_cast<size_t>(hp.n_layer));
    for (int i = 0; i < hp.n_layer; ++i) {
        const LayerSpec& s = hp.layers[static_cast<size_t>(i)];
        max_qw_ = std::max(max_qw_, int64_t(s.n_head) * s.head_dim);
        max_kw_ = std::max(max_kw_, int64_t(s.n_kv_head) * s.head_dim);
        max_ff_ = std::max(max_ff_, s.n_ff);
        if (s.kv_source != i) continue;
        kv_[static_cast<size_t>(i)] = std::make_unique<ops::KVLayer>(
            ops::KVLayerSpec{s.sliding, s.n_kv_head, s.head_dim}, hp.window, p_.n_ctx, p_.n_ubatch, p_.k_type,
            p_.v_type, /*host_storage=*/p_.backend == "cpu");
    }
}

size_t Context::kv_bytes_allocated() const {
    size_t t = 0;
    for (const auto& l : kv_)
        if (l) t += l->bytes_allocated();
    return t;
}

const ops::KVLayer& Context::kv_layer(int il) const {
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

Context::Activations Context::activations(int64_t rows, std::unique_ptr<ops::Buffer>& transient) {
    const int64_t H = m_->hparams().n_embd;
    const int64_t per_row = 3 * H + 2 * max_qw_ + 2 * max_kw_ + 2 * max_ff_;
    float* base = nullptr;
    if (rows <= kKeptRows) {
        if (!arena_) arena_ = backend_->alloc(static_cast<size_t>(kKeptRows * per_row));
        base = arena_->data();
    } else {
        transient = backend_->alloc(static_cast<size_t>(rows * per_row));
        base = transient->data();
    }
    auto take = [&](int64_t cols) {
        ops::Tensor t{base, rows, cols};
        base += rows * cols;
        return t;
    };
    Activations A;
    A.x = take(H);
    A.a = take(H);
    A.o = take(H);
    A.q = take(max_qw_);
    A.att = take(max_qw_);
    A.k = take(max_kw_);
    A.v = take(max_kw_);
    A.g = take(max_ff_);
    A.u = take(max_ff_);
    return A;
}

// The forward pass over n rows that belong to one or more contexts (segments of consecutive
// rows, each continuing its own context at its n_past). Every matmul runs once over all n rows
// (one weight read per step for every sequence of a continuous batch); norms, RoPE, the KV
// store and attention are per segment. A row's result does not depend on the other rows: the
// backend's ops are row-invariant (decode == batch, bitwise, on the CPU).
void Context::forward(Segment* segs, size_t n_seg, const int32_t* tokens, int64_t n, const EvalInput& in,
                      bool all_logits, float* logits_out, const std::function<void()>& check_interrupt) {
    Context& c0 = *segs[0].ctx;
    const TextModel& m = *c0.m_;
    const TextHParams& hp = m.hparams();
    ops::Backend& B = *c0.backend_;
    const int levels = c0.p_.act_levels;
    const int64_t H = hp.n_embd;
    const float eps = hp.eps;
    std::unique_ptr<ops::Buffer> transient;
    const Activations A = c0.activations(n, transient);
    // a tensor of n rows and `cols` columns at the start of a wider activation buffer
    auto narrow = [](ops::Tensor t, int64_t cols) { return ops::Tensor{t.data, t.rows, cols}; };

    // pos[t]: absolute position of row t in its own context
    std::vector<int64_t>& pos = c0.pos_;
    pos.resize(static_cast<size_t>(n));
    for (size_t si = 0; si < n_seg; ++si)
        for (int64_t t = 0; t < segs[si].n; ++t) pos[static_cast<size_t>(segs[si].row0 + t)] = segs[si].ctx->n_past_ + t;
    B.begin_forward();
    B.embed(m.token_embd(), tokens, in.kinds, in.embd, hp.embed_scale, A.x);
    // key_end[t]: last position query t sees on sliding layers (its block's end for image
    // tokens); kept in the segment's own context, empty when the segment has no image block
    for (size_t si = 0; si < n_seg; ++si) {
        const int8_t* kinds = segs[si].kinds;
        const int64_t sn = segs[si].n, p0 = segs[si].ctx->n_past_;
        auto& ke = segs[si].ctx->key_end_;
        ke.clear();
        if (!kinds || !std::any_of(kinds, kinds + sn, [](int8_t k) { return k == kBidirectionalEmbd; })) continue;
        ke.resize(static_cast<size_t>(sn));
        for (int64_t t = sn - 1; t >= 0; --t) {
            const bool blk = kinds[t] == kBidirectionalEmbd;
            const bool cont = blk && t + 1 < sn && kinds[t + 1] == kBidirectionalEmbd;
            ke[static_cast<size_t>(t)] = cont ? ke[static_cast<size_t>(t + 1)] : p0 + t;
        }
    }
    for (int il = 0; il < hp.n_layer; ++il) {
        if (check_interrupt) check_interrupt();
        const LayerSpec& s = hp.layers[static_cast<size_t>(il)];
        const LayerWeights& w = m.layer(il);
        const int hd = s.head_dim;
        const ops::Tensor q = narrow(A.q, int64_t(s.n_head) * hd), att = narrow(A.att, q.cols);
        B.rms_norm(A.a, A.x, w.attn_norm, eps);
        B.matmul(w.q, A.a, q, levels);
        B.head_norm_rope(q, hd, w.q_norm, eps, pos.data(), s.inv_freq);
        if (s.kv_source == il) {
            const ops::Tensor k = narrow(A.k, int64_t(s.n_kv_head) * hd), v = narrow(A.v, k.cols);
            B.matmul(w.k, A.a, k, levels);
            if (s.has_v)
                B.matmul(w.v, A.a, v, levels);
            else
                B.copy(v, k);  // k_eq_v: V is the raw K projection
            B.head_norm_rope(k, hd, w.k_norm, eps, pos.data(), s.inv_freq);
            if (hp.v_norm) B.head_norm_rope(v, hd, nullptr, eps, pos.data(), nullptr);
            for (size_t si = 0; si < n_seg; ++si) {
                const Segment& sg = segs[si];
                B.kv_store(*sg.ctx->kv_[static_cast<size_t>(il)], k.rows_of(sg.row0, sg.n), v.rows_of(sg.row0, sg.n),
                           pos.data() + sg.row0);
            }
        }
        for (size_t si = 0; si < n_seg; ++si) {
            const Segment& sg = segs[si];
            ops::AttentionCall call;
            call.pos0 = sg.ctx->n_past_;
            call.n_head = s.n_head;
            call.scale = hp.attn_scale;
            call.window = s.sliding ? hp.window : 0;
            call.key_end = s.sliding && !sg.ctx->key_end_.empty() ? sg.ctx->key_end_.data() : nullptr;
            B.attention(*sg.ctx->kv_[static_cast<size_t>(s.kv_source)], q.rows_of(sg.row0, sg.n),
                        att.rows_of(sg.row0, sg.n), call);
        }
        B.matmul(w.o, att, A.o, levels);
        B.rms_norm(A.o, A.o, w.post_attn_norm, eps);
        B.add(A.x, A.o);
        B.rms_norm(A.a, A.x, w.ffn_norm, eps);
        const ops::Tensor g = narrow(A.g, s.n_ff), u = narrow(A.u, s.n_ff);
        B.matmul(w.gate, A.a, g, levels);
        B.matmul(w.up, A.a, u, levels);
        B.gelu_tanh_mul(g, u);
        B.matmul(w.down, g, A.o, levels);
        B.rms_norm(A.o, A.o, w.post_ffw_norm, eps);
        B.add(A.x, A.o);
        if (w.output_scale != 1.0f) B.scale(A.x, w.output_scale);
    }
    for (size_t si = 0; si < n_seg; ++si) segs[si].ctx->n_past_ += segs[si].n;
    if (!logits_out) {
        B.end_forward();
        return;
    }
    // Head only for the rows whose logits are wanted (with all_logits: every row; else the
    // last row, which only the single-segment path asks for).
    const int64_t r0 = all_logits ? 0 : n - 1;
    const int64_t rows = n - r0;
    const ops::Tensor hn = A.a.rows_of(0, rows);
    B.rms_norm(hn, A.x.rows_of(r0, rows), m.output_norm(), eps);
    for (size_t si = 0; si < n_seg; ++si) {
        const int64_t lo = std::max(segs[si].row0, r0), hi = segs[si].row0 + segs[si].n;
        if (lo >= hi) continue;
        auto& lh = segs[si].ctx->last_hidden_;
        const size_t at = lh.size();
        lh.resize(at + static_cast<size_t>((hi - lo) * H));
        B.read(hn.rows_of(lo - r0, hi - lo), lh.data() + at);
    }
    const ops::Tensor logits = B.output_tensor(logits_out, rows, hp.n_vocab);
    B.matmul(m.output(), hn, logits, levels);
    if (hp.final_softcap > 0.0f) B.softcap(logits, hp.final_softcap);
    B.read(logits, logits_out);
    B.end_forward();
}

}  // namespace unigemma::model
