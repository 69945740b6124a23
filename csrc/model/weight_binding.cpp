// Shared metadata / tensor binding helpers of the model loaders (see weight_binding.h).
#include "model/weight_binding.h"

#include <cmath>
#include <cstring>

#include "base/error.h"
#include "ops/cpu/kernels.h"
#include "quant/quant.h"

namespace unigemma::model::detail {

using gguf::GGUFFile;
using gguf::TensorInfo;
using gguf::ValueType;

std::vector<int64_t> per_layer_uint(const GGUFFile& f, const std::string& key, int n_layer, const char* tag) {
    const std::string t(tag);
    const auto* v = f.find(key);
    if (!v) throw ModelError(t + " missing metadata key " + key);
    std::vector<int64_t> out(static_cast<size_t>(n_layer));
    if (v->type == ValueType::ARRAY) {
        if (v->count != static_cast<uint64_t>(n_layer))
            throw ModelError(t + " " + key + " has " + std::to_string(v->count) + " entries, expected " +
                             std::to_string(n_layer));
        for (int i = 0; i < n_layer; ++i) {
            int64_t x = 0;
            if (v->elem_type == ValueType::INT32) {
                int32_t e;
                std::memcpy(&e, v->elems + 4 * i, 4);
                x = e;
            } else if (v->elem_type == ValueType::UINT32) {
                uint32_t e;
                std::memcpy(&e, v->elems + 4 * i, 4);
                x = e;
            } else {
                throw ModelError(t + " " + key + " must be an array of 32-bit integers");
            }
            out[static_cast<size_t>(i)] = x;
        }
    } else {
        const int64_t x = static_cast<int64_t>(f.get_uint(key));
        for (auto& o : out) o = x;
    }
    return out;
}

float float_or(const GGUFFile& f, const std::string& key, float dflt) {
    return f.find(key) ? static_cast<float>(f.get_float(key)) : dflt;
}

std::vector<float> rope_inv_freq(float base, int dim, int rotated_pairs, float factor) {
    std::vector<float> inv(static_cast<size_t>(dim / 2), 0.0f);
    for (int i = 0; i < rotated_pairs && i < dim / 2; ++i)
        inv[static_cast<size_t>(i)] =
            (1.0f / std::pow(base, static_cast<float>(2 * i) / static_cast<float>(dim))) / factor;
    return inv;
}

int rope_rotated_pairs(const GGUFFile& f, int hd_full, const char* tag) {
    int rotated = hd_full / 2;
    if (const float* ff = bind_f32(f, "rope_freqs.weight", hd_full / 2, false, tag)) {
        rotated = 0;
        while (rotated < hd_full / 2 && ff[rotated] < 1e20f) ++rotated;
        for (int i = rotated; i < hd_full / 2; ++i)
            if (ff[i] < 1e20f) throw ModelError(std::string(tag) + " rope_freqs.weight: rotated pairs must come first");
    } else if (f.find("unigemma.rope.partial_rotary_factor")) {
        rotated = static_cast<int>(f.get_float("unigemma.rope.partial_rotary_factor") * hd_full / 2);
    }
    return rotated;
}

Weight bind_weight(const GGUFFile& f, const std::string& name, bool required, const char* tag) {
    const TensorInfo* t = f.find_tensor(name);
    if (!t) {
        if (required) throw ModelError(std::string(tag) + " missing tensor " + name);
        return {};
    }
    if (t->n_dims > 2) throw ModelError(std::string(tag) + " tensor " + name + " must be 1-D or 2-D");
    Weight w;
    w.data = t->data;
    w.type = static_cast<GGMLType>(t->type);
    w.cols = static_cast<int64_t>(t->ne[0]);
    w.rows = static_cast<int64_t>(t->ne[1]);
    w.row_bytes = quant::row_bytes(w.type, w.cols);
    return w;
}

const float* bind_f32(const GGUFFile& f, const std::string& name, int64_t n, bool required, const char* tag) {
    const TensorInfo* t = f.find_tensor(name);
    if (!t) {
        if (required) throw ModelError(std::string(tag) + " missing tensor " + name);
        return nullptr;
    }
    if (static_cast<GGMLType>(t->type) != GGMLType::F32 || t->n_elements != static_cast<uint64_t>(n))
        throw ModelError(std::string(tag) + " tensor " + name + " must be F32 with " + std::to_string(n) + " elements");
    return reinterpret_cast<const float*>(t->data);
}

void check_matmul_weight(const Weight& w, const std::string& name, const char* tag) {
    const auto id = static_cast<uint32_t>(w.type);
    const auto tr = gguf::type_traits(id);
    const std::string tn = tr.name ? tr.name : "type id " + std::to_string(id);
    const cpu::KernelTable& k = cpu::kernels();
    if (id >= static_cast<uint32_t>(cpu::kMaxTypeId) || (!k.vec_dot[id] && !k.tile_dot[id]))
        throw ModelError(std::string(tag) + " tensor " + name + ": type " + tn + " has no matmul kernel on the " +
                         (k.isa ? k.isa : "?") + " path");
    GGMLType at;
    try {
        at = cpu::activation_type(w.type);
    } catch (const InputError&) {
        throw ModelError(std::string(tag) + " tensor " + name + ": type " + tn + " has no activation format");
    }
    const int64_t ab = gguf::type_traits(static_cast<uint32_t>(at)).block_size;
    if (w.cols % tr.block_size != 0 || w.cols % ab != 0)
        throw ModelError(std::string(tag) + " tensor " + name + ": row length " + std::to_string(w.cols) +
                         " is not a multiple of the " + tn + " block size");
}

}  // namespace unigemma::model::detail
