// The "llama" tokenizer: SentencePiece BPE driven by token scores, as GGUF files of Gemma 3
// (and other SentencePiece models) store it: tokens + scores, no merges list.
//
// encode(text):
//   1. split_special() cuts out control / user-defined token texts. Gemma 3 types its
//      whitespace runs ("\n\n", "   ", ...) user-defined, so those are matched here, before
//      any space is escaped.
//   2. Each remaining span gets a leading ' ' when tokenizer.ggml.add_space_prefix is true
//      (default true, Gemma 3 files say false) and the span is the first thing in the text or
//      follows a matched token; then every ' ' becomes U+2581.
//   3. One symbol per UTF-8 character (an invalid byte is a symbol of its own, see utf8_len).
//      Repeatedly, of all adjacent symbol pairs whose concatenated text is a vocab token, the one
//      whose token has the highest score is merged (the leftmost one on equal scores).
//   4. A final symbol that is a vocab token gives its id. Any other (a single character missing
//      from the vocab: merges only ever produce vocab tokens) gives one <0xNN> token per byte.
//   BOS is prepended when add_bos; EOS is never appended.
#include <cstring>
#include <queue>

#include "base/error.h"
#include "tokenizer/tokenizer_models.h"

namespace unigemma::tokenizer {

namespace {

class LlamaSPM final : public Tokenizer {
public:
    explicit LlamaSPM(const gguf::GGUFFile& f) {
        load_common(f);
        const std::string key = "tokenizer.ggml.scores";
        const gguf::Value* v = &required_array(f, key, gguf::ValueType::FLOAT32, "FLOAT32");
        if (v->count != tokens_.size())
            throw GGUFError("[tokenizer] key '" + key + "': has " + std::to_string(v->count) +
                            " entries, the vocabulary " + std::to_string(tokens_.size()));
        scores_.resize(v->count);
        std::memcpy(scores_.data(), v->elems, v->count * sizeof(float));
        const std::string k_prefix = "tokenizer.ggml.add_space_prefix";
        add_space_prefix_ = f.find(k_prefix) ? f.get_bool(k_prefix) : true;
    }

    std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override {
        std::vector<int32_t> out;
        if (add_bos) out.push_back(bos_);
        bool prev_special = true;
        std::string span;
        for (const Fragment& fr : split_special(text, parse_special)) {
            if (fr.token >= 0) {
                out.push_back(fr.token);
                prev_special = true;
                continue;
            }
            span.clear();
            if (add_space_prefix_ && prev_special) span += "\xE2\x96\x81";
            for (char c : fr.text) {
                if (c == ' ') span += "\xE2\x96\x81";
                else span.push_back(c);
            }
            merge_span(span, out);
            prev_special = false;
        }
        return out;
    }

    std::string token_to_piece(int32_t id, bool special) const override { return Tokenizer::token_to_piece(id, special); }

private:
    // Symbols form a doubly linked list over `s` (symbol k covers s[start, start+len)); merged
    // symbols stay contiguous, so a pair's text is one substring of s. Candidates wait in a
    // max-heap by (score, -left); an entry is stale when its left symbol is gone or the pair no
    // longer spans `len` bytes (one side merged since), and is then skipped.
    void merge_span(std::string_view s, std::vector<int32_t>& out) const {
        struct Sym {
            uint32_t start, len;
            int32_t prev, next;
        };
        std::vector<Sym> syms;
        for (size_t p = 0; p < s.size();) {
            const size_t n = utf8_len(s, p);
            const int32_t k = static_cast<int32_t>(syms.size());
            syms.push_back({static_cast<uint32_t>(p), static_cast<uint32_t>(n), k - 1, k + 1});
            p += n;
        }
        if (syms.empty()) return;
        syms.back().next = -1;

        struct Cand {
            float score;
            int32_t left;
            uint32_t len;
            bool operator<(const Cand& o) const { return score != o.score ? score < o.score : left > o.left; }
        };
        std::priority_queue<Cand> heap;
        const auto try_push = [&](int32_t l) {
            if (l < 0 || syms[l].next < 0) return;
            const Sym& L = syms[l];
            const Sym& R = syms[L.next];
            const int32_t id = lookup(s.substr(L.start, L.len + R.len));
            if (id >= 0) heap.push({scores_[id], l, L.len + R.len});
        };
        for (int32_t k = 0; k + 1 < static_cast<int32_t>(syms.size()); ++k) try_push(k);

        while (!heap.empty()) {
            const Cand c = heap.top();
            heap.pop();
            Sym& L = syms[c.left];
            if (L.len == 0 || L.next < 0 || L.len + syms[L.next].len != c.len) continue;
            Sym& R = syms[L.next];
            L.len += R.len;
            R.len = 0;
            L.next = R.next;
            if (R.next >= 0) syms[R.next].prev = c.left;
            try_push(L.prev);
            try_push(c.left);
        }
        for (int32_t k = 0; k >= 0; k = syms[k].next) {
            const std::string_view piece = s.substr(syms[k].start, syms[k].len);
            const int32_t id = lookup(piece);
            if (id >= 0) out.push_back(id);
            else push_bytes(piece, out);
        }
    }

    std::vector<float> scores_;
    bool add_space_prefix_ = true;
};

}  // namespace

std::unique_ptr<Tokenizer> make_llama_spm(const gguf::GGUFFile& f) { return std::make_unique<LlamaSPM>(f); }

}  // namespace unigemma::tokenizer
