// Ctrl-C during a long C++ call (prefill of a long prompt, a decode step of a large model),
// checked between layers WITHOUT the GIL.
//
// Python runs signal handlers on the main thread only, so an eval called from any other thread
// (the server's engine thread) gets no check at all. On the main thread, while the eval runs,
// a C-level SIGINT handler is chained in front of the interpreter's: it sets an atomic flag
// and calls the interpreter's handler (which trips Python's own flag). The check between layers
// reads the atomic; only when it is set does it take the GIL and run PyErr_CheckSignals, so a
// Python-level handler that raises stops the eval with KeyboardInterrupt (Interrupted in C++)
// and one that does not lets it go on. Interrupts simulated without a signal
// (_thread.interrupt_main) are seen when the call returns, not between layers.
#pragma once
#include <pybind11/pybind11.h>

#include <functional>

namespace unigemma::bindings {

// Holds the chained SIGINT handler for its lifetime (construct with the GIL held, on the
// thread that will run the eval); check() is what Context::eval calls between layers.
class InterruptScope {
public:
    InterruptScope();
    ~InterruptScope();
    InterruptScope(const InterruptScope&) = delete;
    InterruptScope& operator=(const InterruptScope&) = delete;
    // Empty when this thread cannot receive Python signals (then nothing is checked).
    const std::function<void()>& check() const { return check_; }

private:
    bool installed_ = false;
    std::function<void()> check_;
};

void init_interrupt(pybind11::module_& m);

}  // namespace unigemma::bindings
