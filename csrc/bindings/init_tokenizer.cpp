// Python view of tokenizer::Tokenizer, built from a GGUF path or an open GGUFFile.
// Text comes in as str (encoded UTF-8) or bytes (any bytes, so invalid UTF-8 can reach the byte
// fallback); decoded text goes out as str with invalid UTF-8 replaced by U+FFFD
// (errors="replace": a sequence of byte tokens need not form valid UTF-8), pieces as bytes.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "base/error.h"
#include "gguf/gguf_file.h"
#include "tokenizer/tokenizer.h"

namespace py = pybind11;
using namespace unigemma;
using tokenizer::Tokenizer;

namespace {

// Encoding releases the GIL above this many bytes (below it the release costs more than it frees).
constexpr size_t kReleaseGilBytes = 4096;

std::string text_arg(const py::handle& text) {
    if (py::isinstance<py::bytes>(text)) return text.cast<std::string>();
    if (py::isinstance<py::str>(text)) {
        Py_ssize_t n = 0;
        const char* p = PyUnicode_AsUTF8AndSize(text.ptr(), &n);  // fails on lone surrogates
        if (!p) throw py::error_already_set();
        return std::string(p, static_cast<size_t>(n));
    }
    throw py::type_error("[tokenizer] text must be str or bytes, not " + std::string(py::str(py::type::of(text).attr("__name__"))));
}

py::str decode_replace(const std::string& s) {
    PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
    if (!o) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(o);
}

std::shared_ptr<Tokenizer> from_file(const gguf::GGUFFile& f) { return std::shared_ptr<Tokenizer>(Tokenizer::from_gguf(f)); }

}  // namespace

void init_tokenizer(py::module_& m) {
    py::class_<Tokenizer, std::shared_ptr<Tokenizer>>(m, "Tokenizer",
        "Tokenizer read from a GGUF file's tokenizer.ggml.* metadata (models 'gemma4' and 'llama').")
        .def(py::init([](const std::string& path) {
                 py::gil_scoped_release nogil;
                 gguf::GGUFFile f(path);
                 return from_file(f);
             }),
             py::arg("path"), "from a GGUF path")
        .def(py::init([](const gguf::GGUFFile& f) { return from_file(f); }), py::arg("gguf"),
             "from an open GGUFFile")
        .def("encode", [](const Tokenizer& t, const py::object& text, std::optional<bool> add_bos, bool special) {
                 const std::string s = text_arg(text);
                 const bool bos = add_bos.value_or(t.add_bos_default());
                 if (s.size() < kReleaseGilBytes) return t.encode(s, bos, special);
                 py::gil_scoped_release nogil;
                 return t.encode(s, bos, special);
             },
             py::arg("text"), py::arg("add_bos") = py::none(), py::arg("special") = true,
             "token ids of text (str, or bytes taken as UTF-8; invalid bytes become <0xNN> byte tokens). "
             "add_bos: None = the file's add_bos_token. special: match control-token texts.")
        .def("decode", [](const Tokenizer& t, const std::vector<int32_t>& ids, bool special) {
                 return decode_replace(t.decode(ids, special));
             },
             py::arg("ids"), py::arg("special") = false,
             "text of ids; invalid UTF-8 (e.g. a lone byte token) is replaced by U+FFFD")
        .def("token_to_piece", [](const Tokenizer& t, int32_t id, bool special) {
                 return py::bytes(t.token_to_piece(id, special));
             },
             py::arg("id"), py::arg("special") = false, "bytes one token adds to decoded text")
        .def("token_text", [](const Tokenizer& t, int32_t id) {
                 const std::string& s = t.token_text(id);
                 return decode_replace(s);
             },
             py::arg("id"), "raw vocab string of a token")
        .def("token_type", [](const Tokenizer& t, int32_t id) { return static_cast<int>(t.token_type(id)); },
             py::arg("id"), "GGUF token type: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte")
        .def("find_token", [](const Tokenizer& t, const std::string& s) { return t.find_token(s); }, py::arg("text"),
             "id of a vocab string, -1 if absent")
        .def("is_eog", &Tokenizer::is_eog, py::arg("id"))
        .def_property_readonly("n_vocab", &Tokenizer::n_vocab)
        .def_property_readonly("bos", &Tokenizer::bos)
        .def_property_readonly("eos", &Tokenizer::eos)
        .def_property_readonly("add_bos", &Tokenizer::add_bos_default)
        .def_property_readonly("eog_ids", [](const Tokenizer& t) { return t.eog_ids(); })
        .def("__len__", &Tokenizer::n_vocab);
}
