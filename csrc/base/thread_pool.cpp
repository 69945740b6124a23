#include "base/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "base/error.h"

#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#endif

namespace unigemma::base {

namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

int spin_micros() {
    static const int v = [] {
        const char* e = std::getenv("UNIGEMMA_SPIN_US");
        if (!e || !*e) return kSpinMicros;
        char* end = nullptr;
        long x = std::strtol(e, &end, 10);
        if (end == e || x < 0) return kSpinMicros;
        return static_cast<int>(x > 100000 ? 100000 : x);
    }();
    return v;
}

// Spins (bounded by spin_micros()) until done() is true; returns whether it became true.
template <class Pred>
bool spin_until(Pred done) {
    const int us = spin_micros();
    if (us <= 0) return done();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
    for (;;) {
        for (int i = 0; i < 64; ++i) {
            if (done()) return true;
            cpu_relax();
        }
        if (std::chrono::steady_clock::now() >= deadline) return done();
    }
}

thread_local bool t_in_region = false;

// Restores t_in_region on scope exit (also when a task throws).
struct RegionFlag {
    bool saved;
    RegionFlag() : saved(t_in_region) { t_in_region = true; }
    ~RegionFlag() { t_in_region = saved; }
};

using TaskFn = FunctionRef<void(int64_t, int)>;
using RunFn = FunctionRef<void(int, int)>;

// state_ = generation << kStateShift | per_thread << kPartBits | participants: one atomic
// snapshot tells a worker everything it needs to decide whether and how to join a job.
constexpr int kPartBits = 16;
constexpr int kStateShift = kPartBits + 1;
constexpr uint64_t kPartMask = (uint64_t(1) << kPartBits) - 1;
static_assert(kMaxThreads <= static_cast<int>(kPartMask), "participant count must fit the state word");
// The task counter is (generation & 0xffffffff) << 32 | next task index, so a worker that
// wakes late, after its job ended, cannot take a task of the next job by mistake.
constexpr int64_t kMaxTasks = (int64_t(1) << 31) - 1;

class Pool {
public:
    explicit Pool(int default_threads) : default_threads_(default_threads) {}
    // Never destroyed (see get_pool): workers may still be parked at process exit.

    int get_threads() const { return default_threads_.load(std::memory_order_relaxed); }

    void set_threads(int n) {
        default_threads_.store(n, std::memory_order_relaxed);
        if (t_in_region) return;  // resize later; never wait on ourselves
        std::lock_guard<std::mutex> call(call_mu_);
        if (static_cast<int>(threads_.size()) > n - 1) stop_workers_from(n - 1);
    }

    // run_fn != nullptr: run_fn once per participant ("per thread"); else task_fn over
    // [0, n_tasks), handed out dynamically.
    //
    // A job ends when all its tasks are done, not when every worker has checked in: a worker
    // that the OS has not scheduled yet (a busy machine) does not hold the caller up; it
    // finds no task left when it runs. Per-thread jobs do wait for every participant.
    void run(int64_t n_tasks, int n_threads, const TaskFn* task_fn, const RunFn* run_fn) {
        int n = n_threads > 0 ? n_threads : get_threads();
        if (n > kMaxThreads) n = kMaxThreads;
        if (task_fn && n_tasks < n) n = static_cast<int>(n_tasks);
        if (n < 1) n = 1;
        if (t_in_region || n == 1) {  // nested or single-threaded: inline, sequential
            RegionFlag flag;
            if (run_fn) {
                (*run_fn)(0, 1);
            } else {
                for (int64_t t = 0; t < n_tasks; ++t) (*task_fn)(t, 0);
            }
            return;
        }
        if (task_fn && n_tasks > kMaxTasks)
            throw InputError("[threads] " + std::to_string(n_tasks) + " tasks is more than one parallel_for takes");

        std::lock_guard<std::mutex> call(call_mu_);
        n = ensure_workers(n - 1) + 1;
        const bool per_thread = run_fn != nullptr;
        const int64_t total = per_thread ? n : n_tasks;
        ++generation_;
        const auto g32 = static_cast<uint32_t>(generation_);
        // The counter moves to the new generation before anything else of the job is written:
        // a worker still looping on the previous job that reads the new n_tasks_ (release /
        // acquire) therefore also sees the new counter, and its exchange fails.
        counter_.store(static_cast<uint64_t>(g32) << 32, std::memory_order_relaxed);
        n_tasks_.store(total, std::memory_order_release);
        task_fn_ = task_fn;
        run_fn_ = run_fn;
        n_participants_ = n;
        done_.store(0, std::memory_order_relaxed);
        failed_.store(false, std::memory_order_relaxed);
        error_ = nullptr;
        bool wake;
        {
            std::lock_guard<std::mutex> lk(mu_);
            state_.store((generation_ << kStateShift) | (uint64_t(per_thread) << kPartBits) | static_cast<uint64_t>(n),
                         std::memory_order_release);
            wake = sleepers_ > 0;
        }
        if (wake) wake_cv_.notify_all();

        {
            RegionFlag flag;
            work(0, g32, per_thread);
        }
        auto all_done = [this, total] { return done_.load(std::memory_order_acquire) == total; };
        if (!spin_until(all_done)) {
            std::unique_lock<std::mutex> lk(mu_);
            done_cv_.wait(lk, all_done);
        }
        task_fn_ = nullptr;
        run_fn_ = nullptr;
        if (error_) {
            std::exception_ptr e = error_;
            error_ = nullptr;
            std::rethrow_exception(e);
        }
    }

private:
    // Grows the pool to at least k workers (call_mu_ held); returns how many there are (a
    // failure to start a thread leaves fewer, which only means less parallelism).
    int ensure_workers(int k) {
        while (static_cast<int>(threads_.size()) < k) {
            const int index = static_cast<int>(threads_.size()) + 1;
            const uint64_t seen = state_.load(std::memory_order_relaxed);
            try {
                threads_.emplace_back([this, index, seen] { worker_main(index, seen); });
            } catch (const std::system_error&) {
                break;
            }
        }
        return std::min<int>(k, static_cast<int>(threads_.size()));
    }

    // Stops and joins workers beyond the first k (call_mu_ held, no job running).
    void stop_workers_from(int k) {
        if (k < 0) k = 0;
        {
            std::lock_guard<std::mutex> lk(mu_);
            stop_from_.store(k + 1, std::memory_order_release);
        }
        wake_cv_.notify_all();
        for (size_t i = static_cast<size_t>(k); i < threads_.size(); ++i) threads_[i].join();
        threads_.resize(static_cast<size_t>(k));
        std::lock_guard<std::mutex> lk(mu_);
        stop_from_.store(INT_MAX, std::memory_order_release);
    }

    void worker_main(int index, uint64_t seen) {
        t_in_region = true;
        for (;;) {
            uint64_t s = 0;
            auto changed = [&] {
                s = state_.load(std::memory_order_acquire);
                return s != seen || index >= stop_from_.load(std::memory_order_acquire);
            };
            if (!spin_until(changed)) {
                std::unique_lock<std::mutex> lk(mu_);
                ++sleepers_;
                wake_cv_.wait(lk, changed);
                --sleepers_;
            }
            if (index >= stop_from_.load(std::memory_order_acquire)) return;
            seen = s;
            if (index >= static_cast<int>(s & kPartMask)) continue;  // not in this job: never touch its data
            work(index, static_cast<uint32_t>(s >> kStateShift), (s >> kPartBits) & 1);
        }
    }

    void record_error() {
        std::lock_guard<std::mutex> lk(err_mu_);
        if (!error_) error_ = std::current_exception();
        failed_.store(true, std::memory_order_relaxed);
    }

    // Adds `completed` finished tasks of a job of `total` tasks; wakes the caller at the end.
    // The job's data must not be touched after this (the caller may return at once).
    void finish(int64_t completed, int64_t total) {
        if (completed == 0) return;
        if (done_.fetch_add(completed, std::memory_order_acq_rel) + completed == total) {
            std::lock_guard<std::mutex> lk(mu_);  // the caller is spinning or waiting on done_cv_
            done_cv_.notify_one();
        }
    }

    // Runs tasks of generation g (low 32 bits) as `participant`.
    void work(int participant, uint32_t g, bool per_thread) {
        if (per_thread) {  // the job waits for this participant, so its data stays valid
            const int64_t total = n_tasks_.load(std::memory_order_relaxed);
            try {
                (*run_fn_)(participant, n_participants_);
            } catch (...) {
                record_error();
            }
            finish(1, total);
            return;
        }
        // Dynamic tasks. Job data is only read after taking a task index < n_tasks by a
        // compare-exchange on a counter still tagged with generation g: the job cannot end
        // before that task is done, so the data read is this job's (and the next job's writes
        // happen after it: task done -> done_ -> caller returns -> call_mu_ -> next job).
        int64_t completed = 0, total = 0;
        uint64_t v = counter_.load(std::memory_order_acquire);
        for (;;) {
            if (static_cast<uint32_t>(v >> 32) != g) break;  // job over, a newer one runs
            const int64_t idx = static_cast<int64_t>(v & 0xffffffffu);
            // A late worker may read the next job's count here (hence atomic); the exchange
            // below then fails, as the counter carries the next generation.
            if (idx >= n_tasks_.load(std::memory_order_acquire)) break;
            if (!counter_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel, std::memory_order_acquire))
                continue;
            total = n_tasks_.load(std::memory_order_relaxed);
            if (!failed_.load(std::memory_order_relaxed)) {
                try {
                    (*task_fn_)(idx, participant);
                } catch (...) {
                    record_error();
                }
            }
            ++completed;
            v = counter_.load(std::memory_order_acquire);
        }
        finish(completed, total);
    }

    std::mutex call_mu_;  // one parallel region at a time
    std::mutex mu_;       // sleeping / waking
    std::condition_variable wake_cv_, done_cv_;
    std::vector<std::thread> threads_;  // worker i + 1 is participant i + 1
    int sleepers_ = 0;                  // guarded by mu_
    uint64_t generation_ = 0;           // guarded by call_mu_
    std::atomic<uint64_t> state_{0};
    std::atomic<int> stop_from_{INT_MAX};
    std::atomic<int> default_threads_;

    // The current job; written by the caller before state_ is published.
    const TaskFn* task_fn_ = nullptr;
    const RunFn* run_fn_ = nullptr;
    std::atomic<int64_t> n_tasks_{0};
    int n_participants_ = 0;
    std::atomic<uint64_t> counter_{0};
    std::atomic<int64_t> done_{0};
    std::atomic<bool> failed_{false};
    std::mutex err_mu_;
    std::exception_ptr error_;
};

std::atomic<Pool*> g_pool{nullptr};
std::atomic<int> g_default_after_fork{0};

#if defined(__unix__) || defined(__APPLE__)
void after_fork_in_child() {
    // The parent's workers do not exist here and its mutexes may be held: abandon (leak) the
    // old pool; the next use builds a fresh one with the same default thread count.
    Pool* old = g_pool.load(std::memory_order_relaxed);
    if (old) g_default_after_fork.store(old->get_threads(), std::memory_order_relaxed);
    g_pool.store(nullptr, std::memory_order_relaxed);
}
#endif

Pool& get_pool() {
#if defined(__unix__) || defined(__APPLE__)
    static const int registered = pthread_atfork(nullptr, nullptr, after_fork_in_child);
    (void)registered;
#endif
    Pool* p = g_pool.load(std::memory_order_acquire);
    if (p) return *p;
    int d = g_default_after_fork.load(std::memory_order_relaxed);
    auto* fresh = new Pool(d > 0 ? d : hardware_threads());  // starts no thread until used
    if (g_pool.compare_exchange_strong(p, fresh, std::memory_order_acq_rel)) return *fresh;
    delete fresh;
    return *p;
}

}  // namespace

int hardware_threads() {
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        const int n = CPU_COUNT(&set);
        if (n > 0) return n < kMaxThreads ? n : kMaxThreads;
    }
#endif
    const unsigned n = std::thread::hardware_concurrency();
    if (n == 0) return 1;
    return n < static_cast<unsigned>(kMaxThreads) ? static_cast<int>(n) : kMaxThreads;
}

void set_threads(int n) {
    if (n < 0 || n > kMaxThreads)
        throw InputError("[threads] thread count " + std::to_string(n) + " is outside 0.." +
                         std::to_string(kMaxThreads));
    get_pool().set_threads(n == 0 ? hardware_threads() : n);
}

int get_threads() { return get_pool().get_threads(); }

bool in_parallel_region() { return t_in_region; }

void parallel_for(int64_t n_tasks, FunctionRef<void(int64_t task, int thread)> fn, int n_threads) {
    if (n_threads < 0) throw InputError("[threads] negative thread count " + std::to_string(n_threads));
    if (n_tasks <= 0) return;
    get_pool().run(n_tasks, n_threads, &fn, nullptr);
}

void parallel_run(int n_threads, FunctionRef<void(int thread, int n)> fn) {
    if (n_threads < 0) throw InputError("[threads] negative thread count " + std::to_string(n_threads));
    get_pool().run(0, n_threads, nullptr, &fn);
}

}  // namespace unigemma::base
