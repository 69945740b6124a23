// Weights (Q4_0, Q4_K, Q6_K) repacked into 16-row panels, and the matmul over them.
//
// Why: a GGUF row kernel dots one weight row with one activation row; each block costs an
// unpack, a short integer dot, a horizontal scale combine and an FMA per row x token, so
// decoding is compute-bound at ~15 GB/s per core and prefill reuses little. In a panel, 16
// rows of the same block sit side by side, 4 bytes per row per 64-byte vector, so one
// broadcast 4-byte activation group times one vector is 16 rows x 4 elements of dot (one
// vpdpbusd on AVX-512 VNNI), and the per-block scale step is done for 16 rows at once. No
// horizontal sums: each row is a lane.
//
// Q4_0 panel, per 32-column block b (kQ4_0PanelBlock = 288 bytes at b * 288):
//   [64 j, 64 j + 64), j = 0..3: row i's GGUF bytes qs_i[4j .. 4j+3] at 64 j + 4 i (low
//     nibbles: elements 4j..4j+3; high nibbles: elements 16+4j..16+4j+3);
//   [256, 288): the 16 rows' fp16 scales d_i.
// Q4_K panel, per 256-column super-block s (kQ4_KPanelBlock = 2368 bytes at s * 2368):
//   [64 (8c + g), +64), c = 0..3, g = 0..7: row i's qs_i[32 c + 4 g .. +3] at 4 i (low
//     nibbles: sub-block 2c elements 4g..4g+3; high nibbles: sub-block 2c+1, the same);
//   [2048 + 16 j + i]: 6-bit scale sc_j of row i (j = sub-block 0..7), one byte;
//   [2176 + 16 j + i]: 6-bit min m_j of row i, one byte;
//   [2304, 2336): fp16 d_i; [2336, 2368): fp16 dmin_i.
// Q6_K panel, per 256-column super-block s (3424 bytes at s * 3424):
//   [64 (16 h + 8 j + g), +64), h, j = 0..1, g = 0..7: row i's ql_i[64 h + 32 j + 4 g .. +3]
//     at 4 i (low nibbles: low 4 bits of elements 128 h + 32 j + 4 g ..; high nibbles: of
//     elements 128 h + 32 (j + 2) + 4 g ..);
//   [2048 + 64 (8 h + g), +64): row i's qh_i[32 h + 4 g .. +3] (bits 2m, 2m+1: high 2 bits of
//     element 128 h + 32 m + 4 g ..);
//   [3072 + 16 k + i]: int8 scale sc_k of row i (sub-block k of 16 elements);
//   [3328, 3360): fp16 d_i; [3360, 3424): int32 wsum_i = sum_k sc_k sum_(e in k) (code_e - 32).
// Rows past the end of the matrix are zero (scales 0). Panels follow each other: panel p at
// p * n_blocks * block bytes. Q4_0 panels take the GGUF bytes; Q4_K panels 2.8% more,
// Q6_K 1.9% more.
//
// Activations (one row per token, built by matmul_panels from float input): [cols int8 q]
// [nb float d][nb x S int32 sums], token stride rounded up to 64 bytes. Q4_0: the Q8_0
// quantization of the row (the row kernel's values), S = 1, sum = 8 * sum(q of the block)
// (the code offset: w = d (code - 8)). Q4_K: the Q8_K quantization, S = 8, sums of each
// 32-element sub-block. Q6_K: the Q8_K quantization stored as unsigned q + 128 (so the
// signed codes c - 32 can be the s8 operand of u8 x s8 dot instructions), S = 0.
//
// Per token and row, every path computes exactly (float32, blocks in order):
//   Q4_0: acc = fma(float(sum code q - sum_b), d_w * d_x, acc)
//   Q4_K: isum = sum_j sc_j (sum code q)_j, msum = sum_j m_j sums_j   (int32, exact)
//         acc = fma(float(isum), d_w * d_x, acc); acc = fma(float(msum), -(dmin_w * d_x), acc)
//   Q6_K: T = sum_k sc_k sum_(e in k) q_e (code_e - 32)  (int32, exact; SIMD paths form it as
//         sum_k sc_k sum (q_e + 128)(code_e - 32) - 128 wsum)
//         acc = fma(float(T), d_w * d_x, acc)
// so every ISA path gives bitwise the scalar reference's result, and a token's result does
// not depend on how many tokens share the call (decode and a speculative verify batch agree
// to the bit).
#pragma once
#include <cstddef>
#include <cstdint>

#include "ops/cpu/kernels.h"

namespace unigemma::cpu {

constexpr int kPanelRows = 16;
constexpr int kPanelCols = 8;  // tokens per kernel call (accumulators held in registers)

// The panel format of a weight type; false when there is none.
bool panel_type_for(GGMLType t, PanelType* out);

// Bytes of the panels of a rows x cols matrix (rows rounded up to 16). Throws InputError on
// bad sizes (cols not a multiple of the block).
size_t panels_bytes(PanelType pt, int64_t rows, int64_t cols);

// Repacks rows [p0 * 16, p1 * 16) of a GGUF matrix of the panel type's weight type (row r at
// w + r * w_row_stride) into panels p0 .. p1-1 of dst (the whole matrix's panel buffer).
void pack_panels(PanelType pt, const void* w, int64_t rows, int64_t cols, size_t w_row_stride, uint8_t* dst,
                 int64_t p0, int64_t p1);

// y[t * rows + r] = sum_c W[r, c] x[t * cols + c] with W given as panels (as matmul() with
// 8-bit activations). Needs k.panel_dot[pt] (InputError when the path has none). Results are
// bitwise independent of n_tokens splits and n_threads.
void matmul_panels(const KernelTable& k, PanelType pt, const uint8_t* panels, int64_t rows, int64_t cols,
                   const float* x, int64_t n_tokens, float* y, int n_threads);

}  // namespace unigemma::cpu
