"""Longformer-style sliding-window attention (the attention guide's LongformerSelfAttention band).

Query i attends keys j with |i − j| <= window (and j <= i when causal): flash_attn_func with
window_size=(window, window) or (window, 0). The flash engine visits only the key tiles that
intersect the band, so the cost is O(S · window), for any S (no multiple-of-2w restriction,
unlike the guide's chunked version).
"""
from ._arrays import check_int, check_tensor
from .flash import flash_attn_func


def sliding_window_attention(q, k, v, window, causal=False, softmax_scale=None):
    """Attention within a band: query i sees keys i − window ... i + window (… i when causal).

    Args:
        q: (B, S, Hq, D); k: (B, S, Hk, D); v: (B, S, Hk, Dv), Hk dividing Hq; float32, float64,
            float16 or bfloat16; numpy or torch.
        window: keys on each side of the query (>= 0); the band holds 2 · window + 1 keys
            (window + 1 when causal), cut at the sequence's ends.
        causal: drop the keys after the query.
        softmax_scale: defaults to 1 / sqrt(D).

    Returns:
        (B, S, Hq, Dv) in q's dtype. Differentiable for torch inputs that require grad.
        The rules of flash_attn_func apply (docs/semantics.md §3, §4).
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, x)
    window = check_int("window", window, minimum=0)
    if q.ndim != 4 or k.ndim != 4 or q.shape[1] != k.shape[1]:
        raise ValueError(f"q and k must be (B, S, H, D) with the same S, got shapes {tuple(q.shape)} and "
                         f"{tuple(k.shape)}")
    return flash_attn_func(q, k, v, softmax_scale=softmax_scale, causal=bool(causal),
                           window_size=(window, 0 if causal else window))
