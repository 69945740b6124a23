// MMProjector: the Gemma 4 Unified vision / audio embedders over a clip GGUF (see mm_projector.h).
#include "model/mm_projector.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/error.h"
#include "base/thread_pool.h"
#include "model/backend_choice.h"
#include "quant/quant.h"

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

// Matrix of PyTorch shape [rows, cols] (ne [cols, rows]) that the backend's matmul reads in place.
Weight matrix(const GGUFFile& f, const ops::Backend& be, const std::string& name, uint64_t cols, uint64_t rows) {
    const TensorInfo& t = need_tensor(f, name, {cols, rows});
    const auto type = static_cast<GGMLType>(t.type);
    const ops::MatmulSupport ms = be.matmul_support(type, static_cast<int64_t>(cols));
    if (ms.kind == ops::MatmulSupport::NoKernel) unsupported("tensor '" + name + "': " + ms.why);
    if (ms.kind == ops::MatmulSupport::RowLength) bad_file("tensor '" + name + "': " + ms.why);
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

}  // namespace

MMProjector::MMProjector(const std::string& path, int n_threads, const std::string& backend)
    : MMProjector(open_file(path), n_threads, backend) {}

MMProjector::MMProjector(std::shared_ptr<const GGUFFile> file, int n_threads, const std::string& backend)
    : file_(std::move(file)), n_threads_(n_threads) {
    if (n_threads < 0 || n_threads > base::kMaxThreads)
        throw InputError("[mmproj] n_threads must be in [0, " + std::to_string(base::kMaxThreads) + "], got " +
                         std::to_string(n_threads));
    backend_ = make_backend(backend, n_threads_, device_weights_, "[mmproj]");
    load();
}

float* MMProjector::scratch(size_t n) const {
    if (!arena_ || arena_->n_floats() < n) {
        arena_.reset();  // the old buffer goes before the new one comes
        arena_ = backend_->alloc(n);
    }
    return arena_->data();
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
    patch_w_ = matrix(f, *backend_, "v.patch_embd.weight", n_in, D);
    patch_b_ = f32_vec(f, "v.patch_embd.bias", D);
    ln2_w_ = f32_vec(f, "v.patch_norm.2.weight", D);
    ln2_b_ = f32_vec(f, "v.patch_norm.2.bias", D);
    ln3_w_ = f32_vec(f, "v.patch_norm.3.weight", D);
    ln3_b_ = f32_vec(f, "v.patch_norm.3.bias", D);
    vision_proj_ = matrix(f, *backend_, "mm.input_projection.weight", D, H);

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
    audio_proj_ = matrix(f, *backend_, "mm.a.input_projection.weight", n, H);
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
    const int64_t n_in = vhp_.n_in, D = vhp_.n_embd, H = n_embd_text_, P = vhp_.n_pos;
    std::vector<int64_t> rows;  // input row of each output row
    rows.reserve(static_cast<size_t>(n_valid));
    for (int64_t i = 0; i < n; ++i)
        if (pos_xy[2 * i] != -1) rows.push_back(i);
    for (const int64_t r : rows) {
        const float* src = patches + r * n_in;
        bool finite = true;
        for (int64_t i = 0; i < n_in; ++i) finite &= std::isfinite(src[i]);
        if (!finite)
            throw InputError("[mmproj] embed_image: patch " + std::to_string(r) + " holds a NaN or infinite value");
    }

    std::lock_guard<std::mutex> lock(mu_);
    ops::Backend& B = *backend_;
    const float ln_eps = vhp_.ln_eps, rms_eps = vhp_.rms_eps;
    const int64_t chunk = std::min(kVisionChunk, n_valid);
    float* base = scratch(static_cast<size_t>(chunk * (2 * n_in + D)));
    const ops::Tensor raw{base, chunk, n_in}, x{base + chunk * n_in, chunk, n_in}, h{base + 2 * chunk * n_in, chunk, D};
    // position-table rows of each output row of a chunk: x (column) table, y (row) table
    std::vector<int64_t> col_row(static_cast<size_t>(chunk)), row_row(static_cast<size_t>(chunk));

    for (int64_t r0 = 0; r0 < n_valid; r0 += chunk) {
        const int64_t nc = std::min(chunk, n_valid - r0);
        // the chunk's patches, one copy per run of consecutive input rows
        for (int64_t t = 0; t < nc;) {
            const int64_t first = rows[static_cast<size_t>(r0 + t)];
            int64_t e = t + 1;
            while (e < nc && rows[static_cast<size_t>(r0 + e)] == first + (e - t)) ++e;
            B.write(raw.rows_of(t, e - t), patches + first * n_in);
            t = e;
        }
        for (int64_t t = 0; t < nc; ++t) {
            const int64_t src_row = rows[static_cast<size_t>(r0 + t)];
            col_row[static_cast<size_t>(t)] = pos_xy[2 * src_row];
            row_row[static_cast<size_t>(t)] = P + pos_xy[2 * src_row + 1];
        }
        const ops::Tensor raw_c = raw.rows_of(0, nc), x_c = x.rows_of(0, nc), h_c = h.rows_of(0, nc);
        // LN1 over the raw patch, written in CHW order. Pixel values sit in [0, 1] with a
        // mean far from 0: the two-pass mean / variance in double keeps the variance exact.
        B.layer_norm_f64(x_c, raw_c, chw_src_.data(), ln1_w_, ln1_b_, ln_eps);
        B.matmul(patch_w_, x_c, h_c, kMatmulLevels);  // [nc, n_in] -> [nc, D]
        B.add_bias(h_c, patch_b_);
        B.layer_norm(h_c, h_c, ln2_w_, ln2_b_, ln_eps);
        // x_table[col] + y_table[row] first, then added (transformers' order)
        B.add_table_rows(h_c, pos_table_, col_row.data(), row_row.data());
        B.layer_norm(h_c, h_c, ln3_w_, ln3_b_, ln_eps);
        B.rms_norm(h_c, h_c, nullptr, rms_eps);
        const ops::Tensor o = B.output_tensor(out + r0 * H, nc, H);
        B.matmul(vision_proj_, h_c, o, kMatmulLevels);  // [nc, D] -> [nc, H]
        B.read(o, out + r0 * H);
    }
    file_->check_intact();  // weights read as zeros past a truncation of the mapped file
    return n_valid;
}

void MMProjector::embed_audio(const float* frames, int64_t n, float* out) const {
    if (!has_audio()) throw InputError("[mmproj] this projector has no audio embedder");
    if (n < 0) throw InputError("[mmproj] embed_audio: negative frame count");
    if (n == 0) return;
    if (!frames || !out) throw InputError("[mmproj] embed_audio: null buffer");
    const int64_t F = ahp_.frame, H = n_embd_text_;
    for (int64_t r = 0; r < n; ++r) {
        const float* src = frames + r * F;
        bool finite = true;
        for (int64_t i = 0; i < F; ++i) finite &= std::isfinite(src[i]);
        if (!finite)
            throw InputError("[mmproj] embed_audio: frame " + std::to_string(r) + " holds a NaN or infinite sample");
    }

    std::lock_guard<std::mutex> lock(mu_);
    ops::Backend& B = *backend_;
    const float eps = ahp_.rms_eps;
    const int64_t chunk = std::min(kAudioChunk, n);
    float* base = scratch(static_cast<size_t>(2 * chunk * F));
    const ops::Tensor raw{base, chunk, F}, x{base + chunk * F, chunk, F};
    for (int64_t r0 = 0; r0 < n; r0 += chunk) {
        const int64_t nc = std::min(chunk, n - r0);
        const ops::Tensor raw_c = raw.rows_of(0, nc), x_c = x.rows_of(0, nc);
        B.write(raw_c, frames + r0 * F);
        B.rms_norm(x_c, raw_c, nullptr, eps);
        const ops::Tensor o = B.output_tensor(out + r0 * H, nc, H);
        B.matmul(audio_proj_, x_c, o, kMatmulLevels);  // [nc, frame] -> [nc, H]
        B.read(o, out + r0 * H);
    }
    file_->check_intact();
}

}  // namespace unigemma::model
