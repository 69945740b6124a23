// CPU kernel table: one per ISA path (scalar, avx2, avx512, neon), each filled by the file
// of that name compiled with its own target flags, chosen once at run time
// (cpu_features.h: selected_isa(), UNIGEMMA_ISA override). The scalar table is the reference
// every other path is tested against; a nullptr entry means "use the scalar entry".
//
// Quantized matmul works on quantized activations: an input row x (f32) is quantized once
// into the weight type's activation partner and reused by every weight row that reads it:
//   weights Q4_0, Q5_0, Q8_0, IQ4_NL -> Q8_0 activations  (f16 d, 32 x int8)
//   weights Q4_1, Q5_1               -> Q8_1 activations  (f16 d, f16 s = d * sum(q), 32 x int8)
//   weights Q2_K..Q6_K               -> Q8_K activations  (f32 d, 256 x int8, 16 x int16 bsums)
//   weights F32, F16, BF16           -> F32 activations   (no quantization)
// All layouts are those of quant/block_layouts.h (GGML's), so kernels read file data in place.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "gguf/ggml_types.h"

namespace unigemma::cpu {

using gguf::GGMLType;

constexpr int kMaxTypeId = 42;  // > every GGMLType id

// The activation format paired with a weight type (throws InputError if there is none).
GGMLType activation_type(GGMLType weight);

// out = sum_i w[i] * x[i] over n elements (n a multiple of the weight block size);
// w: one row of weight blocks, x: the matching activation blocks.
using VecDotFn = void (*)(int64_t n, float* out, const void* w, const void* x);

// Quantize n floats (n a multiple of the activation block size) to activation blocks.
using QuantizeActFn = void (*)(const float* x, void* y, int64_t n);

using AxpyRowFn = void (*)(int64_t n, float a, const void* row, float* acc);

// Register-tiled multi-row x multi-column dot products:
//   out[c * out_stride + r] = dot(w + r * w_stride, x + c * x_stride), r < nr, c < nc,
// with 1 <= nr <= kTileRows and 1 <= nc <= kTileCols. Strides in bytes for w and x, in
// floats for out. Reusing each loaded weight block for nc columns is what makes GEMM
// (prefill) compute-bound instead of bandwidth-bound.
constexpr int kTileRows = 4;
constexpr int kTileCols = 4;
using TileDotFn = void (*)(int64_t n, int nr, int nc, float* out, int64_t out_stride, const void* w,
                           size_t w_stride, const void* x, size_t x_stride);

// Panel kernels (ops/cpu/panels.h: layouts and exact arithmetic): 16 rows of one panel (nb
// blocks) x nc tokens (1 <= nc <= 8) of panel activations (act_stride bytes apart):
//   out[c * out_stride + i], i < 16, c < nc.
enum class PanelType : int { Q4_0 = 0, Q4_K = 1, Q6_K = 2 };
constexpr int kPanelTypes = 3;
using PanelDotFn = void (*)(int64_t nb, int nc, float* out, int64_t out_stride, const uint8_t* panel,
                            const uint8_t* act, size_t act_stride);

// Attention kernels (KernelTable::kv_row_f32 / attn_*), all on float32 rows of d elements:
//   scores:  s[r * s_stride + j] = sum_i q[r * q_stride + i] * k[j * k_stride + i], r < nr, j < nk.
//            Each s entry is one dot computed the same way whatever nr, nk and its place in
//            the tile (no tile-shape-dependent summation order).
//   softmax: one step of the online softmax for rows r < nr over their visible columns
//            [a[r], b[r]] of the score block (rows with a[r] > b[r] are skipped, untouched):
//              t_j = scale * s_j; m' = max(m[r], max_j t_j); alpha[r] = exp(m[r] - m')
//              (0 when m[r] = -inf); s_j <- p_j = exp(t_j - m') for j in [a, b];
//              l[r] <- l[r] * alpha[r] + sum_j p_j; m[r] <- m'.
//            Column j of the block must mean the same key position in every call (blocks are
//            aligned to absolute positions), which makes the sum order per row fixed.
//   pv:      o[r * o_stride + i] += sum_{j = a[r]..b[r], ascending} p[r * p_stride + j] * v[j * v_stride + i]
//            (one float32 multiply-add per term, j ascending; rows with a[r] > b[r] untouched).
using AttnRowF32Fn = void (*)(int64_t n, const void* row, float* out);
using AttnScoresFn = void (*)(int64_t d, int nr, int nk, const float* q, int64_t q_stride, const float* k,
                              int64_t k_stride, float* s, int64_t s_stride);
using AttnSoftmaxFn = void (*)(int nr, float* s, int64_t s_stride, const int* a, const int* b, float scale, float* m,
                               float* l, float* alpha);
using AttnPvFn = void (*)(int64_t d, int nr, const int* a, const int* b, const float* p, int64_t p_stride,
                          const float* v, int64_t v_stride, float* o, int64_t o_stride);

struct KernelTable {
    const char* isa = nullptr;
    VecDotFn vec_dot[kMaxTypeId] = {};          // indexed by weight type id
    TileDotFn tile_dot[kMaxTypeId] = {};        // indexed by weight type id
    QuantizeActFn quantize_act[kMaxTypeId] = {};  // indexed by activation type id
    // acc[i] += a * row[i], i < n, with `row` one row of a KV-cache type (F32, F16, Q8_0, Q4_0;
    // n a multiple of the block size): the attention's weighted sum of V rows, read in place.
    AxpyRowFn axpy_row[kMaxTypeId] = {};          // indexed by row type id
    // Elementwise / reductions (n elements, any n >= 1):
    void (*rms_norm)(float* y, const float* x, const float* w, int64_t n, float eps) = nullptr;  // w may be null
    void (*layer_norm)(float* y, const float* x, const float* w, const float* b, int64_t n, float eps) = nullptr;
    void (*gelu_tanh)(float* y, const float* x, int64_t n) = nullptr;
    void (*gelu_tanh_mul)(float* y, const float* gate, const float* up, int64_t n) = nullptr;  // gelu(gate) * up
    void (*softmax)(float* y, const float* x, int64_t n) = nullptr;
    void (*softcap)(float* y, const float* x, int64_t n, float cap) = nullptr;  // cap * tanh(x / cap)
    void (*add)(float* y, const float* a, const float* b, int64_t n) = nullptr;
    void (*mul)(float* y, const float* a, const float* b, int64_t n) = nullptr;
    void (*scale)(float* y, const float* x, float s, int64_t n) = nullptr;
    // NEOX RoPE on one head of dim d: pairs (i, i + d/2) rotate by pos * inv_freq[i]
    // (inv_freq[i] = 0 leaves the pair unrotated: proportional RoPE).
    void (*rope_neox)(float* x, int64_t d, float pos, const float* inv_freq) = nullptr;
    // Panel kernels, indexed by PanelType. Not filled from the scalar table: a path without its
    // own kernel keeps the GGUF layout (the model only repacks when the selected path has one).
    PanelDotFn panel_dot[kPanelTypes] = {};

    // ---- Attention (ops/cpu/<isa>_attention.cpp; how they combine: ops/cpu/attention.cpp).
    // Filled for every path by add_attention_kernels(); the SIMD paths' results differ from
    // the scalar reference only by float32 rounding. Each is a pure per-row function: a
    // row's results never depend on the other rows of the call (the batch invariance that
    // speculative decoding relies on).
    // KV-cache row -> float32: out[i] = row[i], i < n (exact for F32/F16; d * q for Q8_0/Q4_0,
    // one float32 product per element, n a multiple of 32 there).
    AttnRowF32Fn kv_row_f32[kMaxTypeId] = {};  // indexed by row type id
    AttnScoresFn attn_scores = nullptr;
    AttnSoftmaxFn attn_softmax = nullptr;
    AttnPvFn attn_pv = nullptr;
};

// The table of one path; throws InputError if that path is not compiled in or the CPU
// lacks it. Entries the path does not provide are filled from the scalar table.
const KernelTable& kernels_for(const std::string& isa);
// The table of the selected path (selected_isa()).
const KernelTable& kernels();

// Row-axpy kernels of a path (ops/cpu/<isa>_rows.cpp, compiled with that path's flags),
// added to its table by the table constructor.
void add_row_kernels_avx2(KernelTable& t);
void add_row_kernels_avx512(KernelTable& t);
// Panel kernels of a path (ops/cpu/<isa>_panels.cpp).
void add_panel_kernels_scalar(KernelTable& t);  // the reference
void add_panel_kernels_avx2(KernelTable& t);
void add_panel_kernels_avx512(KernelTable& t, bool vnni);

// Attention kernels of a path (ops/cpu/<isa>_attention.cpp): add_attention_kernels(t, isa)
// sets those of the named path (kernels_for() names; the scalar ones where the path has
// none, as on NEON for now) on a merged table.
void add_attention_kernels(KernelTable& t, const std::string& isa);
void add_attention_kernels_scalar(KernelTable& t);
void add_attention_kernels_avx2(KernelTable& t);
void add_attention_kernels_avx512(KernelTable& t);

// Per-ISA table constructors (one per ops/cpu/<isa>.cpp); return nullptr when not built.
const KernelTable* scalar_table();
const KernelTable* avx2_table();
const KernelTable* avx512_table();
const KernelTable* neon_table();
// Variants for tests and benchmarks: the AVX-512 table without VNNI (avx512_table() uses
// VNNI when the CPU has it) and the NEON table without dotprod (neon_table() uses dotprod
// when the CPU has it). nullptr when not built.
const KernelTable* avx512_novnni_table();
const KernelTable* neon_nodotprod_table();
// Names kernels_for() accepts beyond available_isas(), for those this CPU can run:
// "avx512-novnni" when the CPU has AVX-512 and VNNI, "neon-nodotprod" when it has dotprod.
std::vector<std::string> kernel_variants();

}  // namespace unigemma::cpu
