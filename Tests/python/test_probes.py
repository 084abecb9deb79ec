"""Python probes of the reliability issue: inputs as torch and numpy can present them (storage offsets,
negative and zero strides, empty tensors, masks of odd dtypes and shapes, cu_seqlens of odd kinds, huge
max_seqlen, a tensor changed by another thread during a call). Each either matches torch or raises a
TypeError/ValueError naming the argument."""
import threading

import numpy as np
import pytest
import torch

import attnkit
from conftest import max_error

F = torch.nn.functional
FP32 = 1e-5


def randn(*shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator)


def test_storage_offsets_are_honoured():
    base = randn(3, 2, 7, 8)
    q, k, v = base[1], base[2, :, 1:], base[0, :, :-1]
    assert q.storage_offset() > 0 and k.storage_offset() > 0
    expected = F.scaled_dot_product_attention(q, k, v)
    assert max_error(attnkit.scaled_dot_product_attention(q, k, v), expected.double()) < FP32


def test_negative_strides_from_numpy():
    q = np.random.default_rng(1).standard_normal((2, 9, 8)).astype(np.float32)
    flipped = q[:, ::-1, :]   # negative stride over the sequence
    assert flipped.strides[1] < 0
    ours = attnkit.scaled_dot_product_attention(flipped, q, q, is_causal=True)
    expected = F.scaled_dot_product_attention(torch.from_numpy(flipped.copy()), torch.from_numpy(q),
                                              torch.from_numpy(q), is_causal=True)
    assert max_error(torch.from_numpy(ours), expected.double()) < FP32


def test_zero_strides_broadcast_inputs():
    k = randn(1, 1, 6, 8).expand(2, 4, 6, 8)   # stride 0 over batch and heads
    q = randn(2, 4, 5, 8, seed=1)
    expected = F.scaled_dot_product_attention(q, k.contiguous(), k.contiguous())
    assert max_error(attnkit.scaled_dot_product_attention(q, k, k), expected.double()) < FP32


@pytest.mark.parametrize("shape_q,shape_k", [((2, 3, 0, 8), (2, 3, 5, 8)), ((0, 3, 4, 8), (0, 3, 5, 8)),
                                             ((2, 3, 4, 8), (2, 3, 0, 8))])
def test_empty_tensors_match_torch(shape_q, shape_k):
    q, k = torch.randn(*shape_q), torch.randn(*shape_k)
    ours = attnkit.scaled_dot_product_attention(q, k, k)
    expected = F.scaled_dot_product_attention(q, k, k)
    assert ours.shape == expected.shape
    # With no keys torch gives NaN rows; attnkit's rule (spec) is 0 for a row with nothing to attend.
    assert torch.equal(ours, expected.nan_to_num(0.0)) if expected.numel() else ours.numel() == 0


def test_integer_masks_are_rejected_by_name():
    q = randn(1, 2, 3, 8)
    with pytest.raises(TypeError, match=r"attn_mask"):
        attnkit.scaled_dot_product_attention(q, q, q, attn_mask=torch.ones(3, 3, dtype=torch.int32))


def test_nan_float_masks_propagate_like_torch():
    q = randn(1, 2, 3, 8)
    mask = torch.zeros(3, 3)
    mask[1, 2] = float("nan")
    ours = attnkit.scaled_dot_product_attention(q, q, q, attn_mask=mask)
    expected = F.scaled_dot_product_attention(q, q, q, attn_mask=mask)
    assert torch.isnan(ours[:, :, 1]).all() and torch.isnan(expected[:, :, 1]).all()
    assert max_error(ours[:, :, [0, 2]], expected[:, :, [0, 2]].double()) < FP32


def test_masks_of_the_wrong_shape_are_rejected_by_name():
    q = randn(1, 2, 3, 8)
    with pytest.raises(ValueError, match=r"attn_mask"):
        attnkit.scaled_dot_product_attention(q, q, q, attn_mask=torch.ones(4, 3, dtype=torch.bool))


def test_cu_seqlens_as_list_int32_int64_and_numpy_agree():
    q = randn(9, 2, 8)
    outs = [attnkit.flash_attn_varlen_func(q, q, q, cu, cu, 5, 5)
            for cu in ([0, 4, 9], torch.tensor([0, 4, 9], dtype=torch.int32), torch.tensor([0, 4, 9]),
                       np.array([0, 4, 9], dtype=np.int64))]
    for out in outs[1:]:
        assert torch.equal(out, outs[0])


def test_cu_seqlens_int16_is_rejected_by_name():
    q = randn(9, 2, 8)
    with pytest.raises(TypeError, match=r"cu_seqlens_q\.dtype"):
        attnkit.flash_attn_varlen_func(q, q, q, torch.tensor([0, 4, 9], dtype=torch.int16), [0, 4, 9], 5, 5)


def test_tensors_on_another_device_are_rejected_by_name():
    q = randn(9, 2, 8)
    meta = torch.empty(3, dtype=torch.int32, device="meta")
    with pytest.raises(ValueError, match=r"cu_seqlens_q must be a CPU tensor, got device meta"):
        attnkit.flash_attn_varlen_func(q, q, q, meta, [0, 4, 9], 5, 5)


def test_huge_max_seqlen_is_a_bound_not_an_allocation():
    q = randn(9, 2, 8)
    out = attnkit.flash_attn_varlen_func(q, q, q, [0, 4, 9], [0, 4, 9], 2**40, 2**40)
    assert torch.equal(out, attnkit.flash_attn_varlen_func(q, q, q, [0, 4, 9], [0, 4, 9], 5, 5))
    with pytest.raises(ValueError, match=r"max_seqlen_q"):
        attnkit.flash_attn_varlen_func(q, q, q, [0, 4, 9], [0, 4, 9], 3, 5)


def test_a_tensor_changed_by_another_thread_during_a_call_gives_finite_output():
    """The guarantee: attnkit reads inputs in place with the GIL released, so a tensor written by another
    thread during a call gives a result computed from some mix of old and new values, never a crash or
    an out-of-bounds access; every output row is still a convex combination of V rows (finite for finite
    inputs)."""
    q, k, v = randn(1, 8, 512, 64), randn(1, 8, 512, 64, seed=1), randn(1, 8, 512, 64, seed=2)
    stop = threading.Event()

    def scribble():
        while not stop.is_set():
            q.mul_(-1.0)

    writer = threading.Thread(target=scribble)
    writer.start()
    try:
        for _ in range(5):
            out = attnkit.scaled_dot_product_attention(q, k, v)
            assert torch.isfinite(out).all()
            assert out.abs().max() <= v.abs().max() + 1e-5
    finally:
        stop.set()
        writer.join()
