// KV-cache store and split-K flash attention (decode and prefill) on the device.
//
// Cache layout (ops/kv_cache.h): slot s of position p is p % cap (sliding ring) or p
// (full layer); row (s, kv head h) at byte (s * n_kv_head + h) * row_bytes; rows are F16
// (2 bytes / element) or Q8_0 (34 bytes / 32 elements), written by kv_store exactly as the CPU
// cache writes them.
//
// Attention of query t (position p = pos0 + t), head h, KV head h / (n_head / n_kv_head):
//   visible keys [lo, hi]: lo = max(0, p - window + 1) on sliding layers, else 0;
//                          hi = key_end[t] when given (image blocks), else p
//   out = sum_j softmax_j(scale * q . K_j) V_j
// Work split: keys are cut into splits of kAttnSplit positions aligned to absolute positions
// (split c = [c * S, (c + 1) * S)). Block (split, head, token) = 4 warps; warp w takes the
// split's visible keys j with j % 4 == w, ascending, and keeps an online softmax (m, l, o);
// per key every lane owns head_dim / 32 consecutive elements: partial dot, xor-butterfly sum
// (every lane gets the score), o = o * alpha + p * v on its elements. The 4 warps are merged in
// order w = 0..3 and the split's (m, l, o) goes to the workspace; attn_combine merges the
// splits in ascending order and divides by l. Every step is indexed by absolute positions, so
// a query's bits depend only on the query and the cache: not on n_tok, on pos0 splitting or
// on how the launcher groups tokens (the speculative verify pass relies on this).
#include <cmath>

#include "ops/cuda/block_math.cuh"
#include "ops/cuda/common.cuh"

namespace unigemma::cuda {

namespace {

constexpr int kWarps = 4;

__device__ inline int64_t slot_of(const KVView& kv, int64_t pos) { return kv.ring ? pos % kv.cap : pos; }
__host__ __device__ inline int64_t kv_row_bytes(int type, int hd) { return type == kTQ8_0 ? hd / 32 * 34 : 2 * int64_t(hd); }

// E consecutive elements [e0, e0 + E) of a cache row as float32 (exact for F16; d * q for Q8_0).
template <int E>
__device__ inline void load_row_part(const uint8_t* row, int type, int e0, float* out) {
    if (type == kTQ8_0) {
        const uint8_t* b = row + (e0 / 32) * 34;
        const float d = ug_f16_to_f32(ld_u16(b));
        const int o = e0 % 32;
#pragma unroll
        for (int i = 0; i < E; ++i) out[i] = __fmul_rn(d, static_cast<float>(static_cast<int8_t>(b[2 + o + i])));
    } else {
        const __half* h = reinterpret_cast<const __half*>(row) + e0;  // rows are 2-byte aligned
#pragma unroll
        for (int i = 0; i < E; ++i) out[i] = __half2float(h[i]);
    }
}

// One warp per (token, kv head, 32-element part): encodes a 32-element piece of K and of V.
__global__ void kv_store_kernel(KVView kv, const float* k, const float* v, int64_t n_tok, int64_t pos0) {
    const int parts = kv.head_dim / 32;
    const int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;  // one thread per piece
    if (g >= n_tok * kv.n_kv_head * parts) return;
    const int part = static_cast<int>(g % parts);
    const int64_t th = g / parts;  // token * n_kv_head + head
    const int64_t t = th / kv.n_kv_head;
    const int h = static_cast<int>(th % kv.n_kv_head);
    const int64_t slot = slot_of(kv, pos0 + t);
    const float* src[2] = {k + th * kv.head_dim + 32 * part, v + th * kv.head_dim + 32 * part};
    uint8_t* base[2] = {kv.k, kv.v};
    const int types[2] = {kv.k_type, kv.v_type};
    for (int m = 0; m < 2; ++m) {
        const int64_t rb = kv_row_bytes(types[m], kv.head_dim);
        uint8_t* row = base[m] + (slot * kv.n_kv_head + h) * rb;
        if (types[m] == kTQ8_0) {
            encode_q8_0_block(src[m], row + 34 * part);
        } else {
            for (int i = 0; i < 32; ++i) {
                const uint16_t hv = ug_f32_to_f16(src[m][i]);
                row[2 * (32 * part + i)] = static_cast<uint8_t>(hv & 0xff);
                row[2 * (32 * part + i) + 1] = static_cast<uint8_t>(hv >> 8);
            }
        }
    }
}

struct SplitState {
    float m, l;
};

// Merges (mb, lb, ob) into (ma, la, oa) for the E elements a lane owns.
template <int E>
__device__ inline void merge(float& ma, float& la, float* oa, float mb, float lb, const float* ob) {
    if (mb == -INFINITY) return;
    if (ma == -INFINITY) {
        ma = mb;
        la = lb;
#pragma unroll
        for (int i = 0; i < E; ++i) oa[i] = ob[i];
        return;
    }
    const float m = fmaxf(ma, mb);
    const float ca = expf(ma - m), cb = expf(mb - m);
    la = __fadd_rn(__fmul_rn(la, ca), __fmul_rn(lb, cb));
#pragma unroll
    for (int i = 0; i < E; ++i) oa[i] = __fadd_rn(__fmul_rn(oa[i], ca), __fmul_rn(ob[i], cb));
    ma = m;
}

// grid (n_splits, n_head, n_tok). Workspace per (token, head, split): m, l, o[hd] floats.
template <int HD>
__global__ void __launch_bounds__(kWarps * kWarp)
attn_split_kernel(KVView kv, const float* __restrict__ q, int n_head, float scale, int64_t pos0, int64_t window,
                  const int64_t* __restrict__ key_end, int64_t split0, int n_splits, float* __restrict__ ws) {
    constexpr int E = HD / kWarp;
    __shared__ float sm_o[kWarps][HD];
    __shared__ SplitState sm_s[kWarps];
    const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    const int64_t t = blockIdx.z;
    const int h = blockIdx.y;
    const int64_t split = split0 + blockIdx.x;
    const int64_t pos = pos0 + t;
    const int64_t lo = window > 0 ? max(int64_t(0), pos - window + 1) : 0;
    const int64_t hi = key_end ? key_end[t] : pos;
    const int64_t a = max(lo, split * kAttnSplit), b = min(hi, (split + 1) * kAttnSplit - 1);
    const int kvh = h / (n_head / kv.n_kv_head);
    const int64_t krb = kv_row_bytes(kv.k_type, HD), vrb = kv_row_bytes(kv.v_type, HD);

    float qv[E], o[E];
    const float* qr = q + (t * n_head + h) * HD + lane * E;
#pragma unroll
    for (int i = 0; i < E; ++i) {
        qv[i] = qr[i];
        o[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    // first key of this warp: the smallest j >= a with j % kWarps == warp
    const int64_t j0 = a + ((warp - a % kWarps) + kWarps) % kWarps;
    for (int64_t j = j0; j <= b; j += kWarps) {
        const int64_t slot = slot_of(kv, j);
        float kx[E];
        load_row_part<E>(kv.k + (slot * kv.n_kv_head + kvh) * krb, kv.k_type, lane * E, kx);
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < E; ++i) s = __fmaf_rn(qv[i], kx[i], s);
#pragma unroll
        for (int off = kWarp / 2; off >= 1; off /= 2) s = __fadd_rn(s, __shfl_xor_sync(0xffffffffu, s, off));
        s = __fmul_rn(s, scale);
        float vx[E];
        load_row_part<E>(kv.v + (slot * kv.n_kv_head + kvh) * vrb, kv.v_type, lane * E, vx);
        if (s > m) {
            const float alpha = m == -INFINITY ? 0.0f : expf(m - s);
            l = __fmul_rn(l, alpha);
#pragma unroll
            for (int i = 0; i < E; ++i) o[i] = __fmul_rn(o[i], alpha);
            m = s;
        }
        const float p = expf(s - m);
        l = __fadd_rn(l, p);
#pragma unroll
        for (int i = 0; i < E; ++i) o[i] = __fmaf_rn(p, vx[i], o[i]);
    }
#pragma unroll
    for (int i = 0; i < E; ++i) sm_o[warp][lane * E + i] = o[i];
    if (lane == 0) sm_s[warp] = {m, l};
    __syncthreads();
    if (warp != 0) return;
    float M = sm_s[0].m, L = sm_s[0].l, O[E];
#pragma unroll
    for (int i = 0; i < E; ++i) O[i] = sm_o[0][lane * E + i];
    for (int w = 1; w < kWarps; ++w) {
        float ob[E];
#pragma unroll
        for (int i = 0; i < E; ++i) ob[i] = sm_o[w][lane * E + i];
        merge<E>(M, L, O, sm_s[w].m, sm_s[w].l, ob);
    }
    float* dst = ws + ((t * n_head + h) * int64_t(n_splits) + blockIdx.x) * (HD + 2);
    if (lane == 0) {
        dst[0] = M;
        dst[1] = L;
    }
#pragma unroll
    for (int i = 0; i < E; ++i) dst[2 + lane * E + i] = O[i];
}

// One warp per (token, head): merge the splits in ascending order, out = o / l (zeros when no
// key was visible, which the callers never ask for).
template <int HD>
__global__ void attn_combine_kernel(const float* __restrict__ ws, int n_splits, int64_t rows, float* __restrict__ out) {
    constexpr int E = HD / kWarp;
    const int lane = threadIdx.x % kWarp;
    const int64_t r = int64_t(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;  // token * n_head + head
    if (r >= rows) return;
    const float* src = ws + r * n_splits * int64_t(HD + 2);
    float M = -INFINITY, L = 0.0f, O[E];
#pragma unroll
    for (int i = 0; i < E; ++i) O[i] = 0.0f;
    for (int c = 0; c < n_splits; ++c) {
        const float* p = src + c * int64_t(HD + 2);
        float ob[E];
#pragma unroll
        for (int i = 0; i < E; ++i) ob[i] = p[2 + lane * E + i];
        merge<E>(M, L, O, p[0], p[1], ob);
    }
    const float inv = L > 0.0f ? 1.0f / L : 0.0f;
#pragma unroll
    for (int i = 0; i < E; ++i) out[r * HD + lane * E + i] = __fmul_rn(O[i], inv);
}

void check_view(const KVView& kv, const char* what) {
    if (!kv.k || !kv.v) detail::bad_arg(std::string(what) + ": null cache");
    if ((kv.k_type != kTF16 && kv.k_type != kTQ8_0) || (kv.v_type != kTF16 && kv.v_type != kTQ8_0))
        detail::bad_arg(std::string(what) + ": cache types must be F16 or Q8_0");
    if (kv.head_dim != 256 && kv.head_dim != 512)
        detail::bad_arg(std::string(what) + ": head_dim " + std::to_string(kv.head_dim) + " (256 or 512 supported)");
    if (kv.n_kv_head <= 0 || kv.cap <= 0) detail::bad_arg(std::string(what) + ": bad cache shape");
}

}  // namespace

void kv_store(const KVView& kv, const float* k, const float* v, int64_t n_tok, int64_t pos0, Stream s) {
    check_view(kv, "kv_store");
    if (n_tok <= 0 || pos0 < 0) detail::bad_arg("kv_store: bad token range");
    if (!kv.ring && pos0 + n_tok > kv.cap) detail::bad_arg("kv_store: positions past the cache capacity");
    if (kv.ring && n_tok > kv.cap) detail::bad_arg("kv_store: more tokens than ring slots");
    const int64_t pieces = n_tok * kv.n_kv_head * (kv.head_dim / 32);
    kv_store_kernel<<<detail::blocks_for(pieces, 128), 128, 0, detail::as_stream(s)>>>(kv, k, v, n_tok, pos0);
    detail::check_launch("kv_store");
}

size_t attention_workspace_bytes(int n_head, int head_dim, int64_t n_ctx) {
    // room for 64 queries over the whole context (fewer per launch group when it is longer)
    const int64_t splits = n_ctx / kAttnSplit + 2;
    return static_cast<size_t>(64) * n_head * splits * (head_dim + 2) * sizeof(float);
}

void attention(const KVView& kv, const AttnArgs& a, void* workspace, size_t workspace_bytes, Stream s) {
    check_view(kv, "attention");
    if (!a.q || !a.out || a.n_tok <= 0 || a.pos0 < 0 || a.n_head <= 0 || a.n_head % kv.n_kv_head != 0)
        detail::bad_arg("attention: bad query shape");
    if (a.n_tok > 65535) detail::bad_arg("attention: more than 65535 queries in one call");
    const int hd = kv.head_dim;
    const int64_t last = a.pos0 + a.n_tok - 1;
    const int64_t hi_max = a.key_end ? std::max(last, a.key_end_max) : last;
    const int64_t lo_min = a.window > 0 ? std::max<int64_t>(0, a.pos0 - a.window + 1) : 0;
    const int64_t split0 = lo_min / kAttnSplit;
    const int n_splits = static_cast<int>(hi_max / kAttnSplit - split0 + 1);
    const size_t per_tok = static_cast<size_t>(a.n_head) * n_splits * (hd + 2) * sizeof(float);
    if (!workspace || workspace_bytes < per_tok)
        detail::bad_arg("attention: workspace of " + std::to_string(workspace_bytes) + " bytes, need at least " +
                        std::to_string(per_tok));
    const int64_t group = std::min<int64_t>(a.n_tok, static_cast<int64_t>(workspace_bytes / per_tok));
    const cudaStream_t st = detail::as_stream(s);
    auto* ws = static_cast<float*>(workspace);
    for (int64_t t0 = 0; t0 < a.n_tok; t0 += group) {
        const int64_t nt = std::min(group, a.n_tok - t0);
        const float* q = a.q + t0 * a.n_head * hd;
        const int64_t* ke = a.key_end ? a.key_end + t0 : nullptr;
        const dim3 grid(n_splits, a.n_head, static_cast<unsigned>(nt));
        const int64_t rows = nt * a.n_head;
        const unsigned cgrid = detail::blocks_for(rows, 4);
        if (hd == 256) {
            attn_split_kernel<256><<<grid, kWarps * kWarp, 0, st>>>(kv, q, a.n_head, a.scale, a.pos0 + t0, a.window,
                                                                    ke, split0, n_splits, ws);
            attn_combine_kernel<256><<<cgrid, 4 * kWarp, 0, st>>>(ws, n_splits, rows, a.out + t0 * a.n_head * hd);
        } else {
            attn_split_kernel<512><<<grid, kWarps * kWarp, 0, st>>>(kv, q, a.n_head, a.scale, a.pos0 + t0, a.window,
                                                                    ke, split0, n_splits, ws);
            attn_combine_kernel<512><<<cgrid, 4 * kWarp, 0, st>>>(ws, n_splits, rows, a.out + t0 * a.n_head * hd);
        }
        detail::check_launch("attention");
    }
}

}  // namespace unigemma::cuda
