"""Seed 001's per-tensor quantization (issue: int8 paths), against the spec's formulas."""
import numpy as np
import pytest
import torch

import attnkit


def formula(x, bits):
    """docs/semantics.md §5 in fp64."""
    x = torch.as_tensor(x).double()
    low, high = x.min().item(), x.max().item()
    levels = 2**bits - 1
    scale = (high - low) / levels if high > low else 1.0
    zero_point = -low / scale
    q = torch.clamp(torch.round(x / scale + zero_point), 0, levels).to(torch.uint8)
    return q, scale, zero_point


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("shape", [(1,), (7,), (17, 33), (3, 65, 5)])
def test_quantize_matches_formula_and_round_trips(bits, shape):
    x = torch.randn(*shape) * 3 + 1
    q, scale, zero_point = attnkit.quantize_per_tensor(x, num_bits=bits)
    ref_q, ref_scale, ref_zero = formula(x, bits)
    assert q.dtype == torch.uint8 and q.shape == x.shape
    assert scale == pytest.approx(ref_scale, rel=1e-12) and zero_point == pytest.approx(ref_zero, rel=1e-12, abs=1e-12)
    assert (q.int() - ref_q.int()).abs().max().item() <= 1   # ties may round either way through fp32 input
    back = attnkit.dequantize_per_tensor(q, scale, zero_point)
    assert (back.double() - x.double()).abs().max().item() <= scale / 2 * (1 + 1e-6)
    # The extremes map to the ends of the range and come back exactly.
    if x.numel() > 1:
        assert q.min().item() == 0 and q.max().item() == 2**bits - 1


def test_constant_tensor_does_not_divide_by_zero():
    for value in (0.0, 3.5, -1e6):
        x = torch.full((4, 5), value)
        q, scale, zero_point = attnkit.quantize_per_tensor(x)
        assert np.isfinite(scale) and np.isfinite(zero_point) and scale > 0
        assert torch.equal(attnkit.dequantize_per_tensor(q, scale, zero_point), x)


def test_edge_values_and_numpy():
    x = np.array([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=np.float32)
    q, scale, zero_point = attnkit.quantize_per_tensor(x, 8)
    assert isinstance(q, np.ndarray) and q.dtype == np.uint8
    assert q[0] == 0 and q[-1] == 255
    back = attnkit.dequantize_per_tensor(q, scale, zero_point)
    assert np.abs(back - x).max() <= scale / 2 + 1e-7
    assert back[0] == pytest.approx(-1.0, abs=1e-6) and back[-1] == pytest.approx(1.0, abs=1e-6)


def test_strided_and_low_precision_input():
    x = torch.randn(8, 16)[:, ::2]
    q, scale, zero_point = attnkit.quantize_per_tensor(x)
    assert torch.equal(q, formula(x.contiguous(), 8)[0]) or (q.int() - formula(x, 8)[0].int()).abs().max() <= 1
    for dtype in (torch.float16, torch.bfloat16):
        xl = torch.randn(50).to(dtype)
        q, scale, zero_point = attnkit.quantize_per_tensor(xl)
        back = attnkit.dequantize_per_tensor(q, scale, zero_point)
        assert (back.double() - xl.double()).abs().max().item() <= scale / 2 * (1 + 1e-6)


@pytest.mark.parametrize("bits,pattern", [(1, "num_bits must be in 2...8"), (9, "num_bits must be in 2...8")])
def test_bad_num_bits(bits, pattern):
    with pytest.raises(ValueError, match=pattern):
        attnkit.quantize_per_tensor(torch.randn(4), num_bits=bits)


def test_non_finite_input_is_rejected():
    with pytest.raises(ValueError, match="x must be finite"):
        attnkit.quantize_per_tensor(torch.tensor([1.0, float("nan")]))
    with pytest.raises(TypeError, match="q.dtype must be u8"):
        attnkit.dequantize_per_tensor(torch.zeros(3, dtype=torch.int32), 1.0, 0.0)
