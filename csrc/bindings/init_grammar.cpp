// Python bindings for JSON-constrained decoding (grammar/json_grammar.h): TokenVocab (the
// per-tokenizer trie, built once and shared) and JsonMatcher (per request). The mask and
// accept calls release the GIL; calls on one matcher from several threads are serialized.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <mutex>
#include <optional>
#include <string>

#include "base/error.h"
#include "grammar/json_grammar.h"
#include "grammar/json_schema.h"
#include "tokenizer/tokenizer.h"

namespace py = pybind11;
using namespace unigemma;
using grammar::JsonMatcher;
using grammar::TokenVocab;

namespace {

struct PyVocab {
    std::shared_ptr<const TokenVocab> v;
};

struct PyMatcher {
    JsonMatcher m;
    std::mutex mu;
    PyMatcher(std::shared_ptr<const grammar::Schema> s, std::shared_ptr<const TokenVocab> v, int ws)
        : m(std::move(s), std::move(v), ws) {}
};

}  // namespace

void init_grammar(py::module_& m) {
    py::class_<PyVocab, std::shared_ptr<PyVocab>>(m, "TokenVocab",
        "Byte trie over a tokenizer's usable tokens for constrained decoding (build once per model).")
        .def(py::init([](const std::shared_ptr<tokenizer::Tokenizer>& t) {
                 py::gil_scoped_release nogil;
                 return std::make_shared<PyVocab>(PyVocab{TokenVocab::from_tokenizer(*t)});
             }),
             py::arg("tokenizer"))
        .def(py::init([](const std::vector<py::bytes>& pieces, const std::vector<bool>& usable,
                         const std::vector<int32_t>& eog, int32_t delimiter_id) {
                 std::vector<std::string> p;
                 p.reserve(pieces.size());
                 for (const auto& b : pieces) p.push_back(std::string(b));
                 std::vector<uint8_t> u(usable.begin(), usable.end());
                 return std::make_shared<PyVocab>(PyVocab{std::make_shared<const TokenVocab>(p, u, eog, delimiter_id)});
             }),
             py::arg("pieces"), py::arg("usable"), py::arg("eog_ids"), py::arg("delimiter_id") = -1,
             "from explicit token bytes (tests): usable[i] = False keeps token i out; delimiter_id: the "
             "<|\"|> token of the tool-call dialect (-1: none)")
        .def_property_readonly("n_vocab", [](const PyVocab& v) { return v.v->n_vocab(); })
        .def_property_readonly("n_usable", [](const PyVocab& v) { return v.v->n_usable(); },
                               "tokens in the trie (the rest are never allowed)")
        .def_property_readonly("n_nodes", [](const PyVocab& v) { return v.v->nodes().size(); })
        .def_property_readonly("memory_bytes", [](const PyVocab& v) { return v.v->memory_bytes(); })
        .def_property_readonly("eog_ids", [](const PyVocab& v) { return v.v->eog(); })
        .def_property_readonly("delimiter_id", [](const PyVocab& v) { return v.v->delimiter(); },
                               "id of the <|\"|> token (Gemma 4 tool-call strings), -1 if none; piece() "
                               "gives it as b'\\xff', the byte the matcher sees")
        .def("piece", [](const PyVocab& v, int32_t id) {
                 if (id < 0 || id >= v.v->n_vocab()) throw InputError("[token_vocab] id out of range");
                 return py::bytes(std::string(v.v->piece(id)));
             },
             py::arg("id"))
        .def("is_usable", [](const PyVocab& v, int32_t id) { return id >= 0 && id < v.v->n_vocab() && v.v->rank_of(id) >= 0; },
             py::arg("id"));

    py::class_<PyMatcher>(m, "JsonMatcher",
        "Incremental JSON matcher over a TokenVocab: schema_json (JSON text of a schema, None = any "
        "object) -> token masks. Throws InputError for bad or unsupported schemas.")
        .def(py::init([](const PyVocab& v, std::optional<std::string> schema_json, int max_whitespace,
                         const std::string& dialect) {
                 grammar::Dialect d;
                 if (dialect == "json") d = grammar::Dialect::Json;
                 else if (dialect == "gemma4_tool") d = grammar::Dialect::Gemma4Tool;
                 else throw InputError("[json_grammar] unknown dialect '" + dialect + "' (json, gemma4_tool)");
                 auto s = grammar::compile_schema_text(schema_json ? *schema_json : std::string(), d);
                 return new PyMatcher(std::move(s), v.v, max_whitespace);
             }),
             py::arg("vocab"), py::arg("schema_json") = py::none(), py::arg("max_whitespace") = 16,
             py::arg("dialect") = "json",
             "dialect 'gemma4_tool': the schema describes the argument object of a Gemma 4 tool call "
             "(csrc/grammar/tool_dialect.h); max_whitespace is then 0")
        .def("mask_logits", [](PyMatcher& pm, py::array logits) {
                 if (logits.ndim() != 1 || !logits.dtype().is(py::dtype::of<float>()) ||
                     !(logits.flags() & py::array::c_style) || !logits.writeable())
                     throw InputError("[json_grammar] logits must be a writable, contiguous 1-D float32 array");
                 float* p = static_cast<float*>(logits.mutable_data());
                 const size_t n = static_cast<size_t>(logits.shape(0));
                 py::gil_scoped_release nogil;
                 std::lock_guard<std::mutex> lock(pm.mu);
                 pm.m.mask_logits(p, n);
             },
             py::arg("logits"), "in place: disallowed tokens -> -inf")
        .def("allowed_tokens", [](PyMatcher& pm) {
                 py::array_t<bool> out(static_cast<py::ssize_t>(pm.m.vocab().n_vocab()));
                 uint8_t* p = reinterpret_cast<uint8_t*>(out.mutable_data());
                 {
                     py::gil_scoped_release nogil;
                     std::lock_guard<std::mutex> lock(pm.mu);
                     pm.m.allowed_ids(p);
                 }
                 return out;
             },
             "bool [n_vocab]: the tokens allowed next")
        .def("is_allowed", [](PyMatcher& pm, int32_t id) {
                 std::lock_guard<std::mutex> lock(pm.mu);
                 return pm.m.is_allowed(id);
             },
             py::arg("token_id"))
        .def("accept_token", [](PyMatcher& pm, int32_t id) {
                 py::gil_scoped_release nogil;
                 std::lock_guard<std::mutex> lock(pm.mu);
                 return pm.m.accept_token(id);
             },
             py::arg("token_id"), "advance by one token; False (state unchanged) if it is not allowed")
        .def("accept_bytes", [](PyMatcher& pm, const py::bytes& b) {
                 const std::string s = b;
                 std::lock_guard<std::mutex> lock(pm.mu);
                 return pm.m.accept_bytes(s);
             },
             py::arg("data"), "advance by raw text bytes; False (state unchanged) if they do not fit")
        .def_property_readonly("done", [](PyMatcher& pm) { return pm.m.done(); },
                               "a complete value was produced and only EOG may follow")
        .def_property_readonly("complete", [](PyMatcher& pm) { return pm.m.complete(); },
                               "a complete value was produced (EOG is allowed)")
        .def_property_readonly("ended", [](PyMatcher& pm) { return pm.m.ended(); }, "an EOG token was accepted")
        .def_property_readonly("n_threads", [](PyMatcher& pm) { return pm.m.n_threads(); });
}
