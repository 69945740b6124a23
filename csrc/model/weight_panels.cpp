#include "model/weight_panels.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "base/error.h"
#include "model/text_model.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/panels.h"
#include "base/thread_pool.h"

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#define UG_HAVE_MMAN 1
#endif

namespace unigemma::model {

namespace {

// The panel type of a weight the selected path can repack, else false.
bool qualifies(const Weight* w, cpu::PanelType* pt) {
    if (!w || !w->data || w->rows <= 0 || !cpu::panel_type_for(w->type, pt)) return false;
    // Q6_K panels decode at about half the GGUF row kernel's speed (their 6-bit unpack is
    // compute-bound; measured 13-15 vs 24-32 GB/s), which costs more in decoding than their
    // GEMM gain (1.4x on Q4_K_M's few Q6_K matrices) brings to prefill: kept in GGUF rows.
    if (*pt == cpu::PanelType::Q6_K) return false;
    if (!cpu::kernels().panel_dot[static_cast<int>(*pt)]) return false;
    return w->cols > 0 && w->cols % (*pt == cpu::PanelType::Q4_0 ? 32 : 256) == 0;
}

// Drops the whole pages inside [p, p + n) from this process (file-backed: refetched on use).
void drop_pages(const uint8_t* p, size_t n) {
#if defined(UG_HAVE_MMAN)
    const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    const uintptr_t a = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
    const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
    if (b > a) madvise(reinterpret_cast<void*>(a), b - a, MADV_DONTNEED);
#else
    (void)p;
    (void)n;
#endif
}

// Matrices that stay in GGUF rows but are big enough to stream (decode GEMVs) get copied into
// the same huge-page mapping: hardware prefetchers stop at 4 KiB page boundaries and every
// 4 KiB of a file mapping costs a TLB miss, which held the Q6_K head GEMV at ~26 GB/s in the
// model against ~33 GB/s from anonymous memory.
constexpr size_t kCopyMinBytes = size_t(1) << 20;

size_t matrix_bytes(const Weight* w) { return w->row_bytes * static_cast<size_t>(w->rows); }

bool copies(const Weight* w, cpu::PanelType* pt) {
    return w && w->data && w->rows > 0 && !qualifies(w, pt) && matrix_bytes(w) >= kCopyMinBytes;
}

// Bytes this weight takes in the mapping (64-byte aligned), 0 if it stays where it is.
size_t store_bytes(const Weight* w) {
    cpu::PanelType pt{};
    size_t b = 0;
    if (qualifies(w, &pt)) b = cpu::panels_bytes(pt, w->rows, w->cols);
    else if (copies(w, &pt)) b = matrix_bytes(w);
    return (b + 63) / 64 * 64;
}

}  // namespace

bool repack_enabled() {
    const char* e = std::getenv("UNIGEMMA_REPACK");
    return !(e && std::string(e) == "0");
}

std::unique_ptr<PanelStore> PanelStore::repack(const std::vector<Weight*>& ws, int n_threads) {
    if (!repack_enabled()) return nullptr;
    size_t total = 0;
    cpu::PanelType pt{};
    for (const Weight* w : ws) total += store_bytes(w);
    if (total == 0) return nullptr;
    std::unique_ptr<PanelStore> s(new PanelStore());
#if defined(UG_HAVE_MMAN)
    const size_t huge = size_t(2) << 20;
    s->mapped_ = (total + huge - 1) / huge * huge;
    void* p = mmap(nullptr, s->mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw ModelError("[model] cannot allocate " + std::to_string(total) + " bytes for weight panels");
#if defined(MADV_HUGEPAGE)
    madvise(p, s->mapped_, MADV_HUGEPAGE);
#endif
    s->base_ = static_cast<uint8_t*>(p);
#else
    s->mapped_ = total;
    s->base_ = static_cast<uint8_t*>(std::malloc(total));
    if (!s->base_) throw ModelError("[model] cannot allocate " + std::to_string(total) + " bytes for weight panels");
#endif
    s->bytes_ = total;
    size_t off = 0;
    for (Weight* w : ws) {
        const size_t nbytes = store_bytes(w);
        if (nbytes == 0) continue;
        uint8_t* dst = s->base_ + off;
        off += nbytes;
        if (!qualifies(w, &pt)) {  // a big matrix kept in GGUF rows: copied
            const size_t n = matrix_bytes(w);
            constexpr size_t kChunk = size_t(4) << 20;
            base::parallel_for(
                static_cast<int64_t>((n + kChunk - 1) / kChunk),
                [&](int64_t t, int) {
                    const size_t a = static_cast<size_t>(t) * kChunk;
                    std::memcpy(dst + a, w->data + a, std::min(kChunk, n - a));
                    drop_pages(w->data + a, std::min(kChunk, n - a));  // chunk by chunk: low peak RSS
                },
                n_threads);
            w->data = dst;
            continue;
        }
        const int64_t n_panels = (w->rows + cpu::kPanelRows - 1) / cpu::kPanelRows;
        constexpr int64_t kPanelsPerTask = 16;
        base::parallel_for(
            (n_panels + kPanelsPerTask - 1) / kPanelsPerTask,
            [&](int64_t t, int) {
                const int64_t p0 = t * kPanelsPerTask;
                const int64_t p1 = std::min(n_panels, p0 + kPanelsPerTask);
                cpu::pack_panels(pt, w->data, w->rows, w->cols, w->row_bytes, dst, p0, p1);
                // the source rows of these panels, as soon as they are repacked: low peak RSS
                const int64_t r0 = p0 * cpu::kPanelRows, r1 = std::min(w->rows, p1 * cpu::kPanelRows);
                drop_pages(w->data + static_cast<size_t>(r0) * w->row_bytes, static_cast<size_t>(r1 - r0) * w->row_bytes);
            },
            n_threads);
        w->panels = dst;
    }
    return s;
}

PanelStore::~PanelStore() {
#if defined(UG_HAVE_MMAN)
    if (base_) munmap(base_, mapped_);
#else
    std::free(base_);
#endif
}

}  // namespace unigemma::model
