// Maps unigemma::Error subclasses to Python classes. The hierarchy mirrors C++:
//   UnigemmaError(Exception) > GGUFError(+ValueError), ModelError, InputError(+ValueError)
//   InputError > ContextOverflowError
#include <pybind11/pybind11.h>

#include "common/error.h"

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

    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const unigemma::ContextOverflowError& e) {
            PyErr_SetString(overflow.ptr(), e.what());
        } catch (const unigemma::InputError& e) {
            PyErr_SetString(input.ptr(), e.what());
        } catch (const unigemma::GGUFError& e) {
            PyErr_SetString(gguf.ptr(), e.what());
        } catch (const unigemma::ModelError& e) {
            PyErr_SetString(model.ptr(), e.what());
        } catch (const unigemma::Error& e) {
            PyErr_SetString(base.ptr(), e.what());
        }
    });
}
