"""torch.library custom ops (attnkit::sdpa, flash, flash_varlen and their backward ops):
opcheck, torch.compile(fullgraph=True) against eager mode, and torch.export."""
import pytest
import torch
from torch.library import opcheck

import attnkit
import attnkit.ops  # registers torch.ops.attnkit.*
from conftest import sdpa_reference, max_error

OPS = torch.ops.attnkit


def _leaf(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype)


def _sdpa_cases():
    yield "plain", (_leaf(1, 2, 5, 8), _leaf(1, 2, 7, 8), _leaf(1, 2, 7, 8), None, 0.0, False, None, False, 0)
    yield "gqa causal scale", (_leaf(2, 4, 7, 13), _leaf(2, 2, 5, 13), _leaf(2, 2, 5, 6), None, 0.0, True, 0.3, True, 0)
    mask = torch.rand(1, 1, 5, 7) > 0.3
    yield "bool mask", (_leaf(1, 2, 5, 8), _leaf(1, 2, 7, 8), _leaf(1, 2, 7, 8), mask, 0.0, False, None, False, 0)
    yield "dropout", (_leaf(1, 2, 5, 8), _leaf(1, 2, 7, 8), _leaf(1, 2, 7, 8), None, 0.25, False, None, False, -12345)


def _flash_cases():
    slopes = torch.rand(4) * 0.5
    yield "plain", (_leaf(2, 5, 2, 8), _leaf(2, 7, 2, 8), _leaf(2, 7, 2, 8), None, False, None, -1, -1, 0.0, 0.0, 0)
    yield "gqa causal window softcap alibi", (_leaf(1, 9, 4, 16), _leaf(1, 6, 2, 16), _leaf(1, 6, 2, 16), slopes, True,
                                              None, 3, 0, 5.0, 0.0, 0)


def _varlen_cases():
    cu = torch.tensor([0, 3, 3, 10], dtype=torch.int32)
    yield "causal gqa", (_leaf(10, 4, 8), _leaf(10, 2, 8), _leaf(10, 2, 8), cu, cu, 7, 7, None, True, None, -1, -1,
                         0.0, 0.0, 0)
    cu_k = torch.tensor([0, 5, 6, 8], dtype=torch.int32)
    yield "window dropout", (_leaf(10, 2, 8), _leaf(8, 2, 8), _leaf(8, 2, 8), cu, cu_k, 7, 5, None, False, 0.5, 2, 2,
                             0.0, 0.1, 77)


def _with_grad(args):
    return tuple(a.clone().requires_grad_() if isinstance(a, torch.Tensor) and a.is_floating_point() and a.dim() > 1
                 else a for a in args)


@pytest.mark.parametrize("op,cases", [(OPS.sdpa.default, _sdpa_cases), (OPS.flash.default, _flash_cases),
                                      (OPS.flash_varlen.default, _varlen_cases)], ids=["sdpa", "flash", "flash_varlen"])
def test_opcheck_forward_ops(op, cases):
    """Schema, fake (meta) implementation, autograd registration and AOT dispatch, with and without grad."""
    for label, args in cases():
        opcheck(op, args)
        opcheck(op, _with_grad(args))


def test_opcheck_backward_ops():
    """Each backward op on the saved tensors of its forward op."""
    for forward, backward, cases, tensors in ((OPS.sdpa, OPS.sdpa_backward, _sdpa_cases, 3),
                                              (OPS.flash, OPS.flash_backward, _flash_cases, 3),
                                              (OPS.flash_varlen, OPS.flash_varlen_backward, _varlen_cases, 3)):
        for label, args in cases():
            out, lse = forward(*args)
            dout = torch.randn_like(out)
            if backward is OPS.sdpa_backward:
                query, key, value, mask, dropout_p, is_causal, scale, gqa, seed = args
                opcheck(backward.default, (dout, query, key, value, mask, out, lse, is_causal, gqa, scale, dropout_p,
                                           seed))
            elif backward is OPS.flash_backward:
                opcheck(backward.default, (dout,) + args[:4] + (out, lse) + args[4:])
            else:
                opcheck(backward.default, (dout,) + args[:8] + (out, lse) + args[8:])


def test_seed_round_trips_through_the_signed_schema():
    """Seeds >= 2^63 (half of attnkit's stream) travel as negative int64 and give the same dropout."""
    q, k, v = _leaf(1, 2, 9, 8), _leaf(1, 2, 11, 8), _leaf(1, 2, 11, 8)
    seed = (1 << 64) - 12345
    attnkit.manual_seed(3)
    for _ in range(2):
        via_op, _ = OPS.sdpa(q, k, v, None, 0.3, False, None, False, attnkit.ops.signed_seed(seed))
        direct = torch.empty_like(via_op)
        attnkit._attnkit.sdpa_forward(q, k, v, None, direct, False, False, None, 0.3, seed)
        assert torch.equal(via_op, direct)
        seed = 5


class _Block(torch.nn.Module):
    """A small attention block calling the three public functions: SDPA (causal, GQA),
    flash_attn_func (window, softcap) and flash_attn_varlen_func on a packed batch."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(32, 32)

    def forward(self, x, cu_seqlens):
        b, s, _ = x.shape
        h = self.proj(x).view(b, s, 4, 8)
        q, kv = h, h[:, :, :2]
        a = attnkit.scaled_dot_product_attention(q.transpose(1, 2), kv.transpose(1, 2), kv.transpose(1, 2),
                                                 is_causal=True, enable_gqa=True).transpose(1, 2)
        f = attnkit.flash_attn_func(q, kv, kv, causal=True, window_size=(5, 0), softcap=3.0)
        packed = h.reshape(b * s, 4, 8)
        p = attnkit.flash_attn_varlen_func(packed, packed, packed, cu_seqlens, cu_seqlens, s, s, causal=True)
        return (a * f).sum() + p.view(b, s, 4, 8).square().sum()


def test_compile_fullgraph_matches_eager():
    """torch.compile(fullgraph=True) (a graph break would raise) gives eager mode's value and gradients."""
    torch._dynamo.reset()
    block = _Block()
    x = torch.randn(2, 12, 32, requires_grad=True)
    cu = torch.tensor([0, 12, 24], dtype=torch.int32)
    eager_value = block(x, cu)
    eager_grads = torch.autograd.grad(eager_value, [x] + list(block.parameters()))
    compiled = torch.compile(block, fullgraph=True)
    value = compiled(x, cu)
    grads = torch.autograd.grad(value, [x] + list(block.parameters()))
    assert torch.allclose(value, eager_value, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, eager_grads):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)
    # and the compiled output is attention, not just self-consistent: SDPA against the fp64 reference
    q = torch.randn(1, 2, 17, 8)
    sdpa = torch.compile(lambda q: attnkit.scaled_dot_product_attention(q, q, q, is_causal=True), fullgraph=True)
    assert max_error(sdpa(q), sdpa_reference(q, q, q, is_causal=True)) <= 1e-5


def test_export_captures_the_ops():
    class Attention(torch.nn.Module):
        def forward(self, q, k, v):
            return attnkit.scaled_dot_product_attention(q, k, v, is_causal=True)

    q, k, v = _leaf(1, 2, 9, 8), _leaf(1, 2, 9, 8), _leaf(1, 2, 9, 8)
    program = torch.export.export(Attention(), (q, k, v))
    assert "attnkit.sdpa" in str(program.graph)
    assert torch.equal(program.module()(q, k, v), Attention()(q, k, v))


def test_eager_calls_without_grad_skip_the_op():
    """Inputs that don't require grad keep the forward-only path (no dispatcher hop): same bits."""
    q, k, v = _leaf(1, 2, 9, 8), _leaf(1, 2, 9, 8), _leaf(1, 2, 9, 8)
    direct = attnkit.scaled_dot_product_attention(q, k, v)
    assert direct.grad_fn is None
    assert torch.equal(direct, OPS.sdpa(q, k, v, None, 0.0, False, None, False, 0)[0])
