// Python bindings for the token sampler (csrc/sampling/sampler.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "sampling/sampler.h"

namespace py = pybind11;
using namespace unigemma;

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

// Python ints are unbounded: reject ids that do not fit int32 here (a plain cast would wrap
// them into range); the Sampler constructor checks [0, n_vocab).
int32_t to_id(int64_t v, const char* field) {
    if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
        throw InputError(std::string("[sampler] ") + field + ": token id " + std::to_string(v) +
                         " is outside [0, n_vocab)");
    return static_cast<int32_t>(v);
}

// The sampler keeps scratch buffers and generator state: the GIL is released while it runs,
// so calls on one object from several Python threads are serialized here.
struct PySampler {
    sampling::Sampler s;
    std::mutex mu;
    PySampler(sampling::SamplerParams p, int32_t n) : s(std::move(p), n) {}
};

std::vector<int32_t> to_history(const std::vector<int64_t>& h) {
    std::vector<int32_t> out(h.size());
    for (size_t i = 0; i < h.size(); ++i) out[i] = to_id(h[i], "history");
    return out;
}

const float* logits_ptr(const PySampler& ps, const FloatArray& logits) {
    if (logits.ndim() != 1)
        throw InputError("[sampler] logits must be 1-D [n_vocab], got " + std::to_string(logits.ndim()) +
                         " dimensions");
    if (logits.shape(0) != ps.s.n_vocab())
        throw InputError("[sampler] logits has " + std::to_string(logits.shape(0)) + " entries, n_vocab is " +
                         std::to_string(ps.s.n_vocab()));
    return logits.data();
}

// A sampler operation from one row of logits (+ history) to a float32 [n_vocab] row, run with
// the GIL released and the sampler locked.
using RowOp = void (sampling::Sampler::*)(const float*, const std::vector<int32_t>&, float*);
FloatArray row_op(PySampler& ps, const FloatArray& logits, const std::vector<int64_t>& history, RowOp fn) {
    const float* lp = logits_ptr(ps, logits);
    const auto h = to_history(history);
    FloatArray out(static_cast<py::ssize_t>(ps.s.n_vocab()));
    float* op = out.mutable_data();
    {
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(ps.mu);
        (ps.s.*fn)(lp, h, op);
    }
    return out;
}

}  // namespace

void init_sampler(py::module_& m) {
    py::class_<PySampler>(m, "Sampler",
                          "Token sampler: logit_bias / suppress -> repetition, frequency, presence penalties over "
                          "the last penalty_last_n history tokens -> greedy (temperature <= 0) or top-k -> top-p "
                          "-> min-p on the temperature-free distribution -> temperature -> seeded draw.")
        .def(py::init([](int32_t n_vocab, float temperature, int32_t top_k, float top_p, float min_p,
                         float repetition_penalty, float frequency_penalty, float presence_penalty,
                         int32_t penalty_last_n, uint64_t seed, std::optional<py::dict> logit_bias,
                         std::optional<std::vector<int64_t>> suppress) {
                 sampling::SamplerParams p;
                 p.temperature = temperature;
                 p.top_k = top_k;
                 p.top_p = top_p;
                 p.min_p = min_p;
                 p.repetition_penalty = repetition_penalty;
                 p.frequency_penalty = frequency_penalty;
                 p.presence_penalty = presence_penalty;
                 p.penalty_last_n = penalty_last_n;
                 p.seed = seed;
                 if (logit_bias)
                     for (auto item : *logit_bias)
                         p.logit_bias.emplace_back(to_id(item.first.cast<int64_t>(), "logit_bias"),
                                                   item.second.cast<float>());
                 if (suppress)
                     for (int64_t id : *suppress) p.suppress.push_back(to_id(id, "suppress"));
                 return new PySampler(std::move(p), n_vocab);
             }),
             py::arg("n_vocab"), py::arg("temperature") = 0.0f, py::arg("top_k") = 0, py::arg("top_p") = 1.0f,
             py::arg("min_p") = 0.0f, py::arg("repetition_penalty") = 1.0f, py::arg("frequency_penalty") = 0.0f,
             py::arg("presence_penalty") = 0.0f, py::arg("penalty_last_n") = 64, py::arg("seed") = 0,
             py::arg("logit_bias") = py::none(), py::arg("suppress") = py::none())
        .def(
            "sample",
            [](PySampler& ps, const FloatArray& logits, const std::vector<int64_t>& history) {
                const float* lp = logits_ptr(ps, logits);
                const auto h = to_history(history);
                py::gil_scoped_release nogil;
                std::lock_guard<std::mutex> lock(ps.mu);
                return ps.s.sample(lp, h);
            },
            py::arg("logits"), py::arg("history") = std::vector<int64_t>{},
            "Sample one token id from logits (float32 [n_vocab]); history: tokens so far, for the penalties.")
        .def(
            "process_logits",
            [](PySampler& ps, const FloatArray& logits, const std::vector<int64_t>& history) {
                return row_op(ps, logits, history, &sampling::Sampler::process_logits);
            },
            py::arg("logits"), py::arg("history") = std::vector<int64_t>{},
            "The logits after logit_bias, suppress and the penalties (the first stage of sample()).")
        .def(
            "probs",
            [](PySampler& ps, const FloatArray& logits, const std::vector<int64_t>& history) {
                return row_op(ps, logits, history, &sampling::Sampler::probs);
            },
            py::arg("logits"), py::arg("history") = std::vector<int64_t>{},
            "float32 [n_vocab]: the distribution sample() draws from (greedy: one-hot).")
        .def(
            "uniform",
            [](PySampler& ps) {
                std::lock_guard<std::mutex> lock(ps.mu);
                return ps.s.uniform();
            },
            "One uniform draw in [0, 1) from the sampler's generator.")
        .def(
            "draw",
            [](PySampler& ps, const FloatArray& weights) {
                const float* wp = logits_ptr(ps, weights);
                py::gil_scoped_release nogil;
                std::lock_guard<std::mutex> lock(ps.mu);
                return ps.s.draw(wp);
            },
            py::arg("weights"), "A token drawn from non-negative weights (float32 [n_vocab], any sum > 0).")
        .def(
            "reseed",
            [](PySampler& ps, uint64_t seed) {
                std::lock_guard<std::mutex> lock(ps.mu);
                ps.s.reseed(seed);
            },
            py::arg("seed"), "Restart the generator as if constructed with this seed.")
        .def_property_readonly("n_vocab", [](const PySampler& ps) { return ps.s.n_vocab(); });
}
