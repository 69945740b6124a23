#include "ops/kv_cache.h"

#include <algorithm>

#include "base/error.h"
#include "quant/quant.h"

namespace unigemma::ops {

namespace {
constexpr int64_t kGrowSlots = 256;  // full layers grow by at least this many positions
}  // namespace

GGMLType kv_type_from_name(const std::string& name, const char* what) {
    if (name == "f32") return GGMLType::F32;
    if (name == "f16") return GGMLType::F16;
    if (name == "q8_0") return GGMLType::Q8_0;
    if (name == "q4_0") return GGMLType::Q4_0;
    throw InputError(std::string("[kv_cache] ") + what + " type '" + name + "' is not one of f32, f16, q8_0, q4_0");
}

void check_kv_type(GGMLType t, int head_dim, const char* what) {
    const auto tr = gguf::type_traits(static_cast<uint32_t>(t));
    if (head_dim % tr.block_size != 0)
        throw InputError(std::string("[kv_cache] ") + what + " type " + tr.name + " needs a head_dim that is a multiple of " +
                         std::to_string(tr.block_size) + ", this model has head_dim " + std::to_string(head_dim));
}

size_t KVLayer::bytes_at(const KVLayerSpec& s, int64_t window, int64_t n_ctx, int64_t n_ubatch, GGMLType tk,
                         GGMLType tv) {
    const int64_t slots = s.sliding ? std::min(n_ctx, window + n_ubatch + kRollbackSlots) : n_ctx;
    const size_t per_slot = (quant::row_bytes(tk, s.head_dim) + quant::row_bytes(tv, s.head_dim)) * s.n_kv_head;
    return per_slot * static_cast<size_t>(slots);
}

KVLayer::KVLayer(const KVLayerSpec& s, int64_t window, int64_t n_ctx, int64_t n_ubatch, GGMLType tk, GGMLType tv,
                 bool host_storage)
    : spec_(s), tk_(tk), tv_(tv), host_storage_(host_storage) {
    check_kv_type(tk, s.head_dim, "K cache");
    check_kv_type(tv, s.head_dim, "V cache");
    k_row_ = quant::row_bytes(tk, s.head_dim);
    v_row_ = quant::row_bytes(tv, s.head_dim);
    if (s.sliding) {
        // Ring: fixed size, allocated now. Position p -> slot p % cap_, so cap_ must not
        // change once positions are stored.
        max_cap_ = cap_ = std::min(n_ctx, window + n_ubatch + kRollbackSlots);
        if (host_storage_) {
            k_.assign(static_cast<size_t>(cap_) * s.n_kv_head * k_row_, 0);
            v_.assign(static_cast<size_t>(cap_) * s.n_kv_head * v_row_, 0);
        }
        slot_pos_.assign(static_cast<size_t>(cap_), -1);
    } else {
        max_cap_ = n_ctx;
        cap_ = 0;
    }
}

bool KVLayer::holds(int64_t pos) const {
    if (pos < 0) return false;
    const int64_t s = slot(pos);
    return s < cap_ && slot_pos_[static_cast<size_t>(s)] == pos;
}

void KVLayer::reserve(int64_t end) {
    if (end > max_cap_ && !spec_.sliding)
        throw ContextOverflowError("[kv_cache] position " + std::to_string(end - 1) + " is past the context of " +
                                   std::to_string(max_cap_) + " tokens");
    if (spec_.sliding || end <= cap_) return;
    const int64_t want = std::min(max_cap_, std::max(end, std::max(cap_ + cap_ / 2, cap_ + kGrowSlots)));
    if (host_storage_) {
        k_.resize(static_cast<size_t>(want) * spec_.n_kv_head * k_row_, 0);
        v_.resize(static_cast<size_t>(want) * spec_.n_kv_head * v_row_, 0);
    }
    slot_pos_.resize(static_cast<size_t>(want), -1);
    cap_ = want;
}

void KVLayer::store(int64_t pos, int h, const float* k, const float* v) {
    if (!host_storage_) throw Error("[kv_cache] store() on a layer whose rows live on a device");
    const int64_t s = slot(pos);
    uint8_t* kd = k_.data() + (s * spec_.n_kv_head + h) * k_row_;
    uint8_t* vd = v_.data() + (s * spec_.n_kv_head + h) * v_row_;
    quant::quantize_rows(tk_, k, kd, 1, spec_.head_dim, 1);
    quant::quantize_rows(tv_, v, vd, 1, spec_.head_dim, 1);
    slot_pos_[static_cast<size_t>(s)] = pos;
}

void KVLayer::forget_from(int64_t pos) {
    for (auto& p : slot_pos_)
        if (p >= pos) p = -1;
}

void KVLayer::clear() { std::fill(slot_pos_.begin(), slot_pos_.end(), -1); }

}  // namespace unigemma::ops
