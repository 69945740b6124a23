// Per-format row kernels behind quant.h's dispatch. Internal to quant/.
// Every function takes nb = number of whole blocks (elements = nb * block size); the
// dispatcher in quant_common.cpp has validated the sizes already.
#pragma once
#include <cstdint>

namespace unigemma::quant::detail {

// quant_legacy.cpp: bit-identical to gguf.quants (numpy float32 arithmetic).
void dequantize_q4_0(const uint8_t* src, float* dst, int64_t nb);
void dequantize_q4_1(const uint8_t* src, float* dst, int64_t nb);
void dequantize_q5_0(const uint8_t* src, float* dst, int64_t nb);
void dequantize_q5_1(const uint8_t* src, float* dst, int64_t nb);
void dequantize_q8_0(const uint8_t* src, float* dst, int64_t nb);
void quantize_q4_0(const float* src, uint8_t* dst, int64_t nb);
void quantize_q4_1(const float* src, uint8_t* dst, int64_t nb);
void quantize_q5_0(const float* src, uint8_t* dst, int64_t nb);
void quantize_q5_1(const float* src, uint8_t* dst, int64_t nb);
void quantize_q8_0(const float* src, uint8_t* dst, int64_t nb);

// quant_k.cpp: dequantization bit-identical to gguf.quants; quantization is our own
// scale/min search (gguf.quants has no K-quant quantizer). Quantizers throw InputError on
// non-finite input.
void dequantize_q2_k(const uint8_t* src, float* dst, int64_t nb);
void dequantize_q3_k(const uint8_t* src, float* dst, int64_t nb);
void dequantize_q4_k(const uint8_t* src, float* dst, int64_t nb);
void dequantize_q5_k(const uint8_t* src, float* dst, int64_t nb);
void dequantize_q6_k(const uint8_t* src, float* dst, int64_t nb);
void dequantize_q8_k(const uint8_t* src, float* dst, int64_t nb);
void quantize_q4_k(const float* src, uint8_t* dst, int64_t nb);
void quantize_q5_k(const float* src, uint8_t* dst, int64_t nb);
void quantize_q6_k(const float* src, uint8_t* dst, int64_t nb);

}  // namespace unigemma::quant::detail
