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

protected:
    std::vector<std::string> tokens_;
    std::vector<TokenType> types_;
    int32_t bos_ = -1, eos_ = -1;
    bool add_bos_ = true;
    std::vector<int32_t> eog_;
};

}  // namespace unigemma::tokenizer
