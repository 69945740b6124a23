// Constrained decoding for JSON: a byte-level incremental matcher of a compiled schema
// (json_schema.h) and the per-step token mask computed against a TokenVocab trie.
//
// Matcher state: a small set of "threads", each a stack of Frames (a pushdown automaton run).
// Threads exist only where anyOf alternatives overlap on their first byte (e.g. two object
// schemas); otherwise there is exactly one. Invariant: every live thread can still reach a
// complete value (the schema compiler drops unsatisfiable alternatives; lengths, counts and
// digits are checked before they run out; a value, key or array item is opened only where
// the frames it needs, Node::need, fit under kMaxDepth), so a token is allowed iff some thread
// survives all of its bytes, and some token is always allowed.
//
// Mask computation walks the trie depth first, stepping the thread in place one byte per edge
// and undoing through a journal on the way back (a step touches one to three frames), so no
// state is copied per trie node. Inside an unconstrained string at a character boundary a
// child subtree whose bytes are all plain string content (TokenVocab::Node::plain_chars) is
// taken whole as one rank range, which makes the string-interior case cheap.
//
// Whitespace: at most max_ws bytes of JSON whitespace in each gap between tokens (before the
// value, around ':' and ',', inside brackets); none after the top-level value. Nesting: at most
// kMaxDepth frames (the root, one per open object / array / string / number, one for a key
// being read); a schema whose smallest value needs more is rejected. Text ends right after the top-level value: then only the EOG tokens are
// allowed (for a top-level number, which can go on, EOG is allowed alongside more digits).
//
// Gemma4Tool dialect (Schema::dialect, tool_dialect.h): no whitespace at all; strings open and
// close on kToolQuote (the `<|"|>` token) with raw content (Frame::b: tool_dialect.h), keys are
// bare declared names read by the key frame up to the ':' the object then reads; raw-content
// subtrees (TokenVocab::Node::raw_chars) are taken whole unless their first byte would continue
// a partial `<|"|>` (raw_danger_byte).
#pragma once
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "grammar/json_schema.h"
#include "grammar/token_vocab.h"

namespace unigemma::grammar {

struct Frame {
    uint32_t node = 0;  // schema node (Key: its object's node)
    uint8_t kind = 0;   // FrameKind (json_grammar.cpp)
    uint8_t phase = 0;
    uint8_t ws = 0;     // whitespace bytes in the current gap (Root / Object / Array)
    uint8_t pad = 0;
    // Object: p, the first declared key that may come next; Array: items so far;
    // String: characters so far; Key: names-trie node, or kDiverged once the key left every
    // declared name; Number: digit counts (integer | fraction << 8 | exponent << 16);
    // Literal: node of the literal trie.
    uint32_t a = 0;
    // Object: the key whose value is being read (declared index or kAdditional);
    // String / Key: escape and UTF-8 sub-state (json_grammar.cpp, StrState; Gemma4Tool strings:
    // partial-delimiter and UTF-8 sub-state, tool_dialect.h; Gemma4Tool keys: unused).
    uint32_t b = 0;
    bool operator==(const Frame& o) const {
        return node == o.node && kind == o.kind && phase == o.phase && ws == o.ws && a == o.a && b == o.b;
    }
};
using Stack = std::vector<Frame>;

class JsonMatcher {
public:
    static constexpr size_t kMaxDepth = 64;
    static constexpr size_t kMaxThreads = 64;

    JsonMatcher(std::shared_ptr<const Schema> schema, std::shared_ptr<const TokenVocab> vocab, int max_ws = 16);

    // Allowed tokens as a bitset over vocab ranks (TokenVocab); eog_ok: the EOG ids too.
    void allowed_ranks(std::vector<uint64_t>& bits, bool& eog_ok);
    // logits[0..n): disallowed -> -inf (ids >= n_vocab always); n must be >= n_vocab.
    void mask_logits(float* logits, size_t n);
    // out[0..n_vocab): 1 where allowed.
    void allowed_ids(uint8_t* out);
    bool is_allowed(int32_t id);
    // Advances by one token; false (state unchanged) if it is not allowed.
    bool accept_token(int32_t id);
    // Advances by raw bytes (tests, prefilled text); false (state unchanged) if they do not fit.
    bool accept_bytes(std::string_view bytes);

    bool complete() const;  // a full value has been produced: EOG is allowed
    bool done() const;      // complete and nothing but EOG may follow
    bool ended() const { return ended_; }  // an EOG token was accepted
    size_t n_threads() const { return threads_.size(); }
    const TokenVocab& vocab() const { return *vocab_; }

private:
    bool advance(std::vector<Stack>& threads, std::string_view bytes) const;

    std::shared_ptr<const Schema> schema_;
    std::shared_ptr<const TokenVocab> vocab_;
    int max_ws_;
    std::vector<Stack> threads_;
    bool ended_ = false;
    std::vector<uint64_t> bits_;  // scratch
};

}  // namespace unigemma::grammar
