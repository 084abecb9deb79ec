#include "tensor.h"

#include <attnkit.hpp>

#include <pybind11/stl.h>

#include <optional>

namespace attnkit_py {

namespace {

attn_flash_params make_params(bool causal, std::optional<double> softmax_scale, int64_t window_left,
                               int64_t window_right, double softcap, double dropout_p, uint64_t seed,
                               int64_t max_seqlen_q, int64_t max_seqlen_k, int qk_quant = -1, bool smooth_k = false) {
    attn_flash_params params = attnkit::flash_options{causal, softmax_scale, window_left, window_right, softcap,
                                                      dropout_p, seed}.c(max_seqlen_q, max_seqlen_k);
    params.int8_qk = qk_quant >= 0 ? 1 : 0;
    params.qk_quant = qk_quant >= 0 ? qk_quant : 0;
    params.smooth_k = smooth_k ? 1 : 0;
    return params;
}

/* The fixed-length backward, bottom-right aligned (attn_flash_backward) or, with a diagonal,
 * on a block of a longer sequence (attn_flash_block_backward). */
void flash_backward_into(std::optional<int64_t> diagonal, py::handle dout, py::handle q, py::handle k, py::handle v,
                         py::handle alibi_slopes, py::handle out, py::handle lse, py::handle dq, py::handle dk,
                         py::handle dv, const attn_flash_params &params) {
    const attn_tensor tdo = describe(dout, "dout");
    const attn_tensor tq = describe(q, "q"), tk = describe(k, "k"), tv = describe(v, "v");
    const attn_tensor to = describe(out, "out"), tl = describe(lse, "softmax_lse");
    const attn_tensor tdq = describe(dq, "dq"), tdk = describe(dk, "dk"), tdv = describe(dv, "dv");
    const OptionalTensor ts = describe_optional(alibi_slopes, "alibi_slopes");
    call_without_gil([&] {
        return diagonal ? attn_flash_block_backward(&params, *diagonal, &tdo, &tq, &tk, &tv, ts.get(), &to, &tl, &tdq,
                                                    &tdk, &tdv)
                        : attn_flash_backward(&params, &tdo, &tq, &tk, &tv, ts.get(), &to, &tl, &tdq, &tdk, &tdv);
    });
}

}  // namespace

void init_flash(py::module_ &m) {
    m.def(
        "flash_varlen_forward",
        [](py::handle q, py::handle k, py::handle v, py::handle cu_seqlens_q, py::handle cu_seqlens_k,
           int64_t max_seqlen_q, int64_t max_seqlen_k, py::handle alibi_slopes, py::handle out, py::handle lse,
           bool causal, std::optional<double> softmax_scale, int64_t window_left, int64_t window_right,
           double softcap, double dropout_p, uint64_t seed, int qk_quant, bool smooth_k, py::handle s_dmask) {
            const attn_tensor tq = describe(q, "q"), tk = describe(k, "k"), tv = describe(v, "v");
            const attn_tensor tcq = describe(cu_seqlens_q, "cu_seqlens_q"), tck = describe(cu_seqlens_k, "cu_seqlens_k");
            const attn_tensor to = describe(out, "out");
            const OptionalTensor ts = describe_optional(alibi_slopes, "alibi_slopes");
            const OptionalTensor tl = describe_optional(lse, "softmax_lse");
            const OptionalTensor tp = describe_optional(s_dmask, "s_dmask");
            const attn_flash_params params = make_params(causal, softmax_scale, window_left, window_right, softcap,
                                                         dropout_p, seed, max_seqlen_q, max_seqlen_k, qk_quant, smooth_k);
            call_without_gil([&] {
                return tp.present ? attn_flash_varlen_forward_probs(&params, &tq, &tk, &tv, &tcq, &tck, ts.get(), &to,
                                                                    tl.get(), tp.get())
                                  : attn_flash_varlen_forward(&params, &tq, &tk, &tv, &tcq, &tck, ts.get(), &to, tl.get());
            });
        },
        "flash-attn varlen forward into preallocated out (and lse, and S_dmask); see attn_flash_varlen_forward(_probs).");
    m.def(
        "flash_forward",
        [](py::handle q, py::handle k, py::handle v, py::handle alibi_slopes, py::handle out, py::handle lse,
           bool causal, std::optional<double> softmax_scale, int64_t window_left, int64_t window_right,
           double softcap, double dropout_p, uint64_t seed, py::handle s_dmask) {
            const attn_tensor tq = describe(q, "q"), tk = describe(k, "k"), tv = describe(v, "v");
            const attn_tensor to = describe(out, "out");
            const OptionalTensor ts = describe_optional(alibi_slopes, "alibi_slopes");
            const OptionalTensor tl = describe_optional(lse, "softmax_lse");
            const OptionalTensor tp = describe_optional(s_dmask, "s_dmask");
            const attn_flash_params params = make_params(causal, softmax_scale, window_left, window_right, softcap,
                                                         dropout_p, seed, 0, 0);
            call_without_gil([&] {
                return tp.present ? attn_flash_forward_probs(&params, &tq, &tk, &tv, ts.get(), &to, tl.get(), tp.get())
                                  : attn_flash_forward(&params, &tq, &tk, &tv, ts.get(), &to, tl.get());
            });
        },
        "flash-attn fixed-length forward into preallocated out (and lse, and S_dmask); see attn_flash_forward(_probs).");
    m.def(
        "flash_backward",
        [](py::handle dout, py::handle q, py::handle k, py::handle v, py::handle alibi_slopes, py::handle out,
           py::handle lse, py::handle dq, py::handle dk, py::handle dv, bool causal, std::optional<double> softmax_scale,
           int64_t window_left, int64_t window_right, double softcap, double dropout_p, uint64_t seed) {
            flash_backward_into(std::nullopt, dout, q, k, v, alibi_slopes, out, lse, dq, dk, dv,
                                make_params(causal, softmax_scale, window_left, window_right, softcap, dropout_p, seed,
                                            0, 0));
        },
        "flash-attn fixed-length backward into preallocated dq, dk, dv; see attn_flash_backward.");
    m.def(
        "flash_block_forward",
        [](int64_t diagonal, py::handle q, py::handle k, py::handle v, py::handle alibi_slopes, py::handle out,
           py::handle lse, bool causal, std::optional<double> softmax_scale, int64_t window_left, int64_t window_right,
           double softcap) {
            const attn_tensor tq = describe(q, "q"), tk = describe(k, "k"), tv = describe(v, "v");
            const attn_tensor to = describe(out, "out");
            const OptionalTensor ts = describe_optional(alibi_slopes, "alibi_slopes");
            const OptionalTensor tl = describe_optional(lse, "softmax_lse");
            const attn_flash_params params = make_params(causal, softmax_scale, window_left, window_right, softcap,
                                                         0.0, 0, 0, 0);
            call_without_gil([&] {
                return attn_flash_block_forward(&params, diagonal, &tq, &tk, &tv, ts.get(), &to, tl.get());
            });
        },
        "flash forward on a block of a longer sequence (key i + diagonal aligned with query i); see attn_flash_block_forward.");
    m.def(
        "flash_block_backward",
        [](int64_t diagonal, py::handle dout, py::handle q, py::handle k, py::handle v, py::handle alibi_slopes,
           py::handle out, py::handle lse, py::handle dq, py::handle dk, py::handle dv, bool causal,
           std::optional<double> softmax_scale, int64_t window_left, int64_t window_right, double softcap) {
            flash_backward_into(diagonal, dout, q, k, v, alibi_slopes, out, lse, dq, dk, dv,
                                make_params(causal, softmax_scale, window_left, window_right, softcap, 0.0, 0, 0, 0));
        },
        "flash backward on a block of a longer sequence; see attn_flash_block_backward.");
    m.def(
        "flash_varlen_backward",
        [](py::handle dout, py::handle q, py::handle k, py::handle v, py::handle cu_seqlens_q, py::handle cu_seqlens_k,
           int64_t max_seqlen_q, int64_t max_seqlen_k, py::handle alibi_slopes, py::handle out, py::handle lse,
           py::handle dq, py::handle dk, py::handle dv, bool causal, std::optional<double> softmax_scale,
           int64_t window_left, int64_t window_right, double softcap, double dropout_p, uint64_t seed) {
            const attn_tensor tdo = describe(dout, "dout");
            const attn_tensor tq = describe(q, "q"), tk = describe(k, "k"), tv = describe(v, "v");
            const attn_tensor tcq = describe(cu_seqlens_q, "cu_seqlens_q"), tck = describe(cu_seqlens_k, "cu_seqlens_k");
            const attn_tensor to = describe(out, "out"), tl = describe(lse, "softmax_lse");
            const attn_tensor tdq = describe(dq, "dq"), tdk = describe(dk, "dk"), tdv = describe(dv, "dv");
            const OptionalTensor ts = describe_optional(alibi_slopes, "alibi_slopes");
            const attn_flash_params params = make_params(causal, softmax_scale, window_left, window_right, softcap,
                                                         dropout_p, seed, max_seqlen_q, max_seqlen_k);
            call_without_gil([&] {
                return attn_flash_varlen_backward(&params, &tdo, &tq, &tk, &tv, &tcq, &tck, ts.get(), &to, &tl, &tdq,
                                                  &tdk, &tdv);
            });
        },
        "flash-attn varlen backward into preallocated dq, dk, dv; see attn_flash_varlen_backward.");
    m.def(
        "flash_varlen_int8_forward",
        [](py::handle q_int8, py::handle q_scale, py::handle k_int8, py::handle k_scale, py::handle v,
           py::handle cu_seqlens_q, py::handle cu_seqlens_k, int64_t max_seqlen_q, int64_t max_seqlen_k,
           py::handle alibi_slopes, py::handle out, py::handle lse, bool causal, std::optional<double> softmax_scale,
           int64_t window_left, int64_t window_right, double softcap) {
            const attn_tensor tq = describe(q_int8, "q_int8"), tqs = describe(q_scale, "q_scale");
            const attn_tensor tk = describe(k_int8, "k_int8"), tks = describe(k_scale, "k_scale"), tv = describe(v, "v");
            const attn_tensor tcq = describe(cu_seqlens_q, "cu_seqlens_q"), tck = describe(cu_seqlens_k, "cu_seqlens_k");
            const attn_tensor to = describe(out, "out");
            const OptionalTensor ts = describe_optional(alibi_slopes, "alibi_slopes");
            const OptionalTensor tl = describe_optional(lse, "softmax_lse");
            const attn_flash_params params = make_params(causal, softmax_scale, window_left, window_right, softcap,
                                                         0.0, 0, max_seqlen_q, max_seqlen_k);
            call_without_gil([&] {
                return attn_flash_varlen_int8_forward(&params, &tq, &tqs, &tk, &tks, &tv, &tcq, &tck, ts.get(), &to, tl.get());
            });
        },
        "Varlen flash forward on caller-quantized int8 Q and K; see attn_flash_varlen_int8_forward.");
}

}  // namespace attnkit_py
