// Q4_0 weights repacked into 16-row panels, and the matmul over them.
//
// Why: the GGUF Q4_0 row kernel dots one weight row with one activation row; each 32-element
// block costs an unpack, a 4-lane integer dot, a horizontal scale combine and an FMA per row
// x token, so decoding is compute-bound at ~15 GB/s per core and prefill reuses little. In a
// panel, 16 rows of the same block sit side by side, 4 bytes per row per 64-byte vector, so
// one broadcast 4-byte activation group times one vector is 16 rows x 4 elements of dot
// (one vpdpbusd on AVX-512 VNNI), and the per-block scale step (int -> float, times
// d_w[16] * d_x, FMA) is done for 16 rows at once. No horizontal sums: each row is a lane.
//
// Panel layout (rows r0 .. r0+15 of one matrix; rows past the end are zero, scale 0):
//   for each block b of 32 columns, kPanelBlockBytes = 288 bytes at b * 288:
//     bytes [64 j, 64 j + 64), j = 0..3: for row i = 0..15, the 4 bytes qs_i[4j .. 4j+3] of
//       row i's GGUF block (low nibbles = elements 4j..4j+3, high nibbles = elements
//       16+4j..16+4j+3), at 64 j + 4 i;
//     bytes [256, 288): the 16 rows' fp16 scales d_i.
//   Panels follow each other: panel p at p * n_blocks * 288. Same byte count as GGUF Q4_0.
//
// Activations (one row per token, built by matmul_q4_0_panels from float input): the Q8_0
// quantization of the row (the same int8 values and scales as the Q8_0 activations of the
// row kernel), laid out as [nb x 32 int8 q][nb float d][nb int32 s], s = 8 * sum(q) (the
// Q4_0 code offset: w = d_w (code - 8)), token stride rounded up to 64 bytes.
//
// Per token and row, every path computes exactly (float32, blocks in order):
//   acc = 0; for b: acc = fma(float(sum_e code_e q_e - s_b), d_w * d_x, acc)
// (the integer dot is exact; d_w * d_x is one rounded product), so every ISA path gives
// bitwise the scalar reference's result, and a token's result does not depend on how many
// tokens share the call (decode and a speculative verify batch agree to the bit).
#pragma once
#include <cstddef>
#include <cstdint>

#include "ops/cpu/kernels.h"

namespace unigemma::cpu {

constexpr int kPanelRows = 16;
constexpr int kPanelCols = 8;  // tokens per kernel call (accumulators held in registers)
constexpr size_t kPanelBlockBytes = 288;

// Bytes of the panels of a rows x cols Q4_0 matrix (rows rounded up to 16).
size_t q4_0_panels_bytes(int64_t rows, int64_t cols);

// Repacks rows [p0 * 16, p1 * 16) of a GGUF Q4_0 matrix (row r at w + r * w_row_stride) into
// panels p0 .. p1-1 of dst (the whole matrix's panel buffer). Throws InputError on bad sizes.
void pack_q4_0_panels(const void* w, int64_t rows, int64_t cols, size_t w_row_stride, uint8_t* dst, int64_t p0,
                      int64_t p1);

// y[t * rows + r] = sum_c W[r, c] x[t * cols + c] with W given as panels (as matmul() for a
// Q4_0 matrix, 8-bit activations). Needs k.q4_0_panels (throws InputError when the path has
// none). Results are bitwise independent of n_tokens splits and n_threads.
void matmul_q4_0_panels(const KernelTable& k, const uint8_t* panels, int64_t rows, int64_t cols, const float* x,
                        int64_t n_tokens, float* y, int n_threads);

}  // namespace unigemma::cpu
