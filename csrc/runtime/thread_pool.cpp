#include "runtime/thread_pool.h"

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

#include "common/error.h"

#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#endif

namespace unigemma::runtime {

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

constexpr int kPartBits = 16;  // state_ = generation << kPartBits | participants
static_assert(kMaxThreads < (1 << kPartBits), "participant count must fit the state word");

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

    // per_thread: run_fn once per participant; else task_fn over [0, n_tasks).
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

        std::lock_guard<std::mutex> call(call_mu_);
        n = ensure_workers(n - 1) + 1;
        task_fn_ = task_fn;
        run_fn_ = run_fn;
        n_tasks_ = n_tasks;
        n_participants_ = n;
        next_.store(0, std::memory_order_relaxed);
        remaining_.store(n - 1, std::memory_order_relaxed);
        failed_.store(false, std::memory_order_relaxed);
        error_ = nullptr;
        bool wake;
        {
            std::lock_guard<std::mutex> lk(mu_);
            ++generation_;
            state_.store((generation_ << kPartBits) | static_cast<uint64_t>(n), std::memory_order_release);
            wake = sleepers_ > 0;
        }
        if (wake) wake_cv_.notify_all();

        {
            RegionFlag flag;
            work(0);
        }
        auto all_done = [this] { return remaining_.load(std::memory_order_acquire) == 0; };
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
            const int participants = static_cast<int>(s & ((1u << kPartBits) - 1));
            if (index >= participants) continue;  // not in this job: never touch its data
            work(index);
            if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                std::lock_guard<std::mutex> lk(mu_);  // the caller is spinning or waiting on done_cv_
                done_cv_.notify_one();
            }
        }
    }

    void work(int participant) {
        try {
            if (run_fn_) {
                (*run_fn_)(participant, n_participants_);
                return;
            }
            while (!failed_.load(std::memory_order_relaxed)) {
                const int64_t t = next_.fetch_add(1, std::memory_order_relaxed);
                if (t >= n_tasks_) break;
                (*task_fn_)(t, participant);
            }
        } catch (...) {
            std::lock_guard<std::mutex> lk(err_mu_);
            if (!error_) error_ = std::current_exception();
            failed_.store(true, std::memory_order_relaxed);
        }
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

    // The current job; written by the caller before state_ is published, read by participants.
    const TaskFn* task_fn_ = nullptr;
    const RunFn* run_fn_ = nullptr;
    int64_t n_tasks_ = 0;
    int n_participants_ = 0;
    std::atomic<int64_t> next_{0};
    std::atomic<int> remaining_{0};
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

}  // namespace unigemma::runtime
