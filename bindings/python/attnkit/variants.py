"""The attention guide's other variants (docs/semantics.md §9): sparse top-k attention, the
Attention Free Transformer (full, local, simple) and Linformer. Forward only: a call that
would need gradients raises instead of returning a result autograd cannot follow.
"""
from . import _attnkit
from ._arrays import check_int, check_tensor, empty_like_kind, is_torch

_OUTSIDE = {"exclude": _attnkit.AFT_OUTSIDE_EXCLUDE, "zero_bias": _attnkit.AFT_OUTSIDE_ZERO_BIAS}


def _forward_only(function, *tensors):
    import torch

    if torch.is_grad_enabled() and any(t is not None and is_torch(t) and t.requires_grad for t in tensors):
        raise NotImplementedError(f"{function} has no backward: call it under torch.no_grad() or pass detached "
                                  "tensors (its result would not carry gradients)")


def _checked(function, names_and_tensors):
    """The tensors, each checked to be numpy or torch (None allowed), and none needing gradients."""
    for name, x in names_and_tensors:
        if x is not None:
            check_tensor(name, x)
    tensors = [x for _, x in names_and_tensors]
    if any(x is not None and is_torch(x) for x in tensors):
        _forward_only(function, *tensors)
    return tensors


def _with_heads(x):
    """[B, S, D] as [B, 1, S, D] (a view); [B, H, S, D] unchanged."""
    if x.ndim == 3:
        return x.unsqueeze(1) if is_torch(x) else x[:, None]
    return x


def _head_layout(names, tensors):
    ranks = {x.ndim for x in tensors}
    if len(ranks) != 1 or ranks.pop() not in (3, 4):
        shapes = ", ".join(f"{n} {tuple(x.shape)}" for n, x in zip(names, tensors))
        raise ValueError(f"{'/'.join(names)} must all be [B, S, D] or all [B, H, S, D], got {shapes}")
    return tensors[0].ndim == 3


def sparse_top_k_attention(query, key, value, k, num_chunks=4, *, causal=False, mask=None, softmax_scale=None):
    """Each query keeps its k highest-scoring keys, softmaxes over those only, and averages their values.

    Args:
        query: [B, S_q, D] or [B, H, S_q, D]; key: [B, S_k, D] or [B, H_k, S_k, D] (H_k divides H);
            value: [B, S_k, D_v] or [B, H_k, S_k, D_v]. float32, float64, float16 or bfloat16; numpy or torch.
        k: keys kept per query, 1 <= k <= S_k.
        num_chunks: accepted for compatibility with the attention guide; the result does not depend on it.
        causal: query i sees keys j <= i only (top-left); a row with fewer than k such keys keeps them all.
        mask: optional [B, S_k] bool, True where the key may be attended.
        softmax_scale: defaults to 1 / sqrt(D).

    Scores are softmax_scale · q·k (fp32 for fp32/fp16/bf16 input). Ties at the k-th score go to the lower
    key index; a NaN score ranks first (both as torch.topk). A query with no allowed key gives 0. The keys
    are streamed in tiles through a running top-k per query: memory is O(tile), not O(S_q · S_k).

    Returns:
        [B, (H,) S_q, D_v] in query's dtype.
    """
    query, key, value, mask = _checked("sparse_top_k_attention",
                                       [("query", query), ("key", key), ("value", value), ("mask", mask)])
    k = check_int("k", k, minimum=1)
    check_int("num_chunks", num_chunks, minimum=1)
    flat = _head_layout(("query", "key", "value"), (query, key, value))
    if k > key.shape[-2]:
        raise ValueError(f"k must be <= the key length S_k = {key.shape[-2]}, got {k}")
    q4, k4, v4 = (_with_heads(x) for x in (query, key, value))
    out = empty_like_kind(query, (q4.shape[0], q4.shape[1], q4.shape[2], v4.shape[3]))
    _attnkit.sparse_topk_forward(q4, k4, v4, mask, out, k, bool(causal),
                                 None if softmax_scale is None else float(softmax_scale))
    return out[:, 0] if flat else out


def _aft(function, q, k, v, w_bias, variant, causal, outside=_attnkit.AFT_OUTSIDE_EXCLUDE, local_context=0):
    w_u = w_v = None
    if isinstance(w_bias, (tuple, list)):
        if len(w_bias) != 2:
            raise ValueError(f"w_bias must be a [T, T'] tensor or a pair (u, v) of [T, r] factors, got a "
                             f"{type(w_bias).__name__} of {len(w_bias)}")
        (w_u, w_v), w_bias = w_bias, None
    q, k, v, w_bias, w_u, w_v = _checked(function, [("q", q), ("k", k), ("v", v), ("w_bias", w_bias),
                                                    ("w_bias[0]", w_u), ("w_bias[1]", w_v)])
    out = empty_like_kind(q, q.shape)
    try:
        _attnkit.aft_forward(q, k, v, w_bias, w_u, w_v, out, variant, bool(causal), outside, local_context)
    except ValueError as error:   # the C names are w_u/w_v; the Python ones are w_bias[0]/w_bias[1]
        raise ValueError(str(error).replace("w_u", "w_bias[0]").replace("w_v", "w_bias[1]")) from None
    return out


def aft_full(q, k, v, w_bias, *, causal=False):
    """AFT-full: Y = σ(Q) ⊙ (exp(W) @ (exp(K) ⊙ V)) / (exp(W) @ exp(K)), per batch.

    Args:
        q, k, v: [B, T, d]; float32, float64, float16 or bfloat16; numpy or torch.
        w_bias: the pairwise position bias W, a [>= T, >= T] tensor whose leading [T, T] block is read
            (as the guide's ``wbias[:T, :T]``), or a pair (u, v) of [>= T, r] factors with W = u·vᵀ,
            which is never expanded (memory O(T·d)).
        causal: position t sees keys t' <= t only.

    Stable for any magnitude: exponents are shifted by K's max over tokens per feature and W's max
    per row (not by K's max over features, which changes the result); a (t, c) whose shifted sum
    would underflow is recomputed exactly. Returns [B, T, d] in q's dtype.
    """
    return _aft("aft_full", q, k, v, w_bias, _attnkit.AFT_FULL, causal)


def aft_local(q, k, v, w_bias, local_context, outside="exclude", *, causal=False):
    """AFT-local: aft_full with keys |t − t'| >= local_context treated by ``outside``.

    outside="exclude" (default, the guide's AFTLocal: −inf there, so those keys drop out);
    outside="zero_bias" (the AFT paper: W = 0 there, the keys still count with weight exp(K)).
    Only the band of w_bias is read. local_context >= 1; local_context >= T is aft_full.
    Other arguments as aft_full.
    """
    local_context = check_int("local_context", local_context, minimum=1)
    if outside not in _OUTSIDE:
        raise ValueError(f"outside must be one of {sorted(_OUTSIDE)}, got {outside!r}")
    return _aft("aft_local", q, k, v, w_bias, _attnkit.AFT_LOCAL, causal, _OUTSIDE[outside], local_context)


def aft_simple(q, k, v, *, causal=False):
    """AFT-simple: no position bias, Y_t = σ(Q_t) ⊙ Σ_t' softmax_t'(K)[t'] ⊙ V_t' per feature; O(T·d).

    causal=True sums over t' <= t with a running, rescaled max (still O(T·d)).
    """
    return _aft("aft_simple", q, k, v, None, _attnkit.AFT_SIMPLE, causal)


def _projection(name, proj, bias):
    """A projection given as a [k, S_max] tensor (and bias), or as an nn.Linear(S_max, k)."""
    if hasattr(proj, "weight") and not hasattr(proj, "ndim"):
        if bias is not None:
            raise ValueError(f"bias_{name[-1]} must be None when {name} is a module (its .bias is used)")
        return proj.weight, getattr(proj, "bias", None)
    return proj, bias


def linformer_attention(q, k, v, proj_e, proj_f, bias_e=None, bias_f=None, *, softmax_scale=None):
    """Linformer: K and V projected along the sequence by E and F, then softmax attention.

        K' = E[:, :S]·K + bias_e,  V' = F[:, :S]·V + bias_f,  out = softmax(q·K'ᵀ · scale)·V'

    Args:
        q: [B, S_q, D] or [B, H, S_q, D]; k: [B, S, D] or [B, H_k, S, D] (H_k divides H);
            v: [B, S, D_v] or [B, H_k, S, D_v]. float32, float64, float16 or bfloat16.
        proj_e, proj_f: [k, S_max] with S_max >= S, or nn.Linear(S_max, k) modules (weight and bias).
            Only the first S columns are read: the sequence is not padded to S_max (docs/semantics.md §9
            says how that relates to the guide's zero padding).
        bias_e, bias_f: optional [k].
        softmax_scale: defaults to 1 / sqrt(D).

    One pass: each (batch, kv head)'s projections are made once, then every block of queries attends
    them with its scores in a [rows, k] tile. Returns [B, (H,) S_q, D_v] in q's dtype.
    """
    proj_e, bias_e = _projection("proj_e", proj_e, bias_e)
    proj_f, bias_f = _projection("proj_f", proj_f, bias_f)
    q, k, v, proj_e, proj_f, bias_e, bias_f = _checked("linformer_attention", [
        ("q", q), ("k", k), ("v", v), ("proj_e", proj_e), ("proj_f", proj_f), ("bias_e", bias_e), ("bias_f", bias_f)])
    flat = _head_layout(("q", "k", "v"), (q, k, v))
    q4, k4, v4 = (_with_heads(x) for x in (q, k, v))
    out = empty_like_kind(q, (q4.shape[0], q4.shape[1], q4.shape[2], v4.shape[3]))
    _attnkit.linformer_forward(q4, k4, v4, proj_e, bias_e, proj_f, bias_f, out,
                               None if softmax_scale is None else float(softmax_scale))
    return out[:, 0] if flat else out
