#include "ops/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "ops/cpu/attention.h"
#include "ops/cpu/matmul.h"
#include "ops/cpu/panels.h"
#include "quant/quant.h"

namespace unigemma::cpu {

namespace {

// Below this many floats an element-wise op runs on the calling thread: waking the pool
// costs a few microseconds, more than a decode step's norms, RoPE and adds together.
constexpr int64_t kMinParallelFloats = int64_t(1) << 15;
// Flat chunk granularity: a multiple of every vector width (NEON 4, AVX2 8, AVX-512 16, and
// the 2x-unrolled loops), so chunking never moves an element from a vector loop to a tail.
constexpr int64_t kFlatAlign = 64;

class HostBuffer final : public ops::Buffer {
public:
    explicit HostBuffer(size_t n) : v_(n) {}
    float* data() override { return v_.data(); }
    size_t n_floats() const override { return v_.size(); }

private:
    std::vector<float> v_;
};

// fn(r0, n) over row blocks of at least kMinParallelFloats floats.
template <class Fn>
void for_row_blocks(int64_t rows, int64_t cols, int nt, Fn&& fn) {
    if (rows < 2 || rows * cols < 2 * kMinParallelFloats) {
        if (rows > 0) fn(int64_t(0), rows);
        return;
    }
    const int64_t per = std::max<int64_t>(1, kMinParallelFloats / std::max<int64_t>(cols, 1));
    const int64_t tasks = (rows + per - 1) / per;
    base::parallel_for(
        tasks,
        [&](int64_t t, int) {
            const int64_t r0 = t * per;
            fn(r0, std::min(per, rows - r0));
        },
        nt);
}

// fn(e0, e1) over chunks of a flat array, boundaries at multiples of kFlatAlign.
template <class Fn>
void for_flat_chunks(int64_t n, int nt, Fn&& fn) {
    if (n < 2 * kMinParallelFloats) {
        if (n > 0) fn(int64_t(0), n);
        return;
    }
    const int64_t per = kMinParallelFloats;  // a multiple of kFlatAlign
    static_assert(kMinParallelFloats % kFlatAlign == 0, "chunks must keep vector alignment");
    const int64_t tasks = (n + per - 1) / per;
    base::parallel_for(
        tasks,
        [&](int64_t t, int) {
            const int64_t e0 = t * per;
            fn(e0, std::min(n, e0 + per));
        },
        nt);
}

void check_same(const char* op, ops::Tensor a, ops::Tensor b) {
    if (a.rows != b.rows || a.cols != b.cols)
        throw Error(std::string("[cpu.") + op + "] shape [" + std::to_string(a.rows) + "][" + std::to_string(a.cols) +
                    "] vs [" + std::to_string(b.rows) + "][" + std::to_string(b.cols) + "]");
}

}  // namespace

CpuBackend::CpuBackend(int n_threads) : k_(kernels()), n_threads_(n_threads) {}

std::unique_ptr<ops::Buffer> CpuBackend::alloc(size_t n_floats) { return std::make_unique<HostBuffer>(n_floats); }

ops::MatmulSupport CpuBackend::matmul_support(GGMLType type, int64_t cols) const {
    const auto id = static_cast<uint32_t>(type);
    const auto tr = gguf::type_traits(id);
    const std::string tn = tr.name ? tr.name : "type id " + std::to_string(id);
    GGMLType at;
    try {
        at = activation_type(type);
    } catch (const InputError&) {
        return {ops::MatmulSupport::NoKernel, "type " + tn + " has no CPU matmul kernel"};
    }
    if (id >= static_cast<uint32_t>(kMaxTypeId) || (!k_.vec_dot[id] && !k_.tile_dot[id]))
        return {ops::MatmulSupport::NoKernel,
                "type " + tn + " has no kernel on the " + (k_.isa ? k_.isa : "?") + " path"};
    const int64_t ab = gguf::type_traits(static_cast<uint32_t>(at)).block_size;
    if (cols % tr.block_size != 0 || cols % ab != 0)
        return {ops::MatmulSupport::RowLength,
                "row length " + std::to_string(cols) + " is not a multiple of the " + tn + " block size"};
    return {};
}

void CpuBackend::embed(const ops::WeightView& E, const int32_t* tokens, const int8_t* kinds, const float* embd,
                       float scale, ops::Tensor x) {
    const int64_t H = x.cols;
    if (E.cols != H) throw Error("[cpu.embed] table width " + std::to_string(E.cols) + " vs rows of " + std::to_string(H));
    for_row_blocks(x.rows, H, n_threads_, [&](int64_t r0, int64_t n) {
        for (int64_t t = r0; t < r0 + n; ++t) {
            float* xt = x.data + t * H;
            if (kinds && kinds[t] != 0) {  // soft token: the embedder's row, not scaled
                std::copy(embd + t * H, embd + (t + 1) * H, xt);
                continue;
            }
            quant::dequantize_row(E.type, E.data + static_cast<size_t>(tokens[t]) * E.row_bytes, xt, H);
            k_.scale(xt, xt, scale, H);
        }
    });
}

void CpuBackend::matmul(const ops::WeightView& w, ops::Tensor x, ops::Tensor y, int act_levels) {
    if (x.cols != w.cols || y.cols != w.rows || x.rows != y.rows)
        throw Error("[cpu.matmul] weight [" + std::to_string(w.rows) + "][" + std::to_string(w.cols) + "], x [" +
                    std::to_string(x.rows) + "][" + std::to_string(x.cols) + "], y [" + std::to_string(y.rows) + "][" +
                    std::to_string(y.cols) + "]");
    PanelType pt{};
    if (w.panels && act_levels == 1 && panel_type_for(w.type, &pt)) {
        matmul_panels(k_, pt, w.panels, w.rows, w.cols, x.data, x.rows, y.data, n_threads_);
        return;
    }
    cpu::matmul(k_, w.type, w.data, w.rows, w.cols, w.row_bytes, x.data, x.rows, y.data, n_threads_, act_levels);
}

void CpuBackend::rms_norm(ops::Tensor y, ops::Tensor x, const float* w, float eps) {
    check_same("rms_norm", y, x);
    const int64_t H = x.cols;
    for_row_blocks(x.rows, H, n_threads_, [&](int64_t r0, int64_t n) {
        for (int64_t t = r0; t < r0 + n; ++t) k_.rms_norm(y.data + t * H, x.data + t * H, w, H, eps);
    });
}

void CpuBackend::head_norm_rope(ops::Tensor x, int head_dim, const float* w, float eps, const int64_t* pos,
                                const float* inv_freq) {
    if (head_dim <= 0 || x.cols % head_dim != 0)
        throw Error("[cpu.head_norm_rope] row of " + std::to_string(x.cols) + " is not whole heads of " +
                    std::to_string(head_dim));
    const int64_t W = x.cols;
    const int64_t nh = W / head_dim;
    for_row_blocks(x.rows, W, n_threads_, [&](int64_t r0, int64_t n) {
        for (int64_t t = r0; t < r0 + n; ++t)
            for (int64_t h = 0; h < nh; ++h) {
                float* xh = x.data + t * W + h * head_dim;
                k_.rms_norm(xh, xh, w, head_dim, eps);
                if (inv_freq) k_.rope_neox(xh, head_dim, static_cast<float>(pos[t]), inv_freq);
            }
    });
}

void CpuBackend::add(ops::Tensor x, ops::Tensor y) {
    check_same("add", x, y);
    const int64_t H = x.cols;
    for_row_blocks(x.rows, H, n_threads_, [&](int64_t r0, int64_t n) {
        for (int64_t t = r0; t < r0 + n; ++t) k_.add(x.data + t * H, x.data + t * H, y.data + t * H, H);
    });
}

void CpuBackend::scale(ops::Tensor x, float s) {
    const int64_t H = x.cols;
    for_row_blocks(x.rows, H, n_threads_, [&](int64_t r0, int64_t n) {
        for (int64_t t = r0; t < r0 + n; ++t) k_.scale(x.data + t * H, x.data + t * H, s, H);
    });
}

void CpuBackend::copy(ops::Tensor dst, ops::Tensor src) {
    check_same("copy", dst, src);
    if (dst.data != src.data) std::memcpy(dst.data, src.data, static_cast<size_t>(src.size()) * sizeof(float));
}

void CpuBackend::gelu_tanh_mul(ops::Tensor g, ops::Tensor u) {
    check_same("gelu_tanh_mul", g, u);
    for_flat_chunks(g.size(), n_threads_,
                    [&](int64_t e0, int64_t e1) { k_.gelu_tanh_mul(g.data + e0, g.data + e0, u.data + e0, e1 - e0); });
}

void CpuBackend::softcap(ops::Tensor x, float cap) {
    for_flat_chunks(x.size(), n_threads_,
                    [&](int64_t e0, int64_t e1) { k_.softcap(x.data + e0, x.data + e0, e1 - e0, cap); });
}

void CpuBackend::layer_norm(ops::Tensor y, ops::Tensor x, const float* w, const float* b, float eps) {
    check_same("layer_norm", y, x);
    const int64_t H = x.cols;
    for_row_blocks(x.rows, H, n_threads_, [&](int64_t r0, int64_t n) {
        for (int64_t t = r0; t < r0 + n; ++t) k_.layer_norm(y.data + t * H, x.data + t * H, w, b, H, eps);
    });
}

void CpuBackend::layer_norm_f64(ops::Tensor y, ops::Tensor x, const int32_t* src, const float* w, const float* b,
                                float eps) {
    check_same("layer_norm_f64", y, x);
    if (y.data == x.data && x.size() > 0) throw Error("[cpu.layer_norm_f64] y and x must be distinct");
    const int64_t n_in = x.cols;
    // Scalar on purpose: the double sums have one order (element 0 up), the one the vision
    // embedder has always used; a vectorized sum would split them into lanes.
    for_row_blocks(x.rows, n_in, n_threads_, [&](int64_t r0, int64_t n) {
        for (int64_t t = r0; t < r0 + n; ++t) {
            const float* xs = x.data + t * n_in;
            float* dst = y.data + t * n_in;
            double s = 0.0;
            for (int64_t i = 0; i < n_in; ++i) s += xs[i];
            const double mean = s / static_cast<double>(n_in);
            double v = 0.0;
            for (int64_t i = 0; i < n_in; ++i) {
                const double d = xs[i] - mean;
                v += d * d;
            }
            const double rstd = 1.0 / std::sqrt(v / static_cast<double>(n_in) + eps);
            if (src)
                for (int64_t i = 0; i < n_in; ++i) dst[i] = static_cast<float>((xs[src[i]] - mean) * rstd * w[i] + b[i]);
            else
                for (int64_t i = 0; i < n_in; ++i) dst[i] = static_cast<float>((xs[i] - mean) * rstd * w[i] + b[i]);
        }
    });
}

void CpuBackend::add_bias(ops::Tensor x, const float* b) {
    const int64_t H = x.cols;
    for_row_blocks(x.rows, H, n_threads_, [&](int64_t r0, int64_t n) {
        for (int64_t t = r0; t < r0 + n; ++t) k_.add(x.data + t * H, x.data + t * H, b, H);
    });
}

void CpuBackend::add_table_rows(ops::Tensor x, const float* table, const int64_t* ra, const int64_t* rb) {
    const int64_t H = x.cols;
    // Plain float adds (no multiply to contract): any vectorization gives the same bits.
    for_row_blocks(x.rows, H, n_threads_, [&](int64_t r0, int64_t n) {
        for (int64_t t = r0; t < r0 + n; ++t) {
            float* xt = x.data + t * H;
            const float* a = table + ra[t] * H;
            const float* c = table + rb[t] * H;
            for (int64_t d = 0; d < H; ++d) xt[d] += a[d] + c[d];
        }
    });
}

void CpuBackend::kv_store(ops::KVLayer& kv, ops::Tensor k, ops::Tensor v, const int64_t* pos) {
    check_same("kv_store", k, v);
    const int nkv = kv.n_kv_head(), hd = kv.head_dim();
    if (k.cols != int64_t(nkv) * hd)
        throw Error("[cpu.kv_store] rows of " + std::to_string(k.cols) + " for " + std::to_string(nkv) + " heads of " +
                    std::to_string(hd));
    // distinct positions of one call own distinct slots (a ring holds a whole micro-batch)
    for_row_blocks(k.rows, 2 * k.cols, n_threads_, [&](int64_t r0, int64_t n) {
        for (int64_t t = r0; t < r0 + n; ++t)
            for (int h = 0; h < nkv; ++h)
                kv.store(pos[t], h, k.data + t * k.cols + int64_t(h) * hd, v.data + t * v.cols + int64_t(h) * hd);
    });
}

void CpuBackend::attention(const ops::KVLayer& kv, ops::Tensor q, ops::Tensor out, const ops::AttentionCall& call) {
    check_same("attention", q, out);
    AttentionBatch ab;
    ab.q = q.data;
    ab.out = out.data;
    ab.n_tokens = q.rows;
    ab.pos0 = call.pos0;
    ab.n_head = call.n_head;
    ab.scale = call.scale;
    ab.window = call.window;
    ab.key_end = call.key_end;
    cpu::attention(k_, kv, ab, n_threads_);
}

void CpuBackend::attention_range(const ops::KVLayer& kv, ops::Tensor q, ops::Tensor out, int n_head, float scale,
                                 int64_t lo, int64_t hi) {
    check_same("attention_range", q, out);
    if (n_head <= 0 || q.cols != int64_t(n_head) * kv.head_dim())
        throw Error("[cpu.attention_range] rows of " + std::to_string(q.cols) + " for " + std::to_string(n_head) +
                    " heads of " + std::to_string(kv.head_dim()));
    // one query per call: the heads are what the pool splits
    for (int64_t t = 0; t < q.rows; ++t)
        cpu::attention_range(k_, kv, q.data + t * q.cols, out.data + t * q.cols, n_head, scale, lo, hi, n_threads_);
}

void CpuBackend::matmul_rows(const ops::WeightView& w, const int32_t* row_ids, ops::Tensor x, ops::Tensor y,
                             int act_levels) {
    if (x.cols != w.cols || x.rows != y.rows)
        throw Error("[cpu.matmul_rows] weight [" + std::to_string(w.rows) + "][" + std::to_string(w.cols) + "], x [" +
                    std::to_string(x.rows) + "][" + std::to_string(x.cols) + "], y [" + std::to_string(y.rows) + "][" +
                    std::to_string(y.cols) + "]");
    for (int64_t t = 0; t < x.rows; ++t)
        cpu::matmul_rows(k_, w.type, w.data, w.rows, w.cols, w.row_bytes, row_ids, y.cols, x.data + t * x.cols,
                         y.data + t * y.cols, n_threads_, act_levels);
}

void CpuBackend::read(ops::Tensor x, float* host) {
    if (host != x.data) std::memcpy(host, x.data, static_cast<size_t>(x.size()) * sizeof(float));
}

void CpuBackend::write(ops::Tensor x, const float* host) {
    if (host != x.data) std::memcpy(x.data, host, static_cast<size_t>(x.size()) * sizeof(float));
}

}  // namespace unigemma::cpu
