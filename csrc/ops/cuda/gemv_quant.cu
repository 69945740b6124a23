// Decode GEMV on quantized weights, dequantize-fused: y[c][r] = W[r] . x[c], c < n_tok <= 8.
//
// One warp per weight row, 4 warps (rows) per block. Lane l walks the row's 32-element units
// l, l + 32, ... (block_math.cuh: unit layout per type), decodes each unit's integers once and
// accumulates its dot with every token column (unit_dot_n); a xor-butterfly of shuffles then
// sums the 32 lane partials (every lane ends with the total; lane 0 writes it). This order is
// the one twin_row_dot reproduces on the host, bit for bit.
//
// Memory: a warp reads its row once, contiguously (adjacent lanes = adjacent units), so a
// decode step streams the weights once at close to the read bandwidth; x (n_tok * cols floats)
// is re-read by every row through L1/L2.
#include "ops/cuda/block_math.cuh"
#include "ops/cuda/common.cuh"

namespace unigemma::cuda {

namespace {

constexpr int kRowsPerBlock = 4;

template <int T, int NT>
__global__ void __launch_bounds__(kRowsPerBlock * kWarp)
gemv_kernel(const uint8_t* __restrict__ w, int64_t rows, int64_t cols, int64_t rb, const float* __restrict__ x,
            float* __restrict__ y) {
    const int lane = threadIdx.x % kWarp;
    const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
    if (row >= rows) return;  // whole warps leave together: the shuffles below stay full-warp
    const uint8_t* wr = w + row * rb;
    const int64_t units = cols / kUnit;
    float acc[NT];
#pragma unroll
    for (int c = 0; c < NT; ++c) acc[c] = 0.0f;
    for (int64_t u = lane; u < units; u += kWarp) {
        float r[NT];
        unit_dot_n<T, NT>(wr, u, x + u * kUnit, cols, r);
#pragma unroll
        for (int c = 0; c < NT; ++c) acc[c] = __fadd_rn(acc[c], r[c]);
    }
#pragma unroll
    for (int off = kWarp / 2; off >= 1; off /= 2)
#pragma unroll
        for (int c = 0; c < NT; ++c) acc[c] = __fadd_rn(acc[c], __shfl_xor_sync(0xffffffffu, acc[c], off));
    if (lane == 0)
#pragma unroll
        for (int c = 0; c < NT; ++c) y[c * rows + row] = acc[c];
}

template <int T>
void launch_gemv(const void* w, int64_t rows, int64_t cols, const float* x, int n_tok, float* y, cudaStream_t st) {
    const auto* wp = static_cast<const uint8_t*>(w);
    const int64_t rb = row_bytes_of(T, cols);
    const dim3 grid(detail::blocks_for(rows, kRowsPerBlock)), block(kRowsPerBlock * kWarp);
    switch (n_tok) {
        case 1: gemv_kernel<T, 1><<<grid, block, 0, st>>>(wp, rows, cols, rb, x, y); break;
        case 2: gemv_kernel<T, 2><<<grid, block, 0, st>>>(wp, rows, cols, rb, x, y); break;
        case 3: gemv_kernel<T, 3><<<grid, block, 0, st>>>(wp, rows, cols, rb, x, y); break;
        case 4: gemv_kernel<T, 4><<<grid, block, 0, st>>>(wp, rows, cols, rb, x, y); break;
        default: {
            // 5..8 columns: the 8-wide kernel on the first columns would read past x, so run
            // 4 + the rest; per-column results do not depend on the split (header).
            launch_gemv<T>(w, rows, cols, x, 4, y, st);
            launch_gemv<T>(w, rows, cols, x + 4 * cols, n_tok - 4, y + 4 * rows, st);
            return;
        }
    }
}

}  // namespace

bool weight_type_supported(int t) { return supported_type(t); }

void gemv(int type, const void* w, int64_t rows, int64_t cols, const float* x, int n_tok, float* y, Stream s) {
    if (!supported_type(type)) detail::bad_arg("gemv: weight type id " + std::to_string(type) + " is not supported");
    const int64_t blk = int64_t(kUnit) * units_per_block(type);
    if (rows <= 0 || cols <= 0 || cols % blk != 0)
        detail::bad_arg("gemv: " + std::to_string(rows) + " x " + std::to_string(cols) +
                        " is not a matrix of whole blocks of " + std::to_string(blk));
    if (n_tok < 1 || n_tok > 8) detail::bad_arg("gemv: n_tok must be 1..8, got " + std::to_string(n_tok));
    if (!w || !x || !y) detail::bad_arg("gemv: null pointer");
    dispatch_type(type, [&](auto tc) { launch_gemv<decltype(tc)::value>(w, rows, cols, x, n_tok, y, detail::as_stream(s)); });
    detail::check_launch("gemv");
}

}  // namespace unigemma::cuda
