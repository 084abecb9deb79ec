#include "tensor.h"

#include <attnkit.hpp>

#include <pybind11/stl.h>

#include <optional>

namespace attnkit_py {

namespace {

attn_sdpa_params sdpa_params(bool is_causal, bool enable_gqa, std::optional<double> scale, double dropout_p,
                             uint64_t seed) {
    return attnkit::sdpa_options{is_causal, enable_gqa, scale, dropout_p, seed}.c();
}

}  // namespace

void init_sdpa(py::module_ &m) {
    m.def(
        "sdpa_forward_lse",
        [](py::handle query, py::handle key, py::handle value, py::handle attn_mask, py::handle out, py::handle lse,
           bool is_causal, bool enable_gqa, std::optional<double> scale, double dropout_p, uint64_t seed) {
            const attn_tensor tq = describe(query, "query"), tk = describe(key, "key"), tv = describe(value, "value");
            const attn_tensor to = describe(out, "out"), tl = describe(lse, "lse");
            const OptionalTensor tm = describe_optional(attn_mask, "attn_mask");
            const attn_sdpa_params params = sdpa_params(is_causal, enable_gqa, scale, dropout_p, seed);
            call_without_gil([&] { return attn_sdpa_forward_lse(&params, &tq, &tk, &tv, tm.get(), &to, &tl); });
        },
        "SDPA into preallocated out and lse; see attn_sdpa_forward_lse.");
    m.def(
        "sdpa_backward",
        [](py::handle dout, py::handle query, py::handle key, py::handle value, py::handle attn_mask, py::handle out,
           py::handle lse, py::handle dquery, py::handle dkey, py::handle dvalue, bool is_causal, bool enable_gqa,
           std::optional<double> scale, double dropout_p, uint64_t seed) {
            const attn_tensor tdo = describe(dout, "dout");
            const attn_tensor tq = describe(query, "query"), tk = describe(key, "key"), tv = describe(value, "value");
            const attn_tensor to = describe(out, "out"), tl = describe(lse, "lse");
            const attn_tensor tdq = describe(dquery, "dquery"), tdk = describe(dkey, "dkey"), tdv = describe(dvalue, "dvalue");
            const OptionalTensor tm = describe_optional(attn_mask, "attn_mask");
            const attn_sdpa_params params = sdpa_params(is_causal, enable_gqa, scale, dropout_p, seed);
            call_without_gil([&] {
                return attn_sdpa_backward(&params, &tdo, &tq, &tk, &tv, tm.get(), &to, &tl, &tdq, &tdk, &tdv);
            });
        },
        "SDPA backward into preallocated dquery, dkey, dvalue; see attn_sdpa_backward.");
    m.def(
        "sdpa_forward",
        [](py::handle query, py::handle key, py::handle value, py::handle attn_mask, py::handle out, bool is_causal,
           bool enable_gqa, std::optional<double> scale, double dropout_p, uint64_t seed) {
            const attn_tensor tq = describe(query, "query"), tk = describe(key, "key"), tv = describe(value, "value");
            const attn_tensor to = describe(out, "out");
            const OptionalTensor tm = describe_optional(attn_mask, "attn_mask");
            const attn_sdpa_params params = sdpa_params(is_causal, enable_gqa, scale, dropout_p, seed);
            call_without_gil([&] { return attn_sdpa_forward(&params, &tq, &tk, &tv, tm.get(), &to); });
        },
        py::arg("query"), py::arg("key"), py::arg("value"), py::arg("attn_mask"), py::arg("out"),
        py::arg("is_causal"), py::arg("enable_gqa"), py::arg("scale"), py::arg("dropout_p"), py::arg("seed"),
        "torch-semantics SDPA into preallocated out; see attn_sdpa_forward.");
}

}  // namespace attnkit_py

namespace attnkit_py {

void init_int8_sdpa(py::module_ &m) {
    m.def(
        "int8_sdpa_forward",
        [](py::handle query, py::handle key, py::handle value, py::handle attn_mask, py::handle out, bool is_causal,
           bool enable_gqa, std::optional<double> scale, int qk_quant, bool smooth_k) {
            const attn_tensor tq = describe(query, "query"), tk = describe(key, "key"), tv = describe(value, "value");
            const attn_tensor to = describe(out, "out");
            const OptionalTensor tm = describe_optional(attn_mask, "attn_mask");
            attn_int8_sdpa_params params{};
            params.struct_size = sizeof params;
            params.is_causal = is_causal ? 1 : 0;
            params.enable_gqa = enable_gqa ? 1 : 0;
            params.has_scale = scale.has_value() ? 1 : 0;
            params.scale = scale.value_or(0.0);
            params.qk_quant = qk_quant;
            params.smooth_k = smooth_k ? 1 : 0;
            call_without_gil([&] { return attn_int8_sdpa_forward(&params, &tq, &tk, &tv, tm.get(), &to); });
        },
        "int8-QK SDPA into preallocated out; see attn_int8_sdpa_forward.");
}

}  // namespace attnkit_py
