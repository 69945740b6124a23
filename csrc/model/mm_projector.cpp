// MMProjector: the Gemma 4 Unified vision / audio embedders over a clip GGUF (see mm_projector.h).
#include "model/mm_projector.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/error.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/matmul.h"
#include "quant/quant.h"
#include "base/thread_pool.h"

namespace unigemma::model {

namespace {

using gguf::GGUFFile;
using gguf::TensorInfo;
using gguf::ValueType;

// Patches / frames per pass: bounds the scratch (256 x 6912 floats = 7 MB) while keeping the
// matmuls GEMM-shaped; a multiple of the matmul tile width, so a row's result does not depend
// on where a chunk starts.
constexpr int64_t kVisionChunk = 256;
constexpr int64_t kAudioChunk = 1024;
// Sanity limits on sizes read from the file (the real model: H 3840, D_v 3840, P 1120).
constexpr uint64_t kMaxDim = uint64_t(1) << 20;
constexpr int kMatmulLevels = 2;  // two 8-bit activation levels for quantized weights

[[noreturn]] void bad_file(const std::string& msg) { throw GGUFError("[mmproj] " + msg); }
[[noreturn]] void unsupported(const std::string& msg) { throw ModelError("[mmproj] " + msg); }

// The reader's typed getters say "[gguf] key 'k': ..."; here the same problem is an mmproj one.
template <class F>
auto retag(F&& get) -> decltype(get()) {
    try {
        return get();
    } catch (const GGUFError& e) {
        std::string m = e.what();
        if (m.rfind("[gguf] ", 0) == 0) m = m.substr(7);
        bad_file(m);
    }
}

uint64_t key_uint(const GGUFFile& f, const std::string& k) { return retag([&] { return f.get_uint(k); }); }
std::string key_string(const GGUFFile& f, const std::string& k) { return retag([&] { return f.get_string(k); }); }
bool key_bool_or(const GGUFFile& f, const std::string& k, bool dflt) {
    return f.find(k) ? retag([&] { return f.get_bool(k); }) : dflt;
}

// A norm's epsilon: the first of `keys` present, else dflt; must be a finite value in (0, 1).
float eps_from(const GGUFFile& f, std::initializer_list<const char*> keys, float dflt) {
    for (const char* k : keys) {
        if (!f.find(k)) continue;
        const double e = retag([&] { return f.get_float(k); });
        if (!(e > 0.0 && e < 1.0)) bad_file("key '" + std::string(k) + "': epsilon " + std::to_string(e) +
                                            " is outside (0, 1)");
        return static_cast<float>(e);
    }
    return dflt;
}

std::string shape_of(const TensorInfo& t) {
    std::string s = "[";
    for (uint32_t d = 0; d < t.n_dims; ++d) s += (d ? ", " : "") + std::to_string(t.ne[d]);
    return s + "]";
}

// Dimensions as ne (fastest first), trailing 1s ignored.
bool shape_is(const TensorInfo& t, std::initializer_list<uint64_t> ne) {
    std::vector<uint64_t> got(t.ne, t.ne + t.n_dims), want(ne);
    while (got.size() > 1 && got.back() == 1) got.pop_back();
    while (want.size() > 1 && want.back() == 1) want.pop_back();
    return got == want;
}

std::string ne_str(std::initializer_list<uint64_t> ne) {
    std::string s = "[";
    size_t i = 0;
    for (uint64_t x : ne) s += (i++ ? ", " : "") + std::to_string(x);
    return s + "]";
}

const TensorInfo& need_tensor(const GGUFFile& f, const std::string& name, std::initializer_list<uint64_t> ne) {
    const TensorInfo* t = f.find_tensor(name);
    if (!t) bad_file("missing required tensor '" + name + "'");
    if (!shape_is(*t, ne))
        bad_file("tensor '" + name + "': shape " + shape_of(*t) + " disagrees with the keys, expected " + ne_str(ne));
    return *t;
}

// 1-D F32 view (norm weights and biases are always F32 in GGUF).
const float* f32_vec(const GGUFFile& f, const std::string& name, uint64_t n) {
    const TensorInfo& t = need_tensor(f, name, {n});
    if (static_cast<GGMLType>(t.type) != GGMLType::F32)
        unsupported("tensor '" + name + "': type " + gguf::type_traits(t.type).name + ", expected F32");
    return reinterpret_cast<const float*>(t.data);
}

// Matrix of PyTorch shape [rows, cols] (ne [cols, rows]) read by cpu::matmul in place.
Weight matrix(const GGUFFile& f, const std::string& name, uint64_t cols, uint64_t rows) {
    const TensorInfo& t = need_tensor(f, name, {cols, rows});
    const auto type = static_cast<GGMLType>(t.type);
    const auto tr = gguf::type_traits(t.type);
    GGMLType at;
    try {
        at = cpu::activation_type(type);
    } catch (const InputError&) {
        unsupported("tensor '" + name + "': type " + tr.name + " has no CPU matmul kernel");
    }
    const cpu::KernelTable& k = cpu::kernels();
    if (t.type >= static_cast<uint32_t>(cpu::kMaxTypeId) || (!k.vec_dot[t.type] && !k.tile_dot[t.type]))
        unsupported("tensor '" + name + "': type " + tr.name + " has no kernel on the " + (k.isa ? k.isa : "?") + " path");
    const auto ab = gguf::type_traits(static_cast<uint32_t>(at)).block_size;
    if (cols % tr.block_size != 0 || cols % ab != 0)
        bad_file("tensor '" + name + "': row length " + std::to_string(cols) + " is not a multiple of the " + tr.name +
                 " block size");
    Weight w;
    w.data = t.data;
    w.type = type;
    w.cols = static_cast<int64_t>(cols);
    w.rows = static_cast<int64_t>(rows);
    w.row_bytes = quant::row_bytes(type, w.cols);
    return w;
}

// A modality's projector type: its own key, else the file-wide clip.projector_type.
std::string projector_type(const GGUFFile& f, const std::string& modality) {
    const std::string k = "clip." + modality + ".projector_type";
    if (f.find(k)) return key_string(f, k);
    if (f.find("clip.projector_type")) return key_string(f, "clip.projector_type");
    bad_file("missing required key '" + k + "'");
}

uint64_t dim_key(const GGUFFile& f, const std::string& k) {
    const uint64_t v = key_uint(f, k);
    if (v == 0 || v > kMaxDim)
        bad_file("key '" + k + "': " + std::to_string(v) + " is outside [1, " + std::to_string(kMaxDim) + "]");
    return v;
}

// Opens the file; the reader's own errors (missing file, bad magic, truncation) keep their
// text, tagged as the projector's.
std::shared_ptr<const GGUFFile> open_file(const std::string& path) {
    try {
        return std::make_shared<const GGUFFile>(path);
    } catch (const GGUFError& e) {
        std::string m = e.what();
        if (m.rfind("[gguf] ", 0) == 0) m = m.substr(7);
        bad_file(m);
    }
}

void mm(const Weight& w, const float* x, int64_t n, float* y, int nt) {
    cpu::matmul(cpu::kernels(), w.type, w.data, w.rows, w.cols, w.row_bytes, x, n, y, nt, kMatmulLevels);
}

}  // namespace

MMProjector::MMProjector(const std::string& path, int n_threads)
    : MMProjector(open_file(path), n_threads) {}

MMProjector::MMProjector(std::shared_ptr<const GGUFFile> file, int n_threads)
    : file_(std::move(file)), n_threads_(n_threads) {
    if (n_threads < 0 || n_threads > base::kMaxThreads)
        throw InputError("[mmproj] n_threads must be in [0, " + std::to_string(base::kMaxThreads) + "], got " +
                         std::to_string(n_threads));
    load();
}

void MMProjector::load() {
    const GGUFFile& f = *file_;
    const std::string path = f.part_paths().empty() ? "?" : f.part_paths()[0];
    const std::string arch = f.find("general.architecture") ? key_string(f, "general.architecture") : "";
    if (arch != "clip")
        unsupported("'" + path + "' is " + (arch.empty() ? "a GGUF without general.architecture" : "a '" + arch + "' model") +
                    ", not a multimodal projector (architecture 'clip', the *-mmproj.gguf file)");
    const bool vision = key_bool_or(f, "clip.has_vision_encoder", false);
    const bool audio = key_bool_or(f, "clip.has_audio_encoder", false);
    if (!vision && !audio)
        bad_file("neither clip.has_vision_encoder nor clip.has_audio_encoder is true: no embedder in '" + path + "'");
    if (vision) load_vision();
    if (audio) load_audio();
    if (vision && audio) {
        const uint64_t ha = key_uint(f, "clip.audio.projection_dim");
        if (ha != static_cast<uint64_t>(n_embd_text_))
            bad_file("key 'clip.audio.projection_dim' (" + std::to_string(ha) + ") disagrees with " +
                     "'clip.vision.projection_dim' (" + std::to_string(n_embd_text_) + ")");
    }
}

void MMProjector::load_vision() {
    const GGUFFile& f = *file_;
    const std::string type = projector_type(f, "vision");
    if (type != "gemma4uv")
        unsupported("vision projector type '" + type + "' is not supported (this runtime runs gemma4uv)");
    const uint64_t H = dim_key(f, "clip.vision.projection_dim");
    const uint64_t D = dim_key(f, "clip.vision.embedding_length");
    // The file stores the teacher patch (16); the model patch merges merge x merge of them.
    const uint64_t teacher = dim_key(f, "clip.vision.patch_size");
    uint64_t merge = 3;
    if (f.find("unigemma.vision.pooling_kernel_size"))
        merge = dim_key(f, "unigemma.vision.pooling_kernel_size");
    else if (f.find("clip.vision.projector.scale_factor"))
        merge = dim_key(f, "clip.vision.projector.scale_factor");
    const uint64_t p = teacher * merge;
    if (teacher > 4096 || merge > 64) bad_file("clip.vision.patch_size x merge factor is implausibly large");
    const uint64_t n_in = p * p * 3;
    const TensorInfo* pe = f.find_tensor("v.position_embd.weight");
    if (!pe) bad_file("missing required tensor 'v.position_embd.weight'");
    const uint64_t P = pe->ne[1];
    if (P == 0 || P > kMaxDim) bad_file("tensor 'v.position_embd.weight': " + std::to_string(P) + " positions per axis");
    if (f.find("unigemma.vision.mm_posemb_size") && key_uint(f, "unigemma.vision.mm_posemb_size") != P)
        bad_file("key 'unigemma.vision.mm_posemb_size' disagrees with tensor 'v.position_embd.weight' " + shape_of(*pe));
    n_embd_text_ = static_cast<int64_t>(H);
    vhp_.n_embd = static_cast<int64_t>(D);
    vhp_.patch_size = static_cast<int64_t>(p);
    vhp_.n_in = static_cast<int64_t>(n_in);
    vhp_.n_pos = static_cast<int64_t>(P);
    vhp_.rms_eps = eps_from(f, {"unigemma.vision.rms_norm_eps", "clip.vision.attention.layer_norm_epsilon"}, 1e-6f);

    ln1_w_ = f32_vec(f, "v.patch_norm.1.weight", n_in);
    ln1_b_ = f32_vec(f, "v.patch_norm.1.bias", n_in);
    patch_w_ = matrix(f, "v.patch_embd.weight", n_in, D);
    patch_b_ = f32_vec(f, "v.patch_embd.bias", D);
    ln2_w_ = f32_vec(f, "v.patch_norm.2.weight", D);
    ln2_b_ = f32_vec(f, "v.patch_norm.2.bias", D);
    ln3_w_ = f32_vec(f, "v.patch_norm.3.weight", D);
    ln3_b_ = f32_vec(f, "v.patch_norm.3.bias", D);
    vision_proj_ = matrix(f, "mm.input_projection.weight", D, H);

    // pos table: ne = [D_v, P, 2]: the x (column) table first, then the y (row) table.
    const TensorInfo& pt = need_tensor(f, "v.position_embd.weight", {D, P, 2});
    const auto ptype = static_cast<GGMLType>(pt.type);
    if (ptype == GGMLType::F32) {
        pos_table_ = reinterpret_cast<const float*>(pt.data);
    } else {
        if (!quant::can_dequantize(ptype) || D % gguf::type_traits(pt.type).block_size != 0)
            unsupported(std::string("tensor 'v.position_embd.weight': type ") + gguf::type_traits(pt.type).name +
                        " cannot be read");
        pos_owned_.resize(static_cast<size_t>(2 * P * D));
        quant::dequantize_row(ptype, pt.data, pos_owned_.data(), static_cast<int64_t>(2 * P * D));
        pos_table_ = pos_owned_.data();
    }

    // HWC (the HF processor's order) -> CHW (the file's): element i = ch*p*p + r*p + c reads
    // input index (r*p + c)*3 + ch.
    chw_src_.resize(static_cast<size_t>(n_in));
    const uint64_t pp = p * p;
    for (uint64_t i = 0; i < n_in; ++i) {
        const uint64_t ch = i / pp, rc = i % pp;
        chw_src_[static_cast<size_t>(i)] = static_cast<int32_t>(rc * 3 + ch);
    }
}

void MMProjector::load_audio() {
    const GGUFFile& f = *file_;
    const std::string type = projector_type(f, "audio");
    if (type != "gemma4ua")
        unsupported("audio projector type '" + type + "' is not supported (this runtime runs gemma4ua)");
    const uint64_t H = dim_key(f, "clip.audio.projection_dim");
    const uint64_t n = dim_key(f, "clip.audio.embedding_length");
    if (n_embd_text_ == 0) n_embd_text_ = static_cast<int64_t>(H);
    ahp_.frame = static_cast<int64_t>(n);
    // llama.cpp ignores clip.audio.attention.layer_norm_epsilon and uses 1e-6, as HF's default.
    ahp_.rms_eps = eps_from(f, {"unigemma.audio.rms_norm_eps"}, 1e-6f);
    audio_proj_ = matrix(f, "mm.a.input_projection.weight", n, H);
}

int64_t MMProjector::count_image_tokens(const int32_t* pos_xy, int64_t n) const {
    if (!has_vision()) throw InputError("[mmproj] this projector has no vision embedder");
    if (n < 0) throw InputError("[mmproj] embed_image: negative patch count");
    const int64_t P = vhp_.n_pos;
    int64_t valid = 0;
    for (int64_t i = 0; i < n; ++i) {
        const int32_t x = pos_xy[2 * i], y = pos_xy[2 * i + 1];
        if (x == -1 && y == -1) continue;  // padding patch
        if (x < 0 || x >= P || y < 0 || y >= P)
            throw InputError("[mmproj] embed_image: position (" + std::to_string(x) + ", " + std::to_string(y) +
                             ") of patch " + std::to_string(i) + " is outside [0, " + std::to_string(P) +
                             ") (only (-1, -1) marks a padding patch)");
        ++valid;
    }
    return valid;
}

int64_t MMProjector::embed_image(const float* patches, const int32_t* pos_xy, int64_t n, float* out) const {
    if (n > 0 && (!patches || !pos_xy || !out)) throw InputError("[mmproj] embed_image: null buffer");
    const int64_t n_valid = count_image_tokens(pos_xy, n);
    if (n_valid == 0) return 0;
    std::vector<int64_t> rows;  // input row of each output row
    rows.reserve(static_cast<size_t>(n_valid));
    for (int64_t i = 0; i < n; ++i)
        if (pos_xy[2 * i] != -1) rows.push_back(i);

    const cpu::KernelTable& K = cpu::kernels();
    const int nt = n_threads_;
    const int64_t n_in = vhp_.n_in, D = vhp_.n_embd, H = n_embd_text_, P = vhp_.n_pos;
    const float ln_eps = vhp_.ln_eps, rms_eps = vhp_.rms_eps;
    const int64_t chunk = std::min(kVisionChunk, n_valid);
    std::vector<float> x(static_cast<size_t>(chunk * n_in)), h(static_cast<size_t>(chunk * D));

    for (int64_t r0 = 0; r0 < n_valid; r0 += chunk) {
        const int64_t nc = std::min(chunk, n_valid - r0);
        // LN1 over the raw patch, written in CHW order. Pixel values sit in [0, 1] with a
        // mean far from 0: the two-pass mean / variance in double keeps the variance exact.
        base::parallel_for(
            nc,
            [&](int64_t t, int) {
                const int64_t src_row = rows[static_cast<size_t>(r0 + t)];
                const float* src = patches + src_row * n_in;
                float* dst = x.data() + t * n_in;
                double s = 0.0;
                for (int64_t i = 0; i < n_in; ++i) s += src[i];
                if (!std::isfinite(s))
                    throw InputError("[mmproj] embed_image: patch " + std::to_string(src_row) +
                                     " holds a NaN or infinite value");
                const double mean = s / static_cast<double>(n_in);
                double v = 0.0;
                for (int64_t i = 0; i < n_in; ++i) {
                    const double d = src[i] - mean;
                    v += d * d;
                }
                const double rstd = 1.0 / std::sqrt(v / static_cast<double>(n_in) + ln_eps);
                const int32_t* perm = chw_src_.data();
                for (int64_t i = 0; i < n_in; ++i)
                    dst[i] = static_cast<float>((src[perm[i]] - mean) * rstd * ln1_w_[i] + ln1_b_[i]);
            },
            nt);
        mm(patch_w_, x.data(), nc, h.data(), nt);  // [nc, n_in] -> [nc, D]
        base::parallel_for(
            nc,
            [&](int64_t t, int) {
                const int64_t src_row = rows[static_cast<size_t>(r0 + t)];
                const int64_t col = pos_xy[2 * src_row], row = pos_xy[2 * src_row + 1];
                float* ht = h.data() + t * D;
                K.add(ht, ht, patch_b_, D);
                K.layer_norm(ht, ht, ln2_w_, ln2_b_, D, ln_eps);
                // x_table[col] + y_table[row] first, then added (transformers' order)
                const float* xe = pos_table_ + col * D;
                const float* ye = pos_table_ + (P + row) * D;
                for (int64_t d = 0; d < D; ++d) ht[d] += xe[d] + ye[d];
                K.layer_norm(ht, ht, ln3_w_, ln3_b_, D, ln_eps);
                K.rms_norm(ht, ht, nullptr, D, rms_eps);
            },
            nt);
        mm(vision_proj_, h.data(), nc, out + r0 * H, nt);  // [nc, D] -> [nc, H]
    }
    file_->check_intact();  // weights read as zeros past a truncation of the mapped file
    return n_valid;
}

void MMProjector::embed_audio(const float* frames, int64_t n, float* out) const {
    if (!has_audio()) throw InputError("[mmproj] this projector has no audio embedder");
    if (n < 0) throw InputError("[mmproj] embed_audio: negative frame count");
    if (n == 0) return;
    if (!frames || !out) throw InputError("[mmproj] embed_audio: null buffer");
    const cpu::KernelTable& K = cpu::kernels();
    const int nt = n_threads_;
    const int64_t F = ahp_.frame, H = n_embd_text_;
    const float eps = ahp_.rms_eps;
    const int64_t chunk = std::min(kAudioChunk, n);
    std::vector<float> x(static_cast<size_t>(chunk * F));
    for (int64_t r0 = 0; r0 < n; r0 += chunk) {
        const int64_t nc = std::min(chunk, n - r0);
        base::parallel_for(
            nc,
            [&](int64_t t, int) {
                const float* src = frames + (r0 + t) * F;
                for (int64_t i = 0; i < F; ++i)
                    if (!std::isfinite(src[i]))
                        throw InputError("[mmproj] embed_audio: frame " + std::to_string(r0 + t) +
                                         " holds a NaN or infinite sample");
                K.rms_norm(x.data() + t * F, src, nullptr, F, eps);
            },
            nt);
        mm(audio_proj_, x.data(), nc, out + r0 * H, nt);  // [nc, frame] -> [nc, H]
    }
    file_->check_intact();
}

}  // namespace unigemma::model
