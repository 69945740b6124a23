// Load-time repacking of a model's Q4_0 and Q4_K matrices into 16-row panels
// (ops/cpu/panels.h), which decode faster than the GGUF row layout and make prefill GEMMs
// compute-efficient. Q6_K matrices stay in GGUF rows (see weight_panels.cpp); they and any
// other matrix of 1 MiB or more are copied into the same huge-page mapping, which streams
// faster than the file mapping's 4 KiB pages (Weight::data then points at the copy).
//
// Memory: the panels live in one anonymous mapping (transparent huge pages requested: a GEMV
// streams it linearly), the size of the GGUF data (Q4_K: +2.8%). As soon as a range of rows
// is repacked or copied, the pages of its GGUF bytes are dropped from this process with
// madvise(MADV_DONTNEED): the file mapping is shared and read-only, so a later read (a matmul
// with 16-bit activations, which keeps the GGUF layout; token lookups in a tied embedding)
// simply faults them back in from the page cache. Peak resident memory while loading is the
// store plus a few MiB in flight, not twice the weights.
//
// A weight is repacked when the selected kernel path has a panel kernel for its type (AVX2,
// AVX-512), unless the environment sets UNIGEMMA_REPACK=0.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "ops/backend.h"

namespace unigemma::model {

using Weight = ops::WeightView;

class PanelStore {
public:
    // Repacks every Q4_0 / Q4_K weight in `ws` the path has a kernel for (sets Weight::panels)
    // and copies the other matrices of >= 1 MiB (moves Weight::data).
    // Returns nullptr when repacking is off or nothing qualifies.
    static std::unique_ptr<PanelStore> repack(const std::vector<Weight*>& ws, int n_threads);
    ~PanelStore();
    PanelStore(const PanelStore&) = delete;
    PanelStore& operator=(const PanelStore&) = delete;
    size_t bytes() const { return bytes_; }  // panels and copies

private:
    PanelStore() = default;
    uint8_t* base_ = nullptr;
    size_t bytes_ = 0;     // panels and copies
    size_t mapped_ = 0;    // mapping length
};

// Whether load-time repacking is on (UNIGEMMA_REPACK).
bool repack_enabled();

}  // namespace unigemma::model
