#include "runtime/attention.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common/error.h"
#include "quant/quant.h"
#include "runtime/thread_pool.h"

namespace unigemma::runtime {

void attention(const cpu::KernelTable& k, const KVLayer& kv, const AttentionBatch& b, int n_threads) {
    const int hd = kv.head_dim();
    const int nkv = kv.n_kv_head();
    if (b.n_head <= 0 || b.n_head % nkv != 0)
        throw InputError("[attention] n_head " + std::to_string(b.n_head) + " is not a multiple of n_kv_head " +
                         std::to_string(nkv));
    const int group = b.n_head / nkv;
    const GGMLType kt = kv.k_type(), vt = kv.v_type();
    const GGMLType at = cpu::activation_type(kt);
    const cpu::VecDotFn dot = k.vec_dot[static_cast<uint32_t>(kt)];
    const cpu::QuantizeActFn qact = k.quantize_act[static_cast<uint32_t>(at)];
    if (!dot || !qact) throw InputError("[attention] no kernel for the K cache type");
    const size_t qbytes = quant::row_bytes(at, hd);
    const cpu::AxpyRowFn axpy = k.axpy_row[static_cast<uint32_t>(vt)];
    if (!axpy) throw InputError("[attention] no row kernel for the V cache type");

    parallel_for(
        b.n_tokens * b.n_head,
        [&](int64_t task, int) {
            const int64_t t = task / b.n_head;
            const int h = static_cast<int>(task % b.n_head);
            const int kh = h / group;
            const int64_t pos = b.pos0 + t;
            const int64_t lo = b.window > 0 ? std::max<int64_t>(0, pos - b.window + 1) : 0;
            const int64_t hi = b.key_end ? b.key_end[t] : pos;
            const int64_t n = hi - lo + 1;
            thread_local std::vector<float> scores, acc;
            thread_local std::vector<uint8_t> qq;
            scores.resize(static_cast<size_t>(n));
            acc.assign(static_cast<size_t>(hd), 0.0f);
            qq.resize(qbytes + 64);
            const float* qh = b.q + (t * b.n_head + h) * hd;
            qact(qh, qq.data(), hd);
            float mx = -INFINITY;
            for (int64_t j = 0; j < n; ++j) {
                if (!kv.holds(lo + j))
                    throw Error("[attention] KV cache does not hold position " + std::to_string(lo + j));
                float s;
                dot(hd, &s, kv.k_row(lo + j, kh), qq.data());
                s *= b.scale;
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
                if (p != 0.0f) axpy(hd, p, kv.v_row(lo + j, kh), acc.data());
            }
            std::copy(acc.begin(), acc.end(), b.out + (t * b.n_head + h) * hd);
        },
        n_threads);
}

}  // namespace unigemma::runtime
