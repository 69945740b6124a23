// The WebGPU backend behind ops/backend.h: device memory, WGSL kernels (shaders/, embedded
// at build time), one command submission per forward.
//
// Addresses. ops::Tensor carries a float*; a WebGPU buffer has no address. Each device
// buffer is given a range of reserved, inaccessible host address space of its size
// (mmap PROT_NONE): Tensor::data arithmetic (rows_of, carving an arena) works unchanged, the
// backend resolves an address to (buffer, byte offset), and a host dereference of a device
// tensor faults at once instead of reading stale memory.
//
// Weights stay in the file's blocks (no repacking): a WeightCache (one per model, shared by
// its contexts) uploads each matrix once on first use, keyed by its host address, split into
// row chunks no larger than the adapter's largest storage binding. Norm vectors, biases and
// RoPE frequencies are cached the same way. The KV cache lives on the device (KVLayer::
// device_copy, layout in shaders/attention.wgsl), F32 or F16.
//
// Numerics: activations stay float32 through every matmul (act_levels is ignored: no 8-bit
// activation rounding), so a quantized matmul is the exact product of the decoded weights up
// to float32 summation, closer to float64 than the CPU's. Every kernel's reduction order
// depends only on the row length, never on the number of rows in the call (decode ==
// verify == prefill rows, bitwise, on this backend).
#pragma once
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "ops/backend.h"
#include "ops/webgpu/device.h"

namespace unigemma::webgpu {

using gguf::GGMLType;

// Device copies of a model's weights (keyed by host address). Shared by every context of
// the model; freed with the model.
class WeightCache {
public:
    explicit WeightCache(std::shared_ptr<Device> dev) : dev_(std::move(dev)) {}
    ~WeightCache();
    struct Chunk {
        WGPUBuffer buf = nullptr;
        int64_t row0 = 0, rows = 0;
        uint64_t bytes = 0;
    };
    const std::vector<Chunk>& matrix(const ops::WeightView& w);
    // n floats at host (norm weights, biases, RoPE frequencies)
    WGPUBuffer vector(const float* host, size_t n, uint64_t* bytes);
    uint64_t bytes() const { return bytes_; }

private:
    std::shared_ptr<Device> dev_;
    std::mutex mu_;
    std::map<const void*, std::vector<Chunk>> matrices_;
    std::map<const void*, std::pair<WGPUBuffer, uint64_t>> vectors_;
    uint64_t bytes_ = 0;
};

class WebGpuBackend final : public ops::Backend {
public:
    WebGpuBackend(std::shared_ptr<Device> dev, std::shared_ptr<WeightCache> weights);
    ~WebGpuBackend() override;
    const char* name() const override { return "webgpu"; }
    std::unique_ptr<ops::Buffer> alloc(size_t n_floats) override;
    ops::MatmulSupport matmul_support(GGMLType type, int64_t cols) const override;
    void begin_forward() override;
    void end_forward() override;
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
    ops::Tensor output_tensor(float* host, int64_t rows, int64_t cols) override;
    void read(ops::Tensor x, float* host) override;
    void write(ops::Tensor x, const float* host) override;

    Device& device() { return *dev_; }

    // A binding of part of a buffer: the window [offset, offset + size) and the element
    // offset of the tensor inside it.
    struct Bind {
        WGPUBuffer buf = nullptr;
        uint64_t offset = 0, size = 0;
        uint32_t elem = 0;
    };

private:
    struct KVMirror;
    struct Staging {
        WGPUBuffer buf = nullptr;
        uint64_t cap = 0, used = 0;
    };
    struct PendingRead {
        size_t staging;
        uint64_t offset, bytes;
        float* host;
    };
    Bind bind_tensor(const float* data, int64_t n, const char* op);
    Bind bind_whole(WGPUBuffer b, uint64_t bytes);
    Bind bind_vector(const float* host, size_t n);  // a cached weight vector
    Bind upload(const void* data, size_t bytes);  // per-forward host data (ids, positions, rows)
    Bind params(const void* p, size_t bytes);      // a dispatch's parameter slot
    void ensure_encoder();
    void ensure_pass();
    void end_pass();
    void dispatch(const Device::Pipeline& pipe, const char* op, const Bind& param, std::initializer_list<Bind> binds,
                  uint32_t gx, uint32_t gy, uint32_t gz);
    void flush();          // submits what is recorded, waits, copies the reads out
    void discard();        // drops what is recorded
    void reset_arenas();   // after either
    KVMirror& mirror(const ops::KVLayer& kv);
    void elementwise(const char* entry, ops::Tensor x, const Bind& y, uint32_t cols, float s, const Bind* meta,
                     uint32_t n_rows);
    void matmul_impl(const ops::WeightView& w, const int32_t* ids, ops::Tensor x, ops::Tensor y, const char* op);
    void attention_impl(const ops::KVLayer& kv, ops::Tensor q, ops::Tensor out, int n_head, float scale,
                        const ops::AttentionCall* call, int64_t lo, int64_t hi);

    std::shared_ptr<Device> dev_;
    std::shared_ptr<WeightCache> weights_;
    WGPUBuffer dummy_ = nullptr;
    std::vector<WGPUBuffer> param_pages_, upload_pages_;  // arenas, reused by every submission
    size_t param_page_ = 0, upload_page_ = 0;
    uint64_t params_used_ = 0, uploads_used_ = 0, out_used_ = 0;
    std::unique_ptr<ops::Buffer> out_buf_;  // output_tensor's scratch (logits rows)
    std::vector<std::unique_ptr<ops::Buffer>> retired_;  // replaced scratch, until the submission ends
    std::vector<std::pair<WGPUBuffer, uint64_t>> release_after_flush_;  // oversized uploads (buffer, bytes)
    WGPUCommandEncoder enc_ = nullptr;
    WGPUComputePassEncoder pass_ = nullptr;
    bool in_forward_ = false;
    std::vector<Staging> staging_;
    std::vector<PendingRead> reads_;
};

// Resolves an address handed out by a WebGPU buffer: false when it is not one.
bool resolve_address(const void* p, WGPUBuffer* buf, uint64_t* byte_offset, uint64_t* buf_bytes);

}  // namespace unigemma::webgpu
