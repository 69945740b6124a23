// Tokenizers read from GGUF metadata (tokenizer.ggml.*): the Gemma 4 BPE ("gemma4": SPM-style
// BPE over raw UTF-8, merges by rank) and the SentencePiece "llama" tokenizer of Gemma 3 GGUFs.
// Token ids are int32 (GGUF / llama.cpp convention).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/gguf_file.h"

namespace unigemma::tokenizer {

enum class TokenType : int32_t { Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

class Tokenizer {
public:
    virtual ~Tokenizer() = default;
    // Builds the tokenizer the file declares (tokenizer.ggml.model = "gemma4" | "llama");
    // throws GGUFError naming the key on missing or inconsistent metadata.
    static std::unique_ptr<Tokenizer> from_gguf(const gguf::GGUFFile& f);

    // add_bos: prepend BOS (callers pass add_bos_default() unless told otherwise);
    // parse_special: match control / user-defined token texts before BPE (else they are plain text).
    virtual std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const = 0;
    // Bytes of one token as it appears in detokenized text (U+2581 -> space, <0xNN> -> the byte);
    // control tokens give "" unless `special`. Concatenating pieces gives decode() (no
    // whitespace clean-up), so streaming can print pieces as they come (a multi-byte UTF-8
    // character may span byte tokens: callers buffer incomplete sequences).
    virtual std::string token_to_piece(int32_t id, bool special) const = 0;
    std::string decode(const std::vector<int32_t>& ids, bool special) const;

    int32_t n_vocab() const { return static_cast<int32_t>(tokens_.size()); }
    int32_t bos() const { return bos_; }
    int32_t eos() const { return eos_; }
    bool add_bos_default() const { return add_bos_; }
    const std::string& token_text(int32_t id) const;  // raw vocab string; throws InputError if out of range
    TokenType token_type(int32_t id) const;
    // End-of-generation: eos plus the model's turn / tool-response ends found by text
    // (Gemma 4: <eos>, <turn|>, <|tool_response>; Gemma 3: <eos>, <end_of_turn>).
    bool is_eog(int32_t id) const;
    const std::vector<int32_t>& eog_ids() const { return eog_; }
    int32_t find_token(std::string_view text) const;  // -1 if absent

    int32_t unk() const { return unk_; }
    // Id of the "<0xNN>" byte token for byte b, -1 if the vocab has none.
    int32_t byte_token(uint8_t b) const { return byte_tokens_[b]; }

protected:
    // Fills every shared member from the tokenizer.ggml.* keys (tokens, token_type, bos/eos/unk
    // ids, add_bos_token) and builds the lookup tables; subclasses then read their own keys.
    void load_common(const gguf::GGUFFile& f);

    // One piece of the input after special-token splitting: either a matched special /
    // user-defined token (`token` >= 0) or a span of plain text to run the model's BPE on.
    struct Fragment {
        int32_t token = -1;
        std::string_view text;
    };
    // Cuts `text` at control / user-defined token texts, leftmost-longest (the match that starts
    // first wins; among those starting at the same byte, the longest). Control and unknown
    // tokens take part only when parse_special; user-defined ones always do (llama.cpp and HF
    // `tokenizers` both match non-special added tokens in any mode). Leftmost-longest is HF's
    // rule; llama.cpp takes the longest token text first over the whole input, which differs
    // only where two token texts overlap in the input ("ab" and "bcd" in "abcd").
    std::vector<Fragment> split_special(std::string_view text, bool parse_special) const;
    // Appends the byte-fallback tokens for every byte of s (unk, or nothing, when the vocab
    // lacks a byte token).
    void push_bytes(std::string_view s, std::vector<int32_t>& out) const;
    // Vocab id of an exact string, -1 if absent. With duplicate strings the last id wins (as in
    // llama.cpp's and transformers' token -> id maps).
    int32_t lookup(std::string_view s) const;
    // Byte length of the UTF-8 character starting at s[pos]: 1..4 for a well-formed sequence
    // (shortest form, no surrogates, <= U+10FFFF), 1 for any invalid or truncated one, so a bad
    // byte becomes a symbol of its own and ends up as its <0xNN> byte token.
    static size_t utf8_len(std::string_view s, size_t pos);

    std::vector<std::string> tokens_;
    std::vector<TokenType> types_;
    int32_t bos_ = -1, eos_ = -1, unk_ = -1;
    bool add_bos_ = true;
    std::vector<int32_t> eog_;

private:
    struct Impl;  // hash map text -> id and the special-token trie (tokenizer.cpp)
    std::shared_ptr<const Impl> impl_;
    int32_t byte_tokens_[256];
};

}  // namespace unigemma::tokenizer
