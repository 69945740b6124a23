// Machine probes for `unigemma bench kernels`: measurement code, kept out of the core library
// (built as its own static library and linked into the Python module only).
#pragma once
#include <cstddef>
#include <string>

namespace unigemma::bench {

// STREAM-style read bandwidth in GB/s (1e9 bytes/s): n_threads threads (0 = pool default)
// each sum their slice of a `bytes` buffer with 8 independent vector accumulators; best of
// `reps` passes. The buffer is allocated, first-touched by the same threads and freed here.
double bench_read_bandwidth(size_t bytes, int n_threads, int reps);

// Peak single-precision FMA rate in GFLOP/s (2 flops per lane per FMA) with independent FMA
// chains held in registers, per thread, on n_threads threads; best of `reps`. isa: "avx512",
// "avx2", "neon" or "scalar" ("" = the widest this CPU has). Throws InputError if the CPU
// lacks it.
double bench_peak_gflops(int n_threads, const std::string& isa, int reps);

}  // namespace unigemma::bench
