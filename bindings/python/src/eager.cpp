#include "tensor.h"

namespace attnkit_py {

void init_eager(py::module_ &m) {
    m.def(
        "eager_forward",
        [](py::handle q, py::handle k, py::handle v, py::handle mask, py::handle out, py::handle weights,
           int64_t num_heads, int64_t head_dim, bool causal) {
            const attn_tensor tq = describe(q, "q"), tk = describe(k, "k"), tv = describe(v, "v");
            const attn_tensor to = describe(out, "out");
            const OptionalTensor tm = describe_optional(mask, "mask"), tw = describe_optional(weights, "weights");
            attn_eager_params params{};
            params.struct_size = sizeof params;
            params.mask_mode = causal ? ATTN_MASK_CAUSAL_TOP_LEFT : ATTN_MASK_NONE;
            params.num_heads = num_heads;
            params.head_dim = head_dim;
            call_without_gil([&] { return attn_eager_forward(&params, &tq, &tk, &tv, tm.get(), &to, tw.get()); });
        },
        py::arg("q"), py::arg("k"), py::arg("v"), py::arg("mask"), py::arg("out"), py::arg("weights"),
        py::arg("num_heads"), py::arg("head_dim"), py::arg("causal"),
        "Eager attention into preallocated out (and weights); see attn_eager_forward.");
}

}  // namespace attnkit_py
