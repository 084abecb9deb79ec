#include "tensor.h"

#include <pybind11/stl.h>

#include <utility>

namespace attnkit_py {

void init_quantize(py::module_ &m) {
    m.def(
        "quantize_per_tensor_into",
        [](py::handle x, int num_bits, py::handle q) {
            const attn_tensor tx = describe(x, "x"), tq = describe(q, "q");
            double scale = 0, zero_point = 0;
            call_without_gil([&] { return attn_quantize_per_tensor(&tx, num_bits, &tq, &scale, &zero_point); });
            return std::make_pair(scale, zero_point);
        },
        "Quantizes x into the preallocated uint8 q; returns (scale, zero_point).");
    m.def(
        "dequantize_per_tensor_into",
        [](py::handle q, double scale, double zero_point, py::handle out) {
            const attn_tensor tq = describe(q, "q"), to = describe(out, "out");
            call_without_gil([&] { return attn_dequantize_per_tensor(&tq, scale, zero_point, &to); });
        },
        "scale * (q - zero_point) into the preallocated out.");
}

}  // namespace attnkit_py
