// Sparse top-k, AFT and Linformer: attn_sparse_topk_forward, attn_aft_forward, attn_linformer_forward.
#include "tensor.h"

#include <attnkit.hpp>

#include <pybind11/stl.h>

#include <optional>

namespace attnkit_py {

void init_variants(py::module_ &m) {
    m.def(
        "sparse_topk_forward",
        [](py::handle q, py::handle k, py::handle v, py::handle mask, py::handle out, int64_t top_k, bool causal,
           std::optional<double> scale) {
            const attn_tensor tq = describe(q, "q"), tk = describe(k, "k"), tv = describe(v, "v");
            const attn_tensor to = describe(out, "out");
            const OptionalTensor tm = describe_optional(mask, "mask");
            const attn_sparse_topk_params params = attnkit::sparse_topk_options{top_k, causal, scale}.c();
            call_without_gil([&] { return attn_sparse_topk_forward(&params, &tq, &tk, &tv, tm.get(), &to); });
        },
        py::arg("q"), py::arg("k"), py::arg("v"), py::arg("mask"), py::arg("out"), py::arg("top_k"), py::arg("causal"),
        py::arg("scale"), "Sparse top-k attention into preallocated out; see attn_sparse_topk_forward.");
    m.def(
        "aft_forward",
        [](py::handle q, py::handle k, py::handle v, py::handle w_bias, py::handle w_u, py::handle w_v, py::handle out,
           int32_t variant, bool causal, int32_t outside, int64_t local_context) {
            const attn_tensor tq = describe(q, "q"), tk = describe(k, "k"), tv = describe(v, "v");
            const attn_tensor to = describe(out, "out");
            const OptionalTensor tw = describe_optional(w_bias, "w_bias"), tu = describe_optional(w_u, "w_u"),
                                 tf = describe_optional(w_v, "w_v");
            const attn_aft_params params = attnkit::aft_options{variant, causal, outside, local_context}.c();
            call_without_gil([&] { return attn_aft_forward(&params, &tq, &tk, &tv, tw.get(), tu.get(), tf.get(), &to); });
        },
        py::arg("q"), py::arg("k"), py::arg("v"), py::arg("w_bias"), py::arg("w_u"), py::arg("w_v"), py::arg("out"),
        py::arg("variant"), py::arg("causal"), py::arg("outside"), py::arg("local_context"),
        "AFT into preallocated out; see attn_aft_forward.");
    m.def(
        "linformer_forward",
        [](py::handle q, py::handle k, py::handle v, py::handle proj_e, py::handle bias_e, py::handle proj_f,
           py::handle bias_f, py::handle out, std::optional<double> scale) {
            const attn_tensor tq = describe(q, "q"), tk = describe(k, "k"), tv = describe(v, "v");
            const attn_tensor te = describe(proj_e, "proj_e"), tf = describe(proj_f, "proj_f");
            const attn_tensor to = describe(out, "out");
            const OptionalTensor tbe = describe_optional(bias_e, "bias_e"), tbf = describe_optional(bias_f, "bias_f");
            const attn_linformer_params params = attnkit::linformer_options{scale}.c();
            call_without_gil([&] {
                return attn_linformer_forward(&params, &tq, &tk, &tv, &te, tbe.get(), &tf, tbf.get(), &to);
            });
        },
        py::arg("q"), py::arg("k"), py::arg("v"), py::arg("proj_e"), py::arg("bias_e"), py::arg("proj_f"),
        py::arg("bias_f"), py::arg("out"), py::arg("scale"), "Linformer into preallocated out; see attn_linformer_forward.");
    m.attr("AFT_FULL") = static_cast<int>(ATTN_AFT_FULL);
    m.attr("AFT_LOCAL") = static_cast<int>(ATTN_AFT_LOCAL);
    m.attr("AFT_SIMPLE") = static_cast<int>(ATTN_AFT_SIMPLE);
    m.attr("AFT_OUTSIDE_EXCLUDE") = static_cast<int>(ATTN_AFT_OUTSIDE_EXCLUDE);
    m.attr("AFT_OUTSIDE_ZERO_BIAS") = static_cast<int>(ATTN_AFT_OUTSIDE_ZERO_BIAS);
}

}  // namespace attnkit_py
