"""torch.nn.functional.scaled_dot_product_attention on the CPU (docs/semantics.md §2),
and the seed wrappers sdpa_bidirectional_attention / sdpa_causal_attention."""
import numbers

from . import _attnkit
from ._arrays import check_int, check_tensor, empty_like_kind, is_torch, qk_quant_code
from ._random import next_seed


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False):
    """Drop-in for torch.nn.functional.scaled_dot_product_attention, on the CPU.

    Args:
        query: (N..., Hq, L, E); key: (N..., Hk, S, E); value: (N..., Hk, S, Ev), any number of
            leading dims. float32, float64, float16 or bfloat16 (bf16 through torch), one dtype,
            any strides; numpy arrays or torch CPU tensors.
        attn_mask: broadcast to (N..., Hq, L, S); bool (True takes part) or float of the query
            dtype (added to the scores). Not together with is_causal (as in torch).
        dropout_p: seeded by attnkit.manual_seed (the same seed gives the same bits).
        is_causal: top-left aligned: query i sees key j iff j <= i, also when L != S.
        scale: defaults to 1 / sqrt(E).
        enable_gqa: lets Hk divide Hq (query head h reads KV head h // (Hq // Hk)); otherwise Hq == Hk.

    Returns:
        (N..., Hq, L, Ev) in the query's dtype, numpy for numpy input, torch for torch.

    Rules (docs/semantics.md §2, §4, §6): a row that a bool mask or causality empties gives 0, as
    in torch; fp32 softmax and accumulation for float16/bfloat16, so finite input never gives NaN
    or Inf; NaN in an input reaches exactly the rows that attend it.
    Gradients: differentiable when a torch input requires grad (§8); a mask requiring grad raises
    ValueError. Bad arguments raise TypeError or ValueError naming the argument.
    """
    for name, x in (("query", query), ("key", key), ("value", value)):
        check_tensor(name, x)
    if attn_mask is not None:
        check_tensor("attn_mask", attn_mask)
    if not isinstance(dropout_p, numbers.Real) or isinstance(dropout_p, bool):
        raise TypeError(f"dropout_p must be a float, got {type(dropout_p).__name__}")
    if scale is not None and (not isinstance(scale, numbers.Real) or isinstance(scale, bool)):
        raise TypeError(f"scale must be a float or None, got {type(scale).__name__}")
    if attn_mask is not None and is_causal:
        # torch's rule; the C ABI itself accepts both (the seed wrappers use that).
        raise ValueError("attn_mask must be None when is_causal=True (as in torch)")
    if query.ndim < 2 or value.ndim < 1:
        raise ValueError(f"query must have at least 2 dims (..., L, E), got {query.ndim}")
    seed = next_seed() if dropout_p > 0 else 0
    if is_torch(query):
        from . import ops
        from .autograd import wants_grad

        # The differentiable path, and the one torch.compile traces: the attnkit::sdpa custom op.
        if ops.compiling() or wants_grad(query, key, value, attn_mask):
            if attn_mask is not None and is_torch(attn_mask) and attn_mask.requires_grad:
                raise ValueError("attn_mask requires grad, but attnkit computes no gradient for the mask: "
                                 "pass attn_mask.detach()")
            out, _ = ops.sdpa(query, key, value, ops.as_tensor(attn_mask), float(dropout_p), bool(is_causal),
                              None if scale is None else float(scale), bool(enable_gqa), ops.signed_seed(seed))
            return out
    out = empty_like_kind(query, tuple(query.shape[:-1]) + (value.shape[-1],))
    _attnkit.sdpa_forward(query, key, value, attn_mask, out, bool(is_causal), bool(enable_gqa),
                          None if scale is None else float(scale), float(dropout_p), seed)
    return out


def _split_heads(x, name, num_heads, head_dim):
    """[B, S, H*D] -> a (B, H, S, D) view."""
    check_tensor(name, x)
    if x.ndim != 3:
        raise ValueError(f"{name} must have rank 3 [batch, seq, num_heads*head_dim], got rank {x.ndim}")
    if x.shape[2] != num_heads * head_dim:
        raise ValueError(f"{name}.shape[2] must equal num_heads*head_dim ({num_heads}*{head_dim}), got {x.shape[2]}")
    batch, seq, _ = x.shape
    heads = x.reshape(batch, seq, num_heads, head_dim)
    return heads.transpose(1, 2) if is_torch(x) else heads.transpose(0, 2, 1, 3)


def _sdpa_seed(q, k, v, num_heads, head_dim, mask, causal):
    num_heads = check_int("num_heads", num_heads, minimum=1)
    head_dim = check_int("head_dim", head_dim, minimum=1)
    qh, kh, vh = (_split_heads(x, name, num_heads, head_dim) for name, x in (("q", q), ("k", k), ("v", v)))
    batch, seq_q = q.shape[0], q.shape[1]
    attn_mask = None
    if mask is not None:
        check_tensor("mask", mask)
        if mask.ndim != 2 or tuple(mask.shape) != (k.shape[0], k.shape[1]):
            raise ValueError(f"mask must have shape [batch, seq_k] = {(k.shape[0], k.shape[1])}, got {tuple(mask.shape)}")
        attn_mask = mask.reshape(mask.shape[0], 1, 1, mask.shape[1])
    if is_torch(q):
        from .autograd import wants_grad

        if wants_grad(q, k, v):   # the differentiable SDPA on the head views
            out = scaled_dot_product_attention(qh, kh, vh, attn_mask=attn_mask, is_causal=causal) if mask is None \
                else _masked_causal(qh, kh, vh, attn_mask, causal)
            return out.transpose(1, 2).reshape(batch, seq_q, num_heads * head_dim)
    # The output is written straight into [B, S, H, D] memory through a (B, H, S, D) view.
    out = empty_like_kind(q, (batch, seq_q, num_heads, head_dim))
    out_heads = out.transpose(1, 2) if is_torch(out) else out.transpose(0, 2, 1, 3)
    _attnkit.sdpa_forward(qh, kh, vh, attn_mask, out_heads, causal, False, None, 0.0, 0)
    return out.reshape(batch, seq_q, num_heads * head_dim)


def _masked_causal(qh, kh, vh, attn_mask, causal):
    """A key mask, combined with causality as one bool mask (torch's API takes only one of them)."""
    if causal:
        import torch

        seq_q, seq_k = qh.shape[2], kh.shape[2]
        attn_mask = attn_mask & torch.ones(seq_q, seq_k, dtype=torch.bool).tril()
    return scaled_dot_product_attention(qh, kh, vh, attn_mask=attn_mask)


def sdpa_bidirectional_attention(q, k, v, num_heads, head_dim, mask=None):
    """docs/semantics.md §1 on the SDPA kernel: [B, S, H*D] in and out, mask [B, S] (True = key may be attended)."""
    return _sdpa_seed(q, k, v, num_heads, head_dim, mask, causal=False)


def sdpa_causal_attention(q, k, v, num_heads, head_dim, mask=None):
    """As sdpa_bidirectional_attention, with query i seeing keys j <= i."""
    return _sdpa_seed(q, k, v, num_heads, head_dim, mask, causal=True)


def int8_scaled_dot_product_attention(query, key, value, attn_mask=None, is_causal=False, scale=None, enable_gqa=False,
                                      qk_quant="per_block", smooth_k=True):
    """scaled_dot_product_attention (without dropout) with QKᵀ in int8 (docs/semantics.md §5).

    Q and K are quantized on the fly to symmetric int8 per block (64 rows / 64 keys), per token
    or per tensor (`qk_quant`); smooth_k subtracts K's mean over tokens first. Softmax and P·V
    run in fp32. Accepts fp32, fp16 and bf16.
    """
    for name, x in (("query", query), ("key", key), ("value", value)):
        check_tensor(name, x)
    if attn_mask is not None:
        check_tensor("attn_mask", attn_mask)
        if is_causal:
            raise ValueError("attn_mask must be None when is_causal=True (as in torch)")
    mode = qk_quant_code(qk_quant)
    if scale is not None and (not isinstance(scale, numbers.Real) or isinstance(scale, bool)):
        raise TypeError(f"scale must be a float or None, got {type(scale).__name__}")
    if query.ndim < 2 or value.ndim < 1:
        raise ValueError(f"query must have at least 2 dims (..., L, E), got {query.ndim}")
    out = empty_like_kind(query, tuple(query.shape[:-1]) + (value.shape[-1],))
    _attnkit.int8_sdpa_forward(query, key, value, attn_mask, out, bool(is_causal), bool(enable_gqa),
                               None if scale is None else float(scale), mode, bool(smooth_k))
    return out
