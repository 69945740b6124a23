// Device sampler (ops/cuda/sampler.cu) selection logic shared with its host twin
// (twin_sample below, bound as _core.cuda_twin_sample). Semantics are those of the CPU
// sampler (sampling/sampler.cpp, step 3 and 4) on already-processed logits (bias / suppress /
// penalties applied; those stay on the host, which knows the history):
//   order: logit descending, ties by lower id; top-k = first k of the order (finite logits
//   only); top-p = shortest prefix whose mass exp(l - lmax) (double) reaches top_p * Z, Z the
//   mass of the top-k survivors; min-p = prefix with exp(l - lmax) >= min_p; the kept set is
//   the shorter prefix; weights exp((l - lmax) / T) (reusing exp(l - lmax) when T == 1 and a
//   mass filter ran); draw: walk the kept set in ascending id order, return the first token
//   whose running weight sum exceeds u * W (u from the host's mt19937_64, as Sampler::uniform).
//
// Device algorithm (one block of kSampleThreads threads), reproduced step by step by the twin:
//   1. lmax and the count of finite logits (order-independent reductions).
//   2. K = min(top_k or all, finite); C = the first min(K, kMaxKept) tokens of the order, found
//      by an MSB-first radix select on order_key() (8 bits per pass, integer histograms) plus an
//      id cut among the keys equal to the threshold; C is then sorted by the order.
//   3. Z: K <= kMaxKept: summed over C in sorted order (the CPU's order: bitwise equal); else
//      summed over every finite token in kSampleThreads contiguous id ranges (sequential inside
//      a range, then the range sums in ascending order): differs from the CPU's ascending-id
//      sum by rounding only (~1e-16 relative).
//   4. The cuts walk C sequentially, as the CPU does. When the kept set might extend beyond C
//      (K > kMaxKept and neither cut fell inside C) the result is kFallback: the caller copies
//      the logits to the host and runs the CPU sampler. Temperature-only sampling over the
//      whole vocabulary (no top-k / top-p / min-p) is such a case.
// exp() is the platform's double exp (CUDA's and glibc's are both within 1 ulp), the only
// place the device can differ from the twin.
#pragma once
#include <cstdint>

#include "ops/cuda/block_math.cuh"

namespace unigemma::cuda {

constexpr int kMaxKept = 4096;        // capacity of the sorted candidate list C
constexpr int kSampleThreads = 1024;  // threads of the sampler block

enum SampleStatus : int { kSampleOk = 0, kSampleFallback = 1, kSampleNoToken = 2 };

// Order-preserving map float -> uint32 (larger float, larger key; -inf lowest, no NaN).
UG_HD uint32_t order_key(float f) {
    const uint32_t b = ug_f32_to_bits(f);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
UG_HD float key_to_float(uint32_t k) { return ug_bits_to_f32((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k); }

// The total order: a before b.
UG_HD bool order_before(uint32_t ka, int32_t ia, uint32_t kb, int32_t ib) { return ka > kb || (ka == kb && ia < ib); }

// One radix-select step: hist[256] counts the candidates by digit; picks the digit holding the
// want-th largest (1-based) and returns it, with *want reduced by the counts of higher digits.
UG_HD int radix_pick(const uint32_t* hist, uint32_t* want) {
    uint32_t cum = 0;
    for (int d = 255; d >= 0; --d) {
        if (cum + hist[d] >= *want) {
            *want -= cum;
            return d;
        }
        cum += hist[d];
    }
    return 0;  // unreachable when want <= sum(hist)
}

// exp(l - lmax) in double: a token's unnormalized probability at T = 1.
UG_HD double mass(float l, double lmax) { return exp(static_cast<double>(l) - lmax); }

// Step 4 on the n sorted candidates with e[i] = mass(l_i): returns the kept count (a prefix of
// the order) or -1 for kFallback. Z: the normalizer of step 3.
UG_HD int cut_sorted(int n, bool c_is_all, double Z, float top_p, float min_p, const double* e) {
    const bool use_p = top_p < 1.0f, use_min = min_p > 0.0f;
    if (!use_p && !use_min) return c_is_all ? n : -1;
    int keep_min = n, keep_p = n;
    bool min_inside = false, p_inside = false;
    if (use_min) {
        const double thr = min_p;
        for (int i = 0; i < n; ++i)
            if (e[i] < thr) {
                keep_min = i;
                min_inside = true;
                break;
            }
    }
    if (use_p) {
        const double target = static_cast<double>(top_p) * Z;
        double cum = 0.0;
        for (int i = 0; i < n; ++i) {
            cum += e[i];
            if (cum >= target) {
                keep_p = i + 1;
                p_inside = true;
                break;
            }
        }
    }
    // A cut that did not fall inside C lies beyond it (or nowhere, when C is everything).
    const int none = n + 1;
    const int km = min_inside ? keep_min : none, kp = p_inside ? keep_p : none;
    const int keep = km < kp ? km : kp;
    if (keep == none) return c_is_all ? n : -1;
    return keep;
}

// Weight of a kept token for the draw (sampler.cpp: e reused when T == 1 after a mass filter).
UG_HD double draw_weight(float l, double lmax, double e, float temperature, bool reuse_e) {
    return reuse_e ? e : exp((static_cast<double>(l) - lmax) / static_cast<double>(temperature));
}

// The draw over the kept tokens in ascending id order (ids[], weights w[]): sequential sums.
UG_HD int32_t draw_sorted_by_id(const int32_t* ids, const double* w, int n, double u) {
    double W = 0.0;
    for (int i = 0; i < n; ++i) W += w[i];
    const double target = u * W;
    double cum = 0.0;
    int32_t pick = ids[0];
    for (int i = 0; i < n; ++i) {
        if (w[i] <= 0.0) continue;
        cum += w[i];
        pick = ids[i];
        if (target < cum) return pick;
    }
    return pick;
}

}  // namespace unigemma::cuda

// ---------------------------------------------------------------- host twin (host function)
#include <algorithm>
#include <vector>

namespace unigemma::cuda {

// The device sampler's result, computed on the host in the device's order of operations.
// Returns the token (or -1) and sets *status. temperature must be > 0 (greedy is a plain argmax).
inline int32_t twin_sample(const float* l, int32_t V, int32_t top_k, float top_p, float min_p, float temperature,
                           double u, int* status, int* n_kept) {
    *n_kept = 0;
    float lmax = -INFINITY;
    uint32_t n_fin = 0;
    for (int32_t i = 0; i < V; ++i) {
        lmax = std::max(lmax, l[i]);
        n_fin += l[i] != -INFINITY;
    }
    if (lmax == -INFINITY) return *status = kSampleNoToken, -1;
    if (lmax == INFINITY) return *status = kSampleFallback, -1;
    const uint32_t K = (top_k > 0 && static_cast<uint32_t>(top_k) < n_fin) ? static_cast<uint32_t>(top_k) : n_fin;
    const uint32_t nc = std::min<uint32_t>(K, kMaxKept);
    // radix select of the nc-th key (finite logits only)
    uint32_t prefix = 0, mask = 0, want = nc;
    for (int shift = 24; shift >= 0; shift -= 8) {
        uint32_t hist[256] = {};
        for (int32_t i = 0; i < V; ++i) {
            if (l[i] == -INFINITY) continue;
            const uint32_t k = order_key(l[i]);
            if ((k & mask) == prefix) ++hist[(k >> shift) & 0xffu];
        }
        prefix |= static_cast<uint32_t>(radix_pick(hist, &want)) << shift;
        mask |= 0xffu << shift;
    }
    // the first `want` ids (ascending) with key == prefix are in, with every key > prefix
    std::vector<uint32_t> ck;
    std::vector<int32_t> ci;
    uint32_t ties = 0;
    for (int32_t i = 0; i < V; ++i) {
        if (l[i] == -INFINITY) continue;
        const uint32_t k = order_key(l[i]);
        if (k > prefix || (k == prefix && ties++ < want)) {
            ck.push_back(k);
            ci.push_back(i);
        }
    }
    std::vector<int> ord(ck.size());
    for (size_t i = 0; i < ord.size(); ++i) ord[i] = static_cast<int>(i);
    std::sort(ord.begin(), ord.end(), [&](int a, int b) { return order_before(ck[a], ci[a], ck[b], ci[b]); });
    std::vector<float> ln(ord.size());
    std::vector<int32_t> ids(ord.size());
    for (size_t i = 0; i < ord.size(); ++i) {
        ln[i] = key_to_float(ck[ord[i]]);
        ids[i] = ci[ord[i]];
    }
    const double m = lmax;
    double Z = 0.0;
    const bool c_is_all = K <= static_cast<uint32_t>(kMaxKept);
    std::vector<double> e(ln.size());
    for (size_t i = 0; i < ln.size(); ++i) e[i] = mass(ln[i], m);
    if (c_is_all) {
        for (double v : e) Z += v;
    } else {
        const int32_t per = (V + kSampleThreads - 1) / kSampleThreads;
        for (int t = 0; t < kSampleThreads; ++t) {
            double part = 0.0;
            for (int32_t i = t * per; i < std::min(V, (t + 1) * per); ++i)
                if (l[i] != -INFINITY) part += mass(l[i], m);
            Z += part;
        }
    }
    const int keep = cut_sorted(static_cast<int>(ln.size()), c_is_all, Z, top_p, min_p, e.data());
    if (keep < 0) return *status = kSampleFallback, -1;
    std::vector<int> byid(static_cast<size_t>(keep));
    for (int i = 0; i < keep; ++i) byid[static_cast<size_t>(i)] = i;
    std::sort(byid.begin(), byid.end(), [&](int a, int b) { return ids[a] < ids[b]; });
    const bool reuse_e = temperature == 1.0f && (top_p < 1.0f || min_p > 0.0f);
    std::vector<int32_t> kid(byid.size());
    std::vector<double> kw(byid.size());
    for (size_t i = 0; i < byid.size(); ++i) {
        kid[i] = ids[byid[i]];
        kw[i] = draw_weight(ln[byid[i]], m, e[byid[i]], temperature, reuse_e);
    }
    *n_kept = keep;
    *status = kSampleOk;
    return draw_sorted_by_id(kid.data(), kw.data(), keep, u);
}

}  // namespace unigemma::cuda
