#include "runtime/attention.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common/error.h"
#include "quant/quant.h"
#include "runtime/thread_pool.h"

namespace unigemma::runtime {

namespace {

// Kernels and sizes for one KV layer, resolved once per call.
struct HeadKernels {
    int hd = 0;
    cpu::VecDotFn dot = nullptr;
    cpu::QuantizeActFn qact = nullptr;
    cpu::AxpyRowFn axpy = nullptr;
    size_t qbytes = 0;
};

HeadKernels head_kernels(const cpu::KernelTable& k, const KVLayer& kv) {
    HeadKernels h;
    h.hd = kv.head_dim();
    const GGMLType at = cpu::activation_type(kv.k_type());
    h.dot = k.vec_dot[static_cast<uint32_t>(kv.k_type())];
    h.qact = k.quantize_act[static_cast<uint32_t>(at)];
    if (!h.dot || !h.qact) throw InputError("[attention] no kernel for the K cache type");
    h.qbytes = quant::row_bytes(at, h.hd);
    h.axpy = k.axpy_row[static_cast<uint32_t>(kv.v_type())];
    if (!h.axpy) throw InputError("[attention] no row kernel for the V cache type");
    return h;
}

// One query head qh (head_dim floats) of KV head kh over the keys at positions [lo, hi]
// (hi >= lo): float32 softmax of scale * q.K, then the weighted sum of V rows into out.
void attend_head(const HeadKernels& hk, const KVLayer& kv, const float* qh, int kh, float scale, int64_t lo,
                 int64_t hi, float* out) {
    const int hd = hk.hd;
    const int64_t n = hi - lo + 1;
    thread_local std::vector<float> scores, acc;
    thread_local std::vector<uint8_t> qq;
    scores.resize(static_cast<size_t>(n));
    acc.assign(static_cast<size_t>(hd), 0.0f);
    qq.resize(hk.qbytes + 64);
    hk.qact(qh, qq.data(), hd);
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; ++j) {
        if (!kv.holds(lo + j)) throw Error("[attention] KV cache does not hold position " + std::to_string(lo + j));
        float s;
        hk.dot(hd, &s, kv.k_row(lo + j, kh), qq.data());
        s *= scale;
        scores[static_cast<size_t>(j)] = s;
        mx = std::max(mx, s);
    }
    // softmax in float32 (max-subtracted), then the weighted sum of V rows
    double sum = 0.0;
    for (int64_t j = 0; j < n; ++j) {
        const float e = std::exp(scores[static_cast<size_t>(j)] - mx);
        scores[static_cast<size_t>(j)] = e;
        sum += e;
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t j = 0; j < n; ++j) {
        const float p = scores[static_cast<size_t>(j)] * inv;
        if (p != 0.0f) hk.axpy(hd, p, kv.v_row(lo + j, kh), acc.data());
    }
    std::copy(acc.begin(), acc.end(), out);
}

int gqa_group(const KVLayer& kv, int n_head) {
    const int nkv = kv.n_kv_head();
    if (n_head <= 0 || n_head % nkv != 0)
        throw InputError("[attention] n_head " + std::to_string(n_head) + " is not a multiple of n_kv_head " +
                         std::to_string(nkv));
    return n_head / nkv;
}

}  // namespace

void attention(const cpu::KernelTable& k, const KVLayer& kv, const AttentionBatch& b, int n_threads) {
    const int group = gqa_group(kv, b.n_head);
    const HeadKernels hk = head_kernels(k, kv);
    const int hd = hk.hd;
    parallel_for(
        b.n_tokens * b.n_head,
        [&](int64_t task, int) {
            const int64_t t = task / b.n_head;
            const int h = static_cast<int>(task % b.n_head);
            const int64_t pos = b.pos0 + t;
            const int64_t lo = b.window > 0 ? std::max<int64_t>(0, pos - b.window + 1) : 0;
            const int64_t hi = b.key_end ? b.key_end[t] : pos;
            attend_head(hk, kv, b.q + (t * b.n_head + h) * hd, h / group, b.scale, lo, hi,
                        b.out + (t * b.n_head + h) * hd);
        },
        n_threads);
}

void attention_range(const cpu::KernelTable& k, const KVLayer& kv, const float* q, float* out, int n_head,
                     float scale, int64_t lo, int64_t hi, int n_threads) {
    const int group = gqa_group(kv, n_head);
    if (lo < 0 || hi < lo)
        throw InputError("[attention] empty or negative key range [" + std::to_string(lo) + ", " + std::to_string(hi) +
                         "]");
    const HeadKernels hk = head_kernels(k, kv);
    const int hd = hk.hd;
    parallel_for(
        n_head, [&](int64_t h, int) { attend_head(hk, kv, q + h * hd, static_cast<int>(h) / group, scale, lo, hi, out + h * hd); },
        n_threads);
}

}  // namespace unigemma::runtime
