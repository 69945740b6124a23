// Model-level validation of a parsed GGUF: required hyper-parameter keys per architecture
// and every tensor's shape checked against them, before any model code touches the data.
// Architectures: gemma4 (text), gemma4-assistant (MTP drafter), gemma3 (text), clip
// (mmproj with gemma4uv / gemma4ua projectors). Other architectures pass with a check of
// `general.architecture` only (inspect can still show them).
#pragma once
#include <string>

#include "gguf/gguf_file.h"

namespace unigemma::model {

// Throws GGUFError naming the key or tensor on the first problem found.
void validate_model_file(const gguf::GGUFFile& f);

// Largest layer count accepted (llama.cpp aborts above its own limit; we raise).
constexpr uint64_t kMaxLayers = 512;

}  // namespace unigemma::model
