"""Helpers shared by the wrappers: argument checks and output allocation.

attnkit works on numpy arrays and torch CPU tensors in place; outputs are
allocated with the library of the first input (torch in, torch out; numpy in,
numpy out).
"""
import operator

import numpy as np


def is_torch(x):
    return type(x).__module__.startswith("torch") and hasattr(x, "data_ptr")


def check_tensor(name, x):
    if not (isinstance(x, np.ndarray) or is_torch(x)):
        raise TypeError(f"{name} must be a numpy.ndarray or a torch.Tensor, got {type(x).__name__}")
    return x


def check_int(name, value, minimum=None):
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


QK_QUANT_CODES = {"per_block": 0, "per_token": 1, "per_tensor": 2}


def qk_quant_code(qk_quant):
    """The ATTN_QK_QUANT_* code of a qk_quant name."""
    if qk_quant not in QK_QUANT_CODES:
        raise ValueError(f"qk_quant must be one of {sorted(QK_QUANT_CODES)}, got {qk_quant!r}")
    return QK_QUANT_CODES[qk_quant]


def empty_like_kind(reference, shape, dtype=None):
    """An uninitialized contiguous array of `shape` from the same library as `reference`."""
    if is_torch(reference):
        import torch

        return torch.empty(tuple(shape), dtype=reference.dtype if dtype is None else dtype)
    return np.empty(tuple(shape), dtype=reference.dtype if dtype is None else dtype)
