// Prefill GEMM on tensor cores: y[t][r] = W[r] . x[t] for a micro-batch of n tokens.
//
// Tiling: a block of 4 warps computes a 64 (weight rows) x 64 (tokens) tile of y; each warp a
// 32 x 32 quarter as 2 x 2 wmma 16x16 fragments with float32 accumulators. The k loop steps
// one 32-element unit at a time (every weight type's unit is 32 elements, block_math.cuh):
//   Ws[64][32] half  <- decode_unit of unit k of the 64 rows (one thread per row: the same
//                       exact decode as the CPU dequantizer, then one rounding to half)
//   Xs[64][32] half  <- x[t][32k .. 32k + 31] * 2^s_t (per-token power-of-two scale), rounded
//   acc += Ws * Xs^T  (two 16x16x16 wmma steps)
// The per-token scale (scale_kernel) puts max |x_t| * 2^s_t in [2^13, 2^14): activations after
// gelu(gate) * up can exceed half's 65504, and the scale keeps them in range without changing
// their relative precision; y = acc * 2^-s_t is exact. Weights are assumed within half range
// (|w| < 65504, the case for every GGUF weight seen; a larger one becomes inf in y).
// Partial tiles (rows % 64, n % 64) are zero-padded in shared memory and not written out.
//
// This is the straightforward first version (no double buffering, no ldmatrix/mma.sync
// pipelining); its numbers are the baseline a tuned kernel must match within tolerance.
#include <mma.h>

#include <cmath>

#include "ops/cuda/block_math.cuh"
#include "ops/cuda/common.cuh"

namespace unigemma::cuda {

namespace {

using namespace nvcuda;

constexpr int kBM = 64, kBN = 64, kBK = 32;
constexpr int kPad = 8;  // half elements of padding per shared row (ldm stays a multiple of 8)
constexpr int kThreads = 128;

// scale[t] = 2^(14 - e) with max|x_t| = m * 2^e, m in [0.5, 1) (1 for an all-zero row);
// exponents clamped so the scale itself stays a normal float.
__global__ void token_scale_kernel(const float* x, int64_t cols, float* scale) {
    __shared__ float part[kThreads];
    const float* xr = x + int64_t(blockIdx.x) * cols;
    float m = 0.0f;
    for (int64_t i = threadIdx.x; i < cols; i += kThreads) m = fmaxf(m, fabsf(xr[i]));
    part[threadIdx.x] = m;
    __syncthreads();
    for (int off = kThreads / 2; off > 0; off /= 2) {
        if (threadIdx.x < off) part[threadIdx.x] = fmaxf(part[threadIdx.x], part[threadIdx.x + off]);
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        int e = 0;
        const float mx = part[0];
        if (mx > 0.0f && isfinite(mx)) frexpf(mx, &e);
        const int s = max(-120, min(120, 14 - e));
        scale[blockIdx.x] = ldexpf(1.0f, s);
    }
}

template <int T>
__global__ void __launch_bounds__(kThreads)
gemm_kernel(const uint8_t* __restrict__ w, int64_t rows, int64_t cols, int64_t rb, const float* __restrict__ x,
            int64_t n, const float* __restrict__ tscale, float* __restrict__ y) {
    __shared__ __align__(32) half Ws[kBM][kBK + kPad];
    __shared__ __align__(32) half Xs[kBN][kBK + kPad];
    __shared__ __align__(32) float Cs[kBN][kBM + 4];  // staging, token-major (y's layout)

    const int64_t r0 = int64_t(blockIdx.x) * kBM;
    const int64_t t0 = int64_t(blockIdx.y) * kBN;
    const int warp = threadIdx.x / kWarp;
    const int wm = (warp % 2) * 32, wn = (warp / 2) * 32;  // this warp's quarter of the tile

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

    const int64_t units = cols / kUnit;
    for (int64_t u = 0; u < units; ++u) {
        // weights: threads 0..63 decode one row's unit each; activations: all threads
        if (threadIdx.x < kBM) {
            const int r = threadIdx.x;
            float v[kUnit];
            if (r0 + r < rows)
                decode_unit<T>(w + (r0 + r) * rb, u, v);
            else
#pragma unroll
                for (int i = 0; i < kUnit; ++i) v[i] = 0.0f;
#pragma unroll
            for (int i = 0; i < kUnit; ++i) Ws[r][i] = __float2half_rn(v[i]);
        }
        for (int idx = threadIdx.x; idx < kBN * kBK; idx += kThreads) {
            const int t = idx / kBK, i = idx % kBK;
            const int64_t tt = t0 + t;
            Xs[t][i] = tt < n ? __float2half_rn(x[tt * cols + u * kUnit + i] * tscale[tt]) : __float2half_rn(0.0f);
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kBK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, half, wmma::row_major> a[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, half, wmma::col_major> b[2];
#pragma unroll
            for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], &Ws[wm + 16 * i][kk], kBK + kPad);
            // B[k][t] = Xs[t][k]: Xs rows are B's columns (col_major, ldm = row stride)
#pragma unroll
            for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], &Xs[wn + 16 * j][kk], kBK + kPad);
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
    // C[m][t] stored col-major = Cs[t][m]
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j)
            wmma::store_matrix_sync(&Cs[wn + 16 * j][wm + 16 * i], acc[i][j], kBM + 4, wmma::mem_col_major);
    __syncthreads();
    for (int idx = threadIdx.x; idx < kBM * kBN; idx += kThreads) {
        const int t = idx / kBM, r = idx % kBM;
        if (t0 + t < n && r0 + r < rows) y[(t0 + t) * rows + r0 + r] = Cs[t][r] / tscale[t0 + t];
    }
}

}  // namespace

void gemm(int type, const void* w, int64_t rows, int64_t cols, const float* x, int64_t n, float* y, float* scratch,
          Stream s) {
    if (!supported_type(type)) detail::bad_arg("gemm: weight type id " + std::to_string(type) + " is not supported");
    const int64_t blk = int64_t(kUnit) * units_per_block(type);
    if (rows <= 0 || cols <= 0 || cols % blk != 0 || n <= 0)
        detail::bad_arg("gemm: bad shape " + std::to_string(rows) + " x " + std::to_string(cols) + ", n = " +
                        std::to_string(n));
    if (n > 65535 * int64_t(kBN) || n > 0x7fffffff) detail::bad_arg("gemm: too many tokens in one call");
    if (!w || !x || !y || !scratch) detail::bad_arg("gemm: null pointer");
    const cudaStream_t st = detail::as_stream(s);
    token_scale_kernel<<<static_cast<unsigned>(n), kThreads, 0, st>>>(x, cols, scratch);
    detail::check_launch("gemm (token scales)");
    const dim3 grid(detail::blocks_for(rows, kBM), detail::blocks_for(n, kBN));
    const int64_t rb = row_bytes_of(type, cols);
    dispatch_type(type, [&](auto tc) {
        gemm_kernel<decltype(tc)::value><<<grid, kThreads, 0, st>>>(static_cast<const uint8_t*>(w), rows, cols, rb, x,
                                                                     n, scratch, y);
    });
    detail::check_launch("gemm");
}

}  // namespace unigemma::cuda
