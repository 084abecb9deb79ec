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
    m.def(
        "eager_backward",
        [](py::handle dout, py::handle dweights, py::handle q, py::handle k, py::handle v, py::handle mask,
           py::handle dq, py::handle dk, py::handle dv, int64_t num_heads, int64_t head_dim, bool causal) {
            const OptionalTensor tdo = describe_optional(dout, "dout"), tdw = describe_optional(dweights, "dweights");
            const attn_tensor tq = describe(q, "q"), tk = describe(k, "k"), tv = describe(v, "v");
            const OptionalTensor tm = describe_optional(mask, "mask");
            const attn_tensor tdq = describe(dq, "dq"), tdk = describe(dk, "dk"), tdv = describe(dv, "dv");
            attn_eager_params params{};
            params.struct_size = sizeof params;
            params.mask_mode = causal ? ATTN_MASK_CAUSAL_TOP_LEFT : ATTN_MASK_NONE;
            params.num_heads = num_heads;
            params.head_dim = head_dim;
            call_without_gil([&] {
                return attn_eager_backward(&params, tdo.get(), tdw.get(), &tq, &tk, &tv, tm.get(), &tdq, &tdk, &tdv);
            });
        },
        py::arg("dout"), py::arg("dweights"), py::arg("q"), py::arg("k"), py::arg("v"), py::arg("mask"),
        py::arg("dq"), py::arg("dk"), py::arg("dv"), py::arg("num_heads"), py::arg("head_dim"), py::arg("causal"),
        "The eager backward into preallocated dq, dk, dv; see attn_eager_backward.");
}

}  // namespace attnkit_py
