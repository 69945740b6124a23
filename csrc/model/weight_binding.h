// Internal helpers shared by the model loaders (text_model, assistant_model): typed metadata
// reads and tensor views into the mapped GGUF. Every error is a ModelError whose message
// starts with the caller's tag ("[model]", "[assistant]") and names the key or tensor.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "gguf/gguf_file.h"
#include "model/text_model.h"  // Weight

namespace unigemma::model::detail {

// Unsigned scalar or per-layer INT32/UINT32 array -> n_layer values.
std::vector<int64_t> per_layer_uint(const gguf::GGUFFile& f, const std::string& key, int n_layer, const char* tag);

// The float at `key`, or dflt when absent.
float float_or(const gguf::GGUFFile& f, const std::string& key, float dflt);

// HF default RoPE: inv_freq[i] = 1 / base^(2i / dim) / factor for i < rotated_pairs, 0 (pair
// not rotated) for the rest; dim/2 entries, computed in float32 as torch does.
std::vector<float> rope_inv_freq(float base, int dim, int rotated_pairs, float factor);

// Rotated pairs of a Gemma 4 full-attention head of hd_full: from `rope_freqs.weight`
// (llama.cpp's encoding: factor 1 for rotated pairs, >= 1e20 for the rest, rotated first),
// else from `unigemma.rope.partial_rotary_factor`, else every pair (hd_full / 2).
int rope_rotated_pairs(const gguf::GGUFFile& f, int hd_full, const char* tag);

// A 1-D or 2-D tensor as a matrix view (PyTorch [rows, cols] = ne [cols, rows]). Absent and
// not required: an empty Weight.
Weight bind_weight(const gguf::GGUFFile& f, const std::string& name, bool required, const char* tag);

// An F32 vector of exactly n elements (norm weights, scalars). Absent and not required: null.
const float* bind_f32(const gguf::GGUFFile& f, const std::string& name, int64_t n, bool required, const char* tag);

// Checks that cpu::matmul can read `w` (a kernel for its type on this CPU path, rows a whole
// number of weight and activation blocks); ModelError naming the tensor otherwise.
void check_matmul_weight(const Weight& w, const std::string& name, const char* tag);

}  // namespace unigemma::model::detail
