// Token sampling from one row of logits. Order of operations (llama.cpp / transformers
// users' expectations): logit bias and suppressed tokens -> repetition / frequency / presence
// penalties over the last `penalty_last_n` tokens -> greedy if temperature <= 0, else
// top-k -> top-p -> min-p -> temperature -> softmax -> draw from the seeded generator.
#pragma once
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace unigemma::sampling {

struct SamplerParams {
    float temperature = 0.0f;        // <= 0: greedy (argmax, lowest id on ties)
    int32_t top_k = 0;               // <= 0: off
    float top_p = 1.0f;              // >= 1: off
    float min_p = 0.0f;              // <= 0: off
    float repetition_penalty = 1.0f; // 1: off (CTRL style: logit > 0 ? l / p : l * p)
    float frequency_penalty = 0.0f;  // logit -= f * count
    float presence_penalty = 0.0f;   // logit -= p * (count > 0)
    int32_t penalty_last_n = 64;     // window of history the penalties see; -1: all
    uint64_t seed = 0;
    std::vector<std::pair<int32_t, float>> logit_bias;  // added to the logit; -inf bans
    std::vector<int32_t> suppress;                      // always -inf (e.g. tokenizer.ggml.suppress_tokens)
};

class Sampler {
public:
    Sampler(SamplerParams p, int32_t n_vocab);  // throws InputError on bad parameters (names the field)
    // Samples from logits[0..n_vocab) (not modified); `history` are the tokens so far
    // (prompt + generated) for the penalties.
    int32_t sample(const float* logits, const std::vector<int32_t>& history);
    void reseed(uint64_t seed);
    // The distribution sample() draws from, as probabilities over the vocabulary (0 for tokens
    // the filters removed; greedy: one-hot at the argmax). Speculative sampling needs p and q.
    void probs(const float* logits, const std::vector<int32_t>& history, float* out);
    // One uniform double in [0, 1) from the sampler's generator (53 random bits).
    double uniform();
    // Draws a token from non-negative weights p[0..n_vocab) (need not sum to 1) with the
    // sampler's generator; throws InputError if every weight is zero.
    int32_t draw(const float* p);
    const SamplerParams& params() const { return p_; }
    int32_t n_vocab() const { return n_vocab_; }
    // The first stage of sample() on its own: logit bias, suppressed tokens and penalties
    // applied to logits[0..n_vocab), written to out[0..n_vocab) (may alias logits). Throws
    // InputError on NaN logits or out-of-range history ids.
    void process_logits(const float* logits, const std::vector<int32_t>& history, float* out);

private:
    // Bias/penalties/filters of one row: returns the greedy token (temperature <= 0), else -1
    // with the kept tokens in idx_ (ascending id) and their weights in w_, summing to w_sum_.
    int32_t candidates(const float* logits, const std::vector<int32_t>& history);
    void top_p_by_buckets(double target, double lmax);

    SamplerParams p_;
    int32_t n_vocab_;
    std::mt19937_64 rng_;
    std::vector<float> work_;
    std::vector<int32_t> idx_;
    std::vector<std::pair<int32_t, double>> bias_;  // sorted by id, duplicates summed
    std::vector<int32_t> suppress_;                  // sorted, unique
    std::vector<int32_t> hist_;                      // penalty window, sorted for counting
    std::vector<double> e_;                          // exp(l - max) by token id (filters)
    std::vector<double> w_;                          // final weights, aligned with idx_
    double w_sum_ = 0.0;
    std::vector<int32_t> sel_;                       // top-p: tokens of the boundary bucket
    std::vector<double> mass_;                       // top-p: probability mass per logit bucket
};

}  // namespace unigemma::sampling
