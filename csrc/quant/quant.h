// Block formats: scalar quantize / dequantize for every type the converter writes and the
// runtime reads. This is the single source of truth for block layouts; SIMD kernels in
// ops/ are tested against these functions.
#pragma once
#include <cstddef>
#include <cstdint>

#include "gguf/ggml_types.h"

namespace unigemma::quant {

using gguf::GGMLType;

// True if dequantize_row supports the type.
bool can_dequantize(GGMLType t);
// True if quantize_rows supports the type.
bool can_quantize(GGMLType t);

// Bytes needed for one row of n elements (n must be a multiple of the block size).
size_t row_bytes(GGMLType t, int64_t n);

// Dequantizes n elements (a multiple of the block size) from raw blocks into dst.
// Throws InputError for unsupported types or a bad n.
void dequantize_row(GGMLType t, const void* src, float* dst, int64_t n);

// Quantizes n_rows rows of n_per_row floats into dst (row_bytes(t, n_per_row) each),
// splitting rows over n_threads threads (0 = all hardware threads). Output is the same
// for any thread count. Returns the bytes written.
size_t quantize_rows(GGMLType t, const float* src, void* dst, int64_t n_rows, int64_t n_per_row, int n_threads);

}  // namespace unigemma::quant
