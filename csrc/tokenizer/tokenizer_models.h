// Factories of the concrete tokenizers (internal to csrc/tokenizer; callers use Tokenizer::from_gguf).
#pragma once
#include <memory>

#include "tokenizer/tokenizer.h"

namespace unigemma::tokenizer {

std::unique_ptr<Tokenizer> make_gemma4_bpe(const gguf::GGUFFile& f);  // bpe_gemma4.cpp
std::unique_ptr<Tokenizer> make_llama_spm(const gguf::GGUFFile& f);   // spm_llama.cpp

}  // namespace unigemma::tokenizer
