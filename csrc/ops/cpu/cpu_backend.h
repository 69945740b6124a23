// The CPU backend behind ops/backend.h: host memory, the per-ISA kernel table (kernels.h),
// the matmul drivers (matmul.h, panels.h) and tiled attention (attention.h).
//
// Threads: matmul and attention split their work on the pool as before; the element-wise ops
// split rows (or, for the flat ones, 64-element-aligned chunks) over the pool once a call is
// large enough to pay for the hand-off (a prefill micro-batch), and run on the calling thread
// for a decode step. A row's bits do not depend on the split: every kernel is a per-row (or
// per-element) function, and a flat chunk boundary is a multiple of every ISA's vector width,
// so each element takes the same vector-or-tail path as in one call over the whole array.
#pragma once
#include "ops/backend.h"
#include "ops/cpu/kernels.h"

namespace unigemma::cpu {

class CpuBackend final : public ops::Backend {
public:
    // n_threads: 0 = the pool default.
    explicit CpuBackend(int n_threads);
    const char* name() const override { return "cpu"; }
    std::unique_ptr<ops::Buffer> alloc(size_t n_floats) override;
    ops::MatmulSupport matmul_support(GGMLType type, int64_t cols) const override;
    void embed(const ops::WeightView& E, const int32_t* tokens, const int8_t* kinds, const float* embd, float scale,
               ops::Tensor x) override;
    void matmul(const ops::WeightView& w, ops::Tensor x, ops::Tensor y, int act_levels) override;
    void rms_norm(ops::Tensor y, ops::Tensor x, const float* w, float eps) override;
    void head_norm_rope(ops::Tensor x, int head_dim, const float* w, float eps, const int64_t* pos,
                        const float* inv_freq) override;
    void add(ops::Tensor x, ops::Tensor y) override;
    void scale(ops::Tensor x, float s) override;
    void copy(ops::Tensor dst, ops::Tensor src) override;
    void gelu_tanh_mul(ops::Tensor g, ops::Tensor u) override;
    void softcap(ops::Tensor x, float cap) override;
    void layer_norm(ops::Tensor y, ops::Tensor x, const float* w, const float* b, float eps) override;
    void layer_norm_f64(ops::Tensor y, ops::Tensor x, const int32_t* src, const float* w, const float* b,
                        float eps) override;
    void add_bias(ops::Tensor x, const float* b) override;
    void add_table_rows(ops::Tensor x, const float* table, const int64_t* ra, const int64_t* rb) override;
    void kv_store(ops::KVLayer& kv, ops::Tensor k, ops::Tensor v, const int64_t* pos) override;
    void attention(const ops::KVLayer& kv, ops::Tensor q, ops::Tensor out, const ops::AttentionCall& call) override;
    void attention_range(const ops::KVLayer& kv, ops::Tensor q, ops::Tensor out, int n_head, float scale, int64_t lo,
                         int64_t hi) override;
    void matmul_rows(const ops::WeightView& w, const int32_t* row_ids, ops::Tensor x, ops::Tensor y,
                     int act_levels) override;
    ops::Tensor output_tensor(float* host, int64_t rows, int64_t cols) override { return {host, rows, cols}; }
    void read(ops::Tensor x, float* host) override;
    void write(ops::Tensor x, const float* host) override;

    int n_threads() const { return n_threads_; }

private:
    const KernelTable& k_;
    int n_threads_;
};

}  // namespace unigemma::cpu
