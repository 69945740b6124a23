// Python bindings of the MTP drafter: AssistantModel (gemma4-assistant GGUF + optional centroid
// side file) and Drafter (one draft step against a target Context).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>

#include "base/error.h"
#include "model/assistant_model.h"
#include "model/text_model.h"

namespace py = pybind11;
using namespace unigemma;

namespace {

std::string fspath(const py::object& o) { return py::str(py::module_::import("os").attr("fspath")(o)); }

py::dict assistant_hparams(const model::AssistantModel& m) {
    const auto& hp = m.hparams();
    py::dict d;
    d["arch"] = hp.arch_name;
    d["n_layer"] = hp.n_layer;
    d["n_embd"] = hp.n_embd;
    d["n_embd_out"] = hp.n_embd_out;
    d["n_vocab"] = hp.n_vocab;
    d["sliding_window"] = hp.window;
    d["rms_norm_eps"] = hp.eps;
    d["ordered_embeddings_declared"] = hp.ordered_embeddings_declared;
    d["num_centroids"] = hp.n_centroids;
    d["centroid_top_k"] = hp.top_k;
    py::list layers;
    for (const auto& s : hp.layers) {
        py::dict l;
        l["sliding"] = s.sliding;
        l["n_head"] = s.n_head;
        l["n_kv_head"] = s.n_kv_head;  // 0: not stated in the file (the target's is used)
        l["head_dim"] = s.head_dim;
        l["n_ff"] = s.n_ff;
        layers.append(l);
    }
    d["layers"] = layers;
    return d;
}

// h: a floating-point array-like of shape (H_t,), as float32.
py::array_t<float, py::array::c_style> hidden_arg(const py::object& o, int64_t width) {
    py::array a;
    try {
        a = py::module_::import("numpy").attr("asarray")(o).cast<py::array>();
    } catch (const py::error_already_set& e) {
        throw InputError(std::string("[drafter] step: h is not array-like (") + e.what() + ")");
    }
    if (a.dtype().kind() != 'f')
        throw InputError("[drafter] step: h must be floating point (float32), got dtype " + std::string(py::str(a.dtype())));
    if (a.ndim() != 1 || a.shape(0) != width) {
        std::string s = "(";
        for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
        s += a.ndim() == 1 ? ",)" : ")";
        throw InputError("[drafter] step: h must have shape (" + std::to_string(width) + ",) (the target's hidden size), got " + s);
    }
    return py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(a);
}

}  // namespace

void init_assistant(py::module_& m) {
    using model::AssistantModel;
    using model::Drafter;
    py::class_<AssistantModel, std::shared_ptr<AssistantModel>>(
        m, "AssistantModel", "Gemma 4 Unified MTP drafter (gemma4-assistant GGUF, ours or llama.cpp's).")
        .def(py::init([](const py::object& path, const py::object& centroids) {
                 const std::string p = fspath(path);
                 const std::string c = centroids.is_none() ? std::string() : fspath(centroids);
                 py::gil_scoped_release nogil;
                 return std::make_shared<AssistantModel>(p, c);
             }),
             py::arg("path"), py::arg("centroids") = py::none(),
             "Opens and validates a drafter GGUF; `centroids`: our *-assistant-centroids.gguf side file "
             "(ordered-embedding head: logits only for the tokens of the top-k centroid clusters).")
        .def_property_readonly("hparams", &assistant_hparams)
        .def_property_readonly("has_centroid_head", &AssistantModel::has_centroid_head)
        .def_property_readonly("n_vocab", [](const AssistantModel& a) { return a.hparams().n_vocab; })
        .def_property_readonly("n_embd", [](const AssistantModel& a) { return a.hparams().n_embd; })
        .def_property_readonly("n_embd_out", [](const AssistantModel& a) { return a.hparams().n_embd_out; },
                               "H_t: the target hidden size the drafter reads and writes")
        .def("__repr__", [](const AssistantModel& a) {
            const auto& hp = a.hparams();
            return "<AssistantModel layers=" + std::to_string(hp.n_layer) + " H=" + std::to_string(hp.n_embd) +
                   " H_t=" + std::to_string(hp.n_embd_out) + " centroid_head=" + (a.has_centroid_head() ? "yes" : "no") +
                   ">";
        });

    py::class_<Drafter, std::shared_ptr<Drafter>>(m, "Drafter",
        "Runs draft steps of an AssistantModel over a target Context's KV cache.")
        .def(py::init([](std::shared_ptr<AssistantModel> a, std::shared_ptr<model::TextModel> t, int n_threads,
                         const std::string& precision, const std::string& backend) {
                 int levels = 0;
                 if (precision == "q8")
                     levels = 1;
                 else if (precision == "q16")
                     levels = 2;
                 else
                     throw InputError("[drafter] act_precision '" + precision + "' is not one of q8, q16");
                 return std::make_shared<Drafter>(a, t, n_threads, levels, backend);
             }),
             py::arg("assistant"), py::arg("target"), py::arg("n_threads") = 0, py::arg("act_precision") = "q8",
             py::arg("backend") = "cpu",
             "Checks that the drafter fits the target model (ModelError naming the mismatch).")
        .def_property_readonly("source_layers",
                               [](const Drafter& d) {
                                   py::list l;
                                   for (int i = 0; i < d.assistant().hparams().n_layer; ++i) l.append(d.source_layer(i));
                                   return l;
                               },
                               "target layer whose K/V cache each drafter layer reads")
        .def(
            "step",
            [](Drafter& d, const model::Context& ctx, int64_t token, int64_t pos, const py::object& h) {
                const auto& hp = d.assistant().hparams();
                if (token < 0 || token >= hp.n_vocab)
                    throw InputError("[drafter] token id " + std::to_string(token) + " is outside the vocabulary [0, " +
                                     std::to_string(hp.n_vocab) + ")");
                auto hin = hidden_arg(h, hp.n_embd_out);
                py::array_t<float> logits(hp.n_vocab), h_next(hp.n_embd_out);
                const float* src = hin.data();
                float* lo = logits.mutable_data();
                float* ho = h_next.mutable_data();
                {
                    py::gil_scoped_release nogil;
                    d.step(ctx, static_cast<int32_t>(token), pos, src, lo, ho);
                }
                return py::make_tuple(logits, h_next);
            },
            py::arg("ctx"), py::arg("token"), py::arg("pos"), py::arg("h"),
            "One draft step at position pos (1 <= pos <= ctx.n_past; every step of a round uses the position of "
            "its first token) for `token` and h float32 (H_t,) (the target's Context.last_hidden row of pos - 1, "
            "or the previous step's h_next). Returns (logits float32 (V,), h_next float32 (H_t,)).");
}
