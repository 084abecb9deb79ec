"""Eager attention: the textbook algorithm, docs/semantics.md §1."""
from . import _attnkit
from ._arrays import check_int, check_tensor, empty_like_kind, is_torch


def _eager(q, k, v, num_heads, head_dim, mask, return_weights, causal):
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, x)
    if mask is not None:
        check_tensor("mask", mask)
    num_heads = check_int("num_heads", num_heads, minimum=1)
    head_dim = check_int("head_dim", head_dim, minimum=1)
    if is_torch(q):
        from .autograd import EagerFunction, wants_grad

        if wants_grad(q, k, v):
            if return_weights:   # differentiable through out and weights
                return EagerFunction.apply(q, k, v, mask, num_heads, head_dim, causal)
            # The same function (docs/semantics.md §1) through the differentiable SDPA kernel.
            from .sdpa import _sdpa_seed

            return _sdpa_seed(q, k, v, num_heads, head_dim, mask, causal)
    out, weights = eager_forward_into(q, k, v, mask, num_heads, head_dim, causal, return_weights)
    if return_weights:
        return out, weights
    return out


def eager_forward_into(q, k, v, mask, num_heads, head_dim, causal, return_weights):
    """Runs the eager kernel into new out (and weights) tensors or arrays of q's kind."""
    out = empty_like_kind(q, q.shape)
    weights = None
    # Allocated only for inputs that can be valid; otherwise the library names the broken rule.
    if return_weights and q.ndim == 3 and k.ndim == 3 and q.shape[2] == num_heads * head_dim:
        weights = empty_like_kind(q, (q.shape[0], num_heads, q.shape[1], k.shape[1]))
    _attnkit.eager_forward(q, k, v, mask, out, weights, num_heads, head_dim, causal)
    return out, weights


def eager_bidirectional_attention(q, k, v, num_heads, head_dim, mask=None, *, return_weights=False):
    """Attention over [B, S, num_heads*head_dim] inputs, every query seeing every key.

    mask: optional [B, S] bool, True where the key may be attended. A query with
    no allowed key gives 0. Returns out [B, S, H*D], or (out, weights [B, H, S, S])
    with return_weights=True. fp32 and fp64.
    """
    return _eager(q, k, v, num_heads, head_dim, mask, return_weights, causal=False)


def eager_causal_attention(q, k, v, num_heads, head_dim, mask=None, *, return_weights=False):
    """As eager_bidirectional_attention, but query i sees only keys j <= i."""
    return _eager(q, k, v, num_heads, head_dim, mask, return_weights, causal=True)
