// Python view of gguf::GGUFFile. Tensor data comes back as read-only NumPy arrays that
// point into the mapping (zero-copy) and keep the file object alive.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>

#include "base/error.h"
#include "gguf/gguf_file.h"
#include "model/gguf_schema.h"
#include "quant/quant.h"

namespace py = pybind11;
using namespace unigemma;
using gguf::GGUFFile;
using gguf::TensorInfo;
using gguf::Value;
using gguf::ValueType;

namespace {

py::object str_to_py(std::string_view s) {
    PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "surrogateescape");
    if (!o) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(o);
}

template <typename T>
py::array numeric_array(const Value& v) {
    py::array_t<T> a(static_cast<py::ssize_t>(v.count));
    if (v.count) std::memcpy(a.mutable_data(), v.elems, v.count * sizeof(T));
    return std::move(a);
}

py::object value_to_py(const Value& v, const std::string& key) {
    switch (v.type) {
        case ValueType::UINT8: case ValueType::UINT16: case ValueType::UINT32: case ValueType::UINT64:
            return py::int_(v.u);
        case ValueType::INT8: case ValueType::INT16: case ValueType::INT32: case ValueType::INT64:
            return py::int_(v.i);
        case ValueType::FLOAT32: case ValueType::FLOAT64: return py::float_(v.f);
        case ValueType::BOOL: return py::bool_(v.u != 0);
        case ValueType::STRING: return str_to_py(v.str);
        case ValueType::ARRAY:
            switch (v.elem_type) {
                case ValueType::UINT8: return numeric_array<uint8_t>(v);
                case ValueType::INT8: return numeric_array<int8_t>(v);
                case ValueType::UINT16: return numeric_array<uint16_t>(v);
                case ValueType::INT16: return numeric_array<int16_t>(v);
                case ValueType::UINT32: return numeric_array<uint32_t>(v);
                case ValueType::INT32: return numeric_array<int32_t>(v);
                case ValueType::UINT64: return numeric_array<uint64_t>(v);
                case ValueType::INT64: return numeric_array<int64_t>(v);
                case ValueType::FLOAT32: return numeric_array<float>(v);
                case ValueType::FLOAT64: return numeric_array<double>(v);
                case ValueType::BOOL: {
                    py::array_t<bool> a(static_cast<py::ssize_t>(v.count));
                    for (uint64_t k = 0; k < v.count; ++k) a.mutable_data()[k] = v.elems[k] != 0;
                    return std::move(a);
                }
                case ValueType::STRING: {
                    py::list l(v.strings.size());
                    for (size_t k = 0; k < v.strings.size(); ++k) l[k] = str_to_py(v.strings[k]);
                    return std::move(l);
                }
                case ValueType::ARRAY: {
                    const std::vector<Value> children = gguf::array_children(v, key);
                    py::list l(children.size());
                    for (size_t k = 0; k < children.size(); ++k)
                        l[k] = value_to_py(children[k], key + "[" + std::to_string(k) + "]");
                    return std::move(l);
                }
            }
    }
    return py::none();
}

std::string type_desc(const Value& v) {
    if (v.type != ValueType::ARRAY) return gguf::value_type_name(v.type);
    return std::string("ARRAY[") + gguf::value_type_name(v.elem_type) + "]";
}

py::tuple ne_tuple(const TensorInfo& t) {
    py::tuple s(t.n_dims);
    for (uint32_t d = 0; d < t.n_dims; ++d) s[d] = py::int_(t.ne[d]);
    return s;
}

const TensorInfo& need_tensor(const GGUFFile& f, const std::string& name) {
    const TensorInfo* t = f.find_tensor(name);
    if (!t) throw InputError("[gguf] no tensor named '" + name + "'");
    return *t;
}

}  // namespace

void init_gguf(py::module_& m) {
    py::class_<TensorInfo>(m, "TensorInfo")
        .def_readonly("name", &TensorInfo::name)
        .def_property_readonly("ne", &ne_tuple, "dimensions, fastest-varying first (GGUF order)")
        .def_property_readonly("shape", [](const TensorInfo& t) {
            py::tuple s(t.n_dims);
            for (uint32_t d = 0; d < t.n_dims; ++d) s[d] = py::int_(t.ne[t.n_dims - 1 - d]);
            return s;
        }, "dimensions in NumPy/PyTorch order (reverse of ne)")
        .def_readonly("type_id", &TensorInfo::type)
        .def_property_readonly("type", [](const TensorInfo& t) { return std::string(gguf::type_traits(t.type).name); })
        .def_readonly("offset", &TensorInfo::offset)
        .def_readonly("n_elements", &TensorInfo::n_elements)
        .def_readonly("n_bytes", &TensorInfo::n_bytes)
        .def_readonly("part", &TensorInfo::part)
        .def("__repr__", [](const TensorInfo& t) {
            return "<TensorInfo " + t.name + " " + gguf::type_traits(t.type).name + " " +
                   py::str(ne_tuple(t)).cast<std::string>() + ">";
        });

    py::class_<GGUFFile, std::shared_ptr<GGUFFile>>(m, "GGUFFile")
        .def(py::init([](const std::string& path, bool validate_model) {
                 std::shared_ptr<GGUFFile> f;
                 {
                     py::gil_scoped_release nogil;
                     f = std::make_shared<GGUFFile>(path);
                     if (validate_model) model::validate_model_file(*f);
                 }
                 return f;
             }),
             py::arg("path"), py::arg("validate_model") = true)
        .def_property_readonly("version", &GGUFFile::version)
        .def_property_readonly("alignment", &GGUFFile::alignment)
        .def_property_readonly("paths", &GGUFFile::part_paths)
        .def_property_readonly("file_bytes", &GGUFFile::file_bytes)
        .def_property_readonly("tensor_data_bytes", &GGUFFile::tensor_data_bytes)
        .def("keys", [](const GGUFFile& f) { return f.key_order(); })
        .def("__contains__", [](const GGUFFile& f, const std::string& k) { return f.find(k) != nullptr; })
        .def("value_type", [](const GGUFFile& f, const std::string& k) {
            const Value* v = f.find(k);
            if (!v) throw py::key_error(k);
            return type_desc(*v);
        })
        .def("get", [](const GGUFFile& f, const std::string& k, py::object dflt) {
            const Value* v = f.find(k);
            if (!v) return dflt;
            py::object out = value_to_py(*v, k);
            f.check_intact();  // strings and arrays were read from the mapping
            return out;
        }, py::arg("key"), py::arg("default") = py::none())
        .def("__getitem__", [](const GGUFFile& f, const std::string& k) {
            const Value* v = f.find(k);
            if (!v) throw py::key_error(k);
            py::object out = value_to_py(*v, k);
            f.check_intact();
            return out;
        })
        .def("check_intact", &GGUFFile::check_intact,
             "raise GGUFError if a read of the mapped file faulted since it was opened (it was "
             "truncated or changed while in use; such reads return zeros instead of crashing)")
        .def_property_readonly("tensors", [](const GGUFFile& f) { return f.tensors(); })
        .def("tensor_info", [](const GGUFFile& f, const std::string& name) { return need_tensor(f, name); })
        .def("tensor_bytes", [](py::object self, const std::string& name) {
            const GGUFFile& f = self.cast<const GGUFFile&>();
            const TensorInfo& t = need_tensor(f, name);
            // a zero-copy view cannot be checked after the caller reads it: past a truncation
            // it reads zeros, and the next checked call on this file raises
            f.check_intact();
            py::array a(py::dtype::of<uint8_t>(), {static_cast<py::ssize_t>(t.n_bytes)}, {1}, t.data, self);
            a.attr("setflags")(py::arg("write") = false);
            return a;
        }, "raw bytes of a tensor: a read-only zero-copy view into the mapped file")
        .def("tensor_float", [](const GGUFFile& f, const std::string& name) {
            const TensorInfo& t = need_tensor(f, name);
            auto type = static_cast<gguf::GGMLType>(t.type);
            if (!quant::can_dequantize(type))
                throw InputError(std::string("[dequantize] tensor '") + name + "': type " +
                                 gguf::type_traits(t.type).name + " is not supported");
            std::vector<py::ssize_t> shape;
            for (int d = static_cast<int>(t.n_dims) - 1; d >= 0; --d) shape.push_back(static_cast<py::ssize_t>(t.ne[d]));
            py::array_t<float> out(shape);
            float* dst = out.mutable_data();
            {
                py::gil_scoped_release nogil;
                quant::dequantize_row(type, t.data, dst, static_cast<int64_t>(t.n_elements));
            }
            f.check_intact();
            return out;
        }, "a tensor dequantized to float32, in NumPy order (reverse of ne)");

    m.def("validate_model_file", [](const GGUFFile& f) { model::validate_model_file(f); });
}
