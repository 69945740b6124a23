// Token sampler. Semantics (the contract in sampler.h, made precise):
//
// 1. Logit processing (process_logits), each stage computed in double from the float32 value
//    and rounded back to float32 once per stage:
//    - logit_bias: l += b (entries for the same id are summed); +inf forces, -inf bans. A
//      +inf bias on a -inf logit (NaN) is an InputError.
//    - suppress: l = -inf, after the bias (a suppressed id stays banned whatever its bias).
//    - penalties over the last `penalty_last_n` history tokens (-1: the whole history, 0: off),
//      once per distinct token t with count c in that window, like llama.cpp:
//          l = l > 0 ? l / repetition_penalty : l * repetition_penalty   (CTRL; 0 stays 0)
//          l -= c * frequency_penalty + presence_penalty
//      Tokens outside the window are untouched; -inf stays -inf.
// 2. temperature <= 0: greedy, the first (lowest) id holding the maximum; an all -inf row
//    gives 0. Consumes no random numbers.
// 3. Otherwise the filters run on the temperature-free (T = 1) distribution, as in llama.cpp's
//    default chain (top_k, top_p, min_p, ..., then temp, then dist), so changing the
//    temperature reshapes the probabilities inside the kept set but never changes the set:
//    - order: logit descending, ties by lower id first (a total order, so every cut is
//      deterministic).
//    - top_k (k > 0): the first k tokens of that order.
//    - top_p (< 1): softmax over the top-k survivors; keep the shortest prefix of the order
//      whose probability mass is >= top_p (always >= 1 token).
//    - min_p (> 0): keep tokens with p >= min_p * p_max, i.e. exp(l - l_max) >= min_p. p_max
//      is the same before and after top-p (the top token always survives), so top-p and
//      min-p commute; each keeps a prefix of the order and the result is the shorter one.
//    - then weights exp((l - l_max) / T) over the kept set (T = +inf: uniform), normalized.
//    Tokens at -inf never survive. If every logit is -inf there is nothing to sample:
//    InputError. If some logits are +inf the distribution is the limit: uniform over them.
// 4. The draw: one 64-bit output x of std::mt19937_64 (whose output sequence the C++ standard
//    fixes for a given seed), u = (x >> 11) * 2^-53 in [0, 1) (53 bits, exactly representable),
//    then walk the kept tokens in ascending id order, summing weights in double, and return
//    the first token whose running sum exceeds u * W (W = the total, summed in the same order).
//    No std::*_distribution is involved (their algorithms are implementation-defined), so the
//    same seed gives the same tokens on every standard library; the only platform dependence
//    left is libm's exp() rounding (<= 1 ulp), which moves a boundary by ~1e-16.
//
// Cost for V tokens: O(V) passes (copy + NaN check, max, candidate list, exp). top-k keeps a
// bounded heap (O(V) compares + O(k log k)); top-p sorts at most 4096 candidates, longer lists
// go through logit buckets (top_p_by_buckets) and only the boundary bucket is sorted; min-p is
// a threshold pass. The kept set is sorted by id only when it came out of a sort.
#include "sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <sstream>
#include <string>

#include "base/error.h"

namespace unigemma::sampling {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

std::string num(double v) {
    std::ostringstream os;
    os.precision(9);
    os << v;
    return os.str();
}

[[noreturn]] void fail(const std::string& msg) { throw InputError("[sampler] " + msg); }

void check_id(int32_t id, int32_t n_vocab, const std::string& field) {
    if (id < 0 || id >= n_vocab)
        fail(field + ": token id " + std::to_string(id) + " is outside [0, n_vocab = " + std::to_string(n_vocab) +
             ")");
}

}  // namespace

Sampler::Sampler(SamplerParams p, int32_t n_vocab) : p_(std::move(p)), n_vocab_(n_vocab), rng_(p_.seed) {
    if (n_vocab_ <= 0) fail("n_vocab must be > 0, got " + std::to_string(n_vocab_));
    if (std::isnan(p_.temperature)) fail("temperature must not be NaN");
    if (!(p_.top_p > 0.0f && p_.top_p <= 1.0f)) fail("top_p must be in (0, 1], got " + num(p_.top_p));
    if (!(p_.min_p >= 0.0f && p_.min_p <= 1.0f)) fail("min_p must be in [0, 1], got " + num(p_.min_p));
    if (!(p_.repetition_penalty > 0.0f) || !std::isfinite(p_.repetition_penalty))
        fail("repetition_penalty must be finite and > 0, got " + num(p_.repetition_penalty));
    if (!std::isfinite(p_.frequency_penalty))
        fail("frequency_penalty must be finite, got " + num(p_.frequency_penalty));
    if (!std::isfinite(p_.presence_penalty)) fail("presence_penalty must be finite, got " + num(p_.presence_penalty));
    if (p_.penalty_last_n < -1) fail("penalty_last_n must be >= -1, got " + std::to_string(p_.penalty_last_n));

    for (const auto& [id, b] : p_.logit_bias) {
        check_id(id, n_vocab_, "logit_bias");
        if (std::isnan(b)) fail("logit_bias: bias for token " + std::to_string(id) + " is NaN");
    }
    // Sorted by id; entries for the same id are summed in the order given (stable sort).
    auto entries = p_.logit_bias;
    std::stable_sort(entries.begin(), entries.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
    for (const auto& [id, b] : entries) {
        if (bias_.empty() || bias_.back().first != id) bias_.emplace_back(id, 0.0);
        bias_.back().second += static_cast<double>(b);
        if (std::isnan(bias_.back().second))
            fail("logit_bias: biases for token " + std::to_string(id) + " sum to NaN (+inf and -inf)");
    }
    for (int32_t id : p_.suppress) check_id(id, n_vocab_, "suppress");
    suppress_ = p_.suppress;
    std::sort(suppress_.begin(), suppress_.end());
    suppress_.erase(std::unique(suppress_.begin(), suppress_.end()), suppress_.end());
}

void Sampler::reseed(uint64_t seed) {
    p_.seed = seed;
    rng_.seed(seed);
}

void Sampler::process_logits(const float* logits, const std::vector<int32_t>& history, float* out) {
    const size_t V = static_cast<size_t>(n_vocab_);
    // Branch-free NaN count so the loop vectorizes; the position is looked up only on error.
    size_t n_nan = 0;
    for (size_t i = 0; i < V; ++i) n_nan += logits[i] != logits[i];
    if (n_nan) {
        size_t i = 0;
        while (!std::isnan(logits[i])) ++i;
        fail("logits[" + std::to_string(i) + "] is NaN (" + std::to_string(n_nan) + " NaN logits)");
    }
    for (size_t i = 0; i < history.size(); ++i)
        if (history[i] < 0 || history[i] >= n_vocab_)
            fail("history[" + std::to_string(i) + "] = " + std::to_string(history[i]) + " is outside [0, n_vocab = " +
                 std::to_string(n_vocab_) + ")");
    if (out != logits) std::memcpy(out, logits, V * sizeof(float));

    for (const auto& [id, b] : bias_) {
        const double v = static_cast<double>(out[id]) + b;
        if (std::isnan(v))
            fail("logit_bias: bias " + num(b) + " for token " + std::to_string(id) + " added to a logit of " +
                 num(out[id]) + " gives NaN");
        out[id] = static_cast<float>(v);
    }
    for (int32_t id : suppress_) out[id] = -kInf;

    const bool penalize = p_.penalty_last_n != 0 &&
                          (p_.repetition_penalty != 1.0f || p_.frequency_penalty != 0.0f || p_.presence_penalty != 0.0f);
    if (!penalize || history.empty()) return;
    const size_t n = p_.penalty_last_n < 0 ? history.size()
                                           : std::min(history.size(), static_cast<size_t>(p_.penalty_last_n));
    hist_.assign(history.end() - static_cast<std::ptrdiff_t>(n), history.end());
    std::sort(hist_.begin(), hist_.end());
    const double rep = p_.repetition_penalty, freq = p_.frequency_penalty, pres = p_.presence_penalty;
    for (size_t i = 0; i < hist_.size();) {
        size_t j = i;
        while (j < hist_.size() && hist_[j] == hist_[i]) ++j;
        const double count = static_cast<double>(j - i);
        double l = out[hist_[i]];
        if (rep != 1.0) l = l > 0.0 ? l / rep : l * rep;
        l -= count * freq + pres;  // +-inf stay +-inf: the penalties are finite
        out[hist_[i]] = static_cast<float>(l);
        i = j;
    }
}

// Top-p over a long candidate list in ascending id order, without sorting it. Tokens go into
// buckets of width 1/64 in d = lmax - l (d >= 64, mass < 1.7e-28 each, share the last one);
// the bucket index never increases along the total order, so the mass of whole buckets, summed
// from the top, finds the bucket B where the running mass reaches the target: buckets before B
// are kept whole, buckets after B dropped, and only B is sorted and walked token by token.
// Only the summation order differs from a walk over the fully sorted list (rounding ~1e-16
// relative). idx_ stays in ascending id order. O(V) plus a sort of one bucket, which is small
// unless very many logits are (nearly) equal at the cut.
void Sampler::top_p_by_buckets(double target, double m) {
    constexpr int kBuckets = 4096;
    constexpr double kScale = kBuckets / 64.0;
    const float* l = work_.data();
    auto bucket = [&](int32_t id) {
        const double d = (m - static_cast<double>(l[id])) * kScale;  // monotone in l, >= 0
        return d >= kBuckets - 1 ? kBuckets - 1 : static_cast<int>(d);
    };
    mass_.assign(kBuckets, 0.0);
    for (int32_t id : idx_) mass_[bucket(id)] += e_[id];
    double cum = 0.0;
    int B = 0;
    for (; B < kBuckets; ++B) {
        if (cum + mass_[B] >= target) break;
        cum += mass_[B];
    }
    if (B == kBuckets) return;  // rounding kept the target out of reach: keep everything
    sel_.clear();
    for (int32_t id : idx_)
        if (bucket(id) == B) sel_.push_back(id);
    auto before = [l](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); };
    std::sort(sel_.begin(), sel_.end(), before);
    int32_t cut = sel_.back();
    for (int32_t id : sel_) {
        cum += e_[id];
        if (cum >= target) {
            cut = id;
            break;
        }
    }
    idx_.erase(std::remove_if(idx_.begin(), idx_.end(),
                              [&](int32_t id) {
                                  const int b = bucket(id);
                                  return b > B || (b == B && before(cut, id));
                              }),
               idx_.end());
}

int32_t Sampler::sample(const float* logits, const std::vector<int32_t>& history) {
    const int32_t greedy = candidates(logits, history);
    if (greedy >= 0) return greedy;
    // W >= 1: the maximum is always kept with weight exp(0) = 1.
    const double target = uniform() * w_sum_;
    double cum = 0.0;
    int32_t pick = idx_.front();
    for (size_t i = 0; i < idx_.size(); ++i) {
        if (w_[i] <= 0.0) continue;  // underflowed weights can never be drawn
        cum += w_[i];
        pick = idx_[i];
        if (target < cum) return pick;
    }
    // u * W can round up to W itself; then the last token with nonzero weight is the answer.
    return pick;
}

void Sampler::probs(const float* logits, const std::vector<int32_t>& history, float* out) {
    const size_t V = static_cast<size_t>(n_vocab_);
    const int32_t greedy = candidates(logits, history);
    std::fill(out, out + V, 0.0f);
    if (greedy >= 0) {
        out[greedy] = 1.0f;
        return;
    }
    for (size_t i = 0; i < idx_.size(); ++i) out[idx_[i]] = static_cast<float>(w_[i] / w_sum_);
}

double Sampler::uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

int32_t Sampler::draw(const float* p) {
    const size_t V = static_cast<size_t>(n_vocab_);
    double total = 0.0;
    for (size_t i = 0; i < V; ++i) {
        if (!(p[i] >= 0.0f) || std::isinf(p[i])) fail("draw: weights must be finite and >= 0");
        total += p[i];
    }
    if (!(total > 0.0)) fail("draw: every weight is zero");
    const double target = uniform() * total;
    double cum = 0.0;
    int32_t pick = -1;
    for (size_t i = 0; i < V; ++i) {
        if (p[i] <= 0.0f) continue;
        cum += p[i];
        pick = static_cast<int32_t>(i);
        if (target < cum) return pick;
    }
    return pick;
}

int32_t Sampler::candidates(const float* logits, const std::vector<int32_t>& history) {
    const size_t V = static_cast<size_t>(n_vocab_);
    work_.resize(V);
    process_logits(logits, history, work_.data());
    float* l = work_.data();

    // Greedy: strict '>' keeps the lowest id among equal maxima; starting from index 0 makes an
    // all -inf row return 0 (no NaN can reach here).
    if (!(p_.temperature > 0.0f)) {
        size_t best = 0;
        for (size_t i = 1; i < V; ++i)
            if (l[i] > l[best]) best = i;
        return static_cast<int32_t>(best);
    }

    float lmax = -kInf;
    for (size_t i = 0; i < V; ++i) lmax = std::max(lmax, l[i]);
    if (lmax == -kInf) fail("every logit is -inf after bias/suppress/penalties: no token can be sampled");
    if (lmax == kInf) {
        // softmax limit with infinite logits: uniform over the +inf tokens
        for (size_t i = 0; i < V; ++i) l[i] = l[i] == kInf ? 0.0f : -kInf;
        lmax = 0.0f;
    }
    const double m = lmax;

    // The total order of step 3: higher logit first, then lower id.
    auto before = [l](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); };

    // Candidate list in idx_. `sorted`: idx_ is in the total order (else ascending id).
    bool sorted = false;
    const size_t k = p_.top_k > 0 ? static_cast<size_t>(p_.top_k) : V;
    if (k < V) {
        // Bounded heap of the k best so far, its worst at the front: O(V) compares for the
        // typical token (rejected against the front), O(log k) for the few that enter.
        idx_.clear();
        for (size_t i = 0; i < V; ++i) {
            if (l[i] == -kInf) continue;
            const auto id = static_cast<int32_t>(i);
            if (idx_.size() < k) {
                idx_.push_back(id);
                std::push_heap(idx_.begin(), idx_.end(), before);
            } else if (before(id, idx_.front())) {
                std::pop_heap(idx_.begin(), idx_.end(), before);
                idx_.back() = id;
                std::push_heap(idx_.begin(), idx_.end(), before);
            }
        }
        std::sort_heap(idx_.begin(), idx_.end(), before);  // best first
        sorted = true;
    } else {
        idx_.clear();
        for (size_t i = 0; i < V; ++i)
            if (l[i] != -kInf) idx_.push_back(static_cast<int32_t>(i));
    }

    const bool use_top_p = p_.top_p < 1.0f, use_min_p = p_.min_p > 0.0f;
    if (use_top_p || use_min_p) {
        // e = exp(l - lmax) in (0, 1], exactly 1 for the maximum; in double so that the
        // mass of a 262144-token tail is not lost to float rounding.
        e_.resize(V);
        double Z = 0.0;
        for (int32_t id : idx_) {
            const double e = std::exp(static_cast<double>(l[id]) - m);
            e_[id] = e;
            Z += e;
        }
        if (use_min_p) {
            // Prefix of the order (p_max = 1 here); keeps the relative order of idx_.
            const double thr = p_.min_p;
            idx_.erase(std::remove_if(idx_.begin(), idx_.end(), [&](int32_t id) { return e_[id] < thr; }),
                       idx_.end());
        }
        if (use_top_p) {
            // Mass is relative to Z, the sum over the top-k survivors (before min-p: top-p
            // comes first). Walking the min-p-filtered list is the same: it is a prefix of
            // the order, and if the cut lies beyond it, everything it holds is kept anyway.
            const double target = static_cast<double>(p_.top_p) * Z;
            if (!sorted && idx_.size() <= 4096) {
                std::sort(idx_.begin(), idx_.end(), before);
                sorted = true;
            }
            if (sorted) {
                double cum = 0.0;
                size_t keep = idx_.size();
                for (size_t i = 0; i < idx_.size(); ++i) {
                    cum += e_[idx_[i]];
                    if (cum >= target) {
                        keep = i + 1;
                        break;
                    }
                }
                idx_.resize(keep);
            } else {
                top_p_by_buckets(target, m);
            }
        }
    }
    if (sorted) std::sort(idx_.begin(), idx_.end());  // the draw walks ascending ids

    // Temperature only now: weights exp((l - lmax) / T). T = +inf gives 1 for every kept token.
    const double T = p_.temperature;
    w_.resize(idx_.size());
    double W = 0.0;
    const bool reuse_e = T == 1.0 && (use_top_p || use_min_p);  // e_ already holds exp(l - lmax)
    for (size_t i = 0; i < idx_.size(); ++i) {
        const double w = reuse_e ? e_[idx_[i]] : std::exp((static_cast<double>(l[idx_[i]]) - m) / T);
        w_[i] = w;
        W += w;
    }
    w_sum_ = W;
    return -1;
}

}  // namespace unigemma::sampling
