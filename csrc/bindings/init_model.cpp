// Python bindings of the text model and its inference context.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "gguf/gguf_file.h"
#include "model/text_model.h"
#include "ops/kv_cache.h"
#include "bindings/interrupt.h"

namespace py = pybind11;
using namespace unigemma;

namespace {

model::ContextParams make_params(int64_t n_ctx, int64_t n_ubatch, int n_threads, const std::string& k,
                                 const std::string& v, const std::string& precision = "q8") {
    model::ContextParams p;
    if (precision == "q8")
        p.act_levels = 1;
    else if (precision == "q16")
        p.act_levels = 2;
    else
        throw InputError("[context] act_precision '" + precision + "' is not one of q8, q16");
    p.n_ctx = n_ctx;
    p.n_ubatch = n_ubatch;
    p.n_threads = n_threads;
    p.k_type = ops::kv_type_from_name(k, "K cache");
    p.v_type = ops::kv_type_from_name(v, "V cache");
    return p;
}

py::dict hparams_dict(const model::TextModel& m) {
    const auto& hp = m.hparams();
    py::dict d;
    d["arch"] = hp.arch_name;
    d["n_layer"] = hp.n_layer;
    d["n_embd"] = hp.n_embd;
    d["n_vocab"] = hp.n_vocab;
    d["n_ctx_train"] = hp.n_ctx_train;
    d["sliding_window"] = hp.window;
    d["rms_norm_eps"] = hp.eps;
    d["embedding_scale"] = hp.embed_scale;
    d["attention_scale"] = hp.attn_scale;
    d["final_logit_softcapping"] = hp.final_softcap;
    py::list layers;
    for (const auto& s : hp.layers) {
        py::dict l;
        l["sliding"] = s.sliding;
        l["n_head"] = s.n_head;
        l["n_kv_head"] = s.n_kv_head;
        l["head_dim"] = s.head_dim;
        l["n_ff"] = s.n_ff;
        l["kv_source"] = s.kv_source;
        l["has_v"] = s.has_v;
        layers.append(l);
    }
    d["layers"] = layers;
    return d;
}

}  // namespace

void init_model(py::module_& m) {
    py::class_<model::TextModel, std::shared_ptr<model::TextModel>>(m, "TextModel")
        .def(py::init([](py::object src) {
                 if (py::isinstance<gguf::GGUFFile>(src)) {
                     auto f = src.cast<std::shared_ptr<gguf::GGUFFile>>();
                     py::gil_scoped_release nogil;
                     return std::make_shared<model::TextModel>(std::shared_ptr<const gguf::GGUFFile>(f));
                 }
                 const std::string path = py::str(src);
                 py::gil_scoped_release nogil;
                 return std::make_shared<model::TextModel>(path);
             }),
             py::arg("gguf"), "Loads the text decoder of a gemma4 / gemma3 GGUF (path or GGUFFile).")
        .def_property_readonly("hparams", &hparams_dict)
        .def_property_readonly("n_vocab", [](const model::TextModel& t) { return t.hparams().n_vocab; })
        .def_property_readonly("n_embd", [](const model::TextModel& t) { return t.hparams().n_embd; })
        .def_property_readonly("weight_bytes", &model::TextModel::weight_bytes)
        .def_property_readonly("panel_bytes", &model::TextModel::panel_bytes,
                               "Bytes of weights held in the load-time huge-page store: Q4_0 / Q4_K matrices as 16-row panels, other matrices >= 1 MiB as copies (0: none; UNIGEMMA_REPACK=0 turns it off).")
        .def_property_readonly("gguf", [](const model::TextModel& t) {
            return std::const_pointer_cast<gguf::GGUFFile>(t.file_ptr());
        })
        .def(
            "kv_cache_bytes",
            [](const model::TextModel& t, int64_t n_ctx, int64_t n_ubatch, const std::string& k, const std::string& v) {
                return model::kv_cache_bytes(t, make_params(n_ctx, n_ubatch, 0, k, v));
            },
            py::arg("n_ctx"), py::arg("n_ubatch") = 512, py::arg("k_type") = "f16", py::arg("v_type") = "f16",
            "Bytes of KV cache a context of n_ctx tokens holds when full (sliding layers: fixed rings).");

    py::class_<model::Context>(m, "Context")
        .def(py::init([](std::shared_ptr<model::TextModel> t, int64_t n_ctx, int64_t n_ubatch, int n_threads,
                         const std::string& k, const std::string& v, const std::string& precision,
                         const std::string& backend) {
                 auto p = make_params(n_ctx, n_ubatch, n_threads, k, v, precision);
                 p.backend = backend;
                 return std::make_unique<model::Context>(t, p);
             }),
             py::arg("model"), py::arg("n_ctx") = 4096, py::arg("n_ubatch") = 512, py::arg("n_threads") = 0,
             py::arg("k_type") = "f16", py::arg("v_type") = "f16", py::arg("act_precision") = "q8",
             py::arg("backend") = "cpu",
             "act_precision: 'q8' (8-bit activations in quantized matmuls, as llama.cpp) or 'q16' (8-bit + 8-bit "
             "residual: ~15 bits, 2x the dot products, same weight traffic; the CPU's: the WebGPU backend keeps "
             "float32 activations). backend: 'cpu' or 'webgpu' (the device unigemma.webgpu opened).")
        .def(
            "eval",
            [](model::Context& c, py::array_t<int32_t, py::array::c_style | py::array::forcecast> tokens,
               bool all_logits, bool want_logits, py::object embeddings, py::object kinds) -> py::object {
                if (tokens.ndim() != 1) throw InputError("[context] tokens must be a 1-D sequence of ids");
                const int64_t n = tokens.shape(0);
                if (n == 0) throw InputError("[context] eval needs at least one token");
                const int64_t V = c.model().hparams().n_vocab;
                const int64_t rows = all_logits ? n : 1;
                py::array_t<float> out;
                float* dst = nullptr;
                if (want_logits) {
                    out = py::array_t<float>({rows, V});
                    dst = out.mutable_data();
                }
                std::vector<int32_t> ids(tokens.data(), tokens.data() + n);
                // multimodal rows: embeddings float32 [n, n_embd] + kinds int8 [n] (0 token, 1 image/video,
                // 2 audio); copied so the GIL can be released
                model::EvalInput in;
                std::vector<int8_t> kv;
                std::vector<float> ev;
                if (embeddings.is_none() != kinds.is_none())
                    throw InputError("[context] embeddings and kinds must be given together");
                if (!kinds.is_none()) {
                    auto ka = py::array_t<int8_t, py::array::c_style | py::array::forcecast>::ensure(kinds);
                    auto ea = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(embeddings);
                    if (!ka || !ea) throw InputError("[context] kinds / embeddings must be numeric arrays");
                    const int64_t H = c.model().hparams().n_embd;
                    if (ka.ndim() != 1 || ka.shape(0) != n)
                        throw InputError("[context] kinds must have one entry per token (" + std::to_string(n) + ")");
                    if (ea.ndim() != 2 || ea.shape(0) != n || ea.shape(1) != H)
                        throw InputError("[context] embeddings must be float32 [" + std::to_string(n) + ", " +
                                         std::to_string(H) + "]");
                    kv.assign(ka.data(), ka.data() + n);
                    ev.assign(ea.data(), ea.data() + n * H);
                    for (int64_t i = 0; i < n; ++i)
                        if (kv[static_cast<size_t>(i)] != 0)
                            for (int64_t j = 0; j < H; ++j)
                                if (!std::isfinite(ev[static_cast<size_t>(i * H + j)]))
                                    throw InputError("[context] embedding row " + std::to_string(i) +
                                                     " holds a non-finite value");
                    in.kinds = kv.data();
                    in.embd = ev.data();
                }
                {
                    bindings::InterruptScope interrupts;
                    py::gil_scoped_release nogil;
                    c.eval(ids.data(), n, all_logits, dst, interrupts.check(), in);
                }
                if (!want_logits) return py::none();
                return std::move(out);
            },
            py::arg("tokens"), py::arg("all_logits") = false, py::arg("want_logits") = true,
            py::arg("embeddings") = py::none(), py::arg("kinds") = py::none(),
            "Appends tokens to the context; returns float32 logits [rows, n_vocab] (all new tokens or the last).\n"
            "embeddings float32 [n, n_embd] + kinds int8 [n]: rows with kind 1 (image/video, bidirectional "
            "within a block on sliding layers) or 2 (audio) take the embedding row instead of the token.")
        .def_property_readonly("n_past", &model::Context::n_past)
        .def_property_readonly(
            "last_hidden",
            [](const model::Context& c) {
                const auto& h = c.last_hidden();
                const int64_t H = c.model().hparams().n_embd;
                py::array_t<float> out({static_cast<int64_t>(h.size()) / H, H});
                std::copy(h.begin(), h.end(), out.mutable_data());
                return out;
            },
            "float32 [rows, n_embd]: post-final-norm hidden states of the rows whose logits the last eval returned")
        .def_property_readonly("n_ctx", [](const model::Context& c) { return c.params().n_ctx; })
        .def_property_readonly("kv_bytes", &model::Context::kv_bytes_allocated)
        .def("truncate", &model::Context::truncate, py::arg("n"),
             "Drops positions >= n; False if the sliding-window cache can no longer resume at n.")
        .def("reset", &model::Context::reset)
        .def("reserve_all", &model::Context::reserve_all, py::call_guard<py::gil_scoped_release>(),
             "Allocate (zero-filled, so resident) the KV cache for all n_ctx positions now, instead of as the "
             "context fills.");

    m.def(
        "decode_batch",
        [](py::list contexts, py::array_t<int32_t, py::array::c_style | py::array::forcecast> tokens) {
            const int64_t n = static_cast<int64_t>(contexts.size());
            if (n == 0) throw InputError("[decode_batch] needs at least one context");
            if (tokens.ndim() != 1 || tokens.shape(0) != n)
                throw InputError("[decode_batch] needs one token per context (" + std::to_string(n) + " contexts, " +
                                 std::to_string(tokens.ndim() == 1 ? tokens.shape(0) : -1) + " tokens)");
            std::vector<model::Context*> ctxs;
            for (py::handle h : contexts) {
                if (!py::isinstance<model::Context>(h)) throw InputError("[decode_batch] contexts must be Context objects");
                ctxs.push_back(h.cast<model::Context*>());
            }
            const int64_t V = ctxs[0]->model().hparams().n_vocab;
            py::array_t<float> out({n, V});
            float* dst = out.mutable_data();
            std::vector<int32_t> ids(tokens.data(), tokens.data() + n);
            {
                bindings::InterruptScope interrupts;
                py::gil_scoped_release nogil;
                model::Context::decode_batch(ctxs, ids.data(), dst, interrupts.check());
            }
            return out;
        },
        py::arg("contexts"), py::arg("tokens"),
        "Continuous batching: appends tokens[i] to contexts[i] (distinct contexts of one model) in one forward "
        "pass; returns float32 logits [n, n_vocab], row i bitwise equal to contexts[i].eval([tokens[i]]).");
}
