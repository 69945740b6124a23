// Factories of the concrete tokenizers (internal to csrc/tokenizer; callers use Tokenizer::from_gguf).
#pragma once
#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

namespace unigemma::tokenizer {

std::unique_ptr<Tokenizer> make_gemma4_bpe(const gguf::GGUFFile& f);  // bpe_gemma4.cpp
std::unique_ptr<Tokenizer> make_llama_spm(const gguf::GGUFFile& f);   // spm_llama.cpp

// The metadata array `key` with elements of type `elem` (named `elem_name` in the message);
// throws GGUFError naming the key when it is missing or of another type.
const gguf::Value& required_array(const gguf::GGUFFile& f, const std::string& key, gguf::ValueType elem,
                                  const char* elem_name);

}  // namespace unigemma::tokenizer
