// Elementwise kernels and reductions of the forward pass (formulas: ops/cpu/scalar.cpp).
// Shapes: rows of float32, token-major. Every kernel is a pure function of its inputs (no
// atomics), so results are deterministic run to run.
#include <cmath>

#include "ops/cuda/block_math.cuh"
#include "ops/cuda/common.cuh"

namespace unigemma::cuda {

namespace {

constexpr int kThreads = 256;

// One block per row: sum of squares in double (lane-strided partials, then a shared-memory
// tree), r = float(1 / sqrt(ss / n + eps)) in double as the CPU, y = (x * r) * w.
__global__ void rms_norm_kernel(float* y, const float* x, const float* w, int64_t n, float eps) {
    __shared__ double part[kThreads];
    const float* xr = x + int64_t(blockIdx.x) * n;
    float* yr = y + int64_t(blockIdx.x) * n;
    double ss = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += kThreads) ss += static_cast<double>(xr[i]) * xr[i];
    part[threadIdx.x] = ss;
    __syncthreads();
    for (int off = kThreads / 2; off > 0; off /= 2) {
        if (threadIdx.x < off) part[threadIdx.x] += part[threadIdx.x + off];
        __syncthreads();
    }
    const float r = static_cast<float>(1.0 / sqrt(part[0] / static_cast<double>(n) + static_cast<double>(eps)));
    for (int64_t i = threadIdx.x; i < n; i += kThreads) {
        const float t = __fmul_rn(xr[i], r);
        yr[i] = w ? __fmul_rn(t, w[i]) : t;
    }
}

// One thread per rotated pair (i, i + hd/2) of one head of one token.
__global__ void rope_kernel(float* x, int64_t n_pairs, int n_head, int hd, int64_t pos0, const float* inv_freq) {
    const int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (g >= n_pairs) return;
    const int half = hd / 2;
    const int i = static_cast<int>(g % half);
    const int64_t th_idx = g / half;  // token * n_head + head
    const int64_t t = th_idx / n_head;
    float* xh = x + th_idx * hd;
    const float th = __fmul_rn(static_cast<float>(pos0 + t), inv_freq[i]);
    float sn, cs;
    sincosf(th, &sn, &cs);
    const float a = xh[i], b = xh[i + half];
    xh[i] = __fsub_rn(__fmul_rn(a, cs), __fmul_rn(b, sn));
    xh[i + half] = __fadd_rn(__fmul_rn(a, sn), __fmul_rn(b, cs));
}

__device__ inline float gelu1(float v) {
    const float k = 0.7978845608028654f;  // sqrt(2 / pi)
    const float inner = __fmul_rn(k, __fadd_rn(v, __fmul_rn(__fmul_rn(__fmul_rn(0.044715f, v), v), v)));
    return __fmul_rn(__fmul_rn(0.5f, v), __fadd_rn(1.0f, tanhf(inner)));
}

__global__ void gelu_mul_kernel(float* y, const float* g, const float* u, int64_t n) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __fmul_rn(gelu1(g[i]), u[i]);
}

__global__ void softcap_kernel(float* y, const float* x, int64_t n, float cap, float inv_cap) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __fmul_rn(cap, tanhf(__fmul_rn(x[i], inv_cap)));
}

__global__ void add_kernel(float* y, const float* a, const float* b, int64_t n) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __fadd_rn(a[i], b[i]);
}

__global__ void scale_kernel(float* y, const float* x, float v, int64_t n) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __fmul_rn(x[i], v);
}

// One thread per 32-element unit of the output: exact decode (the CPU dequantizer's bits),
// then * scale.
template <int T>
__global__ void get_rows_kernel(const uint8_t* table, int64_t cols, int64_t rb, const int32_t* ids, int64_t n,
                                float scale, float* x) {
    const int64_t units = cols / kUnit;
    const int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (g >= n * units) return;
    const int64_t t = g / units, u = g % units;
    float v[kUnit];
    decode_unit<T>(table + int64_t(ids[t]) * rb, u, v);
    float* out = x + t * cols + u * kUnit;
#pragma unroll
    for (int i = 0; i < kUnit; ++i) out[i] = __fmul_rn(v[i], scale);
}

void check_n(int64_t n, const char* what) {
    if (n <= 0) detail::bad_arg(std::string(what) + ": element count must be positive, got " + std::to_string(n));
}

}  // namespace

void rms_norm(float* y, const float* x, const float* w, int64_t n_rows, int64_t n, float eps, Stream s) {
    check_n(n, "rms_norm");
    if (n_rows <= 0 || n_rows > 0x7fffffff) detail::bad_arg("rms_norm: bad row count " + std::to_string(n_rows));
    rms_norm_kernel<<<static_cast<unsigned>(n_rows), kThreads, 0, detail::as_stream(s)>>>(y, x, w, n, eps);
    detail::check_launch("rms_norm");
}

void rope_neox(float* x, int64_t n_tok, int n_head, int head_dim, int64_t pos0, const float* inv_freq, Stream s) {
    if (n_tok <= 0 || n_head <= 0 || head_dim <= 0 || head_dim % 2 != 0 || pos0 < 0)
        detail::bad_arg("rope_neox: bad shape");
    const int64_t pairs = n_tok * n_head * (head_dim / 2);
    rope_kernel<<<detail::blocks_for(pairs, kThreads), kThreads, 0, detail::as_stream(s)>>>(x, pairs, n_head, head_dim,
                                                                                          pos0, inv_freq);
    detail::check_launch("rope_neox");
}

void gelu_tanh_mul(float* y, const float* gate, const float* up, int64_t n, Stream s) {
    check_n(n, "gelu_tanh_mul");
    gelu_mul_kernel<<<detail::blocks_for(n, kThreads), kThreads, 0, detail::as_stream(s)>>>(y, gate, up, n);
    detail::check_launch("gelu_tanh_mul");
}

void softcap(float* y, const float* x, int64_t n, float cap, Stream s) {
    check_n(n, "softcap");
    if (!(cap > 0.0f)) detail::bad_arg("softcap: cap must be > 0");
    softcap_kernel<<<detail::blocks_for(n, kThreads), kThreads, 0, detail::as_stream(s)>>>(y, x, n, cap, 1.0f / cap);
    detail::check_launch("softcap");
}

void add(float* y, const float* a, const float* b, int64_t n, Stream s) {
    check_n(n, "add");
    add_kernel<<<detail::blocks_for(n, kThreads), kThreads, 0, detail::as_stream(s)>>>(y, a, b, n);
    detail::check_launch("add");
}

void scale(float* y, const float* x, float v, int64_t n, Stream s) {
    check_n(n, "scale");
    scale_kernel<<<detail::blocks_for(n, kThreads), kThreads, 0, detail::as_stream(s)>>>(y, x, v, n);
    detail::check_launch("scale");
}

void get_rows(int type, const void* table, int64_t cols, const int32_t* ids, int64_t n, float scale_v, float* x,
              Stream s) {
    if (!supported_type(type)) detail::bad_arg("get_rows: unsupported type id " + std::to_string(type));
    if (cols <= 0 || cols % (int64_t(kUnit) * units_per_block(type)) != 0 || n <= 0)
        detail::bad_arg("get_rows: bad shape");
    const int64_t rb = row_bytes_of(type, cols);
    const int64_t work = n * (cols / kUnit);
    dispatch_type(type, [&](auto tc) {
        get_rows_kernel<decltype(tc)::value><<<detail::blocks_for(work, 128), 128, 0, detail::as_stream(s)>>>(
            static_cast<const uint8_t*>(table), cols, rb, ids, n, scale_v, x);
    });
    detail::check_launch("get_rows");
}

}  // namespace unigemma::cuda
