"""Regression tests for the reliability defects: calls with no work, extreme windows, scales and softcaps,
views whose flags change their values, silent misuse in Python, messages that name the value given."""
import sys
import time

import numpy as np
import pytest
import torch

import attnkit
from conftest import FP64_RELATIVE_TOLERANCE, max_error

F = torch.nn.functional

# A call with no output elements must return at once; a generous bound that a call
# listing 2^40 units (or allocating for them) could never meet.
EMPTY_CALL_SECONDS = 1.0


def reference_flash(q, k, v, causal=False, scale=None):
    """flash-attn semantics in fp64 on (B, S, H, D): bottom-right causal, rows with no key give 0."""
    q, k, v = (x.double().transpose(1, 2) for x in (q, k, v))
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = q @ k.transpose(-1, -2) * scale
    if causal:
        sq, sk = scores.shape[-2:]
        keep = torch.ones(sq, sk, dtype=torch.bool).tril(sk - sq)
        scores = scores.masked_fill(~keep, float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return (weights @ v).transpose(1, 2)


def test_varlen_with_no_rows_and_huge_head_count_returns_at_once():
    q = torch.empty(0, 1, 16).expand(0, 2**40, 16)
    k = torch.randn(3, 1, 16)
    start = time.perf_counter()
    out = attnkit.flash_attn_varlen_func(q, k, k, [0, 0], [0, 3], 0, 3)
    assert time.perf_counter() - start < EMPTY_CALL_SECONDS
    assert out.shape == (0, 2**40, 16)


def test_varlen_with_no_rows_and_a_stride_zero_cu_seqlens_returns_at_once():
    q = torch.empty(0, 2, 8)
    k = torch.randn(4, 2, 8)
    cu = torch.zeros(1, dtype=torch.int32).expand(2**40)
    start = time.perf_counter()
    out = attnkit.flash_attn_varlen_func(q, k, k, cu, cu, 0, 0)
    assert time.perf_counter() - start < EMPTY_CALL_SECONDS
    assert out.shape == (0, 2, 8)


@pytest.mark.parametrize("batch,heads,keys", [(2**20, 2**20, 3), (2**32, 2**32, 0), (1, 2**22, 3)])
def test_fixed_length_flash_with_no_rows_returns_at_once(batch, heads, keys):
    q = torch.empty(1, 0, 1, 8).expand(batch, 0, heads, 8)
    k = torch.randn(1, keys, 1, 8).expand(batch, keys, heads, 8)
    start = time.perf_counter()
    out = attnkit.flash_attn_func(q, k, k)
    assert time.perf_counter() - start < EMPTY_CALL_SECONDS
    assert out.shape == (batch, 0, heads, 8)
    if batch * heads < 2**40:   # torch cannot allocate an lse of 2^64 rows of 0
        start = time.perf_counter()
        _, lse, _ = attnkit.flash_attn_func(q, k, k, return_attn_probs=True)
        assert time.perf_counter() - start < EMPTY_CALL_SECONDS
        assert lse.shape == (batch, heads, 0)


def test_sdpa_with_no_rows_returns_at_once():
    q = torch.empty(1, 1, 0, 8).expand(2**20, 2**20, 0, 8)
    k = torch.randn(1, 1, 3, 8).expand(2**20, 2**20, 3, 8)
    start = time.perf_counter()
    out = attnkit.scaled_dot_product_attention(q, k, k)
    assert time.perf_counter() - start < EMPTY_CALL_SECONDS
    assert out.shape == (2**20, 2**20, 0, 8)


@pytest.mark.parametrize("window", [(sys.maxsize, sys.maxsize), (2**31, 2**40), (sys.maxsize, 0)])
def test_windows_wider_than_any_sequence_are_unbounded(window):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 2, 8) for _ in range(3))
    unbounded = (-1 if window[0] >= 2**31 else window[0], -1 if window[1] >= 2**31 else window[1])
    expected = attnkit.flash_attn_func(q, k, v, window_size=unbounded)
    assert torch.equal(attnkit.flash_attn_func(q, k, v, window_size=window), expected)
    if unbounded == (-1, -1):
        assert max_error(expected, reference_flash(q, k, v)) < 1e-5
    cu = torch.tensor([0, 4, 8], dtype=torch.int32)
    packed = [x.reshape(8, 2, 8) for x in (q, k, v)]
    out = attnkit.flash_attn_varlen_func(*packed, cu, cu, 4, 4, window_size=window)
    assert torch.equal(out, expected.reshape(8, 2, 8))


def test_negated_and_conjugated_views_are_rejected():
    z = torch.randn(2, 4, 8, dtype=torch.complex64)
    negated = z.conj().imag
    assert negated.is_neg()
    good = torch.randn(2, 4, 8)
    with pytest.raises(ValueError, match=r"query is a negated view.*resolve_neg"):
        attnkit.scaled_dot_product_attention(negated, good, good)
    # The resolved view gives torch's answer.
    out = attnkit.scaled_dot_product_attention(negated.resolve_neg(), good, good)
    assert max_error(out, F.scaled_dot_product_attention(negated, good, good).double()) < 1e-5
    with pytest.raises(ValueError, match=r"k is a negated view"):
        attnkit.flash_attn_func(good[None], negated[None], good[None])


def test_numpy_masked_arrays_are_rejected():
    q = np.ma.masked_array(np.random.rand(1, 4, 8).astype(np.float32), mask=np.zeros((1, 4, 8), dtype=bool))
    with pytest.raises(TypeError, match=r"query is a numpy masked array"):
        attnkit.scaled_dot_product_attention(q, q.data, q.data)


@pytest.mark.parametrize("cu", [[0, 4.7, 9], [0, 4, 9.0], [0, "4", 9]])
def test_cu_seqlens_lists_of_non_ints_raise_type_error(cu):
    q = torch.randn(9, 1, 8)
    with pytest.raises(TypeError, match=r"cu_seqlens_q\[\d\] must be an int"):
        attnkit.flash_attn_varlen_func(q, q, q, cu, [0, 4, 9], 5, 5)


def test_cu_seqlens_float_tensor_raises_type_error():
    q = torch.randn(9, 1, 8)
    with pytest.raises(TypeError, match=r"cu_seqlens_q\.dtype must be i32 or i64"):
        attnkit.flash_attn_varlen_func(q, q, q, torch.tensor([0.0, 4.0, 9.0]), [0, 4, 9], 5, 5)


def test_inputs_that_require_grad_are_differentiated_or_refused():
    """The differentiable functions return a result on the graph; the forward-only ones refuse
    (test_backward.py checks each of them and the gradients)."""
    q = torch.randn(1, 2, 4, 8, requires_grad=True)
    k = torch.randn(1, 2, 4, 8)
    assert attnkit.scaled_dot_product_attention(q, k, k).grad_fn is not None
    assert attnkit.flash_attn_func(q, k, k).grad_fn is not None
    with pytest.raises(ValueError, match=r"query requires grad.*torch\.no_grad\(\)"):
        attnkit.int8_scaled_dot_product_attention(q, k, k)
    with torch.no_grad():
        out = attnkit.scaled_dot_product_attention(q, k, k)
    assert out.grad_fn is None
    assert max_error(out, F.scaled_dot_product_attention(q.detach(), k, k).double()) < 1e-5


def test_huge_softcap_is_no_softcap_and_tiny_softcap_is_uniform_attention():
    torch.manual_seed(1)
    q, k, v = (torch.randn(1, 5, 2, 8) for _ in range(3))
    off = attnkit.flash_attn_func(q, k, v)
    assert max_error(attnkit.flash_attn_func(q, k, v, softcap=1e300), off.double()) < 1e-6
    assert max_error(attnkit.flash_attn_func(q, k, v, softcap=1e30), off.double()) < 1e-6
    uniform = v.double().mean(dim=1, keepdim=True).expand_as(v)
    assert max_error(attnkit.flash_attn_func(q, k, v, softcap=1e-300), uniform) < 1e-6
    assert max_error(attnkit.flash_attn_func(q, k, v, softcap=1e-40), uniform) < 1e-6
    # fp64 keeps the fp64 softcap: the same limits.
    assert max_error(attnkit.flash_attn_func(q.double(), k.double(), v.double(), softcap=1e300),
                     reference_flash(q, k, v)) < 1e-12
    assert max_error(attnkit.flash_attn_func(q.double(), k.double(), v.double(), softcap=1e-300), uniform) < 1e-12


def test_large_softcap_matches_fp64_tanh():
    """softcap·tanh(s/softcap) for softcaps far above the scores (small tanh arguments, where 1 − 2/(e^2x+1)
    cancels) against the fp64 formula."""
    torch.manual_seed(2)
    q, k, v = (torch.randn(1, 33, 2, 16) for _ in range(3))
    for softcap in (1e3, 1e6):
        scale = 16 ** -0.5
        scores = torch.einsum("bqhd,bkhd->bhqk", q.double(), k.double()) * scale
        capped = softcap * torch.tanh(scores / softcap)
        expected = (torch.softmax(capped, dim=-1) @ v.double().transpose(1, 2)).transpose(1, 2)
        assert max_error(attnkit.flash_attn_func(q, k, v, softcap=softcap), expected) < 1e-5


def test_scales_beyond_fp32_are_rejected_for_fp32_inputs():
    q = torch.randn(1, 2, 4, 8)
    with pytest.raises(ValueError, match=r"scale must be within fp32's range"):
        attnkit.scaled_dot_product_attention(q, q, q, scale=1e300)
    with pytest.raises(ValueError, match=r"softmax_scale must be within fp32's range"):
        attnkit.flash_attn_func(q, q, q, softmax_scale=-1e39)
    with pytest.raises(ValueError, match=r"softmax_scale must be within fp32's range"):
        attnkit.flash_attn_func(q.half(), q.half(), q.half(), softmax_scale=1e300)


@pytest.mark.parametrize("scale", [0.37, None, 0.1])
def test_fp64_keeps_a_scale_that_is_not_a_power_of_two(scale):
    torch.manual_seed(3)
    q, k, v = (torch.randn(2, 3, 17, 8, dtype=torch.float64) for _ in range(3))
    expected = F.scaled_dot_product_attention(q, k, v, scale=scale)
    ours = attnkit.scaled_dot_product_attention(q, k, v, scale=scale)
    assert max_error(ours, expected) <= FP64_RELATIVE_TOLERANCE
    flash = attnkit.flash_attn_func(*(x.transpose(1, 2) for x in (q, k, v)), softmax_scale=scale)
    assert max_error(flash.transpose(1, 2), expected) <= FP64_RELATIVE_TOLERANCE


def test_set_num_threads_names_the_real_range():
    with pytest.raises(ValueError, match=r"num_threads must be in 1\.\.\.1024, got 1099511627776"):
        attnkit.set_num_threads(2**40)
    with pytest.raises(ValueError, match=r"num_threads must be in 1\.\.\.1024, got 1025"):
        attnkit.set_num_threads(1025)


def test_prequantized_varlen_names_its_own_arguments():
    q8 = torch.zeros(4, 2, 8, dtype=torch.int8)
    k8 = torch.zeros(4, 2, 7, dtype=torch.int8)
    scales = torch.ones(4, 2)
    v = torch.randn(4, 2, 8)
    cu = torch.tensor([0, 4], dtype=torch.int32)
    with pytest.raises(ValueError, match=r"k_int8\.shape\[2\] must equal q_int8\.shape\[2\]"):
        attnkit.flash_attn_varlen_int8_func(q8, scales, k8, scales, v, cu, cu, 4, 4)
