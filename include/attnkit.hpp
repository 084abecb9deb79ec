// attnkit.hpp: a header-only C++20 wrapper over attnkit's C ABI (attnkit.h).
//
// - attnkit::tensor is a view: a pointer plus a shape (contiguous) or a shape plus
//   strides (in elements). The element type comes from the pointer (float, double,
//   int8_t, uint8_t, int32_t, int64_t, bool) or is given for fp16/bf16 storage.
// - Every call throws attnkit::error on a non-OK status, carrying the status code
//   and attn_last_error()'s message (copied into the exception, no allocation).
// - 1-D arguments such as cu_seqlens also take a std::span.
// - Nothing here allocates: outputs are views of caller memory, as in the C ABI.
//
// Semantics, shapes and dtype rules are those of the C functions (see attnkit.h and
// docs/semantics.md); this header only converts arguments and errors.
#ifndef ATTNKIT_HPP
#define ATTNKIT_HPP

#include "attnkit.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <optional>
#include <span>
#include <type_traits>

namespace attnkit {

/// A failed call: the status code and the library's message naming the argument and the rule.
class error : public std::exception {
public:
    error(attn_status status, const char *message) noexcept : status_(status) {
        std::strncpy(message_, message ? message : "", sizeof message_ - 1);
        message_[sizeof message_ - 1] = '\0';
    }
    attn_status status() const noexcept { return status_; }
    /// "ATTN_ERR_SHAPE" and the like.
    const char *status_name() const noexcept { return attn_status_string(status_); }
    const char *what() const noexcept override { return message_; }

private:
    attn_status status_;
    char message_[1024] = {};
};

/// Throws attnkit::error unless `status` is ATTN_OK.
inline void check(attn_status status) {
    if (status != ATTN_OK) throw error(status, attn_last_error());
}

/// The dtype code of a C++ element type (fp16/bf16 have none: give the code to tensor's constructor).
template <class T> constexpr attn_dtype dtype_of() {
    using U = std::remove_const_t<T>;
    if constexpr (std::is_same_v<U, float>) return ATTN_DTYPE_F32;
    else if constexpr (std::is_same_v<U, double>) return ATTN_DTYPE_F64;
    else if constexpr (std::is_same_v<U, bool>) return ATTN_DTYPE_BOOL;
    else if constexpr (std::is_same_v<U, std::int8_t>) return ATTN_DTYPE_I8;
    else if constexpr (std::is_same_v<U, std::uint8_t>) return ATTN_DTYPE_U8;
    else if constexpr (std::is_same_v<U, std::int32_t>) return ATTN_DTYPE_I32;
    else if constexpr (std::is_same_v<U, std::int64_t>) return ATTN_DTYPE_I64;
    else static_assert(sizeof(U) == 0, "no attnkit dtype for this type: pass the dtype code explicitly");
}

/// A view of caller memory as the C ABI's attn_tensor. Rank at most ATTN_MAX_RANK (8).
class tensor {
public:
    /// Contiguous (row-major) `shape` at `data`.
    template <class T> tensor(T *data, std::span<const std::int64_t> shape) : tensor(erase(data), dtype_of<T>(), shape) {}
    template <class T> tensor(T *data, std::initializer_list<std::int64_t> shape)
        : tensor(data, std::span<const std::int64_t>(shape.begin(), shape.size())) {}
    /// `shape` with `strides` in elements (any sign; inputs may broadcast with stride 0).
    template <class T>
    tensor(T *data, std::span<const std::int64_t> shape, std::span<const std::int64_t> strides)
        : tensor(erase(data), dtype_of<T>(), shape, strides) {}
    template <class T>
    tensor(T *data, std::initializer_list<std::int64_t> shape, std::initializer_list<std::int64_t> strides)
        : tensor(data, std::span<const std::int64_t>(shape.begin(), shape.size()),
                 std::span<const std::int64_t>(strides.begin(), strides.size())) {}
    /// A 1-D contiguous view of a span (cu_seqlens, alibi_slopes, cache_seqlens ...).
    template <class T> explicit tensor(std::span<T> values) : tensor(erase(values.data()), dtype_of<T>(), empty{}) {
        view_.rank = 1;
        view_.shape[0] = static_cast<std::int64_t>(values.size());
        view_.strides[0] = 1;
    }
    /// Untyped storage (fp16 or bf16: ATTN_DTYPE_F16 / ATTN_DTYPE_BF16), contiguous or strided.
    tensor(const void *data, attn_dtype dtype, std::span<const std::int64_t> shape) : tensor(erase(data), dtype, empty{}) {
        set_shape(shape);
        std::int64_t stride = 1;
        for (std::size_t i = shape.size(); i-- > 0;) {
            view_.strides[i] = stride;
            stride *= shape[i] > 0 ? shape[i] : 1;
        }
    }
    tensor(const void *data, attn_dtype dtype, std::span<const std::int64_t> shape,
           std::span<const std::int64_t> strides) : tensor(erase(data), dtype, empty{}) {
        set_shape(shape);
        if (strides.size() != shape.size())
            throw error(ATTN_ERR_SHAPE, "[attnkit::tensor] strides must have one entry per dimension of shape");
        for (std::size_t i = 0; i < strides.size(); i++) view_.strides[i] = strides[i];
    }

    const attn_tensor *get() const noexcept { return &view_; }
    const attn_tensor &c() const noexcept { return view_; }

private:
    struct empty {};
    tensor(void *data, attn_dtype dtype, empty) noexcept {
        view_.data = data;
        view_.dtype = dtype;
    }
    template <class T> static void *erase(T *data) noexcept {
        return const_cast<void *>(static_cast<const void *>(data));
    }
    void set_shape(std::span<const std::int64_t> shape) {
        if (shape.size() > ATTN_MAX_RANK)
            throw error(ATTN_ERR_SHAPE, "[attnkit::tensor] shape has more than ATTN_MAX_RANK (8) dimensions");
        view_.rank = static_cast<std::int32_t>(shape.size());
        for (std::size_t i = 0; i < shape.size(); i++) view_.shape[i] = shape[i];
    }
    attn_tensor view_ = {};
};

namespace detail {
inline const attn_tensor *ptr(const tensor *t) noexcept { return t ? t->get() : nullptr; }
inline const attn_tensor *ptr(const std::optional<tensor> &t) noexcept { return t ? t->get() : nullptr; }
}  // namespace detail

// ---- Library state ----------------------------------------------------------------------------

/// The loaded library's version, as ATTNKIT_VERSION_NUMBER (major*10000 + minor*100 + patch).
inline std::uint32_t version_number() noexcept { return attn_version_number(); }
inline void set_num_threads(std::int32_t threads) { check(attn_set_num_threads(threads)); }
inline std::int32_t num_threads() {
    std::int32_t threads = 0;
    check(attn_get_num_threads(&threads));
    return threads;
}
/// The kernel tier in use: ATTN_ISA_GENERIC, ATTN_ISA_AVX2, ATTN_ISA_AVX512 or ATTN_ISA_AVX512_BF16.
inline std::int32_t isa() {
    std::int32_t tier = 0;
    check(attn_get_isa(&tier));
    return tier;
}

// ---- Eager (the seed API): q [B, Sq, H*D], k, v [B, Sk, H*D], key_mask [B, Sk] ------------------

struct eager_options {
    std::int64_t num_heads = 1;
    std::int64_t head_dim = 1;
    bool causal = false;   // top-left: query i sees keys j <= i
    attn_eager_params c() const noexcept {
        return {sizeof(attn_eager_params), causal ? ATTN_MASK_CAUSAL_TOP_LEFT : ATTN_MASK_NONE, num_heads, head_dim};
    }
};

/// out [B, Sq, H*D]; weights [B, H, Sq, Sk] if given.
inline void eager_forward(const eager_options &options, const tensor &q, const tensor &k, const tensor &v,
                          const tensor &out, const tensor *key_mask = nullptr, const tensor *weights = nullptr) {
    auto params = options.c();
    check(attn_eager_forward(&params, q.get(), k.get(), v.get(), detail::ptr(key_mask), out.get(),
                             detail::ptr(weights)));
}

/// dq, dk, dv from dout (the gradient of out) and/or dweights (of the weights).
inline void eager_backward(const eager_options &options, const tensor *dout, const tensor *dweights, const tensor &q,
                           const tensor &k, const tensor &v, const tensor &dq, const tensor &dk, const tensor &dv,
                           const tensor *key_mask = nullptr) {
    auto params = options.c();
    check(attn_eager_backward(&params, detail::ptr(dout), detail::ptr(dweights), q.get(), k.get(), v.get(),
                              detail::ptr(key_mask), dq.get(), dk.get(), dv.get()));
}

// ---- torch SDPA: query (N..., Hq, L, E), key (N..., Hk, S, E), value (N..., Hk, S, Ev) ------------

struct sdpa_options {
    bool is_causal = false;   // top-left aligned
    bool enable_gqa = false;
    std::optional<double> scale;   // default 1/sqrt(E)
    double dropout_p = 0;
    std::uint64_t seed = 0;
    attn_sdpa_params c() const noexcept {
        return {sizeof(attn_sdpa_params), is_causal, enable_gqa, scale.has_value(), scale.value_or(0.0), dropout_p,
                seed};
    }
};

/// out (N..., Hq, L, Ev); lse (N..., Hq, L) fp32 if given; attn_mask bool or additive, broadcast.
inline void sdpa_forward(const sdpa_options &options, const tensor &query, const tensor &key, const tensor &value,
                         const tensor &out, const tensor *attn_mask = nullptr, const tensor *lse = nullptr) {
    auto params = options.c();
    if (lse)
        check(attn_sdpa_forward_lse(&params, query.get(), key.get(), value.get(), detail::ptr(attn_mask), out.get(),
                                    lse->get()));
    else
        check(attn_sdpa_forward(&params, query.get(), key.get(), value.get(), detail::ptr(attn_mask), out.get()));
}

inline void sdpa_backward(const sdpa_options &options, const tensor &dout, const tensor &query, const tensor &key,
                          const tensor &value, const tensor &out, const tensor &lse, const tensor &dquery,
                          const tensor &dkey, const tensor &dvalue, const tensor *attn_mask = nullptr) {
    auto params = options.c();
    check(attn_sdpa_backward(&params, dout.get(), query.get(), key.get(), value.get(), detail::ptr(attn_mask),
                             out.get(), lse.get(), dquery.get(), dkey.get(), dvalue.get()));
}

// ---- flash-attn: q (B, Sq, Hq, D) or varlen (total_q, Hq, D) ------------------------------------

struct flash_options {
    bool causal = false;   // bottom-right aligned, as flash-attn
    std::optional<double> softmax_scale;
    std::int64_t window_left = -1, window_right = -1;   // -1: unbounded
    double softcap = 0;
    double dropout_p = 0;
    std::uint64_t seed = 0;
    attn_flash_params c(std::int64_t max_q = 0, std::int64_t max_k = 0) const noexcept {
        attn_flash_params p = {};
        p.struct_size = sizeof(attn_flash_params);
        p.causal = causal;
        p.has_scale = softmax_scale.has_value();
        p.softmax_scale = softmax_scale.value_or(0.0);
        p.window_left = window_left;
        p.window_right = window_right;
        p.softcap = softcap;
        p.dropout_p = dropout_p;
        p.seed = seed;
        p.max_seqlen_q = max_q;
        p.max_seqlen_k = max_k;
        return p;
    }
};

/// out (B, Sq, Hq, Dv); softmax_lse (B, Hq, Sq) fp32 if given; alibi_slopes (Hq) or (B, Hq) fp32.
inline void flash_forward(const flash_options &options, const tensor &q, const tensor &k, const tensor &v,
                          const tensor &out, const tensor *softmax_lse = nullptr,
                          const tensor *alibi_slopes = nullptr) {
    auto params = options.c();
    check(attn_flash_forward(&params, q.get(), k.get(), v.get(), detail::ptr(alibi_slopes), out.get(),
                             detail::ptr(softmax_lse)));
}

inline void flash_backward(const flash_options &options, const tensor &dout, const tensor &q, const tensor &k,
                           const tensor &v, const tensor &out, const tensor &softmax_lse, const tensor &dq,
                           const tensor &dk, const tensor &dv, const tensor *alibi_slopes = nullptr) {
    auto params = options.c();
    check(attn_flash_backward(&params, dout.get(), q.get(), k.get(), v.get(), detail::ptr(alibi_slopes), out.get(),
                              softmax_lse.get(), dq.get(), dk.get(), dv.get()));
}

/// Packed sequences: cu_seqlens_q/k (B + 1) int32 or int64; out (total_q, Hq, Dv); lse (Hq, total_q).
inline void flash_varlen_forward(const flash_options &options, const tensor &q, const tensor &k, const tensor &v,
                                 const tensor &cu_seqlens_q, const tensor &cu_seqlens_k, std::int64_t max_seqlen_q,
                                 std::int64_t max_seqlen_k, const tensor &out, const tensor *softmax_lse = nullptr,
                                 const tensor *alibi_slopes = nullptr) {
    auto params = options.c(max_seqlen_q, max_seqlen_k);
    check(attn_flash_varlen_forward(&params, q.get(), k.get(), v.get(), cu_seqlens_q.get(), cu_seqlens_k.get(),
                                    detail::ptr(alibi_slopes), out.get(), detail::ptr(softmax_lse)));
}

template <class Index>
void flash_varlen_forward(const flash_options &options, const tensor &q, const tensor &k, const tensor &v,
                          std::span<const Index> cu_seqlens_q, std::span<const Index> cu_seqlens_k,
                          std::int64_t max_seqlen_q, std::int64_t max_seqlen_k, const tensor &out,
                          const tensor *softmax_lse = nullptr, const tensor *alibi_slopes = nullptr) {
    flash_varlen_forward(options, q, k, v, tensor(cu_seqlens_q), tensor(cu_seqlens_k), max_seqlen_q, max_seqlen_k,
                         out, softmax_lse, alibi_slopes);
}

inline void flash_varlen_backward(const flash_options &options, const tensor &dout, const tensor &q, const tensor &k,
                                  const tensor &v, const tensor &cu_seqlens_q, const tensor &cu_seqlens_k,
                                  std::int64_t max_seqlen_q, std::int64_t max_seqlen_k, const tensor &out,
                                  const tensor &softmax_lse, const tensor &dq, const tensor &dk, const tensor &dv,
                                  const tensor *alibi_slopes = nullptr) {
    auto params = options.c(max_seqlen_q, max_seqlen_k);
    check(attn_flash_varlen_backward(&params, dout.get(), q.get(), k.get(), v.get(), cu_seqlens_q.get(),
                                     cu_seqlens_k.get(), detail::ptr(alibi_slopes), out.get(), softmax_lse.get(),
                                     dq.get(), dk.get(), dv.get()));
}

template <class Index>
void flash_varlen_backward(const flash_options &options, const tensor &dout, const tensor &q, const tensor &k,
                           const tensor &v, std::span<const Index> cu_seqlens_q, std::span<const Index> cu_seqlens_k,
                           std::int64_t max_seqlen_q, std::int64_t max_seqlen_k, const tensor &out,
                           const tensor &softmax_lse, const tensor &dq, const tensor &dk, const tensor &dv,
                           const tensor *alibi_slopes = nullptr) {
    flash_varlen_backward(options, dout, q, k, v, tensor(cu_seqlens_q), tensor(cu_seqlens_k), max_seqlen_q,
                          max_seqlen_k, out, softmax_lse, dq, dk, dv, alibi_slopes);
}

// ---- int8 QKᵀ, lse merging, per-tensor quantization --------------------------------------------

struct int8_sdpa_options {
    bool is_causal = false;
    bool enable_gqa = false;
    std::optional<double> scale;
    std::int32_t qk_quant = ATTN_QK_QUANT_PER_BLOCK;
    bool smooth_k = true;
};

inline void int8_sdpa_forward(const int8_sdpa_options &options, const tensor &query, const tensor &key,
                              const tensor &value, const tensor &out, const tensor *attn_mask = nullptr) {
    attn_int8_sdpa_params params = {sizeof(attn_int8_sdpa_params), options.is_causal, options.enable_gqa,
                                    options.scale.has_value(), options.scale.value_or(0.0), options.qk_quant,
                                    options.smooth_k};
    check(attn_int8_sdpa_forward(&params, query.get(), key.get(), value.get(), detail::ptr(attn_mask), out.get()));
}

/// (out, lse) of attention over two disjoint key sets, combined; out and lse may alias a or b.
inline void merge_attention_states(const tensor &out_a, const tensor &lse_a, const tensor &out_b, const tensor &lse_b,
                                   const tensor &out, const tensor &lse) {
    check(attn_merge_attention_states(out_a.get(), lse_a.get(), out_b.get(), lse_b.get(), out.get(), lse.get()));
}

struct quantization {
    double scale;
    double zero_point;
};

inline quantization quantize_per_tensor(const tensor &x, std::int32_t num_bits, const tensor &q) {
    quantization result = {};
    check(attn_quantize_per_tensor(x.get(), num_bits, q.get(), &result.scale, &result.zero_point));
    return result;
}

inline void dequantize_per_tensor(const tensor &q, quantization quant, const tensor &out) {
    check(attn_dequantize_per_tensor(q.get(), quant.scale, quant.zero_point, out.get()));
}

// ---- The attention guide's variants: sparse top-k, AFT, Linformer (docs/semantics.md §9) ---------

struct sparse_topk_options {
    std::int64_t top_k = 1;
    bool causal = false;   // top-left: query i sees keys j <= i
    std::optional<double> softmax_scale;   // default 1/sqrt(D)
    attn_sparse_topk_params c() const noexcept {
        return {sizeof(attn_sparse_topk_params), causal ? ATTN_MASK_CAUSAL_TOP_LEFT : ATTN_MASK_NONE, top_k,
                softmax_scale.has_value(), 0, softmax_scale.value_or(0.0)};
    }
};

/// q (B, Hq, Sq, D), k (B, Hk, Sk, D), v (B, Hk, Sk, Dv) → out (B, Hq, Sq, Dv); key_mask (B, Sk).
inline void sparse_topk_forward(const sparse_topk_options &options, const tensor &q, const tensor &k, const tensor &v,
                                const tensor &out, const tensor *key_mask = nullptr) {
    auto params = options.c();
    check(attn_sparse_topk_forward(&params, q.get(), k.get(), v.get(), detail::ptr(key_mask), out.get()));
}

struct aft_options {
    std::int32_t variant = ATTN_AFT_FULL;   // ATTN_AFT_FULL, ATTN_AFT_LOCAL or ATTN_AFT_SIMPLE
    bool causal = false;
    std::int32_t outside = ATTN_AFT_OUTSIDE_EXCLUDE;   // ATTN_AFT_LOCAL only
    std::int64_t local_context = 0;                    // ATTN_AFT_LOCAL only, >= 1
    attn_aft_params c() const noexcept {
        bool local = variant == ATTN_AFT_LOCAL;
        return {sizeof(attn_aft_params), variant, causal, local ? outside : 0, local ? local_context : 0};
    }
};

/// q, k, v, out (B, T, d); w_bias (>= T, >= T), or w_u and w_v (>= T, r); none for ATTN_AFT_SIMPLE.
inline void aft_forward(const aft_options &options, const tensor &q, const tensor &k, const tensor &v,
                        const tensor &out, const tensor *w_bias = nullptr, const tensor *w_u = nullptr,
                        const tensor *w_v = nullptr) {
    auto params = options.c();
    check(attn_aft_forward(&params, q.get(), k.get(), v.get(), detail::ptr(w_bias), detail::ptr(w_u),
                           detail::ptr(w_v), out.get()));
}

struct linformer_options {
    std::optional<double> softmax_scale;   // default 1/sqrt(D)
    attn_linformer_params c() const noexcept {
        return {sizeof(attn_linformer_params), softmax_scale.has_value(), softmax_scale.value_or(0.0)};
    }
};

/// q (B, Hq, Sq, D), k (B, Hk, Sk, D), v (B, Hk, Sk, Dv); proj_e, proj_f (kp, >= Sk); biases (kp).
inline void linformer_forward(const linformer_options &options, const tensor &q, const tensor &k, const tensor &v,
                              const tensor &proj_e, const tensor &proj_f, const tensor &out,
                              const tensor *bias_e = nullptr, const tensor *bias_f = nullptr) {
    auto params = options.c();
    check(attn_linformer_forward(&params, q.get(), k.get(), v.get(), proj_e.get(), detail::ptr(bias_e), proj_f.get(),
                                 detail::ptr(bias_f), out.get()));
}

}  // namespace attnkit

#endif  // ATTNKIT_HPP
