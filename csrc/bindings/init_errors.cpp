// Maps unigemma::Error subclasses to Python classes. The hierarchy mirrors C++:
//   UnigemmaError(Exception) > GGUFError(+ValueError), ModelError, InputError(+ValueError)
//   InputError > ContextOverflowError; DeviceError(+RuntimeError): a GPU missing, refusing or lost
#include <pybind11/pybind11.h>

#include <cstring>

#include "base/error.h"

namespace py = pybind11;

void init_errors(py::module_& m) {
    static py::handle base = PyErr_NewException("unigemma._core.UnigemmaError", PyExc_Exception, nullptr);
    m.attr("UnigemmaError") = base;
    auto make = [&m](const char* name, py::tuple bases) {
        std::string full = std::string("unigemma._core.") + name;
        PyObject* cls = PyErr_NewException(full.c_str(), bases.ptr(), nullptr);
        m.attr(name) = py::handle(cls);
        return py::handle(cls);
    };
    static py::handle gguf = make("GGUFError", py::make_tuple(base, py::handle(PyExc_ValueError)));
    static py::handle model = make("ModelError", py::make_tuple(base));
    static py::handle input = make("InputError", py::make_tuple(base, py::handle(PyExc_ValueError)));
    static py::handle overflow = make("ContextOverflowError", py::make_tuple(input));
    static py::handle device = make("DeviceError", py::make_tuple(base, py::handle(PyExc_RuntimeError)));

    // Messages may quote bytes from a malformed file: decode with replacement, never fail.
    static auto set = [](py::handle cls, const char* what) {
        PyObject* msg = PyUnicode_DecodeUTF8(what, static_cast<Py_ssize_t>(std::strlen(what)), "replace");
        PyErr_SetObject(cls.ptr(), msg);
        Py_XDECREF(msg);
    };
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const unigemma::Interrupted&) {
            PyErr_SetNone(PyExc_KeyboardInterrupt);
        } catch (const unigemma::ContextOverflowError& e) {
            set(overflow, e.what());
        } catch (const unigemma::InputError& e) {
            set(input, e.what());
        } catch (const unigemma::GGUFError& e) {
            set(gguf, e.what());
        } catch (const unigemma::ModelError& e) {
            set(model, e.what());
        } catch (const unigemma::DeviceError& e) {
            set(device, e.what());
        } catch (const unigemma::Error& e) {
            set(base, e.what());
        }
    });
}
