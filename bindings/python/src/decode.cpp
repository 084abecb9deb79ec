#include "tensor.h"

#include <pybind11/stl.h>

#include <optional>

namespace attnkit_py {

void init_decode(py::module_ &m) {
    m.def(
        "flash_kvcache_forward",
        [](py::handle q, py::handle k_cache, py::handle v_cache, py::handle k, py::handle v, py::handle rotary_cos,
           py::handle rotary_sin, py::handle cache_seqlens, py::handle cache_batch_idx, py::handle cache_leftpad,
           py::handle block_table, py::handle alibi_slopes, py::handle out, py::handle lse, bool causal,
           std::optional<double> softmax_scale, int64_t window_left, int64_t window_right, double softcap,
           bool rotary_interleaved, int32_t num_splits, py::handle k_scale, py::handle v_scale) {
            const attn_tensor tq = describe(q, "q"), tkc = describe(k_cache, "k_cache"), tvc = describe(v_cache, "v_cache");
            const attn_tensor tsl = describe(cache_seqlens, "cache_seqlens"), to = describe(out, "out");
            const OptionalTensor tk = describe_optional(k, "k"), tv = describe_optional(v, "v");
            const OptionalTensor tcos = describe_optional(rotary_cos, "rotary_cos");
            const OptionalTensor tsin = describe_optional(rotary_sin, "rotary_sin");
            const OptionalTensor tbi = describe_optional(cache_batch_idx, "cache_batch_idx");
            const OptionalTensor tlp = describe_optional(cache_leftpad, "cache_leftpad");
            const OptionalTensor tbt = describe_optional(block_table, "block_table");
            const OptionalTensor ts = describe_optional(alibi_slopes, "alibi_slopes");
            const OptionalTensor tl = describe_optional(lse, "softmax_lse");
            attn_kvcache_params params{};
            params.struct_size = sizeof params;
            params.causal = causal ? 1 : 0;
            params.has_scale = softmax_scale.has_value() ? 1 : 0;
            params.softmax_scale = softmax_scale.value_or(0.0);
            params.rotary_interleaved = rotary_interleaved ? 1 : 0;
            params.window_left = window_left;
            params.window_right = window_right;
            params.softcap = softcap;
            params.num_splits = num_splits;
            // int8 caches come with their scales (k_scale, v_scale); float caches without.
            const OptionalTensor tks = describe_optional(k_scale, "k_scale"), tvs = describe_optional(v_scale, "v_scale");
            call_without_gil([&] {
                if (tks.present || tvs.present)
                    return attn_flash_kvcache_int8_forward(&params, &tq, &tkc, tks.get(), &tvc, tvs.get(), tk.get(), tv.get(),
                                                           tcos.get(), tsin.get(), &tsl, tbi.get(), tlp.get(), tbt.get(),
                                                           ts.get(), &to, tl.get());
                return attn_flash_kvcache_forward(&params, &tq, &tkc, &tvc, tk.get(), tv.get(), tcos.get(), tsin.get(),
                                                  &tsl, tbi.get(), tlp.get(), tbt.get(), ts.get(), &to, tl.get());
            });
        },
        "flash_attn_with_kvcache into preallocated out (and lse); appends k/v into the caches in place. "
        "See attn_flash_kvcache_forward and, with k_scale/v_scale (int8 caches), attn_flash_kvcache_int8_forward.");
    m.def(
        "merge_attention_states",
        [](py::handle out_a, py::handle lse_a, py::handle out_b, py::handle lse_b, py::handle out, py::handle lse) {
            const attn_tensor ta = describe(out_a, "out_a"), tla = describe(lse_a, "lse_a");
            const attn_tensor tb = describe(out_b, "out_b"), tlb = describe(lse_b, "lse_b");
            const attn_tensor to = describe(out, "out"), tl = describe(lse, "lse");
            call_without_gil([&] { return attn_merge_attention_states(&ta, &tla, &tb, &tlb, &to, &tl); });
        },
        "Merges two partial attentions over disjoint key sets into preallocated out and lse; see "
        "attn_merge_attention_states.");
}

}  // namespace attnkit_py
