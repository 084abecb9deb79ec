"""Eager attention against the spec's fp64 math (issue: foundation)."""
import itertools

import numpy as np
import pytest
import torch

import attnkit
from conftest import assert_close, eager_reference

BATCHES = [1, 3]
SEQS = [1, 7, 17, 64, 127]
HEADS = [1, 2, 8]
DIMS = [1, 3, 8, 59, 64, 111, 128]
MASKS = ["none", "random", "all_false_row"]
LAYOUTS = ["contiguous", "strided"]

GRID = list(itertools.product(BATCHES, SEQS, HEADS, DIMS, MASKS, [False, True], LAYOUTS))


def make_input(batch, seq, width, layout, dtype, transposed=False):
    if layout == "contiguous":
        return torch.randn(batch, seq, width, dtype=dtype)
    if transposed:
        # [S, B, W] viewed as [B, S, W]: batch stride smaller than row stride.
        return torch.randn(seq, batch, width, dtype=dtype).transpose(0, 1)
    # Every other element of a twice-wider buffer: column stride 2.
    return torch.randn(batch, seq, 2 * width, dtype=dtype)[..., ::2]


def make_mask(kind, batch, seq):
    if kind == "none":
        return None
    mask = torch.rand(batch, seq) > 0.3
    if kind == "all_false_row":
        mask[0] = False  # every key of batch 0 is hidden: its queries give 0
    return mask


def run_case(batch, seq, heads, dim, mask_kind, causal, layout, dtype=torch.float32):
    width = heads * dim
    q = make_input(batch, seq, width, layout, dtype)
    k = make_input(batch, seq, width, layout, dtype, transposed=True)
    v = make_input(batch, seq, width, layout, dtype, transposed=True)
    mask = make_mask(mask_kind, batch, seq)
    fn = attnkit.eager_causal_attention if causal else attnkit.eager_bidirectional_attention
    out, weights = fn(q, k, v, heads, dim, mask, return_weights=True)
    ref_out, ref_weights = eager_reference(q, k, v, heads, dim, mask, causal)
    label = f"B{batch} S{seq} H{heads} D{dim} mask={mask_kind} causal={causal} {layout} {dtype}"
    assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.shape == q.shape, label
    assert weights.shape == (batch, heads, seq, seq), label
    error = assert_close(out, ref_out, dtype, "out " + label)
    assert_close(weights, ref_weights, dtype, "weights " + label)
    if mask_kind == "all_false_row":
        assert torch.all(out[0] == 0), "fully masked batch must give exact zeros: " + label
    return error


@pytest.mark.parametrize("batch,seq,heads,dim,mask_kind,causal,layout", GRID)
def test_eager_fp32_grid(batch, seq, heads, dim, mask_kind, causal, layout):
    run_case(batch, seq, heads, dim, mask_kind, causal, layout)


@pytest.mark.parametrize("seq,dim,causal", list(itertools.product([1, 17, 127], [3, 64, 111], [False, True])))
def test_eager_fp64(seq, dim, causal):
    run_case(2, seq, 2, dim, "random", causal, "strided", dtype=torch.float64)


@pytest.mark.parametrize("causal", [False, True])
def test_numpy_in_numpy_out(causal):
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((2, 9, 12), dtype=np.float32) for _ in range(3))
    mask = rng.random((2, 9)) > 0.2
    fn = attnkit.eager_causal_attention if causal else attnkit.eager_bidirectional_attention
    out, weights = fn(q, k, v, 3, 4, mask, return_weights=True)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == q.shape
    assert isinstance(weights, np.ndarray) and weights.shape == (2, 3, 9, 9)
    ref_out, ref_weights = eager_reference(q, k, v, 3, 4, mask, causal)
    assert_close(torch.from_numpy(out), ref_out, torch.float32, "numpy out")
    assert_close(torch.from_numpy(weights), ref_weights, torch.float32, "numpy weights")
    # A numpy array with a negative stride is read through its strides.
    reversed_q = q[:, ::-1]
    out_reversed = fn(reversed_q, k, v, 3, 4, mask)
    assert_close(torch.from_numpy(out_reversed), eager_reference(reversed_q.copy(), k, v, 3, 4, mask, causal)[0],
                 torch.float32, "numpy negative strides")


def test_matches_torch_sdpa_without_mask():
    """Without a mask, eager equals torch's own SDPA on the split heads."""
    q, k, v = (torch.randn(2, 33, 4 * 16) for _ in range(3))
    for causal in (False, True):
        fn = attnkit.eager_causal_attention if causal else attnkit.eager_bidirectional_attention
        ours = fn(q, k, v, 4, 16)
        heads = [x.view(2, 33, 4, 16).transpose(1, 2) for x in (q, k, v)]
        theirs = torch.nn.functional.scaled_dot_product_attention(*heads, is_causal=causal)
        theirs = theirs.transpose(1, 2).reshape(2, 33, 64)
        assert (ours - theirs).abs().max().item() < 2e-6


def test_thread_count_does_not_change_bits():
    q, k, v = (torch.randn(3, 65, 8 * 24) for _ in range(3))
    before = attnkit.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            attnkit.set_num_threads(threads)
            assert attnkit.get_num_threads() == threads
            results.append(attnkit.eager_causal_attention(q, k, v, 8, 24))
        assert torch.equal(results[0], results[1])
    finally:
        attnkit.set_num_threads(before)


def test_nan_propagates_to_affected_rows_only():
    q, k, v = (torch.randn(1, 6, 4) for _ in range(3))
    q[0, 2, 1] = float("nan")
    out = attnkit.eager_causal_attention(q, k, v, 1, 4)
    assert torch.isnan(out[0, 2]).all()
    assert not torch.isnan(out[0, [0, 1, 3, 4, 5]]).any()
