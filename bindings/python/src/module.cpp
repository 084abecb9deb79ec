// The attnkit extension module: each area registers its functions here.
#include "tensor.h"

PYBIND11_MODULE(_attnkit, m) {
    m.doc() = "attnkit C ABI bindings (use the attnkit package, not this module)";
    attnkit_py::init_core(m);
    attnkit_py::init_eager(m);
    attnkit_py::init_sdpa(m);
    attnkit_py::init_flash(m);
    attnkit_py::init_quantize(m);
    attnkit_py::init_int8_sdpa(m);
    attnkit_py::init_decode(m);
    attnkit_py::init_variants(m);
}
