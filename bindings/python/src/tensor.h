// Turns numpy arrays and torch CPU tensors into attn_tensor descriptors that
// point at their memory (no copy), and attnkit status codes into Python errors.
#pragma once

#include <attnkit.h>
#include <pybind11/pybind11.h>

#include <string>

namespace attnkit_py {

namespace py = pybind11;

// A descriptor of `object`, which must be a numpy array or a torch CPU tensor.
// `name` is the Python argument name used in error messages.
attn_tensor describe(py::handle object, const char *name);

// Raises the Python exception that matches `status`, with attn_last_error().
void raise_if_error(attn_status status);

// An optional argument: the descriptor of `object`, or nothing when it is None.
struct OptionalTensor {
    attn_tensor tensor{};
    bool present = false;
    const attn_tensor *get() const { return present ? &tensor : nullptr; }
};
OptionalTensor describe_optional(py::handle object, const char *name);

// Runs `call` (one attnkit entry point) with the GIL released, then raises its error.
template <typename Call>
void call_without_gil(Call &&call) {
    attn_status status;
    {
        py::gil_scoped_release release;
        status = call();
    }
    raise_if_error(status);
}

void init_core(py::module_ &m);
void init_eager(py::module_ &m);
void init_sdpa(py::module_ &m);
void init_flash(py::module_ &m);
void init_quantize(py::module_ &m);
void init_int8_sdpa(py::module_ &m);
void init_decode(py::module_ &m);
void init_variants(py::module_ &m);

}  // namespace attnkit_py
