// Multimodal projector of Gemma 4 Unified (GGUF architecture "clip", projector types
// gemma4uv = vision, gemma4ua = audio): the encoder-free embedders that turn preprocessed
// image patches / audio frames into vectors of the text model's hidden size H.
// Reads our converter's `*-mmproj.gguf` and llama.cpp's `convert_hf_to_gguf.py --mmproj`
// output (same names and layout; reference §3).
//
// Vision, per merged 48x48 patch (input: the HF processor's HWC-flattened 6912 values):
//   x   = HWC -> CHW permutation of the patch      (the GGUF stores patch_embd columns and
//                                                   patch_norm.1 in llama.cpp's CHW order)
//   h   = LN1(x)                 eps 1e-5, weight + bias (v.patch_norm.1), accumulated in double
//   h   = W_patch h + b          [6912] -> [D_v]   (v.patch_embd.weight/.bias)
//   h   = LN2(h)                 eps 1e-5          (v.patch_norm.2)
//   h   = h + (x_table[col] + y_table[row])        (v.position_embd.weight, ne [D_v, P, 2])
//   h   = LN3(h)                 eps 1e-5          (v.patch_norm.3)
//   h   = RMS(h)                 no weight, eps unigemma.vision.rms_norm_eps, else
//                                clip.vision.attention.layer_norm_epsilon, else 1e-6
//   out = W_proj h               [D_v] -> [H], no bias (mm.input_projection.weight)
// Positions are (x = column, y = row) in merged-patch units, each in [0, P). The HF processor
// pads every image to its token budget with patches at (-1, -1): those are padding and are
// skipped (no output row), as transformers' get_image_features drops them; a position with
// only one coordinate -1, or any other out-of-range value, is an InputError.
//
// Audio, per 640-sample frame (16 kHz, 40 ms):
//   out = W_audio RMS(frame)     no weight, eps unigemma.audio.rms_norm_eps else 1e-6
//                                (mm.a.input_projection.weight, [640] -> [H], no bias)
//
// Both embedders are written once against the backend seam (ops/backend.h; the CPU backend
// runs them today), over chunks of rows (patches / frames), token-major float32:
//   vision: raw, x [nc][n_in] (input patches; LN1 output in CHW order), h [nc][D_v]
//   audio:  raw, x [nc][frame]
// and the output rows [nc][H] in the caller's memory (Backend::output_tensor). The big matmuls
// (patch_embd, the projections) read the weights in place from the mapping (F32 / F16 / BF16 /
// Q8_0 / ...; for quantized weights the activations carry two 8-bit levels, act_levels 2).
// Activation memory is one backend buffer, grown to the largest chunk seen and kept.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gguf/gguf_file.h"
#include "model/text_model.h"  // Weight
#include "ops/backend.h"

namespace unigemma::model {

struct VisionHParams {
    int64_t n_embd = 0;      // D_v (mm_embed_dim)
    int64_t patch_size = 0;  // model patch in pixels: teacher patch (16) x merge (3) = 48
    int64_t n_in = 0;        // values per patch: patch_size^2 * 3 = 6912
    int64_t n_pos = 0;       // P: entries per axis of the position table (mm_posemb_size)
    float ln_eps = 1e-5f;    // LN1/LN2/LN3: PyTorch's LayerNorm default (not stored in the file)
    float rms_eps = 1e-6f;   // scale-less RMSNorm before the projection
};

struct AudioHParams {
    int64_t frame = 0;       // samples per frame / token (640)
    float rms_eps = 1e-6f;
};

class MMProjector {
public:
    // Opens and validates `path`. Throws GGUFError (malformed file, missing key / tensor,
    // shape disagreeing with the keys) or ModelError (not a clip file, unsupported projector
    // or weight type), each message starting with "[mmproj]". n_threads: 0 = pool default.
    // backend: "cpu" or "webgpu" (as ContextParams::backend).
    explicit MMProjector(const std::string& path, int n_threads = 0, const std::string& backend = "cpu");
    explicit MMProjector(std::shared_ptr<const gguf::GGUFFile> file, int n_threads = 0,
                         const std::string& backend = "cpu");

    bool has_vision() const { return static_cast<bool>(patch_w_); }
    bool has_audio() const { return static_cast<bool>(audio_proj_); }
    int64_t hidden_size() const { return n_embd_text_; }  // H
    const VisionHParams& vision() const { return vhp_; }
    const AudioHParams& audio() const { return ahp_; }
    int n_threads() const { return n_threads_; }
    const gguf::GGUFFile& file() const { return *file_; }

    // Checks n positions (pos_xy: n pairs x, y) and returns how many are not padding.
    // Throws InputError naming the first bad row. Needs a vision embedder.
    int64_t count_image_tokens(const int32_t* pos_xy, int64_t n) const;

    // patches: n rows of vision().n_in floats (HWC-flattened merged patches, the HF processor's
    // pixel_values); pos_xy: n (x, y) pairs. Writes one row of H floats to `out` for each
    // non-padding patch, in input order, and returns that count (count_image_tokens()).
    // Non-finite pixel values are an InputError.
    int64_t embed_image(const float* patches, const int32_t* pos_xy, int64_t n, float* out) const;

    // frames: n rows of audio().frame samples; writes n rows of H floats to `out`.
    void embed_audio(const float* frames, int64_t n, float* out) const;

private:
    void load();
    void load_vision();
    void load_audio();

    // Activation memory of at least n floats (caller holds mu_).
    float* scratch(size_t n) const;

    std::shared_ptr<const gguf::GGUFFile> file_;
    int n_threads_ = 0;
    std::shared_ptr<void> device_weights_;  // the WebGPU backend's copies of this file's weights
    std::unique_ptr<ops::Backend> backend_;
    // embed_* are const and may run on several threads at once (the bindings drop the GIL):
    // they share the activation buffer under this lock.
    mutable std::mutex mu_;
    mutable std::unique_ptr<ops::Buffer> arena_;
    int64_t n_embd_text_ = 0;
    VisionHParams vhp_;
    AudioHParams ahp_;
    // vision weights (views into the mapping)
    const float* ln1_w_ = nullptr;  // [n_in], CHW order
    const float* ln1_b_ = nullptr;
    Weight patch_w_;                // rows D_v, cols n_in (CHW order)
    const float* patch_b_ = nullptr;
    const float* ln2_w_ = nullptr;
    const float* ln2_b_ = nullptr;
    const float* pos_table_ = nullptr;  // [2][P][D_v]: x (column) table, then y (row) table
    std::vector<float> pos_owned_;      // dequantized table when the file does not store F32
    const float* ln3_w_ = nullptr;
    const float* ln3_b_ = nullptr;
    Weight vision_proj_;            // rows H, cols D_v
    std::vector<int32_t> chw_src_;  // chw_src_[i] = HWC index of CHW element i
    // audio
    Weight audio_proj_;             // rows H, cols frame
};

}  // namespace unigemma::model
