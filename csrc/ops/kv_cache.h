// KV cache of the text decoder.
//
// One KVLayer per KV-owning layer (a KV-shared layer reads its source layer's KVLayer and
// owns nothing). Memory layout of one layer: `cap` slots, each slot one position:
//   k: [cap][n_kv_head] rows of head_dim elements, each row stored in the K type
//      (F32, F16, Q8_0 or Q4_0; quantized rows are whole blocks of 32 along head_dim)
//   v: the same with the V type.
// Slot of position p: sliding layers are a ring of cap = window + n_ubatch + kRollbackSlots
// slots (slot = p mod cap): a micro-batch of up to n_ubatch new tokens can be written while
// its earliest query still sees its whole window (window - 1 older keys), and the last
// kRollbackSlots positions can still be dropped again (rejected draft tokens, a chat turn
// re-rendered differently) without losing the window; memory does not depend on the
// context length. Full-attention layers use slot = p and grow in steps of kGrowSlots up
// to n_ctx (never more), so a short chat does not pay for a 256K context.
// slot_pos[s] holds the position stored in slot s (-1: empty); attention reads a key only if
// its slot still holds the position it wants, which also makes truncation safe to check.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gguf/ggml_types.h"

namespace unigemma::ops {

using gguf::GGMLType;

constexpr int64_t kRollbackSlots = 64;

struct KVLayerSpec {
    bool sliding = false;
    int n_kv_head = 0;
    int head_dim = 0;
};

class KVLayer {
public:
    // host_storage false: a device backend keeps the K / V rows (device_copy); this layer then
    // holds only the slot bookkeeping, and store() / k_row() / v_row() are not for use.
    KVLayer(const KVLayerSpec& s, int64_t window, int64_t n_ctx, int64_t n_ubatch, GGMLType tk, GGMLType tv,
            bool host_storage = true);
    bool sliding() const { return spec_.sliding; }
    int n_kv_head() const { return spec_.n_kv_head; }
    int head_dim() const { return spec_.head_dim; }
    GGMLType k_type() const { return tk_; }
    GGMLType v_type() const { return tv_; }
    size_t k_row_bytes() const { return k_row_; }
    size_t v_row_bytes() const { return v_row_; }
    int64_t slot(int64_t pos) const { return spec_.sliding ? pos % cap_ : pos; }
    bool holds(int64_t pos) const;  // the slot of pos currently holds pos
    // Makes room for positions [0, end) (full layers grow; throws ContextOverflowError past n_ctx).
    void reserve(int64_t end);
    // Stores head h of position pos from float rows (head_dim floats each), quantizing to the
    // cache types.
    void store(int64_t pos, int h, const float* k, const float* v);
    const uint8_t* k_row(int64_t pos, int h) const { return k_.data() + (slot(pos) * spec_.n_kv_head + h) * k_row_; }
    const uint8_t* v_row(int64_t pos, int h) const { return v_.data() + (slot(pos) * spec_.n_kv_head + h) * v_row_; }
    // Records that a device backend stored position pos (its slot now holds it), as store() does.
    void mark_stored(int64_t pos) { slot_pos_[static_cast<size_t>(slot(pos))] = pos; }
    void forget_from(int64_t pos);  // marks every slot holding a position >= pos empty
    void clear();
    // K / V bytes for the slots allocated now (on the host, or on the device that holds them)
    size_t bytes_allocated() const { return static_cast<size_t>(cap_) * spec_.n_kv_head * (k_row_ + v_row_); }
    int64_t capacity() const { return cap_; }  // slots allocated now
    int64_t max_capacity() const { return max_cap_; }
    // A device backend's copy of this layer (its own layout, ops/<backend>/), created on first
    // use there and freed with the layer; the host copy above stays the source of slot
    // bookkeeping (holds, forget_from) for every backend.
    std::shared_ptr<void> device_copy;
    // Bytes this layer would hold at n_ctx tokens of context (full layers) / always (sliding).
    static size_t bytes_at(const KVLayerSpec& s, int64_t window, int64_t n_ctx, int64_t n_ubatch, GGMLType tk,
                           GGMLType tv);

private:
    KVLayerSpec spec_;
    GGMLType tk_, tv_;
    size_t k_row_ = 0, v_row_ = 0;
    int64_t cap_ = 0;       // slots allocated
    int64_t max_cap_ = 0;   // slots at most (ring size, or n_ctx)
    bool host_storage_ = true;
    std::vector<uint8_t> k_, v_;
    std::vector<int64_t> slot_pos_;
};

// Cache element types accepted for K and V; throws InputError naming the option otherwise.
GGMLType kv_type_from_name(const std::string& name, const char* what);
// Checks that head_dim fits the type's block size (Q8_0 / Q4_0 need multiples of 32).
void check_kv_type(GGMLType t, int head_dim, const char* what);

}  // namespace unigemma::ops
