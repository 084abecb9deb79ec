"""torch.autograd.Function wrappers: the differentiable paths of scaled_dot_product_attention,
flash_attn_func, flash_attn_varlen_func and the eager seed functions when they return weights.

The public functions call these only when grad mode is on and an input requires grad; otherwise
they take the forward-only path. The forward saves q, k, v, out and lse (never an L x S matrix);
the backward is attnkit's FlashAttention-2 backward, deterministic, with dropout regenerated from
the forward's seed.
"""
import torch

from . import _attnkit
from ._arrays import is_torch


def wants_grad(*tensors):
    """Whether a call must be differentiable: grad mode on and some torch input requiring grad."""
    return torch.is_grad_enabled() and any(is_torch(x) and x.requires_grad for x in tensors if x is not None)


def _gradients_like(*tensors):
    """Contiguous, uninitialized gradients for the kernel to write (every element)."""
    return [torch.empty_like(x, memory_format=torch.contiguous_format) for x in tensors]


def _gradient_of(dout):
    # dout may be an expanded view (the gradient of a sum); the kernel reads strides, but a
    # contiguous copy keeps its rows cache-friendly.
    return dout.contiguous()


class SDPAFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, seed):
        out = torch.empty(tuple(query.shape[:-1]) + (value.shape[-1],), dtype=query.dtype)
        lse = torch.empty(tuple(query.shape[:-1]), dtype=torch.float32)
        _attnkit.sdpa_forward_lse(query, key, value, attn_mask, out, lse, is_causal, enable_gqa, scale, dropout_p, seed)
        ctx.save_for_backward(query, key, value, out, lse)
        ctx.attn_mask = attn_mask
        ctx.options = (is_causal, enable_gqa, scale, dropout_p, seed)
        return out

    @staticmethod
    def backward(ctx, dout):
        query, key, value, out, lse = ctx.saved_tensors
        dq, dk, dv = _gradients_like(query, key, value)
        _attnkit.sdpa_backward(_gradient_of(dout), query, key, value, ctx.attn_mask, out, lse, dq, dk, dv, *ctx.options)
        return dq, dk, dv, None, None, None, None, None, None


class FlashFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, alibi_slopes, causal, softmax_scale, left, right, softcap, dropout_p, seed):
        out = torch.empty((q.shape[0], q.shape[1], q.shape[2], v.shape[3]), dtype=q.dtype)
        lse = torch.empty((q.shape[0], q.shape[2], q.shape[1]), dtype=torch.float32)
        _attnkit.flash_forward(q, k, v, alibi_slopes, out, lse, causal, softmax_scale, left, right, softcap, dropout_p,
                               seed, None)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.alibi_slopes = alibi_slopes
        ctx.options = (causal, softmax_scale, left, right, softcap, dropout_p, seed)
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = _gradients_like(q, k, v)
        _attnkit.flash_backward(_gradient_of(dout), q, k, v, ctx.alibi_slopes, out, lse, dq, dk, dv, *ctx.options)
        return dq, dk, dv, None, None, None, None, None, None, None, None


class FlashVarlenFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, cu_q, cu_k, max_q, max_k, alibi_slopes, causal, softmax_scale, left, right, softcap,
                dropout_p, seed):
        out = torch.empty((q.shape[0], q.shape[1], v.shape[2]), dtype=q.dtype)
        lse = torch.empty((q.shape[1], q.shape[0]), dtype=torch.float32)
        _attnkit.flash_varlen_forward(q, k, v, cu_q, cu_k, max_q, max_k, alibi_slopes, out, lse, causal, softmax_scale,
                                      left, right, softcap, dropout_p, seed, -1, False, None)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.varlen = (cu_q, cu_k, max_q, max_k, alibi_slopes)
        ctx.options = (causal, softmax_scale, left, right, softcap, dropout_p, seed)
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k, v, out, lse = ctx.saved_tensors
        cu_q, cu_k, max_q, max_k, alibi_slopes = ctx.varlen
        dq, dk, dv = _gradients_like(q, k, v)
        _attnkit.flash_varlen_backward(_gradient_of(dout), q, k, v, cu_q, cu_k, max_q, max_k, alibi_slopes, out, lse,
                                       dq, dk, dv, *ctx.options)
        return (dq, dk, dv) + (None,) * 12


class EagerFunction(torch.autograd.Function):
    """The eager seed functions with return_weights=True: gradients flow through out and weights.
    The forward saves q, k and v; the backward recomputes P (an L x S block of rows at a time)."""

    @staticmethod
    def forward(ctx, q, k, v, mask, num_heads, head_dim, causal):
        from .eager import eager_forward_into

        out, weights = eager_forward_into(q, k, v, mask, num_heads, head_dim, causal, return_weights=True)
        ctx.save_for_backward(q, k, v)
        ctx.mask = mask
        ctx.options = (num_heads, head_dim, causal)
        ctx.set_materialize_grads(False)   # a None gradient (out or weights unused) is passed as NULL
        return out, weights

    @staticmethod
    def backward(ctx, dout, dweights):
        q, k, v = ctx.saved_tensors
        dq, dk, dv = _gradients_like(q, k, v)
        _attnkit.eager_backward(None if dout is None else _gradient_of(dout), dweights, q, k, v, ctx.mask, dq, dk, dv,
                                *ctx.options)
        return dq, dk, dv, None, None, None, None
