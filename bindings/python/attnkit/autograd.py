"""Autograd for the eager seed functions when they return weights (a torch.autograd.Function).

scaled_dot_product_attention, flash_attn_func and flash_attn_varlen_func are differentiable
through their custom ops' registered autograd (ops.py): the forward saves q, k, v, out and lse
(never an L x S matrix); the backward is attnkit's FlashAttention-2 backward, deterministic, with
dropout regenerated from the forward's seed. The public functions take those paths only when grad
mode is on and an input requires grad (or torch.compile is tracing); otherwise the forward-only one.
"""
import torch

from . import _attnkit
from ._arrays import is_torch
from .ops import gradients_like


def wants_grad(*tensors):
    """Whether a call must be differentiable: grad mode on and some torch input requiring grad."""
    return torch.is_grad_enabled() and any(is_torch(x) and x.requires_grad for x in tensors if x is not None)


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
        dq, dk, dv = gradients_like(q, k, v)
        _attnkit.eager_backward(None if dout is None else dout.contiguous(), dweights, q, k, v, ctx.mask, dq, dk, dv,
                                *ctx.options)
        return dq, dk, dv, None, None, None, None
