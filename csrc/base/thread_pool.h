// One persistent, process-wide thread pool. Ops split their work into tasks and call
// parallel_for; the calling thread works too (it is thread 0), so n threads means n - 1
// pool workers plus the caller.
//
// Waiting: after a job, workers spin for a short bounded time (kSpinMicros, or the
// UNIGEMMA_SPIN_US environment variable, 0 = no spin) so that back-to-back ops (the matmuls
// of one layer) start without a wake-up, then block on a condition variable: an idle pool
// burns no CPU.
//
// A parallel_for ends when its last task is done: a worker that the OS has not scheduled in
// time (a busy machine) does not hold the caller up, it just finds no task left.
//
// Concurrency: parallel regions from different caller threads (several Python threads) are
// serialized by a mutex: each runs with the whole pool, one after the other. A parallel_for
// called from inside a task (nested) runs inline on the current thread, sequentially.
//
// Errors: an exception thrown by a task stops the handing out of further tasks, and the
// first one is rethrown to the caller of parallel_for once every thread has left the job.
//
// Fork: a child process made by fork() gets a fresh pool on its first use (the parent's
// worker threads do not exist there).
#pragma once
#include <cstdint>
#include <memory>
#include <type_traits>
#include <utility>

namespace unigemma::base {

// A non-owning reference to a callable (no allocation). The callable must outlive every
// call through the reference; parallel_for only calls it before it returns.
template <class Sig>
class FunctionRef;

template <class R, class... A>
class FunctionRef<R(A...)> {
public:
    template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FunctionRef>>>
    FunctionRef(F&& f) noexcept  // NOLINT(google-explicit-constructor)
        : obj_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
          call_([](void* o, A... a) -> R {
              return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<A>(a)...);
          }) {}
    R operator()(A... a) const { return call_(obj_, std::forward<A>(a)...); }

private:
    void* obj_;
    R (*call_)(void*, A...);
};

// Default thread count of parallel regions (the caller included); 0 = hardware_threads().
// Shrinking stops the surplus workers. Throws InputError for n < 0 or n > kMaxThreads.
void set_threads(int n);
// The current default thread count (>= 1).
int get_threads();
// Logical CPUs this process may run on (affinity mask where the OS has one), >= 1.
int hardware_threads();

constexpr int kMaxThreads = 512;
constexpr int kSpinMicros = 100;

// Runs fn(task, thread) exactly once for every task in [0, n_tasks), on up to n_threads
// threads (0 = get_threads(); never more than n_tasks). Tasks are handed out dynamically in
// increasing order; `thread` is in [0, threads used) and unique among the threads running
// at the same time (index per-thread scratch with it). The result of a task must not depend
// on which thread runs it. Returns when every task is done; rethrows the first exception.
void parallel_for(int64_t n_tasks, FunctionRef<void(int64_t task, int thread)> fn, int n_threads = 0);

// Runs fn(thread, n) exactly once on each of n = n_threads threads (0 = get_threads()),
// concurrently (for benchmarks and first-touch initialization). Nested: runs fn(0, 1).
void parallel_run(int n_threads, FunctionRef<void(int thread, int n)> fn);

// True on a pool worker, and on a caller thread while it runs a parallel region.
bool in_parallel_region();

}  // namespace unigemma::base
