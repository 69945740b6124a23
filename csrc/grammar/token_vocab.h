// Vocabulary index for constrained decoding: every usable token's bytes in one byte trie, built
// once per tokenizer and shared (read-only) by every matcher of that model.
//
// Layout: token ids are sorted by their bytes; a token's position in that order is its "rank".
// Lexicographic order is the trie's depth-first order, so the tokens below any trie node (those
// whose bytes start with the node's path) are one contiguous rank range [tok_begin, tok_end),
// the ones ending exactly at the node first. A matcher marks allowed tokens in a rank bitset
// (whole subtrees at once) and mask() maps it back to ids. Children of a node are contiguous
// (breadth-first numbering) and sorted by byte.
//
// Gemma 4's string delimiter token `<|"|>` (a user-defined token, otherwise never usable) is kept
// as the one-byte piece kToolQuote (0xFF, tool_dialect.h) so the Gemma4Tool dialect can allow
// it where a string opens or closes; any other token whose bytes hold 0xFF is then left out (it
// could never be allowed: 0xFF is not valid UTF-8, so neither dialect accepts it anywhere). JSON
// matchers never allow the delimiter: 0xFF fits nowhere in JSON text.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace unigemma::grammar {

class TokenVocab {
public:
    static constexpr uint8_t kNotPlain = 0xFF;

    struct Node {
        uint32_t child_begin = 0;
        uint32_t tok_begin = 0, tok_end = 0;  // rank range of the subtree
        uint16_t n_children = 0;
        uint16_t n_end = 0;                   // tokens ending here: ranks [tok_begin, tok_begin + n_end)
        uint8_t byte = 0;                     // edge byte from the parent
        // Over every token below, the bytes from this node's edge byte on: kNotPlain unless they
        // are plain JSON string content (no '"', '\\', bytes < 0x20) forming complete, valid UTF-8
        // characters; else the largest number of characters they hold (capped at 254). A matcher
        // inside an unconstrained string at a character boundary takes such a subtree whole.
        uint8_t plain_chars = kNotPlain;
        // The same for raw tool-dialect string content (tool_dialect.h): complete, valid UTF-8
        // characters without the text `<|"|>` (quotes, backslashes and control characters are
        // plain there).
        uint8_t raw_chars = kNotPlain;
    };

    // pieces[id]: the bytes token id adds to the text; usable[id] = 0 keeps a token out of the
    // trie (never allowed); eog: end-of-generation ids (allowed only once the value is complete).
    // delimiter: id of the `<|"|>` token (its piece and usable flag are ignored), -1 if none.
    TokenVocab(const std::vector<std::string>& pieces, const std::vector<uint8_t>& usable, std::vector<int32_t> eog,
               int32_t delimiter = -1);
    // Usable: normal and byte tokens with a non-empty piece, and user-defined tokens that are
    // whitespace runs; control, unknown and unused tokens and other user-defined ones (markers
    // such as <start_of_image>, HTML tags) are not. EOG ids from tokenizer.eog_ids(); the
    // delimiter is the `<|"|>` token if the vocabulary has one.
    static std::shared_ptr<const TokenVocab> from_tokenizer(const tokenizer::Tokenizer& t);

    int32_t n_vocab() const { return static_cast<int32_t>(rank_of_.size()); }
    int32_t n_usable() const { return static_cast<int32_t>(order_.size()); }
    const std::vector<Node>& nodes() const { return nodes_; }
    const std::vector<int32_t>& eog() const { return eog_; }
    int32_t delimiter() const { return delimiter_; }  // the `<|"|>` token id, -1 if none
    bool is_eog(int32_t id) const;
    int32_t rank_of(int32_t id) const { return rank_of_[static_cast<size_t>(id)]; }  // -1: not usable
    int32_t id_at(uint32_t rank) const { return order_[rank]; }
    // Characters (UTF-8 lead and invalid bytes: every byte but 80-BF) in the token at a rank,
    // capped at 255. Within a plain subtree the tokens share the path bytes, so comparing
    // this count lets a matcher take the tokens that fit a string's remaining length.
    uint8_t chars_at(uint32_t rank) const { return chars_[rank]; }
    std::string_view piece(int32_t id) const {
        return std::string_view(bytes_).substr(offs_[static_cast<size_t>(id)],
                                               offs_[static_cast<size_t>(id) + 1] - offs_[static_cast<size_t>(id)]);
    }
    size_t memory_bytes() const;

private:
    std::string bytes_;           // all pieces, concatenated by id
    std::vector<uint32_t> offs_;  // n_vocab + 1
    std::vector<int32_t> order_;  // rank -> id
    std::vector<int32_t> rank_of_;
    std::vector<uint8_t> chars_;  // by rank
    std::vector<Node> nodes_;     // nodes_[0]: root (empty path)
    std::vector<int32_t> eog_;
    int32_t delimiter_ = -1;
};

}  // namespace unigemma::grammar
