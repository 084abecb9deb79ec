"""sliding_window_attention against the attention guide's band (−inf outside |i − j| <= w) in fp64,
on lengths that are and are not multiples of 2w, causal or not, GQA, strided input, gradients."""
import math

import pytest
import torch

import attnkit
from conftest import assert_close


def band_reference(q, k, v, window, causal):
    """The band in fp64: scores outside |i − j| <= window (or j > i when causal) set to −inf."""
    q, k, v = (x.double().transpose(1, 2) for x in (q, k, v))
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    seq = q.shape[2]
    i, j = torch.arange(seq)[:, None], torch.arange(seq)[None, :]
    allowed = (i - j).abs() <= window
    if causal:
        allowed &= j <= i
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    weights = torch.softmax(scores.masked_fill(~allowed, -math.inf), dim=-1)
    return (weights @ v).transpose(1, 2)


@pytest.mark.parametrize("seq,window", [(16, 4), (17, 4), (64, 8), (65, 8), (7, 0), (33, 100), (1, 3)])
@pytest.mark.parametrize("causal", [False, True])
def test_band_against_fp64(seq, window, causal):
    q = torch.randn(2, seq, 4, 16)
    k, v = torch.randn(2, seq, 2, 16), torch.randn(2, seq, 2, 16)
    out = attnkit.sliding_window_attention(q, k, v, window, causal=causal)
    assert_close(out, band_reference(q, k, v, window, causal), torch.float32, f"S={seq} w={window} causal={causal}")


def test_strided_numpy_and_gradients():
    base = torch.randn(1, 3, 40, 8, dtype=torch.float64)
    q = base.transpose(1, 2)          # (1, 40, 3, 8), non-contiguous
    out = attnkit.sliding_window_attention(q.numpy(), q.numpy(), q.numpy(), 5)
    assert_close(torch.from_numpy(out), band_reference(q, q, q, 5, False), torch.float64, "numpy strided")
    leaves = [torch.randn(1, 9, 2, 8, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    assert torch.autograd.gradcheck(lambda a, b, c: attnkit.sliding_window_attention(a, b, c, 2, causal=True),
                                    leaves)


def test_errors_name_the_argument():
    q = torch.randn(1, 8, 2, 4)
    with pytest.raises(ValueError, match="window"):
        attnkit.sliding_window_attention(q, q, q, -1)
    with pytest.raises(TypeError, match="window"):
        attnkit.sliding_window_attention(q, q, q, 2.5)
    with pytest.raises(ValueError, match="same S"):
        attnkit.sliding_window_attention(q, torch.randn(1, 9, 2, 4), torch.randn(1, 9, 2, 4), 2)
