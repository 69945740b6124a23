// See resize_bicubic_aa.h for the algorithm. This file is compiled with -ffp-contract=off: the
// tap weights are double expressions that torch evaluates as separate multiplies and adds, so
// the compiler must not fuse them into FMAs (which round once instead of twice).
#include "preprocess/resize_bicubic_aa.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "base/error.h"
#include "base/thread_pool.h"

namespace unigemma::preprocess {

namespace {

// Keys' cubic convolution kernel with a = -0.5 (Pillow's and torch's antialiased bicubic),
// written in torch's evaluation order (cubic_convolution1 / cubic_convolution2 in ATen's
// UpSample.h) so that every intermediate rounds the same way.
double keys_cubic(double x) {
    constexpr double a = -0.5;
    x = std::abs(x);
    if (x < 1.0) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2.0) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
    return 0.0;
}

void check_side(int64_t v, const char* what) {
    if (v < 1 || v > kMaxSide)
        throw InputError(std::string("[resize_bicubic_aa] ") + what + " " + std::to_string(v) + " is outside [1, " +
                         std::to_string(kMaxSide) + "]");
}

// Rows per parallel task: about 64 KiB of output each, at least one row.
int64_t rows_per_task(int64_t row_bytes) { return std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, row_bytes)); }

// Horizontal pass: every row of `src` (n_rows x in_w x C) filtered along x into `dst`
// (n_rows x out_w x C).
void horizontal_pass(const uint8_t* src, uint8_t* dst, int64_t n_rows, int64_t in_w, int64_t channels,
                     const AxisTaps& t, int n_threads) {
    const int64_t out_w = t.out_size;
    const int64_t block = rows_per_task(out_w * channels);
    const int64_t n_tasks = (n_rows + block - 1) / block;
    const int32_t half = int32_t(1) << (t.precision - 1);
    base::parallel_for(
        n_tasks,
        [&](int64_t task, int) {
            const int64_t r0 = task * block, r1 = std::min(n_rows, r0 + block);
            int32_t acc[kMaxChannels];
            for (int64_t r = r0; r < r1; ++r) {
                const uint8_t* in_row = src + r * in_w * channels;
                uint8_t* out_row = dst + r * out_w * channels;
                for (int64_t x = 0; x < out_w; ++x) {
                    const int16_t* w = &t.weights[x * t.taps_per_output];
                    const uint8_t* s = in_row + t.first[x] * channels;
                    for (int64_t c = 0; c < channels; ++c) acc[c] = half;
                    for (int64_t k = 0; k < t.count[x]; ++k)
                        for (int64_t c = 0; c < channels; ++c) acc[c] += int32_t(s[k * channels + c]) * w[k];
                    for (int64_t c = 0; c < channels; ++c)
                        out_row[x * channels + c] = static_cast<uint8_t>(std::clamp(acc[c] >> t.precision, 0, 255));
                }
            }
        },
        n_threads);
}

// Vertical pass: `src` (in_h x row_len) filtered along y into `dst` (out_h x row_len), where
// row_len = width * channels. Each output row accumulates whole source rows into an int32 row.
void vertical_pass(const uint8_t* src, uint8_t* dst, int64_t row_len, const AxisTaps& t, int n_threads) {
    const int64_t out_h = t.out_size;
    const int64_t block = rows_per_task(row_len);
    const int64_t n_tasks = (out_h + block - 1) / block;
    const int32_t half = int32_t(1) << (t.precision - 1);
    base::parallel_for(
        n_tasks,
        [&](int64_t task, int) {
            const int64_t y0 = task * block, y1 = std::min(out_h, y0 + block);
            std::vector<int32_t> acc(static_cast<size_t>(row_len));
            for (int64_t y = y0; y < y1; ++y) {
                std::fill(acc.begin(), acc.end(), half);
                const int16_t* w = &t.weights[y * t.taps_per_output];
                for (int64_t k = 0; k < t.count[y]; ++k) {
                    const uint8_t* s = src + (t.first[y] + k) * row_len;
                    const int32_t wk = w[k];
                    for (int64_t i = 0; i < row_len; ++i) acc[i] += int32_t(s[i]) * wk;
                }
                uint8_t* out_row = dst + y * row_len;
                for (int64_t i = 0; i < row_len; ++i)
                    out_row[i] = static_cast<uint8_t>(std::clamp(acc[i] >> t.precision, 0, 255));
            }
        },
        n_threads);
}

}  // namespace

AxisTaps compute_axis_taps(int64_t in_size, int64_t out_size) {
    check_side(in_size, "input size");
    check_side(out_size, "output size");
    AxisTaps t;
    t.in_size = in_size;
    t.out_size = out_size;

    // align_corners=False and no explicit scale factor: scale is the plain size ratio.
    const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
    // Downscaling widens the kernel by the scale factor (the antialias part); upscaling keeps
    // the plain 4-tap cubic support of 2 samples on each side.
    const double support = scale >= 1.0 ? 2.0 * scale : 2.0;
    const double inv_scale = scale >= 1.0 ? 1.0 / scale : 1.0;
    t.taps_per_output = static_cast<int64_t>(std::ceil(support)) * 2 + 1;

    const size_t n_w = static_cast<size_t>(out_size * t.taps_per_output);
    std::vector<double> real_weights(n_w, 0.0);
    t.first.assign(static_cast<size_t>(out_size), 0);
    t.count.assign(static_cast<size_t>(out_size), 0);
    double max_weight = 0.0;
    for (int64_t i = 0; i < out_size; ++i) {
        const double centre = scale * (i + 0.5);
        // The casts truncate toward zero, as torch's static_cast<int64_t> does; the window is
        // then clipped to the image and to the tap budget (rounding can overshoot it by one).
        const int64_t lo = std::max(static_cast<int64_t>(centre - support + 0.5), int64_t(0));
        int64_t n = std::min(static_cast<int64_t>(centre + support + 0.5), in_size) - lo;
        n = std::clamp(n, int64_t(0), t.taps_per_output);
        double* w = &real_weights[static_cast<size_t>(i * t.taps_per_output)];
        double total = 0.0;
        for (int64_t j = 0; j < n; ++j) {
            // (j + lo) is an integer source index; the +0.5 moves it to the pixel centre.
            w[j] = keys_cubic((static_cast<double>(j + lo) - centre + 0.5) * inv_scale);
            total += w[j];
        }
        if (total != 0.0) {
            for (int64_t j = 0; j < n; ++j) {
                w[j] /= total;
                max_weight = std::max(max_weight, w[j]);
            }
        }
        t.first[static_cast<size_t>(i)] = lo;
        t.count[static_cast<size_t>(i)] = n;
    }

    // The most fraction bits (at most 22) that keep the largest weight below 2^14, so that
    // weights fit int16 with headroom for the negative lobes.
    unsigned bits = 0;
    for (; bits < 22; ++bits) {
        const int next = static_cast<int>(0.5 + max_weight * static_cast<double>(1 << (bits + 1)));
        if (next >= (1 << 15)) break;
    }
    t.precision = bits;
    t.weights.assign(n_w, 0);
    const double unit = static_cast<double>(1 << bits);
    for (size_t k = 0; k < n_w; ++k) {
        const double v = real_weights[k] * unit;  // exact: a power-of-two scaling
        t.weights[k] = static_cast<int16_t>(v < 0 ? static_cast<int>(-0.5 + v) : static_cast<int>(0.5 + v));
    }
    return t;
}

void resize_bicubic_aa_u8(const uint8_t* src, int64_t in_h, int64_t in_w, int64_t channels, uint8_t* dst,
                          int64_t out_h, int64_t out_w, int n_threads) {
    check_side(in_h, "input height");
    check_side(in_w, "input width");
    check_side(out_h, "output height");
    check_side(out_w, "output width");
    if (channels < 1 || channels > kMaxChannels)
        throw InputError("[resize_bicubic_aa] channel count " + std::to_string(channels) + " is outside [1, " +
                         std::to_string(kMaxChannels) + "]");
    if (n_threads < 0) throw InputError("[resize_bicubic_aa] negative thread count " + std::to_string(n_threads));

    const bool resize_w = out_w != in_w, resize_h = out_h != in_h;
    if (!resize_w && !resize_h) {
        std::copy(src, src + in_h * in_w * channels, dst);
        return;
    }
    if (resize_w && !resize_h) {
        horizontal_pass(src, dst, in_h, in_w, channels, compute_axis_taps(in_w, out_w), n_threads);
        return;
    }
    if (!resize_w) {
        vertical_pass(src, dst, in_w * channels, compute_axis_taps(in_h, out_h), n_threads);
        return;
    }
    // Both axes: width first into a uint8 intermediate (in_h x out_w), then height.
    std::vector<uint8_t> mid(static_cast<size_t>(in_h * out_w * channels));
    horizontal_pass(src, mid.data(), in_h, in_w, channels, compute_axis_taps(in_w, out_w), n_threads);
    vertical_pass(mid.data(), dst, out_w * channels, compute_axis_taps(in_h, out_h), n_threads);
}

}  // namespace unigemma::preprocess
