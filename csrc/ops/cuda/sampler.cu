// Device sampler: greedy argmax, and the top-k / top-p / min-p / temperature draw of
// sampler_math.cuh (semantics, the algorithm and its host twin live there). One block of
// kSampleThreads threads per row; thread t owns the contiguous ids [t * per, (t + 1) * per).
// Integer histograms (atomicAdd on shared counters) are order-independent; every floating
// sum runs in a fixed order (sequential in thread 0, or per-thread ranges then thread 0), so
// the result is deterministic and equals twin_sample's up to libm-vs-CUDA exp() rounding.
#include <climits>

#include "ops/cuda/common.cuh"
#include "ops/cuda/sampler_math.cuh"

namespace unigemma::cuda {

namespace {

constexpr int kT = kSampleThreads;

// Workspace (global memory): per-candidate arrays and per-thread scratch.
struct SampleWs {
    double e[kMaxKept];
    double w[kMaxKept];
    int32_t ids[kMaxKept];
    float ln[kMaxKept];
    uint32_t gt[kT], eq[kT];  // per-thread counts of keys above / at the threshold
    double part[kT];          // per-thread partial masses
};

__global__ void argmax_kernel(const float* l, int32_t V, int32_t* out) {
    __shared__ float bv[kT];
    __shared__ int32_t bi[kT];
    float best = -INFINITY;
    int32_t id = INT_MAX;
    for (int32_t i = threadIdx.x; i < V; i += kT)
        if (l[i] > best || (l[i] == best && i < id)) best = l[i], id = i;
    bv[threadIdx.x] = best;
    bi[threadIdx.x] = id;
    __syncthreads();
    for (int off = kT / 2; off > 0; off /= 2) {
        if (threadIdx.x < off) {
            const float v2 = bv[threadIdx.x + off];
            const int32_t i2 = bi[threadIdx.x + off];
            if (v2 > bv[threadIdx.x] || (v2 == bv[threadIdx.x] && i2 < bi[threadIdx.x])) bv[threadIdx.x] = v2, bi[threadIdx.x] = i2;
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) *out = bi[0] == INT_MAX ? 0 : bi[0];  // all -inf: 0, as the CPU
}

// Bitonic sort of kMaxKept (key, id) pairs in shared memory by the sampler order (or, with
// by_id, by id ascending carrying `key` as a payload).
__device__ void bitonic(uint32_t* key, int32_t* id, bool by_id) {
    for (int k = 2; k <= kMaxKept; k *= 2)
        for (int j = k / 2; j > 0; j /= 2) {
            for (int i = threadIdx.x; i < kMaxKept; i += kT) {
                const int p = i ^ j;
                if (p <= i) continue;
                const bool up = (i & k) == 0;
                const bool p_first = by_id ? id[p] < id[i] : order_before(key[p], id[p], key[i], id[i]);
                if (p_first == up) {
                    const uint32_t tk = key[i];
                    key[i] = key[p];
                    key[p] = tk;
                    const int32_t ti = id[i];
                    id[i] = id[p];
                    id[p] = ti;
                }
            }
            __syncthreads();
        }
}

__global__ void __launch_bounds__(kT)
sample_kernel(const float* __restrict__ l, int32_t V, int32_t top_k, float top_p, float min_p, float temperature,
              double u, int32_t* result, SampleWs* ws) {
    __shared__ uint32_t skey[kMaxKept];
    __shared__ int32_t sid[kMaxKept];
    __shared__ uint32_t hist[256];
    __shared__ float smax[kT];
    __shared__ uint32_t cnt[kT];
    __shared__ uint32_t s_prefix, s_want;
    uint32_t* gt = ws->gt;
    uint32_t* eq = ws->eq;
    double* part = ws->part;
    __shared__ int s_keep;
    const int t = threadIdx.x;
    const int32_t per = (V + kT - 1) / kT;
    const int32_t i0 = min(V, t * per), i1 = min(V, (t + 1) * per);

    // 1. max and finite count
    float mx = -INFINITY;
    uint32_t nf = 0;
    for (int32_t i = i0; i < i1; ++i) {
        mx = fmaxf(mx, l[i]);
        nf += l[i] != -INFINITY;
    }
    smax[t] = mx;
    cnt[t] = nf;
    __syncthreads();
    for (int off = kT / 2; off > 0; off /= 2) {
        if (t < off) {
            smax[t] = fmaxf(smax[t], smax[t + off]);
            cnt[t] += cnt[t + off];
        }
        __syncthreads();
    }
    const float lmax = smax[0];
    const uint32_t n_fin = cnt[0];
    if (lmax == -INFINITY || lmax == INFINITY) {
        if (t == 0) {
            result[0] = -1;
            result[1] = lmax == -INFINITY ? kSampleNoToken : kSampleFallback;
            result[2] = 0;
        }
        return;
    }
    const uint32_t K = (top_k > 0 && static_cast<uint32_t>(top_k) < n_fin) ? static_cast<uint32_t>(top_k) : n_fin;
    const uint32_t nc = min(K, static_cast<uint32_t>(kMaxKept));
    // 2. radix select of the nc-th key
    if (t == 0) {
        s_prefix = 0;
        s_want = nc;
    }
    uint32_t mask = 0;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int d = t; d < 256; d += kT) hist[d] = 0;
        __syncthreads();
        const uint32_t prefix = s_prefix;
        for (int32_t i = i0; i < i1; ++i) {
            if (l[i] == -INFINITY) continue;
            const uint32_t k = order_key(l[i]);
            if ((k & mask) == prefix) atomicAdd(&hist[(k >> shift) & 0xffu], 1u);
        }
        __syncthreads();
        if (t == 0) {
            uint32_t want = s_want;
            s_prefix = prefix | (static_cast<uint32_t>(radix_pick(hist, &want)) << shift);
            s_want = want;
        }
        mask |= 0xffu << shift;
        __syncthreads();
    }
    const uint32_t T = s_prefix;
    // ties: the first s_want ids with key == T; per-thread counts, thread 0 assigns bases
    uint32_t g = 0, e = 0;
    for (int32_t i = i0; i < i1; ++i) {
        if (l[i] == -INFINITY) continue;
        const uint32_t k = order_key(l[i]);
        g += k > T;
        e += k == T;
    }
    gt[t] = g;
    eq[t] = e;
    __syncthreads();
    if (t == 0) {
        uint32_t want = s_want, base = 0;
        for (int i = 0; i < kT; ++i) {
            const uint32_t take = min(want, eq[i]);
            want -= take;
            const uint32_t b = base;
            base += gt[i] + take;
            gt[i] = b;     // becomes the output base
            eq[i] = take;  // becomes the ties taken
        }
    }
    __syncthreads();
    for (int i = t; i < kMaxKept; i += kT) {
        skey[i] = 0;  // sentinel: after every real key (keys of finite logits are > 0)
        sid[i] = INT_MAX;
    }
    __syncthreads();
    {
        uint32_t pos = gt[t], ties = eq[t];
        for (int32_t i = i0; i < i1; ++i) {
            if (l[i] == -INFINITY) continue;
            const uint32_t k = order_key(l[i]);
            if (k > T || (k == T && ties > 0)) {
                if (k == T) --ties;
                skey[pos] = k;
                sid[pos] = i;
                ++pos;
            }
        }
    }
    __syncthreads();
    bitonic(skey, sid, false);
    // 3. masses and Z
    const double m = lmax;
    const bool c_is_all = K <= static_cast<uint32_t>(kMaxKept);
    for (int i = t; i < static_cast<int>(nc); i += kT) {
        ws->ln[i] = key_to_float(skey[i]);
        ws->e[i] = mass(ws->ln[i], m);
        ws->ids[i] = sid[i];
    }
    double pz = 0.0;
    if (!c_is_all)
        for (int32_t i = i0; i < i1; ++i)
            if (l[i] != -INFINITY) pz += mass(l[i], m);
    part[t] = pz;
    __syncthreads();
    // 4. the cuts (thread 0, sequential as on the CPU)
    if (t == 0) {
        double Z = 0.0;
        if (c_is_all)
            for (uint32_t i = 0; i < nc; ++i) Z += ws->e[i];
        else
            for (int i = 0; i < kT; ++i) Z += part[i];
        s_keep = cut_sorted(static_cast<int>(nc), c_is_all, Z, top_p, min_p, ws->e);
    }
    __syncthreads();
    const int keep = s_keep;
    if (keep < 0) {
        if (t == 0) result[0] = -1, result[1] = kSampleFallback, result[2] = 0;
        return;
    }
    // kept prefix re-sorted by id, carrying its index in the order as payload
    for (int i = t; i < kMaxKept; i += kT) {
        skey[i] = static_cast<uint32_t>(i);
        if (i >= keep) sid[i] = INT_MAX;
    }
    __syncthreads();
    bitonic(skey, sid, true);
    const bool reuse_e = temperature == 1.0f && (top_p < 1.0f || min_p > 0.0f);
    for (int i = t; i < keep; i += kT) {
        const uint32_t o = skey[i];
        ws->w[i] = draw_weight(ws->ln[o], m, ws->e[o], temperature, reuse_e);
    }
    __syncthreads();
    if (t == 0) {
        result[0] = draw_sorted_by_id(sid, ws->w, keep, u);
        result[1] = kSampleOk;
        result[2] = keep;
    }
}

}  // namespace

size_t sample_workspace_bytes(int32_t) { return sizeof(SampleWs); }

void argmax(const float* logits, int32_t V, int32_t* out, Stream s) {
    if (!logits || !out || V <= 0) detail::bad_arg("argmax: bad arguments");
    argmax_kernel<<<1, kT, 0, detail::as_stream(s)>>>(logits, V, out);
    detail::check_launch("argmax");
}

void sample(const float* logits, int32_t V, int32_t top_k, float top_p, float min_p, float temperature, double u,
            int32_t* result, void* workspace, Stream s) {
    if (!logits || !result || !workspace || V <= 0) detail::bad_arg("sample: bad arguments");
    if (!(temperature > 0.0f)) detail::bad_arg("sample: temperature must be > 0 (greedy: argmax)");
    if (!(top_p > 0.0f && top_p <= 1.0f) || !(min_p >= 0.0f && min_p <= 1.0f))
        detail::bad_arg("sample: top_p must be in (0, 1], min_p in [0, 1]");
    if (!(u >= 0.0 && u < 1.0)) detail::bad_arg("sample: u must be in [0, 1)");
    sample_kernel<<<1, kT, 0, detail::as_stream(s)>>>(logits, V, top_k, top_p, min_p, temperature, u, result,
                                                     static_cast<SampleWs*>(workspace));
    detail::check_launch("sample");
}

}  // namespace unigemma::cuda
