"""Seed 001's per-tensor asymmetric quantization (docs/semantics.md §5)."""
import numbers

import numpy as np

from . import _attnkit
from ._arrays import check_int, check_tensor, empty_like_kind, is_torch


def quantize_per_tensor(x, num_bits=8):
    """Returns (q uint8 of x's shape, scale, zero_point), with scale = (max−min)/(2^bits−1),
    zero_point = −min/scale and q = clamp(round(x/scale + zero_point), 0, 2^bits−1)."""
    check_tensor("x", x)
    num_bits = check_int("num_bits", num_bits)
    if is_torch(x):
        import torch

        q = torch.empty(tuple(x.shape), dtype=torch.uint8)
    else:
        q = np.empty(x.shape, dtype=np.uint8)
    scale, zero_point = _attnkit.quantize_per_tensor_into(x, num_bits, q)
    return q, scale, zero_point


def dequantize_per_tensor(q, scale, zero_point, dtype=None):
    """scale·(q − zero_point), as float32 (or `dtype`), in q's library."""
    check_tensor("q", q)
    for name, value in (("scale", scale), ("zero_point", zero_point)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if is_torch(q):
        import torch

        out = torch.empty(tuple(q.shape), dtype=torch.float32 if dtype is None else dtype)
    else:
        out = np.empty(q.shape, dtype=np.float32 if dtype is None else dtype)
    _attnkit.dequantize_per_tensor_into(q, float(scale), float(zero_point), out)
    return out
