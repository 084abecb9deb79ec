"""attnkit's kernels as torch.library custom ops, so torch.compile and torch.export see them.

    torch.ops.attnkit.sdpa(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, seed)
        -> (out, lse)                       lse: query.shape[:-1], fp32
    torch.ops.attnkit.flash(q, k, v, alibi_slopes, causal, softmax_scale, window_left, window_right,
                            softcap, dropout_p, seed) -> (out, lse)         lse: (B, Hq, Sq), fp32
    torch.ops.attnkit.flash_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                                   alibi_slopes, causal, softmax_scale, window_left, window_right,
                                   softcap, dropout_p, seed) -> (out, lse)  lse: (Hq, total_q), fp32
    and their backward ops (sdpa_backward, flash_backward, flash_varlen_backward) -> (dq, dk, dv).

Each forward op is differentiable (register_autograd: its backward is the matching backward op)
and has a fake implementation giving shapes and dtypes without running a kernel. The semantics are
those of the public functions (attnkit.scaled_dot_product_attention, flash_attn_func,
flash_attn_varlen_func), which route through these ops while torch.compile traces them and call
the kernels directly otherwise. `seed` is the dropout seed as a signed 64-bit int (0 without dropout).
"""
from typing import Optional, Tuple

import torch

from . import _attnkit

_MASK64 = (1 << 64) - 1


def signed_seed(seed):
    """A 64-bit unsigned seed as the signed int a torch schema carries."""
    return seed - (1 << 64) if seed >= 1 << 63 else seed


def as_tensor(x):
    """An optional operand as a torch tensor, as the op schemas take them (None stays None; a
    numpy array, which the forward-only path also accepts, becomes a tensor sharing its memory)."""
    return x if x is None or isinstance(x, torch.Tensor) else torch.as_tensor(x)


def compiling():
    """Whether torch.compile / torch.export is tracing this call."""
    return torch.compiler.is_compiling()


def gradients_like(*tensors):
    """Contiguous, uninitialized gradients for a backward kernel to write (every element)."""
    return [torch.empty_like(x, memory_format=torch.contiguous_format) for x in tensors]


# --- SDPA ----------------------------------------------------------------------------------------

@torch.library.custom_op("attnkit::sdpa", mutates_args=(), device_types="cpu")
def sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: Optional[torch.Tensor],
         dropout_p: float, is_causal: bool, scale: Optional[float], enable_gqa: bool,
         seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    out = query.new_empty(tuple(query.shape[:-1]) + (value.shape[-1],))
    lse = query.new_empty(tuple(query.shape[:-1]), dtype=torch.float32)
    _attnkit.sdpa_forward_lse(query, key, value, attn_mask, out, lse, is_causal, enable_gqa, scale, dropout_p,
                              seed & _MASK64)
    return out, lse


@sdpa.register_fake
def _(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, seed):
    return (query.new_empty(tuple(query.shape[:-1]) + (value.shape[-1],)),
            query.new_empty(tuple(query.shape[:-1]), dtype=torch.float32))


@torch.library.custom_op("attnkit::sdpa_backward", mutates_args=(), device_types="cpu")
def sdpa_backward(dout: torch.Tensor, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attn_mask: Optional[torch.Tensor], out: torch.Tensor, lse: torch.Tensor, is_causal: bool,
                  enable_gqa: bool, scale: Optional[float], dropout_p: float,
                  seed: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dq, dk, dv = gradients_like(query, key, value)
    _attnkit.sdpa_backward(dout, query, key, value, attn_mask, out, lse, dq, dk, dv, is_causal, enable_gqa, scale,
                           dropout_p, seed & _MASK64)
    return dq, dk, dv


@sdpa_backward.register_fake
def _(dout, query, key, value, attn_mask, out, lse, is_causal, enable_gqa, scale, dropout_p, seed):
    return tuple(gradients_like(query, key, value))


def _sdpa_setup(ctx, inputs, output):
    query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, seed = inputs
    out, lse = output
    ctx.save_for_backward(query, key, value, attn_mask, out, lse)
    ctx.options = (is_causal, enable_gqa, scale, dropout_p, seed)
    ctx.mark_non_differentiable(lse)


def _sdpa_backward(ctx, dout, _dlse):
    query, key, value, attn_mask, out, lse = ctx.saved_tensors
    # dout may be an expanded view (the gradient of a sum): a contiguous copy keeps its rows cache-friendly.
    dq, dk, dv = sdpa_backward(dout.contiguous(), query, key, value, attn_mask, out, lse, *ctx.options)
    return dq, dk, dv, None, None, None, None, None, None


sdpa.register_autograd(_sdpa_backward, setup_context=_sdpa_setup)


# --- flash-attn, fixed length --------------------------------------------------------------------

@torch.library.custom_op("attnkit::flash", mutates_args=(), device_types="cpu")
def flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, alibi_slopes: Optional[torch.Tensor], causal: bool,
          softmax_scale: Optional[float], window_left: int, window_right: int, softcap: float, dropout_p: float,
          seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    out = q.new_empty((q.shape[0], q.shape[1], q.shape[2], v.shape[3]))
    lse = q.new_empty((q.shape[0], q.shape[2], q.shape[1]), dtype=torch.float32)
    _attnkit.flash_forward(q, k, v, alibi_slopes, out, lse, causal, softmax_scale, window_left, window_right, softcap,
                           dropout_p, seed & _MASK64, None)
    return out, lse


@flash.register_fake
def _(q, k, v, alibi_slopes, causal, softmax_scale, window_left, window_right, softcap, dropout_p, seed):
    return (q.new_empty((q.shape[0], q.shape[1], q.shape[2], v.shape[3])),
            q.new_empty((q.shape[0], q.shape[2], q.shape[1]), dtype=torch.float32))


@torch.library.custom_op("attnkit::flash_backward", mutates_args=(), device_types="cpu")
def flash_backward(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   alibi_slopes: Optional[torch.Tensor], out: torch.Tensor, lse: torch.Tensor, causal: bool,
                   softmax_scale: Optional[float], window_left: int, window_right: int, softcap: float, dropout_p: float,
                   seed: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dq, dk, dv = gradients_like(q, k, v)
    _attnkit.flash_backward(dout, q, k, v, alibi_slopes, out, lse, dq, dk, dv, causal, softmax_scale, window_left,
                            window_right, softcap, dropout_p, seed & _MASK64)
    return dq, dk, dv


@flash_backward.register_fake
def _(dout, q, k, v, alibi_slopes, out, lse, causal, softmax_scale, window_left, window_right, softcap, dropout_p,
      seed):
    return tuple(gradients_like(q, k, v))


def _flash_setup(ctx, inputs, output):
    q, k, v, alibi_slopes = inputs[:4]
    out, lse = output
    ctx.save_for_backward(q, k, v, alibi_slopes, out, lse)
    ctx.options = tuple(inputs[4:])
    ctx.mark_non_differentiable(lse)


def _flash_backward(ctx, dout, _dlse):
    q, k, v, alibi_slopes, out, lse = ctx.saved_tensors
    dq, dk, dv = flash_backward(dout.contiguous(), q, k, v, alibi_slopes, out, lse, *ctx.options)
    return (dq, dk, dv) + (None,) * 8


flash.register_autograd(_flash_backward, setup_context=_flash_setup)


# --- flash-attn, varlen --------------------------------------------------------------------------

@torch.library.custom_op("attnkit::flash_varlen", mutates_args=(), device_types="cpu")
def flash_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: torch.Tensor,
                 cu_seqlens_k: torch.Tensor, max_seqlen_q: int, max_seqlen_k: int, alibi_slopes: Optional[torch.Tensor],
                 causal: bool, softmax_scale: Optional[float], window_left: int, window_right: int, softcap: float,
                 dropout_p: float, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    out = q.new_empty((q.shape[0], q.shape[1], v.shape[2]))
    lse = q.new_empty((q.shape[1], q.shape[0]), dtype=torch.float32)
    _attnkit.flash_varlen_forward(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, alibi_slopes, out,
                                  lse, causal, softmax_scale, window_left, window_right, softcap, dropout_p,
                                  seed & _MASK64, -1, False, None)
    return out, lse


@flash_varlen.register_fake
def _(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, alibi_slopes, causal, softmax_scale,
      window_left, window_right, softcap, dropout_p, seed):
    return (q.new_empty((q.shape[0], q.shape[1], v.shape[2])),
            q.new_empty((q.shape[1], q.shape[0]), dtype=torch.float32))


@torch.library.custom_op("attnkit::flash_varlen_backward", mutates_args=(), device_types="cpu")
def flash_varlen_backward(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor, max_seqlen_q: int, max_seqlen_k: int,
                          alibi_slopes: Optional[torch.Tensor], out: torch.Tensor, lse: torch.Tensor, causal: bool,
                          softmax_scale: Optional[float], window_left: int, window_right: int, softcap: float,
                          dropout_p: float, seed: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dq, dk, dv = gradients_like(q, k, v)
    _attnkit.flash_varlen_backward(dout, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                                   alibi_slopes, out, lse, dq, dk, dv, causal, softmax_scale, window_left,
                                   window_right, softcap, dropout_p, seed & _MASK64)
    return dq, dk, dv


@flash_varlen_backward.register_fake
def _(dout, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, alibi_slopes, out, lse, causal,
      softmax_scale, window_left, window_right, softcap, dropout_p, seed):
    return tuple(gradients_like(q, k, v))


def _varlen_setup(ctx, inputs, output):
    q, k, v, cu_q, cu_k, max_q, max_k, alibi_slopes = inputs[:8]
    out, lse = output
    ctx.save_for_backward(q, k, v, cu_q, cu_k, alibi_slopes, out, lse)
    ctx.lengths = (max_q, max_k)
    ctx.options = tuple(inputs[8:])
    ctx.mark_non_differentiable(lse)


def _varlen_backward(ctx, dout, _dlse):
    q, k, v, cu_q, cu_k, alibi_slopes, out, lse = ctx.saved_tensors
    dq, dk, dv = flash_varlen_backward(dout.contiguous(), q, k, v, cu_q, cu_k, *ctx.lengths, alibi_slopes, out, lse,
                                       *ctx.options)
    return (dq, dk, dv) + (None,) * 12


flash_varlen.register_autograd(_varlen_backward, setup_context=_varlen_setup)
