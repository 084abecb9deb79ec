"""S_dmask, what return_attn_probs returns with dropout: its values against the fp64
softmax of flash-attn's attention_ref, and its sign bit against the dropout the
forward pass applied (the output must be the reference P·V under that pattern)."""
import itertools

import numpy as np
import pytest
import torch

import attnkit
from conftest import assert_close, flash_reference

# P in [0, 1] computed in fp64 and rounded once to fp32: half an ulp of 1 is 6e-8.
PROBABILITY_TOLERANCE = 1e-6
# bf16/fp16 S_dmask: one rounding of P to the dtype (relative 2^-9 for bf16, 2^-12 for fp16).
LOW_PRECISION_RELATIVE = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}
# The bound on the dropped fraction.
DROPOUT_FRACTION_TOLERANCE = 0.01


def rounded(length):
    return (length + 127) // 128 * 128


def check_sequence(dmask, out, q, k, v, p, label, causal=False, window=(-1, -1), softcap=0.0, slopes=None):
    """dmask [Hq, rows, columns] and out [Sq, Hq, Dv] of one sequence against the reference."""
    seq_q, seq_k = q.shape[0], k.shape[0]
    _, _, weights = flash_reference(q, k, v, causal, window, softcap, slopes, weights_too=True)
    block = dmask[:, :seq_q, :seq_k].double()
    error = (block.abs() - weights).abs().max().item() if weights.numel() else 0.0
    assert error <= PROBABILITY_TOLERANCE, f"|S_dmask| vs softmax: {error:.3e} " + label
    assert torch.all(dmask[:, seq_q:, :] == 0) and torch.all(dmask[:, :, seq_k:] == 0), "zero past the sequence " + label
    kept = ~torch.signbit(dmask[:, :seq_q, :seq_k])
    heads_q, heads_k = q.shape[1], k.shape[1]
    values = v.double().repeat_interleave(heads_q // heads_k, dim=1)
    expected = torch.einsum("hqk,khd->qhd", weights * kept / (1 - p), values)
    assert_close(out, expected, torch.float32, "out under S_dmask's dropout pattern " + label)
    allowed = weights > 0
    return int((~kept & allowed).sum()), int(allowed.sum())


CASES = list(itertools.product([(1, 239), (113, 203), (203, 113), (128, 128)], [(4, 4), (4, 2), (4, 1)],
                               itertools.product([False, True], repeat=4)))


@pytest.mark.parametrize("pair,heads,features", CASES,
                         ids=[f"Sq{a}-Sk{b}-H{h}-{hk}-{''.join('cwas'[i] for i, f in enumerate(x) if f) or 'plain'}"
                              for (a, b), (h, hk), x in CASES])
def test_varlen_dmask_matches_reference_and_forward(pair, heads, features):
    causal, local, alibi, softcap = features
    seq_q, seq_k = pair
    generator = torch.Generator().manual_seed(seq_q * 1000 + seq_k)
    lengths_q = torch.tensor([seq_q, max(1, seq_q // 3), 0])
    lengths_k = torch.tensor([seq_k, max(1, seq_k // 2), 5])
    cu_q = torch.cat([torch.zeros(1, dtype=torch.int64), lengths_q.cumsum(0)]).to(torch.int32)
    cu_k = torch.cat([torch.zeros(1, dtype=torch.int64), lengths_k.cumsum(0)]).to(torch.int32)
    q = torch.randn(int(cu_q[-1]), heads[0], 40, generator=generator)
    k = torch.randn(int(cu_k[-1]), heads[1], 40, generator=generator)
    v = torch.randn(int(cu_k[-1]), heads[1], 24, generator=generator)
    window = (17, 9) if local else (-1, -1)
    slopes = torch.rand(3, heads[0], generator=generator) * 0.5 if alibi else None
    cap = 5.0 if softcap else 0.0
    p = 0.3
    out, lse, dmask = attnkit.flash_attn_varlen_func(q, k, v, cu_q, cu_k, seq_q, seq_k, dropout_p=p, causal=causal,
                                                     window_size=window, softcap=cap, alibi_slopes=slopes,
                                                     return_attn_probs=True)
    assert dmask.shape == (3, heads[0], rounded(seq_q), rounded(seq_k)) and dmask.dtype == q.dtype
    for b in range(3):
        rows, keys = slice(int(cu_q[b]), int(cu_q[b + 1])), slice(int(cu_k[b]), int(cu_k[b + 1]))
        label = f"seq {b} Sq{seq_q} Sk{seq_k} H{heads} causal={causal} window={window} alibi={alibi} softcap={cap}"
        check_sequence(dmask[b], out[rows], q[rows], k[keys], v[keys], p, label, causal, window, cap,
                       None if slopes is None else slopes[b])


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropped_fraction_matches_p(p):
    q, k, v = (torch.randn(2, 300, 4, 32) for _ in range(3))
    out, _, dmask = attnkit.flash_attn_func(q, k, v, dropout_p=p, causal=True, return_attn_probs=True)
    dropped = allowed = 0
    for b in range(2):
        counts = check_sequence(dmask[b], out[b], q[b], k[b], v[b], p, f"batch {b} p={p}", causal=True)
        dropped, allowed = dropped + counts[0], allowed + counts[1]
    assert abs(dropped / allowed - p) <= DROPOUT_FRACTION_TOLERANCE, f"dropped {dropped / allowed:.4f}, p = {p}"


def test_flash_attn_func_dmask_on_strided_gqa_input():
    base = torch.randn(2, 77, 8, 2, 48)
    q = base[..., 0, :40]                                  # strided (B, S, H, D) views
    k, v = (torch.randn(2, 65, 2, 40).transpose(1, 2).contiguous().transpose(1, 2) for _ in range(2))
    out, lse, dmask = attnkit.flash_attn_func(q, k, v, dropout_p=0.2, window_size=(30, 4), return_attn_probs=True)
    assert dmask.shape == (2, 8, 128, 128)
    for b in range(2):
        check_sequence(dmask[b], out[b], q[b], k[b], v[b], 0.2, f"batch {b}", window=(30, 4))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_dmask_keeps_the_dtype(dtype):
    q, k, v = (torch.randn(1, 50, 2, 32).to(dtype) for _ in range(3))
    _, _, dmask = attnkit.flash_attn_func(q, k, v, dropout_p=0.4, return_attn_probs=True)
    assert dmask.dtype == dtype and dmask.shape == (1, 2, 128, 128)
    _, _, weights = flash_reference(q[0], k[0], v[0], weights_too=True)
    block = dmask[0, :, :50, :50].double().abs()
    assert torch.all((block - weights).abs() <= LOW_PRECISION_RELATIVE[dtype] * weights + 1e-30)


def test_dmask_is_none_without_dropout_and_numpy_stays_numpy():
    q, k, v = (torch.randn(1, 20, 2, 16) for _ in range(3))
    assert attnkit.flash_attn_func(q, k, v, return_attn_probs=True)[2] is None
    cu = torch.tensor([0, 20], dtype=torch.int32)
    assert attnkit.flash_attn_varlen_func(q[0], k[0], v[0], cu, cu, 20, 20, return_attn_probs=True)[2] is None
    out, _, dmask = attnkit.flash_attn_func(q.numpy(), k.numpy(), v.numpy(), dropout_p=0.5, return_attn_probs=True)
    assert isinstance(dmask, np.ndarray) and dmask.dtype == np.float32 and dmask.shape == (1, 2, 128, 128)
    check_sequence(torch.from_numpy(dmask[0]), torch.from_numpy(out[0]), q[0], k[0], v[0], 0.5, "numpy")


def test_dmask_is_seeded_and_thread_independent():
    q, k, v = (torch.randn(1, 150, 2, 32) for _ in range(3))
    results = []
    before = attnkit.get_num_threads()
    try:
        for threads in (1, 2, 1):
            attnkit.set_num_threads(threads)
            attnkit.manual_seed(11)
            results.append(attnkit.flash_attn_func(q, k, v, dropout_p=0.3, causal=True, return_attn_probs=True))
    finally:
        attnkit.set_num_threads(before)
    for out, _, dmask in results[1:]:
        assert torch.equal(out, results[0][0]) and torch.equal(dmask, results[0][2])


def test_dmask_shape_errors_name_the_argument():
    from attnkit import _attnkit

    q, k, v = (torch.randn(1, 10, 1, 8) for _ in range(3))
    out = torch.empty(1, 10, 1, 8)
    with pytest.raises(ValueError, match=r"s_dmask.shape\[2\] must be >= the longest query sequence \(10\), got 9"):
        _attnkit.flash_forward(q, k, v, None, out, None, False, None, -1, -1, 0.0, 0.5, 1, torch.empty(1, 1, 9, 10))
    with pytest.raises(ValueError, match=r"s_dmask.shape\[1\] must equal the number of query heads"):
        _attnkit.flash_forward(q, k, v, None, out, None, False, None, -1, -1, 0.0, 0.5, 1, torch.empty(1, 2, 10, 10))
    with pytest.raises(TypeError, match=r"s_dmask.dtype must equal q.dtype"):
        _attnkit.flash_forward(q, k, v, None, out, None, False, None, -1, -1, 0.0, 0.5, 1,
                               torch.empty(1, 1, 10, 10, dtype=torch.float64))
