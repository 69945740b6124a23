// Weight panels: repacking and the matmul driver (layouts and numerics in panels.h).
//
// Work split. Small batches (decode, speculative verify: n_tokens <= kSmallBatch) are
// bandwidth-bound: tasks are runs of whole panels (~kTaskBytes of weights) handed out
// dynamically; a task streams each of its panels once and applies it to every token, 8 at a
// time, while the panel is in L1/L2. Large batches (prefill) are compute-bound: the plane is
// cut into row blocks of panels (weights ~1/4 of L2) x token ranges; inside a task, token
// blocks (activations ~1/2 of L2) are walked and each panel is reused for the whole block.
// Every output element comes from one kernel call whose per-token arithmetic is fixed, so
// no split changes a bit.
#include "ops/cpu/panels.h"
#include "ops/cpu/matmul.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "base/error.h"
#include "quant/block_layouts.h"
#include "quant/fp16.h"
#include "quant/quant.h"
#include "base/thread_pool.h"


namespace unigemma::cpu {

namespace {

constexpr int64_t kSmallBatch = 16;
constexpr int64_t kTaskBytes = 192 * 1024;
constexpr int kTasksPerThread = 4;
// Per panel type: block elements, GGUF block bytes, panel block bytes (16 rows), sums per
// activation block, activation type.
struct Spec {
    int64_t elems;
    size_t src_bytes, panel_bytes;
    int sums;
    GGMLType act;
    const char* name;
};
constexpr Spec kSpecs[kPanelTypes] = {
    {32, 18, 288, 1, GGMLType::Q8_0, "Q4_0"},
    {256, 144, 2368, 8, GGMLType::Q8_K, "Q4_K"},
    {256, 210, 3424, 0, GGMLType::Q8_K, "Q6_K"},
};
const Spec& spec(PanelType pt) { return kSpecs[static_cast<int>(pt)]; }

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

void check_shape(PanelType pt, int64_t rows, int64_t cols, const char* op) {
    if (static_cast<int>(pt) < 0 || static_cast<int>(pt) >= kPanelTypes)
        throw InputError(std::string("[") + op + "] unknown panel type");
    const Spec& sp = spec(pt);
    if (rows < 0) throw InputError(std::string("[") + op + "] negative row count " + std::to_string(rows));
    if (cols <= 0 || cols % sp.elems != 0)
        throw InputError(std::string("[") + op + "] cols " + std::to_string(cols) + " is not a positive multiple of the " +
                         sp.name + " block size " + std::to_string(sp.elems));
}

// Q4_0: the 16 bytes of codes in four 4-byte groups, one per 64-byte vector.
void pack_block_q4_0(const uint8_t* blk, uint8_t* pd, int i) {
    for (int j = 0; j < 4; ++j) std::memcpy(pd + 64 * j + 4 * i, blk + 2 + 4 * j, 4);
    std::memcpy(pd + 256 + 2 * i, blk, 2);
}

// Q4_K: 128 bytes of codes in 32 groups of 4; the 6-bit scales and mins unpacked to bytes.
void pack_block_q4_k(const uint8_t* blk, uint8_t* pd, int i) {
    quant::BlockQ4_K b;
    std::memcpy(&b, blk, sizeof(b));
    for (int v = 0; v < 32; ++v) std::memcpy(pd + 64 * v + 4 * i, b.qs + 4 * v, 4);
    uint8_t sc[8], m[8];
    quant::unpack_scale_min_k4(b.scales, sc, m);
    for (int j = 0; j < 8; ++j) {
        pd[2048 + 16 * j + i] = sc[j];
        pd[2176 + 16 * j + i] = m[j];
    }
    std::memcpy(pd + 2304 + 2 * i, &b.d, 2);
    std::memcpy(pd + 2336 + 2 * i, &b.dmin, 2);
}

// Per-thread grow-only activation buffer (64-byte aligned).
struct ActBuffer {
    uint8_t* p = nullptr;
    size_t cap = 0;
    ~ActBuffer() { std::free(p); }
    uint8_t* get(size_t n) {
        if (n <= cap) return p;
        const size_t want = (std::max(n, cap + cap / 2) + 63) / 64 * 64;
        void* q = std::aligned_alloc(64, want);
        if (!q) throw InputError("[matmul_panels] cannot allocate " + std::to_string(want) + " bytes");
        std::free(p);
        p = static_cast<uint8_t*>(q);
        cap = want;
        return p;
    }
};
thread_local ActBuffer t_act;

// Q6_K: ql in 32 groups of 4, qh in 16 groups of 4, int8 scales, d.
void pack_block_q6_k(const uint8_t* blk, uint8_t* pd, int i) {
    quant::BlockQ6_K b;
    std::memcpy(&b, blk, sizeof(b));
    for (int v = 0; v < 32; ++v) std::memcpy(pd + 64 * v + 4 * i, b.ql + 4 * v, 4);
    for (int v = 0; v < 16; ++v) std::memcpy(pd + 2048 + 64 * v + 4 * i, b.qh + 4 * v, 4);
    for (int k = 0; k < 16; ++k) pd[3072 + 16 * k + i] = static_cast<uint8_t>(b.scales[k]);
    std::memcpy(pd + 3328 + 2 * i, &b.d, 2);
    // wsum = sum_k sc_k sum_(e in k) (code_e - 32); element 128 h + 32 m + l of the block
    int32_t wsum = 0;
    for (int h = 0; h < 2; ++h)
        for (int m = 0; m < 4; ++m)
            for (int l = 0; l < 32; ++l) {
                const uint8_t ql = b.ql[64 * h + 32 * (m & 1) + l];
                const int code = ((m < 2 ? ql & 0x0f : ql >> 4) | (((b.qh[32 * h + l] >> (2 * m)) & 3) << 4));
                wsum += b.scales[8 * h + 2 * m + l / 16] * (code - 32);
            }
    std::memcpy(pd + 3360 + 4 * i, &wsum, 4);
}

}  // namespace

bool panel_type_for(GGMLType t, PanelType* out) {
    if (t == GGMLType::Q4_0) *out = PanelType::Q4_0;
    else if (t == GGMLType::Q4_K) *out = PanelType::Q4_K;
    else if (t == GGMLType::Q6_K) *out = PanelType::Q6_K;
    else return false;
    return true;
}

size_t panels_bytes(PanelType pt, int64_t rows, int64_t cols) {
    check_shape(pt, rows, cols, "pack_panels");
    const Spec& sp = spec(pt);
    return static_cast<size_t>(ceil_div(rows, kPanelRows)) * static_cast<size_t>(cols / sp.elems) * sp.panel_bytes;
}

void pack_panels(PanelType pt, const void* w, int64_t rows, int64_t cols, size_t w_row_stride, uint8_t* dst, int64_t p0,
                 int64_t p1) {
    check_shape(pt, rows, cols, "pack_panels");
    const Spec& sp = spec(pt);
    const int64_t nb = cols / sp.elems;
    if (w_row_stride < static_cast<size_t>(nb) * sp.src_bytes)
        throw InputError("[pack_panels] row stride " + std::to_string(w_row_stride) + " is less than one row");
    if (p0 < 0 || p1 < p0 || p1 > ceil_div(rows, kPanelRows)) throw InputError("[pack_panels] panel range out of bounds");
    const auto* src = static_cast<const uint8_t*>(w);
    for (int64_t p = p0; p < p1; ++p) {
        uint8_t* pd = dst + static_cast<size_t>(p * nb) * sp.panel_bytes;
        for (int64_t b = 0; b < nb; ++b, pd += sp.panel_bytes) {
            std::memset(pd, 0, sp.panel_bytes);  // padding rows: zero codes, zero scales
            for (int i = 0; i < kPanelRows; ++i) {
                const int64_t r = p * kPanelRows + i;
                if (r >= rows) break;
                const uint8_t* blk = src + static_cast<size_t>(r) * w_row_stride + static_cast<size_t>(b) * sp.src_bytes;
                if (pt == PanelType::Q4_0)
                    pack_block_q4_0(blk, pd, i);
                else if (pt == PanelType::Q4_K)
                    pack_block_q4_k(blk, pd, i);
                else
                    pack_block_q6_k(blk, pd, i);
            }
        }
    }
}

void matmul_panels(const KernelTable& k, PanelType pt, const uint8_t* panels, int64_t rows, int64_t cols,
                   const float* x, int64_t n_tokens, float* y, int n_threads) {
    check_shape(pt, rows, cols, "matmul_panels");
    const Spec& sp = spec(pt);
    if (n_tokens < 0) throw InputError("[matmul_panels] negative token count");
    if (n_threads < 0) throw InputError("[matmul_panels] negative thread count");
    if (rows == 0 || n_tokens == 0) return;
    if (!panels || !x || !y) throw InputError("[matmul_panels] null buffer");
    const PanelDotFn kern = k.panel_dot[static_cast<int>(pt)];
    if (!kern)
        throw InputError(std::string("[matmul_panels] no ") + sp.name + " panel kernel on the " + (k.isa ? k.isa : "?") +
                         " path");
    const QuantizeActFn quantize = k.quantize_act[static_cast<uint32_t>(sp.act)];
    if (!quantize) throw InputError("[matmul_panels] no activation quantizer");
    const int nt = n_threads > 0 ? n_threads : base::get_threads();
    const int64_t nb = cols / sp.elems;

    // Activations: the row kernels' Q8_0 / Q8_K quantization regrouped as [q][d][sums].
    const size_t a_stride = (static_cast<size_t>(cols) + static_cast<size_t>(nb) * (4 + 4 * sp.sums) + 63) / 64 * 64;
    uint8_t* act = t_act.get(a_stride * static_cast<size_t>(n_tokens));
    const size_t blk_bytes = quant::row_bytes(sp.act, sp.elems);
    auto prep_token = [&](int64_t t) {
        thread_local std::vector<uint8_t> qa;
        qa.resize(static_cast<size_t>(nb) * blk_bytes);
        quantize(x + t * cols, qa.data(), cols);
        uint8_t* at = act + static_cast<size_t>(t) * a_stride;
        auto* d = reinterpret_cast<float*>(at + cols);
        auto* s = reinterpret_cast<int32_t*>(at + cols + 4 * nb);
        for (int64_t b = 0; b < nb; ++b) {
            const uint8_t* blk = qa.data() + b * blk_bytes;
            const int8_t* q;
            if (pt == PanelType::Q4_0) {  // fp16 d, 32 x int8
                uint16_t h;
                std::memcpy(&h, blk, 2);
                d[b] = quant::fp16_to_fp32(h);
                q = reinterpret_cast<const int8_t*>(blk + 2);
            } else {  // float d, 256 x int8, bsums
                std::memcpy(&d[b], blk, 4);
                q = reinterpret_cast<const int8_t*>(blk + 4);
            }
            std::memcpy(at + b * sp.elems, q, static_cast<size_t>(sp.elems));
            if (pt == PanelType::Q6_K)  // unsigned q + 128
                for (int64_t e = 0; e < sp.elems; ++e) at[b * sp.elems + e] ^= 0x80;
            const int64_t per = sp.sums ? sp.elems / sp.sums : 0;
            for (int j = 0; j < sp.sums; ++j) {
                int32_t sum = 0;
                for (int64_t e = 0; e < per; ++e) sum += q[j * per + e];
                s[b * sp.sums + j] = pt == PanelType::Q4_0 ? 8 * sum : sum;
            }
        }
    };
    if (nt == 1 || n_tokens * cols < (int64_t(1) << 16)) {
        for (int64_t t = 0; t < n_tokens; ++t) prep_token(t);
    } else {
        base::parallel_for(n_tokens, [&](int64_t t, int) { prep_token(t); }, nt);
    }

    const int64_t n_panels = ceil_div(rows, kPanelRows);
    const size_t panel_bytes = static_cast<size_t>(nb) * sp.panel_bytes;
    // One panel x tokens [t0, t1): kernel calls of <= 8 tokens; a partial last panel goes
    // through a small buffer.
    auto run_panel = [&](int64_t p, int64_t t0, int64_t t1) {
        const uint8_t* pp = panels + static_cast<size_t>(p) * panel_bytes;
        const int64_t r0 = p * kPanelRows;
        const int nr = static_cast<int>(std::min<int64_t>(kPanelRows, rows - r0));
        for (int64_t t = t0; t < t1; t += kPanelCols) {
            const int nc = static_cast<int>(std::min<int64_t>(kPanelCols, t1 - t));
            const uint8_t* at = act + static_cast<size_t>(t) * a_stride;
            if (nr == kPanelRows) {
                kern(nb, nc, y + t * rows + r0, rows, pp, at, a_stride);
            } else {
                float tmp[kPanelCols * kPanelRows];
                kern(nb, nc, tmp, kPanelRows, pp, at, a_stride);
                for (int c = 0; c < nc; ++c)
                    std::memcpy(y + (t + c) * rows + r0, tmp + c * kPanelRows, sizeof(float) * static_cast<size_t>(nr));
            }
        }
    };

    if (n_tokens <= kSmallBatch) {
        int64_t per_task = std::max<int64_t>(1, kTaskBytes / static_cast<int64_t>(panel_bytes));
        if (nt > 1) per_task = std::min(per_task, std::max<int64_t>(1, n_panels / (int64_t(kTasksPerThread) * nt)));
        base::parallel_for(
            ceil_div(n_panels, per_task),
            [&](int64_t task, int) {
                const int64_t p1 = std::min(n_panels, (task + 1) * per_task);
                for (int64_t p = task * per_task; p < p1; ++p) run_panel(p, 0, n_tokens);
            },
            nt);
        return;
    }
    const size_t l2 = l2_cache_bytes();
    int64_t tb = static_cast<int64_t>(l2 / 2 / a_stride) / kPanelCols * kPanelCols;
    tb = std::clamp<int64_t>(tb, kPanelCols, ceil_div(n_tokens, kPanelCols) * kPanelCols);
    int64_t rb = std::max<int64_t>(1, static_cast<int64_t>(l2 / 4 / panel_bytes));
    if (nt > 1 && ceil_div(n_panels, rb) < int64_t(kTasksPerThread) * nt)
        rb = std::max<int64_t>(1, ceil_div(n_panels, int64_t(kTasksPerThread) * nt));
    const int64_t n_rb = ceil_div(n_panels, rb);
    int64_t n_ts = 1;
    if (nt > 1 && n_rb < 2 * nt) n_ts = std::min(ceil_div(n_tokens, kPanelCols), ceil_div(2 * nt, n_rb));
    const int64_t ts = ceil_div(ceil_div(n_tokens, n_ts), kPanelCols) * kPanelCols;
    n_ts = ceil_div(n_tokens, ts);
    base::parallel_for(
        n_rb * n_ts,
        [&](int64_t task, int) {
            const int64_t p_begin = (task / n_ts) * rb;
            const int64_t p_end = std::min(n_panels, p_begin + rb);
            const int64_t t_begin = (task % n_ts) * ts;
            const int64_t t_end = std::min(n_tokens, t_begin + ts);
            for (int64_t t0 = t_begin; t0 < t_end; t0 += tb) {
                const int64_t t1 = std::min(t_end, t0 + tb);
                for (int64_t p = p_begin; p < p_end; ++p) run_panel(p, t0, t1);
            }
        },
        nt);
}

}  // namespace unigemma::cpu
