// Tensor type ids as the GGUF format (ggml) numbers them, with their block geometry.
// This table is a fact of the file format, so it lives in gguf/; quant/ builds on it.
#pragma once
#include <cstdint>
#include <string>

namespace unigemma::gguf {

enum class GGMLType : uint32_t {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21,
    IQ2_S = 22, IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29,
    BF16 = 30, TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39, NVFP4 = 40, Q1_0 = 41,
};

struct TypeTraits {
    const char* name;     // nullptr: id not assigned (or removed from the format)
    uint32_t block_size;  // elements per block (1 for plain types)
    uint32_t type_size;   // bytes per block
};

// Returns traits with name == nullptr for ids the format does not define.
TypeTraits type_traits(uint32_t type_id);
inline bool type_known(uint32_t type_id) { return type_traits(type_id).name != nullptr; }
// Accepts "f32", "F32", "q4_k", ... ; throws InputError for unknown names.
GGMLType type_from_name(const std::string& name);

}  // namespace unigemma::gguf
