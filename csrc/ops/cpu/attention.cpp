#include "ops/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"

namespace unigemma::cpu {

using base::get_threads;
using base::parallel_for;

namespace {

// Query rows (queries x GQA heads) one task aims for: enough to reuse each converted K / V
// block many times in prefill, few enough that Q, O and the block stay in L2.
constexpr int kRowsPerTask = 32;

// Kernels and sizes for one KV layer, resolved once per call.
struct Plan {
    const cpu::KernelTable* k = nullptr;
    const KVLayer* kv = nullptr;
    cpu::AttnRowF32Fn k_f32 = nullptr, v_f32 = nullptr;
    int hd = 0, group = 0, bk = 0;
    float scale = 1.0f;
};

Plan make_plan(const cpu::KernelTable& k, const KVLayer& kv, int n_head, float scale) {
    Plan p;
    p.k = &k;
    p.kv = &kv;
    const int nkv = kv.n_kv_head();
    if (n_head <= 0 || n_head % nkv != 0)
        throw InputError("[attention] n_head " + std::to_string(n_head) + " is not a multiple of n_kv_head " +
                         std::to_string(nkv));
    p.group = n_head / nkv;
    p.hd = kv.head_dim();
    p.bk = key_block(p.hd);
    p.scale = scale;
    p.k_f32 = k.kv_row_f32[static_cast<uint32_t>(kv.k_type())];
    p.v_f32 = k.kv_row_f32[static_cast<uint32_t>(kv.v_type())];
    if (!p.k_f32 || !p.v_f32 || !k.attn_scores || !k.attn_softmax || !k.attn_pv)
        throw InputError("[attention] no attention kernel for the KV cache types");
    return p;
}

// Per-thread working set of one task of nh KV heads (grown once, then reused). Head hh's
// part of each array starts at hh times the per-head size; a and b are per row, shared by
// the heads (they depend on the query only).
struct Scratch {
    std::vector<float> q, o, s, kf, vf, m, l, alpha;
    std::vector<int> a, b;
    void size(int nh, int rows, int hd, int bk) {
        const auto r = static_cast<size_t>(rows) * nh;
        q.resize(r * hd);
        o.assign(r * hd, 0.0f);
        s.resize(r * bk);
        kf.resize(static_cast<size_t>(nh) * bk * hd);
        vf.resize(kf.size());
        m.assign(r, -INFINITY);
        l.assign(r, 0.0f);
        alpha.resize(r);
        a.resize(static_cast<size_t>(rows));
        b.resize(static_cast<size_t>(rows));
    }
};

// Converts the cache rows of positions j0 + [c0, c1] of KV heads g0 .. g0 + nh - 1 to
// float32: head hh's row of column j goes to dst + (hh * bk + j) * hd. Position-major, so
// that the reads stream through memory (the heads of one position are adjacent): reading
// one head's rows (a KV head's positions are n_kv_head rows apart) ran at a third of the
// bandwidth. Software prefetch did not help on top of the hardware prefetchers.
void load_rows(const Plan& p, bool keys, int g0, int nh, int64_t j0, int c0, int c1, float* dst) {
    const KVLayer& kv = *p.kv;
    const cpu::AttnRowF32Fn conv = keys ? p.k_f32 : p.v_f32;
    auto row = [&](int64_t pos, int g) { return keys ? kv.k_row(pos, g) : kv.v_row(pos, g); };
    for (int j = c0; j <= c1; ++j) {
        const int64_t pos = j0 + j;
        if (!kv.holds(pos)) throw Error("[attention] KV cache does not hold position " + std::to_string(pos));
        for (int hh = 0; hh < nh; ++hh)
            conv(p.hd, row(pos, g0 + hh), dst + (static_cast<int64_t>(hh) * p.bk + j) * p.hd);
    }
}

// One task: nq queries x the query heads of KV heads g0 .. g0 + nh - 1. Query i's rows are
// q[i] + (hh * group + h) * hd (hh < nh, h < group), its outputs the same offsets from
// out[i], its visible keys [lo[i], hi[i]] (lo <= hi). Scratch row of (hh, i, h):
// hh * R + i * group + h, R = nq * group. Every row runs the same sequence of kernel
// calls on its own data whatever nh, nq and the other rows are.
void attend_task(const Plan& p, int g0, int nh, int nq, const float* const* q, float* const* out, const int64_t* lo,
                 const int64_t* hi) {
    const int hd = p.hd, bk = p.bk, R = nq * p.group;
    const cpu::KernelTable& K = *p.k;
    thread_local Scratch w;
    w.size(nh, R, hd, bk);
    auto at = [&](std::vector<float>& v, int hh, int64_t per) { return v.data() + hh * static_cast<int64_t>(R) * per; };
    for (int hh = 0; hh < nh; ++hh)
        for (int i = 0; i < nq; ++i)
            std::copy(q[i] + static_cast<int64_t>(hh) * p.group * hd, q[i] + static_cast<int64_t>(hh + 1) * p.group * hd,
                      at(w.q, hh, hd) + static_cast<int64_t>(i) * p.group * hd);
    const int64_t lo_all = *std::min_element(lo, lo + nq), hi_all = *std::max_element(hi, hi + nq);
    for (int64_t blk = lo_all / bk; blk <= hi_all / bk; ++blk) {
        const int64_t j0 = blk * bk;
        // Visible columns [a, b] of each row in this block, and their union [c0, c1].
        int c0 = bk, c1 = -1;
        for (int i = 0; i < nq; ++i) {
            const int a = static_cast<int>(std::max(lo[i], j0) - j0);
            const int b = static_cast<int>(std::min(hi[i], j0 + bk - 1) - j0);
            if (a <= b) c0 = std::min(c0, a), c1 = std::max(c1, b);
            for (int h = 0; h < p.group; ++h) w.a[i * p.group + h] = a, w.b[i * p.group + h] = b;
        }
        if (c1 < c0) continue;  // no row sees a key of this block
        load_rows(p, true, g0, nh, j0, c0, c1, w.kf.data());
        for (int hh = 0; hh < nh; ++hh) {
            const float* kf = w.kf.data() + (static_cast<int64_t>(hh) * bk + c0) * hd;
            K.attn_scores(hd, R, c1 - c0 + 1, at(w.q, hh, hd), hd, kf, hd, at(w.s, hh, bk) + c0, bk);
            K.attn_softmax(R, at(w.s, hh, bk), bk, w.a.data(), w.b.data(), p.scale, at(w.m, hh, 1), at(w.l, hh, 1),
                           at(w.alpha, hh, 1));
            for (int r = 0; r < R; ++r) {
                float* orow = at(w.o, hh, hd) + static_cast<int64_t>(r) * hd;
                const float al = at(w.alpha, hh, 1)[r];
                if (w.a[r] <= w.b[r] && al != 1.0f) K.scale(orow, orow, al, hd);
            }
        }
        load_rows(p, false, g0, nh, j0, c0, c1, w.vf.data());
        for (int hh = 0; hh < nh; ++hh)
            K.attn_pv(hd, R, w.a.data(), w.b.data(), at(w.s, hh, bk), bk,
                      w.vf.data() + static_cast<int64_t>(hh) * bk * hd, hd, at(w.o, hh, hd), hd);
    }
    for (int hh = 0; hh < nh; ++hh)
        for (int i = 0; i < nq; ++i)
            for (int h = 0; h < p.group; ++h) {
                const int r = i * p.group + h;
                K.scale(out[i] + static_cast<int64_t>(hh * p.group + h) * hd,
                        at(w.o, hh, hd) + static_cast<int64_t>(r) * hd, 1.0f / at(w.l, hh, 1)[r], hd);
            }
}

// KV heads per task: as many as keep the task's float32 K + V blocks within kScratchBytes
// (reads then stream through whole positions), split further until there are at least
// n_threads tasks. Any split gives the same results (rows are independent).
constexpr size_t kScratchBytes = 512 * 1024;

int heads_per_task(const Plan& p, int nkv, int64_t n_qblocks, int n_threads) {
    const size_t per_head = 2 * static_cast<size_t>(p.bk) * p.hd * sizeof(float);
    int nh = 1;
    for (int d = 1; d <= nkv; ++d) {
        if (nkv % d != 0 || d * per_head > kScratchBytes) continue;
        if (n_qblocks * (nkv / d) >= n_threads) nh = d;
    }
    return nh;
}

}  // namespace

// 8192 / head_dim keys (a 32 KiB float32 block per head: L1-sized), 16 to 64, a multiple of 16.
// Going from 32 to 16 keys at head_dim 512 took decode at 16K context from 3 to 8 GB/s.
int key_block(int head_dim) { return std::clamp(8192 / std::max(head_dim, 1), 16, 64) / 16 * 16; }

void attention(const cpu::KernelTable& k, const KVLayer& kv, const AttentionBatch& b, int n_threads) {
    const Plan p = make_plan(k, kv, b.n_head, b.scale);
    if (b.n_tokens <= 0) return;
    const int nkv = kv.n_kv_head(), hd = p.hd;
    const int qb = std::max(1, kRowsPerTask / p.group);  // queries per task
    const int64_t n_qblocks = (b.n_tokens + qb - 1) / qb;
    for (int64_t t = 0; t < b.n_tokens; ++t)
        if (b.key_end && b.key_end[t] < b.pos0 + t)
            throw InputError("[attention] key_end[" + std::to_string(t) + "] is before the query's position");
    const int nh = heads_per_task(p, nkv, n_qblocks, n_threads > 0 ? n_threads : get_threads());
    const int n_chunks = nkv / nh;
    parallel_for(
        n_qblocks * n_chunks,
        [&](int64_t task, int) {
            // The last query blocks see the most keys: hand them out first.
            const int64_t blk = n_qblocks - 1 - task / n_chunks;
            const int g0 = static_cast<int>(task % n_chunks) * nh;
            const int64_t t0 = blk * qb;
            const int nq = static_cast<int>(std::min<int64_t>(qb, b.n_tokens - t0));
            const float* qp[kRowsPerTask];
            float* op[kRowsPerTask];
            int64_t lo[kRowsPerTask], hi[kRowsPerTask];
            for (int i = 0; i < nq; ++i) {
                const int64_t t = t0 + i, pos = b.pos0 + t;
                const int64_t off = (t * b.n_head + static_cast<int64_t>(g0) * p.group) * hd;
                qp[i] = b.q + off;
                op[i] = b.out + off;
                lo[i] = b.window > 0 ? std::max<int64_t>(0, pos - b.window + 1) : 0;
                hi[i] = b.key_end ? b.key_end[t] : pos;
            }
            attend_task(p, g0, nh, nq, qp, op, lo, hi);
        },
        n_threads);
}

void attention_range(const cpu::KernelTable& k, const KVLayer& kv, const float* q, float* out, int n_head,
                     float scale, int64_t lo, int64_t hi, int n_threads) {
    const Plan p = make_plan(k, kv, n_head, scale);
    if (lo < 0 || hi < lo)
        throw InputError("[attention] empty or negative key range [" + std::to_string(lo) + ", " + std::to_string(hi) +
                         "]");
    const int nkv = kv.n_kv_head();
    const int nh = heads_per_task(p, nkv, 1, n_threads > 0 ? n_threads : get_threads());
    const int64_t stride = static_cast<int64_t>(nh) * p.group * p.hd;
    parallel_for(
        nkv / nh,
        [&](int64_t c, int) {
            const float* qp = q + c * stride;
            float* op = out + c * stride;
            attend_task(p, static_cast<int>(c) * nh, nh, 1, &qp, &op, &lo, &hi);
        },
        n_threads);
}

}  // namespace unigemma::cpu
