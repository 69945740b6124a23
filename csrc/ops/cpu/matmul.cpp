// Matmul driver. Layout of the work:
//
// Activations: x is quantized once per call into the activation format of the weight type
// (kernels.h), one row per token, each row padded to a 64-byte multiple, into a buffer owned
// by the calling thread that only grows (no allocation per call in steady state). F32
// activations (float weight types) are read from x in place.
//
// GEMV (one token): bandwidth-bound. Rows are cut into chunks of ~kGemvChunkBytes of weights
// (a multiple of kTileRows rows), handed out dynamically to the pool threads: each chunk is a
// contiguous stream of weight rows, so the hardware prefetchers see long sequential runs, and
// a thread slowed by another process on its core simply takes fewer chunks. The row kernel
// (vec_dot) runs per row, except for float weight types (F32 activations), where the tile
// kernel with one column shares each activation load between kTileRows rows.
//
// GEMM (many tokens): compute-bound. The row x token plane is cut into tasks of one row
// block (RB rows, weights ~1/4 of L2) x one token range; inside a task, token blocks of TB
// tokens (activations ~1/2 of L2) are walked, and for every group of kTileRows rows the tile
// kernel sweeps the block's tokens kTileCols at a time. The RB rows stay in L2 across all
// token blocks (weights read from memory once per task), the TB activation rows stay in L2
// across the row groups, and each group of rows is reused for TB tokens from L1/L2.
// Threads split over row blocks; when there are too few row blocks to keep every thread busy,
// tokens are split too.
//
// Determinism: every split (chunks, RB, TB, token ranges) falls on multiples of kTileRows /
// kTileCols counted from row 0 / token 0, so each output element comes from the same kernel
// call shape (same nr, nc, position in the tile) whatever the thread count.
#include "ops/cpu/matmul.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>
#include <string>

#include "base/error.h"
#include "quant/block_layouts.h"
#include "quant/fp16.h"
#include "quant/quant.h"
#include "base/thread_pool.h"

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace unigemma::cpu {

namespace {

constexpr size_t kAlign = 64;
constexpr int64_t kGemvChunkBytes = 128 * 1024;  // weights per GEMV task
constexpr int kTasksPerThread = 4;               // dynamic balance on a shared machine
constexpr int64_t kStreamMaxTokens = 8;          // row-streaming GEMV up to this many tokens
constexpr int64_t kParallelQuantizeElems = 1 << 16;  // quantize activations on the caller below this

// Grow-only 64-byte aligned buffer, one per calling thread.
class Scratch {
public:
    Scratch() = default;
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    ~Scratch() { std::free(p_); }
    uint8_t* get(size_t n) {
        if (n > cap_) {
            size_t want = std::max(n, cap_ + cap_ / 2);
            want = (want + kAlign - 1) / kAlign * kAlign;
            void* q = std::aligned_alloc(kAlign, want);
            if (!q) throw InputError("[matmul] cannot allocate " + std::to_string(want) + " bytes of activation scratch");
            std::free(p_);
            p_ = static_cast<uint8_t*>(q);
            cap_ = want;
        }
        return p_;
    }

private:
    uint8_t* p_ = nullptr;
    size_t cap_ = 0;
};

thread_local Scratch t_act_scratch;

std::string type_name(GGMLType t) {
    const auto tr = gguf::type_traits(static_cast<uint32_t>(t));
    return tr.name ? tr.name : "type id " + std::to_string(static_cast<uint32_t>(t));
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t m) { return ceil_div(a, m) * m; }

struct Problem {
    VecDotFn vec_dot;
    TileDotFn tile_dot;
    const uint8_t* w;
    size_t w_stride;
    const uint8_t* act;
    size_t a_stride;
    const uint8_t* act2;  // residual level (act_levels == 2), same stride; nullptr if none
    int64_t rows, cols, tokens;
    float* y;
    bool gemv_tile;  // GEMV through tile_dot(nr = kTileRows, nc = 1) instead of vec_dot per row
};

// One tile: rows r..r+nr-1 x tokens t..t+nc-1 (the tile kernel, else nr * nc row dots).
inline void tile(const Problem& p, int64_t r, int nr, int64_t t, int nc) {
    const uint8_t* wr = p.w + static_cast<size_t>(r) * p.w_stride;
    const uint8_t* xt = p.act + static_cast<size_t>(t) * p.a_stride;
    float* out = p.y + t * p.rows + r;
    if (p.tile_dot) {
        p.tile_dot(p.cols, nr, nc, out, p.rows, wr, p.w_stride, xt, p.a_stride);
    } else {
        for (int c = 0; c < nc; ++c)
            for (int i = 0; i < nr; ++i)
                p.vec_dot(p.cols, out + c * p.rows + i, wr + static_cast<size_t>(i) * p.w_stride, xt + c * p.a_stride);
    }
    if (!p.act2) return;
    // residual level: same tile shape, weights still in L1, added on top
    float lo[kTileCols * kTileRows];
    const uint8_t* xt2 = p.act2 + static_cast<size_t>(t) * p.a_stride;
    if (p.tile_dot) {
        p.tile_dot(p.cols, nr, nc, lo, kTileRows, wr, p.w_stride, xt2, p.a_stride);
    } else {
        for (int c = 0; c < nc; ++c)
            for (int i = 0; i < nr; ++i)
                p.vec_dot(p.cols, lo + c * kTileRows + i, wr + static_cast<size_t>(i) * p.w_stride, xt2 + c * p.a_stride);
    }
    for (int c = 0; c < nc; ++c)
        for (int i = 0; i < nr; ++i) out[c * p.rows + i] += lo[c * kTileRows + i];
}

// Activation blocks back to floats (the quantization residual of act_levels == 2). Q8_0 and
// Q8_K are weight formats too (quant::dequantize_row); Q8_1 is Q8_0 with a 2-byte block sum
// after d.
void dequantize_act(GGMLType at, const uint8_t* a, float* x, int64_t n) {
    if (at != GGMLType::Q8_1) {
        quant::dequantize_row(at, a, x, n);
        return;
    }
    constexpr size_t bs = 4 + quant::kQK;  // f16 d, f16 s, 32 x int8
    for (int64_t b = 0; b < n / quant::kQK; ++b) {
        uint16_t dh;
        std::memcpy(&dh, a + b * bs, 2);
        const float d = quant::fp16_to_fp32(dh);
        const auto* qs = reinterpret_cast<const int8_t*>(a + b * bs + 4);
        for (int j = 0; j < quant::kQK; ++j) x[b * quant::kQK + j] = d * qs[j];
    }
}

// Q8_1 blocks carry s = d * sum(q) as fp16, which the Q4_1 / Q5_1 kernels multiply by the
// weight block's min. Level 1's s is rounded to fp16 (relative error 2^-11) and the residual
// level cannot see that error, so the residual block's s is set to the rest of the true block
// sum instead: s1 + s2 = sum(x) up to the fp16 rounding of the (small) correction.
void fix_q8_1_sums(const float* x, const uint8_t* a1, uint8_t* a2, int64_t n) {
    constexpr size_t bs = 4 + quant::kQK;  // f16 d, f16 s, 32 x int8
    for (int64_t b = 0; b < n / quant::kQK; ++b) {
        double sum = 0.0;
        for (int j = 0; j < quant::kQK; ++j) sum += x[b * quant::kQK + j];
        uint16_t s1;
        std::memcpy(&s1, a1 + b * bs + 2, 2);
        const uint16_t s2 = quant::fp32_to_fp16(static_cast<float>(sum - quant::fp16_to_fp32(s1)));
        std::memcpy(a2 + b * bs + 2, &s2, 2);
    }
}

// GEMV over a few tokens (decode: 1; a continuous batch or a verify pass: up to
// kStreamMaxTokens). Rows stream from memory once, in order: one token takes the row kernel,
// more take 1 x kTileCols tiles (types without a row kernel: kTileRows x 1 tiles, one token).
// Row kernel and tile kernel share one reduction order per (row, token) (LegacyK U=1), so every
// path gives the same bits.
void gemv(const Problem& p, int nt) {
    const int64_t groups = ceil_div(p.rows, kTileRows);
    const int64_t group_bytes = static_cast<int64_t>(p.w_stride) * kTileRows;
    int64_t per_task = std::max<int64_t>(1, kGemvChunkBytes / group_bytes);
    if (nt > 1) per_task = std::min(per_task, std::max<int64_t>(1, groups / (int64_t(kTasksPerThread) * nt)));
    const int64_t n_tasks = ceil_div(groups, per_task);
    base::parallel_for(
        n_tasks,
        [&](int64_t task, int) {
            const int64_t r0 = task * per_task * kTileRows;
            const int64_t r1 = std::min(p.rows, r0 + per_task * kTileRows);
            if (!p.gemv_tile && (p.tokens == 1 || !p.tile_dot)) {
                const uint8_t* wr = p.w + static_cast<size_t>(r0) * p.w_stride;
                for (int64_t r = r0; r < r1; ++r, wr += p.w_stride)
                    for (int64_t t = 0; t < p.tokens; ++t) {
                        float* yr = p.y + t * p.rows + r;
                        const uint8_t* at = p.act + static_cast<size_t>(t) * p.a_stride;
                        p.vec_dot(p.cols, yr, wr, at);
                        if (p.act2) {
                            float lo;
                            p.vec_dot(p.cols, &lo, wr, p.act2 + static_cast<size_t>(t) * p.a_stride);
                            *yr += lo;
                        }
                    }
            } else if (p.gemv_tile) {
                for (int64_t r = r0; r < r1; r += kTileRows)
                    tile(p, r, static_cast<int>(std::min<int64_t>(kTileRows, r1 - r)), 0, 1);
            } else {
                // 1 x kTileCols tiles: one weight stream (4-row tiles read from DRAM at a
                // third of the single-stream rate here), each block loaded once for the tokens
                for (int64_t r = r0; r < r1; ++r)
                    for (int64_t t = 0; t < p.tokens; t += kTileCols)
                        tile(p, r, 1, t, static_cast<int>(std::min<int64_t>(kTileCols, p.tokens - t)));
            }
        },
        nt);
}

void gemm(const Problem& p, int nt) {
    const size_t l2 = l2_cache_bytes();
    // Token block: activations ~ half of L2.
    int64_t tb = static_cast<int64_t>(l2 / 2 / p.a_stride) / kTileCols * kTileCols;
    tb = std::clamp<int64_t>(tb, kTileCols, round_up(p.tokens, kTileCols));
    // Row block: weights ~ a quarter of L2; smaller if that leaves threads idle.
    int64_t rb = static_cast<int64_t>(l2 / 4 / p.w_stride) / kTileRows * kTileRows;
    rb = std::max<int64_t>(rb, kTileRows);
    if (nt > 1 && ceil_div(p.rows, rb) < int64_t(kTasksPerThread) * nt)
        rb = std::max<int64_t>(kTileRows, round_up(ceil_div(p.rows, int64_t(kTasksPerThread) * nt), kTileRows));
    const int64_t n_rb = ceil_div(p.rows, rb);
    // Token ranges (multiples of kTileCols): more than one only when row blocks are too few.
    int64_t n_ts = 1;
    if (nt > 1 && n_rb < 2 * nt) n_ts = std::min(ceil_div(p.tokens, kTileCols), ceil_div(2 * nt, n_rb));
    const int64_t ts = round_up(ceil_div(p.tokens, n_ts), kTileCols);
    n_ts = ceil_div(p.tokens, ts);

    base::parallel_for(
        n_rb * n_ts,
        [&](int64_t task, int) {
            const int64_t r_begin = (task / n_ts) * rb;
            const int64_t r_end = std::min(p.rows, r_begin + rb);
            const int64_t t_begin = (task % n_ts) * ts;
            const int64_t t_end = std::min(p.tokens, t_begin + ts);
            for (int64_t t0 = t_begin; t0 < t_end; t0 += tb) {
                const int64_t t1 = std::min(t_end, t0 + tb);
                for (int64_t r = r_begin; r < r_end; r += kTileRows) {
                    const int nr = static_cast<int>(std::min<int64_t>(kTileRows, r_end - r));
                    for (int64_t t = t0; t < t1; t += kTileCols)
                        tile(p, r, nr, t, static_cast<int>(std::min<int64_t>(kTileCols, t1 - t)));
                }
            }
        },
        nt);
}

// Checks the arguments of a matmul of `rows` x `cols` weights by n_tokens activation rows and
// fills a Problem, with x quantized (act_levels) into the calling thread's scratch. Returns
// false when there is nothing to compute (rows or n_tokens 0).
bool prepare(const KernelTable& k, GGMLType wtype, const void* w, int64_t rows, int64_t cols, size_t w_row_stride,
             const float* x, int64_t n_tokens, float* y, int n_threads, int act_levels, Problem& p, int& nt) {
    const auto wid = static_cast<uint32_t>(wtype);
    const auto wtr = gguf::type_traits(wid);
    if (!wtr.name || wid >= static_cast<uint32_t>(kMaxTypeId))
        throw InputError("[matmul] unknown weight type " + type_name(wtype));
    const VecDotFn vec_dot = k.vec_dot[wid];
    const TileDotFn tile_dot = k.tile_dot[wid];
    const char* isa = k.isa ? k.isa : "?";
    if (!vec_dot && !tile_dot)
        throw InputError("[matmul] no kernel for weight type " + type_name(wtype) + " on the " + isa + " path");
    const GGMLType atype = activation_type(wtype);
    const auto atr = gguf::type_traits(static_cast<uint32_t>(atype));
    if (rows < 0 || n_tokens < 0)
        throw InputError("[matmul] negative size: rows " + std::to_string(rows) + ", tokens " + std::to_string(n_tokens));
    if (cols <= 0) throw InputError("[matmul] cols must be positive, got " + std::to_string(cols));
    if (cols % wtr.block_size != 0 || cols % atr.block_size != 0)
        throw InputError("[matmul] cols " + std::to_string(cols) + " is not a multiple of the " + wtr.name +
                         " block size " + std::to_string(std::max(wtr.block_size, atr.block_size)));
    const size_t w_row = quant::row_bytes(wtype, cols);
    if (w_row_stride < w_row)
        throw InputError("[matmul] weight row stride " + std::to_string(w_row_stride) + " is less than one " +
                         wtr.name + " row of " + std::to_string(cols) + " (" + std::to_string(w_row) + " bytes)");
    if (n_threads < 0) throw InputError("[matmul] negative thread count " + std::to_string(n_threads));
    if (act_levels != 1 && act_levels != 2)
        throw InputError("[matmul] act_levels must be 1 or 2, got " + std::to_string(act_levels));
    if (rows == 0 || n_tokens == 0) return false;
    if (!w || !x || !y) throw InputError("[matmul] null buffer");
    nt = n_threads > 0 ? n_threads : base::get_threads();

    // GEMV kernel: with F32 activations (float weight types) the activation row is 2-4x the
    // bytes of a weight row and often larger than L1, so the tile kernel, which loads it once
    // for kTileRows rows, streams faster (measured ~1.7x on BF16/F16 3840x15360, AVX-512);
    // with 8-bit activations the row kernel is as fast or faster.
    const bool gemv_tile = !vec_dot || (tile_dot && atype == GGMLType::F32);
    p = Problem{vec_dot, tile_dot, static_cast<const uint8_t*>(w), w_row_stride, nullptr, 0, nullptr, rows, cols,
                n_tokens, y, gemv_tile};
    if (atype == GGMLType::F32) {
        p.act = reinterpret_cast<const uint8_t*>(x);
        p.a_stride = static_cast<size_t>(cols) * sizeof(float);
        return true;
    }
    const QuantizeActFn quantize = k.quantize_act[static_cast<uint32_t>(atype)];
    if (!quantize) throw InputError("[matmul] no " + type_name(atype) + " activation quantizer on the " + isa + " path");
    const size_t a_stride = static_cast<size_t>(round_up(static_cast<int64_t>(quant::row_bytes(atype, cols)), kAlign));
    const int levels = act_levels;
    uint8_t* buf = t_act_scratch.get(a_stride * static_cast<size_t>(n_tokens) * levels);
    uint8_t* buf2 = buf + a_stride * static_cast<size_t>(n_tokens);
    auto quantize_token = [&](int64_t t) {
        uint8_t* a1 = buf + static_cast<size_t>(t) * a_stride;
        quantize(x + t * cols, a1, cols);
        if (levels == 2) {
            thread_local std::vector<float> r;
            r.resize(static_cast<size_t>(cols));
            dequantize_act(atype, a1, r.data(), cols);
            for (int64_t i = 0; i < cols; ++i) r[static_cast<size_t>(i)] = x[t * cols + i] - r[static_cast<size_t>(i)];
            uint8_t* a2 = buf2 + static_cast<size_t>(t) * a_stride;
            quantize(r.data(), a2, cols);
            if (atype == GGMLType::Q8_1) fix_q8_1_sums(x + t * cols, a1, a2, cols);
        }
    };
    if (nt == 1 || n_tokens * cols < kParallelQuantizeElems) {  // small: not worth a wake-up
        for (int64_t t = 0; t < n_tokens; ++t) quantize_token(t);
    } else {
        base::parallel_for(n_tokens, [&](int64_t t, int) { quantize_token(t); }, nt);
    }
    p.act = buf;
    p.a_stride = a_stride;
    if (levels == 2) p.act2 = buf2;
    return true;
}

}  // namespace

size_t l2_cache_bytes() {
    static const size_t v = [] {
        long s = -1;
#if defined(_SC_LEVEL2_CACHE_SIZE)
        s = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
        size_t b = s > 0 ? static_cast<size_t>(s) : size_t(1) << 20;
        return std::clamp<size_t>(b, size_t(256) << 10, size_t(4) << 20);
    }();
    return v;
}

void matmul(const KernelTable& k, GGMLType wtype, const void* w, int64_t rows, int64_t cols, size_t w_row_stride,
            const float* x, int64_t n_tokens, float* y, int n_threads, int act_levels) {
    Problem p{};
    int nt = 1;
    if (!prepare(k, wtype, w, rows, cols, w_row_stride, x, n_tokens, y, n_threads, act_levels, p, nt)) return;
    // A few tokens over a matrix larger than L2: stream the rows once (GEMM's blocking is
    // built for many tokens; with 2-4 it read a 170 MB head at ~5 GB/s instead of ~35).
    const bool stream = n_tokens == 1 || (n_tokens <= kStreamMaxTokens && !p.gemv_tile &&
                                          static_cast<size_t>(rows) * w_row_stride > l2_cache_bytes());
    if (stream)
        gemv(p, nt);
    else
        gemm(p, nt);
}

void matmul_rows(const KernelTable& k, GGMLType wtype, const void* w, int64_t rows, int64_t cols, size_t w_row_stride,
                 const int32_t* row_ids, int64_t n_ids, const float* x, float* y, int n_threads, int act_levels) {
    if (n_ids < 0) throw InputError("[matmul] negative row count " + std::to_string(n_ids));
    if (n_ids > 0 && !row_ids) throw InputError("[matmul] null row ids");
    for (int64_t i = 0; i < n_ids; ++i)
        if (row_ids[i] < 0 || row_ids[i] >= rows)
            throw InputError("[matmul] row id " + std::to_string(row_ids[i]) + " at index " + std::to_string(i) +
                             " is outside [0, " + std::to_string(rows) + ")");
    Problem p{};
    int nt = 1;
    if (!prepare(k, wtype, w, rows, cols, w_row_stride, x, n_ids > 0 ? 1 : 0, y, n_threads, act_levels, p, nt)) return;
    // Row dot per id (the tile kernel with one row when the type has no row kernel); rows are
    // scattered, so chunks of ids rather than of bytes balance the threads.
    constexpr int64_t kIdsPerTask = 64;
    const int64_t n_tasks = (n_ids + kIdsPerTask - 1) / kIdsPerTask;
    base::parallel_for(
        n_tasks,
        [&](int64_t task, int) {
            const int64_t i1 = std::min(n_ids, (task + 1) * kIdsPerTask);
            for (int64_t i = task * kIdsPerTask; i < i1; ++i) {
                const uint8_t* wr = p.w + static_cast<size_t>(row_ids[i]) * p.w_stride;
                float lo = 0.0f;
                if (p.vec_dot) {
                    p.vec_dot(p.cols, y + i, wr, p.act);
                    if (p.act2) p.vec_dot(p.cols, &lo, wr, p.act2);
                } else {
                    p.tile_dot(p.cols, 1, 1, y + i, 1, wr, p.w_stride, p.act, p.a_stride);
                    if (p.act2) p.tile_dot(p.cols, 1, 1, &lo, 1, wr, p.w_stride, p.act2, p.a_stride);
                }
                if (p.act2) y[i] += lo;
            }
        },
        nt);
}

}  // namespace unigemma::cpu
