#include "bindings/interrupt.h"

#include <signal.h>

#include <atomic>
#include <mutex>

#include "base/error.h"

namespace py = pybind11;

namespace unigemma::bindings {

namespace {

std::atomic<bool> g_sigint_seen{false};
// checks left before the test hook raises SIGINT itself (< 0: off)
std::atomic<long> g_raise_after{-1};
std::mutex g_install_mu;
int g_depth = 0;            // nested scopes on the main thread share one installation
struct sigaction g_python;  // the interpreter's handler while ours is installed

extern "C" void chained_sigint(int sig, siginfo_t* info, void* uctx) {
    g_sigint_seen.store(true, std::memory_order_relaxed);
    if (g_python.sa_flags & SA_SIGINFO) {
        if (g_python.sa_sigaction) g_python.sa_sigaction(sig, info, uctx);
    } else if (g_python.sa_handler != SIG_DFL && g_python.sa_handler != SIG_IGN && g_python.sa_handler) {
        g_python.sa_handler(sig);
    }
}

// Called with the GIL held before every eval (a decode step too): the main thread's ident is
// looked up once, then each call is one comparison. (A child forked from a non-main thread gets
// a new main thread and so no checks between layers: it still sees Ctrl-C when the call returns.)
bool on_main_thread() {
    static const unsigned long main_ident =
        py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
    return PyThread_get_thread_ident() == main_ident;
}

void check_between_layers() {
    long left = g_raise_after.load(std::memory_order_relaxed);
    if (left >= 0 && g_raise_after.fetch_sub(1, std::memory_order_relaxed) == 0) raise(SIGINT);
    if (!g_sigint_seen.load(std::memory_order_relaxed)) return;
    g_sigint_seen.store(false, std::memory_order_relaxed);
    py::gil_scoped_acquire acq;
    if (PyErr_CheckSignals() != 0) {
        PyErr_Clear();
        throw Interrupted();
    }
}

}  // namespace

InterruptScope::InterruptScope() {
    if (!on_main_thread()) return;
    std::lock_guard<std::mutex> lock(g_install_mu);
    if (g_depth == 0) {
        struct sigaction cur {};
        if (sigaction(SIGINT, nullptr, &cur) != 0) return;
        // only in front of a handler that does something (the interpreter's, or a user's)
        const bool handled = (cur.sa_flags & SA_SIGINFO) ? cur.sa_sigaction != nullptr
                                                         : cur.sa_handler != SIG_DFL && cur.sa_handler != SIG_IGN;
        if (!handled) return;
        g_python = cur;
        struct sigaction ours {};
        ours.sa_sigaction = chained_sigint;
        ours.sa_flags = SA_SIGINFO | (cur.sa_flags & SA_ONSTACK);
        sigemptyset(&ours.sa_mask);
        if (sigaction(SIGINT, &ours, nullptr) != 0) return;
        g_sigint_seen.store(false, std::memory_order_relaxed);
    }
    ++g_depth;
    installed_ = true;
    check_ = check_between_layers;
}

InterruptScope::~InterruptScope() {
    if (!installed_) return;
    std::lock_guard<std::mutex> lock(g_install_mu);
    if (--g_depth == 0) sigaction(SIGINT, &g_python, nullptr);
}

void init_interrupt(py::module_& m) {
    m.def(
        "_raise_sigint_after_checks",
        [](long n) { g_raise_after.store(n < 0 ? -1 : n, std::memory_order_relaxed); },
        py::arg("n"),
        "Test hook: the (n+1)-th interrupt check between layers raises a real SIGINT in the eval's "
        "thread (n < 0: off). Makes Ctrl-C during a prefill deterministic in tests.");
}

}  // namespace unigemma::bindings
