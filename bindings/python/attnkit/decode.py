"""Decoding with a KV cache: flash-attn 2.8's flash_attn_with_kvcache on the CPU,
and merge_attention_states for combining partial attentions."""
import numpy as np

from . import _attnkit
from ._arrays import check_int, check_tensor, empty_like_kind, is_torch
from .flash import _index_tensor, _lse_like, _scalar, _window


def _per_sequence(name, value, batch, like):
    """An int (the same for every sequence), a list, or an int32/int64 tensor of shape (batch,)."""
    if isinstance(value, (list, tuple)):
        return _index_tensor(name, value)
    if not (isinstance(value, np.ndarray) or is_torch(value)):
        return np.full((batch,), check_int(name, value), dtype=np.int64)
    return check_tensor(name, value)


def flash_attn_with_kvcache(q, k_cache, v_cache, k=None, v=None, rotary_cos=None, rotary_sin=None,
                            cache_seqlens=None, cache_batch_idx=None, cache_leftpad=None, block_table=None,
                            softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                            rotary_interleaved=True, alibi_slopes=None, num_splits=0, return_softmax_lse=False,
                            k_scale=None, v_scale=None):
    """flash-attn 2.8's flash_attn_with_kvcache: appends k/v (B, S_new, Hk, D) to k_cache/v_cache
    in place at cache_seqlens, rotating k (and q) when rotary_cos/rotary_sin are given, then
    attends q (B, Sq, Hq, D) to the cache. k_cache/v_cache are (B_cache, S_cache, Hk, D), or
    (num_blocks, page_size, Hk, D) with block_table (B, max_blocks) int32. Returns out
    (B, Sq, Hq, D), and softmax_lse (B, Hq, Sq) fp32 with return_softmax_lse. cache_seqlens
    None means every cache is full. The cache is left untouched if any argument is invalid.

    causal and window_size are bottom-right aligned with Sk = cache_seqlens + S_new (the new
    tokens see the whole cache before them); rotary_interleaved picks GPT-J pairs (0, 1), (2, 3)
    over GPT-NeoX halves. docs/semantics.md §7 has the full rules.

    int8 caches (an attnkit extension): k_cache/v_cache int8 with k_scale/v_scale fp32 of shape
    k_cache.shape[:3], one symmetric scale per (row, position, KV head); new k/v are quantized on
    append (absmax/127 per token and head) and the kernel dequantizes on the fly."""
    for name, x in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache)):
        check_tensor(name, x)
    for name, x in (("k", k), ("v", v), ("rotary_cos", rotary_cos), ("rotary_sin", rotary_sin),
                    ("alibi_slopes", alibi_slopes), ("k_scale", k_scale), ("v_scale", v_scale)):
        if x is not None:
            check_tensor(name, x)
    if q.ndim != 4 or v_cache.ndim != 4:
        raise ValueError(f"q and v_cache must have rank 4, got {q.ndim} and {v_cache.ndim}")
    batch = q.shape[0]
    if block_table is not None:
        block_table = _index_tensor("block_table", block_table) if isinstance(block_table, (list, tuple)) \
            else check_tensor("block_table", block_table)
    if cache_seqlens is None:
        full = k_cache.shape[1] * (block_table.shape[1] if block_table is not None and block_table.ndim == 2 else 1)
        cache_seqlens = full
    seqlens = _per_sequence("cache_seqlens", cache_seqlens, batch, q)
    batch_idx = None if cache_batch_idx is None else _per_sequence("cache_batch_idx", cache_batch_idx, batch, q)
    leftpad = None if cache_leftpad is None else _per_sequence("cache_leftpad", cache_leftpad, batch, q)
    left, right = _window(window_size)
    num_splits = check_int("num_splits", num_splits, minimum=0)
    out = empty_like_kind(q, (q.shape[0], q.shape[1], q.shape[2], v_cache.shape[3]))
    lse = _lse_like(q, (q.shape[0], q.shape[2], q.shape[1])) if return_softmax_lse else None
    _attnkit.flash_kvcache_forward(q, k_cache, v_cache, k, v, rotary_cos, rotary_sin, seqlens, batch_idx, leftpad,
                                   block_table, alibi_slopes, out, lse, bool(causal),
                                   _scalar("softmax_scale", softmax_scale, allow_none=True), left, right,
                                   _scalar("softcap", softcap), bool(rotary_interleaved), num_splits, k_scale, v_scale)
    return (out, lse) if return_softmax_lse else out


def merge_attention_states(out_a, lse_a, out_b, lse_b):
    """Attention over two disjoint key sets, combined: (out, lse) with out = (e^lse_a·out_a +
    e^lse_b·out_b) / (e^lse_a + e^lse_b). Layouts as the flash functions return them: out
    (B, S, H, D) with lse (B, H, S), or varlen out (T, H, D) with lse (H, T). A part with
    lse +inf (no keys) counts for nothing."""
    for name, x in (("out_a", out_a), ("lse_a", lse_a), ("out_b", out_b), ("lse_b", lse_b)):
        check_tensor(name, x)
    out = empty_like_kind(out_a, tuple(out_a.shape))
    lse = _lse_like(out_a, tuple(lse_a.shape))
    _attnkit.merge_attention_states(out_a, lse_a, out_b, lse_b, out, lse)
    return out, lse
