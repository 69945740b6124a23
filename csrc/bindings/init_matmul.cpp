// Python bindings for the CPU matmul driver, the thread pool and the benchmark probes.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "ops/cpu/kernels.h"
#include "bench/bench_probes.h"
#include "ops/cpu/matmul.h"
#include "ops/cpu/panels.h"
#include "quant/quant.h"
#include "base/thread_pool.h"

namespace py = pybind11;
using namespace unigemma;

namespace {

const cpu::KernelTable& table_for(const std::optional<std::string>& isa) {
    return isa ? cpu::kernels_for(*isa) : cpu::kernels();
}

cpu::PanelType panel_type(const std::string& wtype) {
    cpu::PanelType pt{};
    if (!cpu::panel_type_for(gguf::type_from_name(wtype), &pt))
        throw InputError("[panels] no panel format for weight type " + wtype + " (q4_0, q4_k, q6_k)");
    return pt;
}

py::array_t<float> matmul_py(const py::array& w_raw, const std::string& wtype_name, int64_t rows, int64_t cols,
                             const py::array_t<float, py::array::c_style | py::array::forcecast>& x, int n_threads,
                             const std::optional<std::string>& isa, int act_levels) {
    if (!py::isinstance<py::array_t<uint8_t>>(w_raw))
        throw InputError("[matmul] w_raw must be a uint8 array of raw blocks, got dtype " +
                         std::string(py::str(w_raw.dtype())));
    if (!(w_raw.flags() & py::array::c_style)) throw InputError("[matmul] w_raw must be C-contiguous");
    const auto wtype = gguf::type_from_name(wtype_name);
    const auto tr = gguf::type_traits(static_cast<uint32_t>(wtype));
    if (rows < 0) throw InputError("[matmul] rows must be >= 0, got " + std::to_string(rows));
    if (cols <= 0) throw InputError("[matmul] cols must be > 0, got " + std::to_string(cols));
    if (cols % tr.block_size != 0)
        throw InputError("[matmul] cols " + std::to_string(cols) + " is not a multiple of the " + tr.name +
                         " block size " + std::to_string(tr.block_size));
    if (n_threads < 0) throw InputError("[matmul] n_threads must be >= 0, got " + std::to_string(n_threads));
    const size_t rb = quant::row_bytes(wtype, cols);
    if (rows > 0 && rb > std::numeric_limits<size_t>::max() / static_cast<size_t>(rows))
        throw InputError("[matmul] weight size overflows");
    const size_t need = rb * static_cast<size_t>(rows);
    if (static_cast<size_t>(w_raw.nbytes()) < need)
        throw InputError("[matmul] " + std::to_string(rows) + " x " + std::to_string(cols) + " " + tr.name +
                         " weights need " + std::to_string(need) + " bytes, w_raw has " +
                         std::to_string(w_raw.nbytes()));
    if (x.ndim() != 1 && x.ndim() != 2)
        throw InputError("[matmul] x must be 1-D [cols] or 2-D [tokens, cols], got " + std::to_string(x.ndim()) +
                         " dimensions");
    const int64_t x_cols = x.shape(x.ndim() - 1);
    if (x_cols != cols)
        throw InputError("[matmul] x has " + std::to_string(x_cols) + " columns, weights have " +
                         std::to_string(cols));
    const int64_t tokens = x.ndim() == 2 ? x.shape(0) : 1;
    const cpu::KernelTable& k = table_for(isa);

    py::array_t<float> y = x.ndim() == 2 ? py::array_t<float>({static_cast<py::ssize_t>(tokens),
                                                                static_cast<py::ssize_t>(rows)})
                                          : py::array_t<float>(static_cast<py::ssize_t>(rows));
    const void* w = w_raw.data();
    const float* xp = x.data();
    float* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        cpu::matmul(k, wtype, w, rows, cols, rb, xp, tokens, yp, n_threads, act_levels);
    }
    return y;
}

}  // namespace

void init_matmul(py::module_& m) {
    m.def("matmul", &matmul_py, py::arg("w_raw"), py::arg("wtype"), py::arg("rows"), py::arg("cols"), py::arg("x"),
          py::arg("n_threads") = 0, py::arg("isa") = py::none(), py::arg("act_levels") = 1,
          "y[t, r] = sum_c W[r, c] * x[t, c] with W given as raw GGUF blocks (uint8, rows x cols of type `wtype`).\n"
          "x: float32 [tokens, cols] (-> y [tokens, rows]) or [cols] (-> y [rows]). n_threads: 0 = the pool\n"
          "default (set_threads). isa: kernel path ('scalar', 'avx2', 'avx512', 'neon', ...; None = selected).\n"
          "Runs without the GIL; results do not depend on n_threads. act_levels 2: 8-bit activations plus\n"
          "their 8-bit residual (quantized weight types).");

    m.def(
        "pack_panels",
        [](const py::array_t<uint8_t, py::array::c_style>& w_raw, const std::string& wtype, int64_t rows, int64_t cols) {
            const auto pt = panel_type(wtype);
            const auto gt = gguf::type_from_name(wtype);
            const size_t need = quant::row_bytes(gt, cols) * static_cast<size_t>(std::max<int64_t>(rows, 0));
            if (static_cast<size_t>(w_raw.nbytes()) < need)
                throw InputError("[pack_panels] w_raw has " + std::to_string(w_raw.nbytes()) + " bytes, " +
                                 std::to_string(rows) + " x " + std::to_string(cols) + " " + wtype + " needs " +
                                 std::to_string(need));
            py::array_t<uint8_t> out(static_cast<py::ssize_t>(cpu::panels_bytes(pt, rows, cols)));
            cpu::pack_panels(pt, w_raw.data(), rows, cols, quant::row_bytes(gt, cols), out.mutable_data(), 0,
                             (rows + cpu::kPanelRows - 1) / cpu::kPanelRows);
            return out;
        },
        py::arg("w_raw"), py::arg("wtype"), py::arg("rows"), py::arg("cols"),
        "A q4_0 / q4_k / q6_k rows x cols matrix (raw GGUF blocks) repacked into 16-row panels (ops/cpu/panels.h).");
    m.def(
        "matmul_panels",
        [](const py::array_t<uint8_t, py::array::c_style>& panels, const std::string& wtype, int64_t rows, int64_t cols,
           const py::array_t<float, py::array::c_style | py::array::forcecast>& x, int n_threads,
           const std::optional<std::string>& isa) {
            const auto pt = panel_type(wtype);
            if (static_cast<size_t>(panels.nbytes()) < cpu::panels_bytes(pt, rows, cols))
                throw InputError("[matmul_panels] panels array is smaller than a " + std::to_string(rows) + " x " +
                                 std::to_string(cols) + " matrix");
            if (x.ndim() != 2 || x.shape(1) != cols) throw InputError("[matmul_panels] x must be [tokens, cols]");
            const int64_t tokens = x.shape(0);
            const cpu::KernelTable& k = table_for(isa);
            py::array_t<float> y({static_cast<py::ssize_t>(tokens), static_cast<py::ssize_t>(rows)});
            const uint8_t* pp = panels.data();
            const float* xp = x.data();
            float* yp = y.mutable_data();
            py::gil_scoped_release nogil;
            cpu::matmul_panels(k, pt, pp, rows, cols, xp, tokens, yp, n_threads);
            return y;
        },
        py::arg("panels"), py::arg("wtype"), py::arg("rows"), py::arg("cols"), py::arg("x"), py::arg("n_threads") = 0,
        py::arg("isa") = py::none(), "y [tokens, rows] = x [tokens, cols] times a matrix given as panels.");
    m.def(
        "has_panels",
        [](const std::string& wtype, const std::optional<std::string>& isa) {
            return table_for(isa).panel_dot[static_cast<int>(panel_type(wtype))] != nullptr;
        },
        py::arg("wtype"), py::arg("isa") = py::none(),
        "Whether the kernel path has a panel kernel for the weight type (the model repacks such weights).");

    m.def(
        "set_threads", [](int n) { base::set_threads(n); }, py::arg("n"),
        "Default thread count of the kernel thread pool (0 = all hardware threads).");
    m.def("get_threads", &base::get_threads, "Default thread count of the kernel thread pool.");

    m.def(
        "bench_read_bandwidth",
        [](int64_t bytes, int n_threads, int reps) {
            if (bytes <= 0) throw InputError("[bench] bytes must be positive");
            py::gil_scoped_release nogil;
            return bench::bench_read_bandwidth(static_cast<size_t>(bytes), n_threads, reps);
        },
        py::arg("bytes"), py::arg("n_threads") = 0, py::arg("reps") = 5,
        "STREAM-style read bandwidth in GB/s (1e9 B/s) over a `bytes` buffer, best of `reps`.");
    m.def(
        "bench_peak_gflops",
        [](int n_threads, const std::optional<std::string>& isa, int reps) {
            const std::string which = isa ? *isa : std::string();
            py::gil_scoped_release nogil;
            return bench::bench_peak_gflops(n_threads, which, reps);
        },
        py::arg("n_threads") = 0, py::arg("isa") = py::none(), py::arg("reps") = 5,
        "Peak float32 FMA rate in GFLOP/s (independent FMA chains in registers), best of `reps`.");

    // Timing loop for `unigemma bench kernels`, in C++ so that no Python overhead is timed:
    // w_raw holds `copies` back-to-back copies of a rows x cols matrix; each round calls
    // matmul once per copy (rotating copies keeps a GEMV from running out of the last-level
    // cache). Rounds repeat until both min_rounds and min_seconds are reached; returns the
    // best round's seconds per call. warmup: one untimed round first.
    m.def(
        "bench_matmul",
        [](const py::array& w_raw, const std::string& wtype_name, int64_t rows, int64_t cols, int64_t copies,
           const py::array_t<float, py::array::c_style | py::array::forcecast>& x, int n_threads,
           const std::optional<std::string>& isa, double min_seconds, int min_rounds, bool warmup, bool panels) {
            if (!py::isinstance<py::array_t<uint8_t>>(w_raw) || !(w_raw.flags() & py::array::c_style))
                throw InputError("[bench] w_raw must be a C-contiguous uint8 array");
            if (copies < 1 || min_rounds < 1) throw InputError("[bench] copies and min_rounds must be >= 1");
            if (rows <= 0 || cols <= 0) throw InputError("[bench] rows and cols must be positive");
            if (x.ndim() != 2 || x.shape(1) != cols) throw InputError("[bench] x must be [tokens, cols]");
            const auto wtype = gguf::type_from_name(wtype_name);
            const size_t rb = quant::row_bytes(wtype, cols);
            const size_t mat = rb * static_cast<size_t>(rows);
            if (static_cast<size_t>(w_raw.nbytes()) < mat * static_cast<size_t>(copies))
                throw InputError("[bench] w_raw is smaller than copies x one matrix");
            const int64_t tokens = x.shape(0);
            const cpu::KernelTable& k = table_for(isa);
            std::vector<float> y(static_cast<size_t>(tokens * rows));
            const auto* w = static_cast<const uint8_t*>(w_raw.data());
            const float* xp = x.data();
            // panels: the copies repacked once (untimed), then matmul_panels
            std::vector<uint8_t> packed;
            size_t pmat = 0;
            const cpu::PanelType pt = panels ? panel_type(wtype_name) : cpu::PanelType::Q4_0;
            if (panels) {
                pmat = cpu::panels_bytes(pt, rows, cols);
                packed.resize(pmat * static_cast<size_t>(copies));
                for (int64_t c = 0; c < copies; ++c)
                    cpu::pack_panels(pt, w + static_cast<size_t>(c) * mat, rows, cols, rb,
                                     packed.data() + static_cast<size_t>(c) * pmat, 0,
                                     (rows + cpu::kPanelRows - 1) / cpu::kPanelRows);
            }
            py::gil_scoped_release nogil;
            auto round = [&] {
                for (int64_t c = 0; c < copies; ++c) {
                    if (panels)
                        cpu::matmul_panels(k, pt, packed.data() + static_cast<size_t>(c) * pmat, rows, cols, xp, tokens,
                                           y.data(), n_threads);
                    else
                        cpu::matmul(k, wtype, w + static_cast<size_t>(c) * mat, rows, cols, rb, xp, tokens, y.data(),
                                    n_threads);
                }
            };
            if (warmup) round();
            using Clock = std::chrono::steady_clock;
            const auto start = Clock::now();
            double best = std::numeric_limits<double>::infinity();
            for (int r = 0;; ++r) {
                const auto t0 = Clock::now();
                round();
                const auto t1 = Clock::now();
                best = std::min(best, std::chrono::duration<double>(t1 - t0).count() / static_cast<double>(copies));
                if (r + 1 >= min_rounds && std::chrono::duration<double>(t1 - start).count() >= min_seconds) break;
            }
            return best;
        },
        py::arg("w_raw"), py::arg("wtype"), py::arg("rows"), py::arg("cols"), py::arg("copies"), py::arg("x"),
        py::arg("n_threads") = 0, py::arg("isa") = py::none(), py::arg("min_seconds") = 0.5,
        py::arg("min_rounds") = 3, py::arg("warmup") = true, py::arg("panels") = false);

    // Test hook: runs n_tasks tasks on the pool; task `fail_task` throws (kind "input":
    // InputError, "runtime": std::runtime_error). Each task sleeps sleep_us microseconds.
    // Returns (per-task run counts, number of distinct thread indices seen).
    m.def(
        "_thread_pool_selftest",
        [](int64_t n_tasks, int n_threads, int64_t fail_task, const std::string& kind, int sleep_us) {
            if (n_tasks < 0 || n_tasks > (int64_t(1) << 24)) throw InputError("[threads] bad n_tasks");
            std::vector<std::atomic<int>> counts(static_cast<size_t>(n_tasks));
            std::vector<std::atomic<int>> seen(base::kMaxThreads);
            {
                py::gil_scoped_release nogil;
                base::parallel_for(
                    n_tasks,
                    [&](int64_t t, int thread) {
                        counts[static_cast<size_t>(t)].fetch_add(1);
                        seen[static_cast<size_t>(thread)].store(1);
                        if (sleep_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
                        if (t == fail_task) {
                            if (kind == "runtime") throw std::runtime_error("selftest failure in task " + std::to_string(t));
                            throw InputError("[threads] selftest failure in task " + std::to_string(t));
                        }
                    },
                    n_threads);
            }
            std::vector<int> out(counts.size());
            for (size_t i = 0; i < counts.size(); ++i) out[i] = counts[i].load();
            int used = 0;
            for (auto& s : seen) used += s.load();
            return py::make_tuple(out, used);
        },
        py::arg("n_tasks"), py::arg("n_threads") = 0, py::arg("fail_task") = -1, py::arg("kind") = "input",
        py::arg("sleep_us") = 0);
}
