"""Bad input raises TypeError or ValueError with a message naming the argument."""
import numpy as np
import pytest
import torch

import attnkit


def good(shape=(2, 5, 8)):
    return torch.randn(*shape)


@pytest.mark.parametrize(
    "kwargs,error,pattern",
    [
        (dict(q=good((2, 5))), ValueError, r"q must have rank 3"),
        (dict(k=good((2, 5, 6))), ValueError, r"k\.shape\[2\] must equal num_heads\*head_dim"),
        (dict(v=good((3, 5, 8))), ValueError, r"v\.shape\[0\] must equal q\.shape\[0\]"),
        (dict(v=good((2, 4, 8))), ValueError, r"v\.shape\[1\] must equal k\.shape\[1\]"),
        (dict(num_heads=3), ValueError, r"q\.shape\[2\] must equal num_heads\*head_dim \(3\*4\)"),
        (dict(num_heads=0), ValueError, r"num_heads must be >= 1"),
        (dict(head_dim=-4), ValueError, r"head_dim must be >= 1"),
        (dict(num_heads=2.0), TypeError, r"num_heads must be an int"),
        (dict(q=[[1.0]]), TypeError, r"q must be a numpy.ndarray or a torch.Tensor"),
        (dict(k=good().double()), TypeError, r"k\.dtype must equal q\.dtype"),
        (dict(q=good().int(), k=good().int(), v=good().int()), TypeError, r"q\.dtype must be f32 or f64"),
        (dict(mask=torch.ones(2, 4, dtype=torch.bool)), ValueError, r"mask\.shape\[1\] must equal k\.shape\[1\]"),
        (dict(mask=torch.ones(2, 5)), TypeError, r"mask\.dtype must be bool or u8"),
        (dict(mask=torch.ones(2, 5, 1, dtype=torch.bool)), ValueError, r"mask must have rank 2"),
    ],
)
@pytest.mark.parametrize("fn", [attnkit.eager_bidirectional_attention, attnkit.eager_causal_attention])
def test_bad_input(fn, kwargs, error, pattern):
    args = dict(q=good(), k=good(), v=good(), num_heads=2, head_dim=4, mask=None)
    args.update(kwargs)
    with pytest.raises(error, match=pattern):
        fn(args["q"], args["k"], args["v"], args["num_heads"], args["head_dim"], args["mask"])


def test_numpy_big_endian_is_rejected():
    q = np.zeros((1, 2, 4), dtype=">f4")
    with pytest.raises(TypeError, match="q must be in native byte order"):
        attnkit.eager_bidirectional_attention(q, q, q, 1, 4)


def test_set_num_threads_rejects_zero():
    with pytest.raises(ValueError, match="num_threads"):
        attnkit.set_num_threads(0)
