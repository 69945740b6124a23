// CPU matrix multiplication driver over the kernel table (kernels.h): quantizes the input
// once into the weight type's activation format, then runs GEMV (one token: decoding) or
// cache-blocked GEMM (many tokens: prefill) on the thread pool (base/thread_pool.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "ops/cpu/kernels.h"

namespace unigemma::cpu {

// y[t * rows + r] = sum_c W[r, c] * x[t * cols + c] for r < rows, t < n_tokens.
//
// W is in GGUF layout: row r is one row of `cols` elements of type `wtype` (cols / block
// size blocks) starting at w + r * w_row_stride (w_row_stride >= quant::row_bytes(wtype,
// cols)). x is n_tokens rows of cols floats, y is n_tokens rows of `rows` floats. n_threads:
// 0 = the pool default (base::get_threads()).
//
// Results are bitwise independent of n_threads: every output element is computed by the same
// kernel call shape (tiles are aligned to multiples of kTileRows x kTileCols from row 0 /
// token 0 whatever the split), and no reduction crosses threads. For quantized weight types
// the row kernel and every tile position sum the blocks in the same order, so a token's result
// in a batch (n_tokens > 1, tile kernel) is bitwise the same token's alone (n_tokens == 1, row
// kernel); float weight types may differ in the last bits on the rows of a partial tile.
//
// Scratch: the quantized activations go into a per-calling-thread buffer that only grows.
// Throws InputError on bad sizes, a type without a kernel, or a null buffer.
//
// act_levels (quantized weight types only): 1 = activations quantized once (8-bit, as
// llama.cpp); 2 = also the quantization residual r = x - deq(q(x)) is quantized and dotted
// (x ~ q1*d1 + q2*d2: ~15 bits of activation precision, twice the dot products, the same
// weight traffic: each weight row / tile is used for both levels while it is in L1).
void matmul(const KernelTable& k, GGMLType wtype, const void* w, int64_t rows, int64_t cols, size_t w_row_stride,
            const float* x, int64_t n_tokens, float* y, int n_threads, int act_levels = 1);

// GEMV over a gathered set of rows (one token): y[i] = W[row_ids[i]] . x for i < n_ids.
// Same activation quantization (act_levels) and the same row kernel (vec_dot) as the GEMV of
// matmul() on quantized weight types; ids are checked against [0, rows). Used by the drafter's
// ordered-embedding head, which needs the logits of a few thousand scattered vocabulary rows.
void matmul_rows(const KernelTable& k, GGMLType wtype, const void* w, int64_t rows, int64_t cols, size_t w_row_stride,
                 const int32_t* row_ids, int64_t n_ids, const float* x, float* y, int n_threads, int act_levels = 1);

// Per-core L2 size in bytes (sysconf, clamped to [256 KiB, 4 MiB]; 1 MiB when unknown): the
// cache-blocking budget of the GEMM drivers (matmul, matmul_panels).
size_t l2_cache_bytes();

}  // namespace unigemma::cpu
