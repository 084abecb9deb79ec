"""flash-attn 2.8's API on the CPU (docs/semantics.md §3), and the seed wrappers
flash_bidirectional_attention / flash_causal_attention (docs/semantics.md §1)."""
import numbers

import numpy as np

from . import _attnkit
from ._arrays import check_int, check_tensor, empty_like_kind, is_torch, qk_quant_code
from ._random import next_seed


def torch_no_grad():
    import torch

    return torch.no_grad()


def _window(window_size):
    try:
        left, right = window_size
    except (TypeError, ValueError):
        raise TypeError(f"window_size must be a pair (left, right), got {window_size!r}") from None
    return check_int("window_size[0]", left, minimum=-1), check_int("window_size[1]", right, minimum=-1)


def _scalar(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    return float(value)


def _index_tensor(name, value):
    """cu_seqlens as given (tensor or array, int32 or int64), or a list turned into an int64 array."""
    if isinstance(value, (list, tuple)):
        # Each entry must be an int: np.asarray would truncate 4.7 to 4.
        return np.asarray([check_int(f"{name}[{i}]", entry) for i, entry in enumerate(value)], dtype=np.int64)
    return check_tensor(name, value)


def _lse_like(q, shape):
    if is_torch(q):
        import torch

        return torch.empty(shape, dtype=torch.float32)
    return np.empty(shape, dtype=np.float32)


def _rounded(length):
    """flash-attn's S_dmask extent: a length rounded up to a multiple of 128."""
    return (length + 127) // 128 * 128


def _dmask_like(q, batch, heads, rows, columns):
    """S_dmask, zero-filled by the kernel: (batch, heads, rows rounded, columns rounded) of q's dtype."""
    return empty_like_kind(q, (batch, heads, _rounded(rows), _rounded(columns)))


def _varlen_arguments(cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, window_size, alibi_slopes):
    """The checks every varlen entry shares: cu_seqlens, max lengths, window and slopes."""
    cu_q, cu_k = _index_tensor("cu_seqlens_q", cu_seqlens_q), _index_tensor("cu_seqlens_k", cu_seqlens_k)
    max_q, max_k = check_int("max_seqlen_q", max_seqlen_q, 0), check_int("max_seqlen_k", max_seqlen_k, 0)
    left, right = _window(window_size)
    if alibi_slopes is not None:
        check_tensor("alibi_slopes", alibi_slopes)
    return cu_q, cu_k, max_q, max_k, left, right


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                           softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
                           deterministic=False, return_attn_probs=False, *, _int8_mode=-1, _smooth_k=False):
    """flash-attn 2.8's flash_attn_varlen_func on the CPU: attention over packed sequences.

    Args:
        q: (total_q, Hq, D); k: (total_k, Hk, D); v: (total_k, Hk, Dv). Hk must divide Hq (GQA/MQA:
            query head h reads KV head h // (Hq // Hk)). float32, float64, float16 or bfloat16 (bf16
            through torch), all three the same dtype; any strides; numpy or torch CPU tensors.
        cu_seqlens_q, cu_seqlens_k: (B + 1,) int32 or int64 (a list of ints is accepted): start at 0,
            never decrease, end at total_q / total_k. Sequence b is rows cu[b]:cu[b + 1]; a token
            attends only keys of its own sequence.
        max_seqlen_q, max_seqlen_k: at least the longest sequence of each.
        dropout_p: probability of dropping each attention weight (seeded by attnkit.manual_seed).
        softmax_scale: defaults to 1 / sqrt(D).
        causal: bottom-right aligned per sequence: query i sees key j iff j <= i + Sk - Sq.
        window_size: (left, right); key j is allowed iff i + Sk - Sq - left <= j <= i + Sk - Sq + right;
            -1 leaves a side unbounded. causal sets right = 0.
        softcap: > 0 replaces each scaled score s by softcap * tanh(s / softcap), before ALiBi and masks.
        alibi_slopes: float32 (Hq,) or (B, Hq); adds -slope * |i + Sk - Sq - j| to the scores.
        deterministic: accepted for compatibility; attnkit's forward and backward are always deterministic.
        return_attn_probs: also return softmax_lse and S_dmask.

    Returns:
        out (total_q, Hq, Dv) in q's dtype; with return_attn_probs, (out, softmax_lse, S_dmask):
        softmax_lse (Hq, total_q) float32, the natural-log logsumexp of each row's final scores;
        S_dmask None when dropout_p is 0, as in flash-attn, else (B, Hq, max_seqlen_q, max_seqlen_k),
        both rounded up to multiples of 128, holding each sequence's probabilities with the sign bit
        set where dropout dropped them (a testing aid costing a second, fp64 pass).

    Rules (docs/semantics.md §3, §4, §6):
        Scores, softmax and the accumulator are fp32 for float16/bfloat16 input (fp64 for fp64); a
        row with no allowed key gives out 0 and lse +inf, never NaN; finite input never gives NaN
        or Inf; NaN or Inf in q, k or v reaches exactly the rows that attend it. The result has
        the same bits on every run and thread count.

    Gradients: differentiable when a torch input requires grad (FlashAttention-2's backward, §8);
    numpy input is forward-only.

    Raises:
        TypeError or ValueError naming the argument and the rule it broke (e.g. a cu_seqlens that
        decreases, Hq not a multiple of Hk, mixed dtypes); nothing is written then.
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, x)
    cu_q, cu_k, max_seqlen_q, max_seqlen_k, left, right = _varlen_arguments(
        cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, window_size, alibi_slopes)
    if q.ndim != 3 or v.ndim != 3:
        raise ValueError(f"q and v must have rank 3 (total, heads, head_dim), got {q.ndim} and {v.ndim}")
    dropout_p = _scalar("dropout_p", dropout_p)
    if is_torch(q):
        from . import ops
        from .autograd import wants_grad

        # The differentiable path, and the one torch.compile traces: the attnkit::flash_varlen custom op.
        # The int8 path is forward-only (the binding refuses grad).
        if _int8_mode < 0 and (ops.compiling() or wants_grad(q, k, v)):
            seed = next_seed() if dropout_p > 0 else 0
            out, lse = ops.flash_varlen(q, k, v, ops.as_tensor(cu_q), ops.as_tensor(cu_k), max_seqlen_q,
                                        max_seqlen_k, ops.as_tensor(alibi_slopes), bool(causal),
                                        _scalar("softmax_scale", softmax_scale, allow_none=True), left, right,
                                        _scalar("softcap", softcap), dropout_p, ops.signed_seed(seed))
            if not return_attn_probs:
                return out
            dmask = None
            if dropout_p > 0:   # the same pattern, from the same seed, through the forward-only path
                batch = cu_q.shape[0] - 1
                dmask = _dmask_like(q, batch, q.shape[1], max_seqlen_q, max_seqlen_k)
                with torch_no_grad():
                    _attnkit.flash_varlen_forward(q.detach(), k.detach(), v.detach(), cu_q, cu_k, max_seqlen_q,
                                                  max_seqlen_k, alibi_slopes, empty_like_kind(out, out.shape), None,
                                                  bool(causal), _scalar("softmax_scale", softmax_scale, allow_none=True),
                                                  left, right, _scalar("softcap", softcap), dropout_p, seed, -1, False,
                                                  dmask)
            return out, lse, dmask
    out = empty_like_kind(q, (q.shape[0], q.shape[1], v.shape[2]))
    lse = _lse_like(q, (q.shape[1], q.shape[0])) if return_attn_probs else None
    dmask = None
    if return_attn_probs and dropout_p > 0 and _int8_mode < 0:
        batch = cu_q.shape[0] - 1 if cu_q.ndim == 1 and cu_q.shape[0] > 0 else 0   # malformed: the kernel says why
        dmask = _dmask_like(q, batch, q.shape[1], max_seqlen_q, max_seqlen_k)
    _attnkit.flash_varlen_forward(q, k, v, cu_q, cu_k, max_seqlen_q, max_seqlen_k, alibi_slopes, out, lse,
                                  bool(causal), _scalar("softmax_scale", softmax_scale, allow_none=True), left, right,
                                  _scalar("softcap", softcap), dropout_p, next_seed() if dropout_p > 0 else 0,
                                  _int8_mode, bool(_smooth_k), dmask)
    return (out, lse, dmask) if return_attn_probs else out


def int8_flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale=None,
                                causal=False, window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
                                qk_quant="per_block", smooth_k=True, return_attn_probs=False):
    """flash_attn_varlen_func (without dropout) with QKᵀ in int8, as int8_scaled_dot_product_attention:
    Q and K quantized per block (64 rows / 64 keys), per token or per tensor; smooth_k subtracts each
    sequence's K mean per KV head (not allowed with softcap > 0). lse is that of the true logits."""
    mode = qk_quant_code(qk_quant)
    return flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                                  softmax_scale=softmax_scale, causal=causal, window_size=window_size, softcap=softcap,
                                  alibi_slopes=alibi_slopes, return_attn_probs=return_attn_probs,
                                  _int8_mode=mode, _smooth_k=smooth_k)


def flash_attn_varlen_int8_func(q_int8, q_scale, k_int8, k_scale, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                max_seqlen_k, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                                alibi_slopes=None, return_attn_probs=False):
    """The varlen forward on caller-quantized Q and K (an int8 KV cache): nothing is quantized.

    q_int8 (total_q, Hq, D) int8 with q_scale (total_q, Hq) fp32, so q = q_scale·q_int8; likewise
    k_int8 (total_k, Hk, D) and k_scale (total_k, Hk); scales may be broadcast (expanded) views.
    v (total_k, Hk, Dv) fp32/fp16/bf16. Returns out, or (out, lse, None).
    """
    for name, x in (("q_int8", q_int8), ("q_scale", q_scale), ("k_int8", k_int8), ("k_scale", k_scale), ("v", v)):
        check_tensor(name, x)
    cu_q, cu_k, max_seqlen_q, max_seqlen_k, left, right = _varlen_arguments(
        cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, window_size, alibi_slopes)
    if q_int8.ndim != 3 or v.ndim != 3:
        raise ValueError(f"q_int8 and v must have rank 3 (total, heads, head_dim), got {q_int8.ndim} and {v.ndim}")
    out = empty_like_kind(v, (q_int8.shape[0], q_int8.shape[1], v.shape[2]))
    lse = _lse_like(v, (q_int8.shape[1], q_int8.shape[0])) if return_attn_probs else None
    _attnkit.flash_varlen_int8_forward(q_int8, q_scale, k_int8, k_scale, v, cu_q, cu_k, max_seqlen_q, max_seqlen_k,
                                       alibi_slopes, out, lse, bool(causal),
                                       _scalar("softmax_scale", softmax_scale, allow_none=True), left, right,
                                       _scalar("softcap", softcap))
    return (out, lse, None) if return_attn_probs else out


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                    alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """flash-attn 2.8's flash_attn_func on the CPU.

    Args:
        q: (B, Sq, Hq, D); k: (B, Sk, Hk, D); v: (B, Sk, Hk, Dv). Hk must divide Hq (GQA/MQA).
            float32, float64, float16 or bfloat16 (bf16 through torch), one dtype; any strides.
        dropout_p, softmax_scale (default 1 / sqrt(D)), causal (bottom-right: query i sees key j
            iff j <= i + Sk - Sq), window_size (left, right; -1 unbounded), softcap, alibi_slopes
            (float32 (Hq,) or (B, Hq)), deterministic, return_attn_probs: as flash_attn_varlen_func.

    Returns:
        out (B, Sq, Hq, Dv); with return_attn_probs, (out, softmax_lse (B, Hq, Sq) float32, S_dmask)
        with S_dmask as in flash_attn_varlen_func.

    Rules (docs/semantics.md §3, §4, §6): fp32 softmax and accumulation for float16/bfloat16; an
    empty row gives 0 (lse +inf); NaN in an input reaches exactly the rows that attend it.
    Gradients: differentiable when a torch input requires grad (§8). Bad arguments raise
    TypeError or ValueError naming the argument.
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, x)
    left, right = _window(window_size)
    if alibi_slopes is not None:
        check_tensor("alibi_slopes", alibi_slopes)
    if q.ndim != 4 or v.ndim != 4:
        raise ValueError(f"q and v must have rank 4 (batch, seq, heads, head_dim), got {q.ndim} and {v.ndim}")
    dropout_p = _scalar("dropout_p", dropout_p)
    if is_torch(q):
        from . import ops
        from .autograd import wants_grad

        # The differentiable path, and the one torch.compile traces: the attnkit::flash custom op.
        if ops.compiling() or wants_grad(q, k, v):
            seed = next_seed() if dropout_p > 0 else 0
            out, lse = ops.flash(q, k, v, ops.as_tensor(alibi_slopes), bool(causal),
                                 _scalar("softmax_scale", softmax_scale, allow_none=True), left, right,
                                 _scalar("softcap", softcap), dropout_p, ops.signed_seed(seed))
            if not return_attn_probs:
                return out
            dmask = None
            if dropout_p > 0:   # the same pattern, from the same seed, through the forward-only path
                dmask = _dmask_like(q, q.shape[0], q.shape[2], q.shape[1], k.shape[1])
                with torch_no_grad():
                    _attnkit.flash_forward(q.detach(), k.detach(), v.detach(), alibi_slopes,
                                           empty_like_kind(out, out.shape), None, bool(causal),
                                           _scalar("softmax_scale", softmax_scale, allow_none=True), left, right,
                                           _scalar("softcap", softcap), dropout_p, seed, dmask)
            return out, lse, dmask
    out = empty_like_kind(q, (q.shape[0], q.shape[1], q.shape[2], v.shape[3]))
    lse = _lse_like(q, (q.shape[0], q.shape[2], q.shape[1])) if return_attn_probs else None
    dmask = _dmask_like(q, q.shape[0], q.shape[2], q.shape[1], k.shape[1]) if return_attn_probs and dropout_p > 0 else None
    _attnkit.flash_forward(q, k, v, alibi_slopes, out, lse, bool(causal),
                           _scalar("softmax_scale", softmax_scale, allow_none=True), left, right,
                           _scalar("softcap", softcap), dropout_p, next_seed() if dropout_p > 0 else 0, dmask)
    return (out, lse, dmask) if return_attn_probs else out


def _flash_seed(q, k, v, num_heads, head_dim, cu_seqlens, max_seqlen, causal):
    num_heads = check_int("num_heads", num_heads, minimum=1)
    head_dim = check_int("head_dim", head_dim, minimum=1)
    views = []
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, x)
        if x.ndim != 2:
            raise ValueError(f"{name} must have rank 2 [total, num_heads*head_dim], got rank {x.ndim}")
        if x.shape[1] != num_heads * head_dim:
            raise ValueError(f"{name}.shape[1] must equal num_heads*head_dim ({num_heads}*{head_dim}), got {x.shape[1]}")
        views.append(x.reshape(x.shape[0], num_heads, head_dim))
    out = flash_attn_varlen_func(*views, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, causal=causal)
    return out.reshape(out.shape[0], num_heads * head_dim)


def flash_bidirectional_attention(q, k, v, num_heads, head_dim, cu_seqlens, max_seqlen):
    """docs/semantics.md §1 on the varlen flash kernel: q, k, v [total, H*D]; tokens attend within their sequence."""
    return _flash_seed(q, k, v, num_heads, head_dim, cu_seqlens, max_seqlen, causal=False)


def flash_causal_attention(q, k, v, num_heads, head_dim, cu_seqlens, max_seqlen):
    """As flash_bidirectional_attention, with token i of a sequence seeing its tokens j <= i."""
    return _flash_seed(q, k, v, num_heads, head_dim, cu_seqlens, max_seqlen, causal=True)


def _unbind(packed, axis, count, name):
    """The `count` tensors packed along `axis` (views: gradients flow back into `packed`)."""
    check_tensor(name, packed)
    if packed.ndim <= axis or packed.shape[axis] != count:
        raise ValueError(f"{name} must have {count} at dim {axis} ({name}.shape = {tuple(packed.shape)})")
    if is_torch(packed):
        return packed.unbind(axis)
    return tuple(np.take(packed, i, axis=axis) for i in range(count))


def flash_attn_qkvpacked_func(qkv, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                              alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """flash_attn_func on qkv (B, S, 3, H, D); the gradient is dqkv, as flash-attn's."""
    q, k, v = _unbind(qkv, 2, 3, "qkv")
    return flash_attn_func(q, k, v, dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic,
                           return_attn_probs)


def flash_attn_kvpacked_func(q, kv, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                             alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """flash_attn_func on q (B, Sq, Hq, D) and kv (B, Sk, 2, Hk, D)."""
    k, v = _unbind(kv, 2, 2, "kv")
    return flash_attn_func(q, k, v, dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic,
                           return_attn_probs)


def flash_attn_varlen_qkvpacked_func(qkv, cu_seqlens, max_seqlen, dropout_p=0.0, softmax_scale=None, causal=False,
                                     window_size=(-1, -1), softcap=0.0, alibi_slopes=None, deterministic=False,
                                     return_attn_probs=False):
    """flash_attn_varlen_func on qkv (total, 3, H, D) with one cu_seqlens for queries and keys."""
    q, k, v = _unbind(qkv, 1, 3, "qkv")
    return flash_attn_varlen_func(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, dropout_p, softmax_scale,
                                  causal, window_size, softcap, alibi_slopes, deterministic, return_attn_probs)


def flash_attn_varlen_kvpacked_func(q, kv, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                                    softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                                    alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """flash_attn_varlen_func on q (total_q, Hq, D) and kv (total_k, 2, Hk, D)."""
    k, v = _unbind(kv, 1, 2, "kv")
    return flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p,
                                  softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic,
                                  return_attn_probs)
