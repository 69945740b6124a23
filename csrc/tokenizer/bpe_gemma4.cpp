// The "gemma4" tokenizer: SentencePiece-style BPE over raw UTF-8 with merges by rank.
//
// encode(text):
//   1. split_special() cuts out control / user-defined token texts.
//   2. In each remaining span every ' ' becomes U+2581 ("▁"); no space prefix is added.
//   3. The span is cut into maximal runs of '\n' and runs of anything else. A newline run that
//      is itself a vocab token is emitted whole.
//   4. Each run starts as one symbol per UTF-8 character (an invalid byte is a symbol of its own,
//      see utf8_len) and adjacent symbols are merged by merge rank, lowest rank first, the
//      leftmost pair on ties, until no adjacent pair has a merge.
//   5. A final symbol that is a vocab token gives its id; any other gives one <0xNN> byte token
//      per UTF-8 byte (byte fallback).
//   BOS is prepended when add_bos. EOS is never appended.
//
// Merges (tokenizer.ggml.merges) are "left right" strings in rank order, split at the first
// space after the first byte. Both sides and their concatenation must be vocab tokens for the
// merge to be usable (HF `tokenizers` refuses to load anything else); other entries are ignored.
// Our converter writes a space inside a piece as U+0120; we keep pieces as written: the text
// we merge never holds a space (step 2), so a piece with a real space could never apply, and
// a real "Ġ" in a piece must stay one.
#include <cstring>
#include <queue>
#include <unordered_map>

#include "base/error.h"
#include "tokenizer/tokenizer_models.h"

namespace unigemma::tokenizer {

namespace {

class Gemma4BPE final : public Tokenizer {
public:
    explicit Gemma4BPE(const gguf::GGUFFile& f) {
        load_common(f);
        const std::string key = "tokenizer.ggml.merges";
        const gguf::Value* v = &required_array(f, key, gguf::ValueType::STRING, "STRING");
        merges_.reserve(v->strings.size() * 2);
        for (size_t r = 0; r < v->strings.size(); ++r) {
            std::string_view m = v->strings[r];
            const size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string_view::npos;
            if (sp == std::string_view::npos) continue;
            const std::string_view a = m.substr(0, sp), b = m.substr(sp + 1);
            const int32_t ia = lookup(a), ib = lookup(b);
            if (ia < 0 || ib < 0) continue;
            const int32_t merged = lookup(std::string(a) + std::string(b));
            if (merged < 0) continue;
            // an earlier (lower-rank) duplicate of the same pair wins
            merges_.emplace(pair_key(ia, ib), Merge{static_cast<int32_t>(r), merged});
        }
    }

    std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override {
        std::vector<int32_t> out;
        if (add_bos) out.push_back(bos_);
        std::string span;
        for (const Fragment& fr : split_special(text, parse_special)) {
            if (fr.token >= 0) {
                out.push_back(fr.token);
                continue;
            }
            span.clear();
            for (char c : fr.text) {
                if (c == ' ') span += "\xE2\x96\x81";
                else span.push_back(c);
            }
            for (size_t i = 0; i < span.size();) {
                const bool nl = span[i] == '\n';
                size_t j = i;
                while (j < span.size() && (span[j] == '\n') == nl) ++j;
                const std::string_view run(span.data() + i, j - i);
                const int32_t whole = nl ? lookup(run) : -1;
                if (whole >= 0) out.push_back(whole);
                else bpe_run(run, out);
                i = j;
            }
        }
        return out;
    }

    std::string token_to_piece(int32_t id, bool special) const override { return Tokenizer::token_to_piece(id, special); }

private:
    struct Merge {
        int32_t rank, merged;
    };
    static uint64_t pair_key(int32_t a, int32_t b) {
        return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
    }

    // Symbols form a doubly linked list over the run; symbol k covers run[start, start+len)
    // and has vocab id `id` (-1: not a token, never merges). Candidate merges wait in a min-heap
    // ordered by (rank, left position); an entry is stale when either symbol has changed since
    // it was pushed (checked by comparing ids and liveness), and is then skipped.
    void bpe_run(std::string_view run, std::vector<int32_t>& out) const {
        struct Sym {
            uint32_t start, len;
            int32_t id, prev, next;
        };
        std::vector<Sym> syms;
        for (size_t p = 0; p < run.size();) {
            const size_t n = utf8_len(run, p);
            const int32_t k = static_cast<int32_t>(syms.size());
            syms.push_back({static_cast<uint32_t>(p), static_cast<uint32_t>(n), lookup(run.substr(p, n)), k - 1, k + 1});
            p += n;
        }
        if (syms.empty()) return;
        syms.back().next = -1;

        struct Cand {
            int32_t rank, left, id_l, id_r;
            bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
        };
        std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
        const auto try_push = [&](int32_t l) {
            if (l < 0) return;
            const int32_t r = syms[l].next;
            if (r < 0 || syms[l].id < 0 || syms[r].id < 0) return;
            auto it = merges_.find(pair_key(syms[l].id, syms[r].id));
            if (it != merges_.end()) heap.push({it->second.rank, l, syms[l].id, syms[r].id});
        };
        for (int32_t k = 0; k + 1 < static_cast<int32_t>(syms.size()); ++k) try_push(k);

        while (!heap.empty()) {
            const Cand c = heap.top();
            heap.pop();
            Sym& L = syms[c.left];
            if (L.len == 0 || L.id != c.id_l || L.next < 0) continue;
            Sym& R = syms[L.next];
            if (R.id != c.id_r) continue;
            L.id = merges_.at(pair_key(c.id_l, c.id_r)).merged;
            L.len += R.len;
            R.len = 0;
            L.next = R.next;
            if (R.next >= 0) syms[R.next].prev = c.left;
            try_push(L.prev);
            try_push(c.left);
        }
        for (int32_t k = 0; k >= 0; k = syms[k].next) {
            if (syms[k].id >= 0) out.push_back(syms[k].id);
            else push_bytes(run.substr(syms[k].start, syms[k].len), out);
        }
    }

    std::unordered_map<uint64_t, Merge> merges_;  // (left id, right id) -> rank, merged id
};

}  // namespace

std::unique_ptr<Tokenizer> make_gemma4_bpe(const gguf::GGUFFile& f) { return std::make_unique<Gemma4BPE>(f); }

}  // namespace unigemma::tokenizer
