// Antialiased bicubic resize of 8-bit images, bit-exact with PyTorch's CPU uint8 path, which
// is what torchvision's `resize(uint8 tensor, BICUBIC, antialias=True)` runs (torch 2.14.1,
// torchvision 0.29.1) and therefore what transformers' Gemma 4 image/video processors feed the
// model.
//
// What torch computes (and this file reproduces):
// - Separable: a horizontal pass (width) first, then a vertical pass (height), each on uint8
//   data; the intermediate image is rounded and clamped to uint8. An axis whose size does not
//   change is not resampled at all (and an unchanged image is returned as a copy).
// - Per axis, filter taps as in Pillow: scale = in/out (double), support = 2*scale when
//   downscaling (2 when upscaling), Keys cubic with a = -0.5 evaluated at
//   (src_index - centre + 0.5) / max(scale, 1), each output's taps normalised to sum 1 (double).
// - The double weights become int16 fixed point: one precision per axis, the largest number
//   of fraction bits (< 22) for which the largest weight times 2^(bits+1) still stays below
//   2^15; each weight is rounded half away from zero.
// - Each output sample is an exact int32 dot product of uint8 samples and int16 weights plus
//   2^(bits-1), arithmetic-shifted right by `bits`, clamped to [0, 255].
// Only the weights involve floating point; everything after is exact integer arithmetic, so
// the result does not depend on the order of accumulation, threads or SIMD.
#pragma once
#include <cstdint>
#include <vector>

namespace unigemma::preprocess {

// Fixed-point filter of one axis (torch's `_compute_index_ranges_int16_weights`).
struct AxisTaps {
    int64_t in_size = 0;
    int64_t out_size = 0;
    int64_t taps_per_output = 0;  // row stride of `weights`: ceil(support) * 2 + 1
    unsigned precision = 0;       // fraction bits of the int16 weights
    std::vector<int64_t> first;   // [out_size] first source index read by each output
    std::vector<int64_t> count;   // [out_size] number of source samples read (<= taps_per_output)
    std::vector<int16_t> weights; // [out_size * taps_per_output], zero past `count`
};

// Throws InputError unless 1 <= in_size, out_size <= kMaxSide.
AxisTaps compute_axis_taps(int64_t in_size, int64_t out_size);

constexpr int64_t kMaxSide = int64_t(1) << 20;
constexpr int64_t kMaxChannels = 64;

// Resizes an (in_h, in_w, channels) interleaved uint8 image (row-major, HWC) into dst
// (out_h, out_w, channels). Threads split rows (n_threads 0 = the pool's default); the result
// does not depend on the thread count. Throws InputError for empty or oversized shapes.
void resize_bicubic_aa_u8(const uint8_t* src, int64_t in_h, int64_t in_w, int64_t channels, uint8_t* dst,
                          int64_t out_h, int64_t out_w, int n_threads = 0);

}  // namespace unigemma::preprocess
