"""flash_attn_varlen_func / flash_attn_func against flash-attn's attention_ref in fp64 (issue: varlen flash)."""
import itertools
import math

import numpy as np
import pytest
import torch

import attnkit
from conftest import FP32_RELATIVE_TOLERANCE, assert_close, eager_reference, flash_reference

DIMS = [32, 40, 59, 64, 80, 96, 111, 128, 160, 192, 224, 256]
SEQ_PAIRS = [(1, 239), (3, 799), (113, 203), (128, 217), (108, 256), (256, 512), (512, 256), (1023, 1024), (1024, 1023)]
HEADS = [(4, 4), (4, 1), (4, 2)]   # MHA, MQA, GQA with Hk = 2
FEATURES = list(itertools.product([False, True], repeat=4))  # causal, local, alibi, softcap


def padded_lengths(batch, max_len, generator):
    """Random right-padding masks [batch, max_len] turned into lengths; one sequence is full, one empty."""
    lengths = torch.randint(0, max_len + 1, (batch,), generator=generator)
    lengths[0] = max_len
    if batch > 2:
        lengths[2] = 0
    return lengths


def cu_from_lengths(lengths, dtype=torch.int32):
    return torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)]).to(dtype)


def run_varlen(seq_q, seq_k, dim, heads, causal, local, alibi, softcap, batch=3, seed=0, dim_v=None, index_dtype=torch.int32):
    generator = torch.Generator().manual_seed(seed)
    heads_q, heads_k = heads
    dim_v = dim if dim_v is None else dim_v
    lengths_q = padded_lengths(batch, seq_q, generator)
    lengths_k = padded_lengths(batch, seq_k, generator)
    cu_q, cu_k = cu_from_lengths(lengths_q, index_dtype), cu_from_lengths(lengths_k, index_dtype)
    total_q, total_k = int(cu_q[-1]), int(cu_k[-1])
    q = torch.randn(total_q, heads_q, dim, generator=generator)
    k = torch.randn(total_k, heads_k, dim, generator=generator)
    v = torch.randn(total_k, heads_k, dim_v, generator=generator)
    window = (int(torch.randint(0, 64, (1,), generator=generator)), int(torch.randint(0, 64, (1,), generator=generator))) if local else (-1, -1)
    slopes = torch.rand(batch, heads_q, generator=generator) * 0.5 if alibi else None
    cap = 5.0 if softcap else 0.0
    out, lse, _ = attnkit.flash_attn_varlen_func(q, k, v, cu_q, cu_k, seq_q, seq_k, causal=causal, window_size=window,
                                                 softcap=cap, alibi_slopes=slopes, return_attn_probs=True)
    label = (f"Sq{seq_q} Sk{seq_k} D{dim} Dv{dim_v} H{heads} causal={causal} window={window} alibi={alibi} "
             f"softcap={cap} lengths_q={lengths_q.tolist()} lengths_k={lengths_k.tolist()}")
    assert out.shape == (total_q, heads_q, dim_v) and lse.shape == (heads_q, total_q) and lse.dtype == torch.float32
    for b in range(batch):
        rows = slice(int(cu_q[b]), int(cu_q[b + 1]))
        keys = slice(int(cu_k[b]), int(cu_k[b + 1]))
        ref_out, ref_lse = flash_reference(q[rows], k[keys], v[keys], causal, window, cap,
                                           None if slopes is None else slopes[b])
        assert_close(out[rows], ref_out, torch.float32, f"out seq {b} " + label)
        finite = torch.isfinite(ref_lse)
        assert torch.equal(torch.isinf(lse[:, rows]), ~finite), "lse is +inf exactly on empty rows: " + label
        if finite.any():
            error = (lse[:, rows].double()[finite] - ref_lse[finite]).abs().max().item()
            bound = FP32_RELATIVE_TOLERANCE * max(1.0, ref_lse[finite].abs().max().item())
            assert error <= bound, f"lse seq {b}: {error:.3e} > {bound:.3e} " + label
        empty_rows = ~finite.any(0)
        assert torch.all(out[rows][empty_rows] == 0), "rows with no key give 0: " + label


GRID = [(pair, dim) for dim in DIMS for pair in SEQ_PAIRS]


@pytest.mark.parametrize("index", range(len(GRID)))
def test_varlen_grid(index):
    """Every D x (Sq, Sk); heads and the four features cycle with the index."""
    (seq_q, seq_k), dim = GRID[index]
    causal, local, alibi, softcap = FEATURES[index % len(FEATURES)]
    heads = HEADS[index % len(HEADS)]
    # Long pairs keep the batch small so the fp64 reference stays quick.
    batch = 2 if seq_q * seq_k > 200_000 else 3
    run_varlen(seq_q, seq_k, dim, heads, causal, local, alibi, softcap, batch=batch, seed=index)


@pytest.mark.parametrize("seq_q,seq_k", [(k, q) for q, k in SEQ_PAIRS if q * k <= 300_000])
@pytest.mark.parametrize("heads", HEADS)
def test_swapped_pairs_causal(seq_q, seq_k, heads):
    run_varlen(seq_q, seq_k, 64, heads, True, False, False, False, seed=seq_q + seq_k)


@pytest.mark.parametrize("features", FEATURES)
@pytest.mark.parametrize("heads", HEADS)
def test_every_feature_combination(features, heads):
    run_varlen(113, 203, 40, heads, *features, batch=4, seed=sum(features), dim_v=24)


def test_int64_cu_seqlens_and_numpy_arrays():
    run_varlen(50, 70, 32, (4, 2), True, False, False, False, index_dtype=torch.int64)
    q = np.random.default_rng(0).standard_normal((12, 2, 8), dtype=np.float32)
    cu = np.array([0, 5, 12], dtype=np.int64)
    out = attnkit.flash_attn_varlen_func(q, q, q, cu, cu, 7, 7, causal=True)
    assert isinstance(out, np.ndarray) and out.shape == (12, 2, 8)
    ref, _ = flash_reference(q[5:], q[5:], q[5:], causal=True)
    assert_close(torch.from_numpy(out[5:]), ref, torch.float32, "numpy varlen")


def test_flash_attn_func_matches_varlen():
    q, k, v = torch.randn(3, 65, 4, 32), torch.randn(3, 80, 2, 32), torch.randn(3, 80, 2, 16)
    slopes = torch.rand(4)
    out, lse, none = attnkit.flash_attn_func(q, k, v, causal=True, alibi_slopes=slopes, softcap=3.0,
                                             return_attn_probs=True)
    assert none is None and out.shape == (3, 65, 4, 16) and lse.shape == (3, 4, 65)
    cu_q = torch.arange(0, 4 * 65, 65, dtype=torch.int32)
    cu_k = torch.arange(0, 4 * 80, 80, dtype=torch.int32)
    out_v, lse_v, _ = attnkit.flash_attn_varlen_func(q.reshape(-1, 4, 32), k.reshape(-1, 2, 32), v.reshape(-1, 2, 16),
                                                     cu_q, cu_k, 65, 80, causal=True, alibi_slopes=slopes,
                                                     softcap=3.0, return_attn_probs=True)
    assert torch.equal(out.reshape(-1, 4, 16), out_v)
    assert torch.equal(lse, lse_v.reshape(4, 3, 65).transpose(0, 1))


def test_strided_inputs():
    base = torch.randn(3, 70, 4, 2 * 32)
    q = base[..., ::2]                       # column stride 2
    k = torch.randn(4, 3, 90, 32).permute(1, 2, 0, 3)   # heads outermost in memory
    v = torch.randn(3, 90, 4, 32)
    out = attnkit.flash_attn_func(q, k, v, causal=True)
    for b in range(3):
        ref, _ = flash_reference(q[b], k[b], v[b], causal=True)
        assert_close(out[b], ref, torch.float32, f"strided batch {b}")


def test_fp64():
    q, k, v = (torch.randn(2, 30, 2, 16, dtype=torch.float64) for _ in range(3))
    out = attnkit.flash_attn_func(q, k, v, causal=True, window_size=(5, 0))
    assert out.dtype == torch.float64
    for b in range(2):
        ref, _ = flash_reference(q[b], k[b], v[b], causal=True, window=(5, 0))
        assert_close(out[b], ref, torch.float64, "fp64")


def test_deterministic_reruns_and_thread_counts():
    q, k, v = torch.randn(700, 8, 64), torch.randn(900, 2, 64), torch.randn(900, 2, 64)
    cu_q = torch.tensor([0, 16, 300, 700], dtype=torch.int32)
    cu_k = torch.tensor([0, 100, 101, 900], dtype=torch.int32)
    before = attnkit.get_num_threads()
    try:
        attnkit.set_num_threads(2)
        first = attnkit.flash_attn_varlen_func(q, k, v, cu_q, cu_k, 400, 799, causal=True)
        for _ in range(50):
            assert torch.equal(attnkit.flash_attn_varlen_func(q, k, v, cu_q, cu_k, 400, 799, causal=True), first)
        attnkit.set_num_threads(1)
        assert torch.equal(attnkit.flash_attn_varlen_func(q, k, v, cu_q, cu_k, 400, 799, causal=True), first)
    finally:
        attnkit.set_num_threads(before)


@pytest.mark.parametrize("causal", [False, True])
def test_seed_wrappers_match_eager_per_sequence(causal):
    heads, dim = 4, 16
    lengths = [5, 0, 33, 17]
    cu = torch.tensor([0] + list(itertools.accumulate(lengths)), dtype=torch.int32)
    q, k, v = (torch.randn(int(cu[-1]), heads * dim) for _ in range(3))
    fn = attnkit.flash_causal_attention if causal else attnkit.flash_bidirectional_attention
    eager = attnkit.eager_causal_attention if causal else attnkit.eager_bidirectional_attention
    out = fn(q, k, v, heads, dim, cu, max(lengths))
    assert out.shape == q.shape
    for b in range(len(lengths)):
        rows = slice(int(cu[b]), int(cu[b + 1]))
        if lengths[b] == 0:
            continue
        per_sequence = eager(q[None, rows], k[None, rows], v[None, rows], heads, dim)[0]
        assert (out[rows] - per_sequence).abs().max().item() < 5e-6
        ref, _ = eager_reference(q[None, rows], k[None, rows], v[None, rows], heads, dim, None, causal)
        assert_close(out[rows], ref[0], torch.float32, f"seed wrapper seq {b}")


@pytest.mark.parametrize(
    "cu_q,max_q,pattern",
    [
        ([0, 5, 3, 10], 10, r"cu_seqlens_q must be non-decreasing \(index 2: 3 < 5\)"),
        ([1, 5, 10], 10, r"cu_seqlens_q must start at 0, got 1"),
        ([0, 5, 9], 10, r"cu_seqlens_q must end at the number of packed rows \(10\), got 9"),
        ([0, 5, 10], 4, r"cu_seqlens_q sequence 0 has length 5 > max_seqlen_q \(4\)"),
        ([0, 10, 10, 10], 10, r"cu_seqlens_k must have as many entries as cu_seqlens_q"),
    ],
)
def test_malformed_cu_seqlens(cu_q, max_q, pattern):
    q = torch.randn(10, 2, 8)
    cu_k = torch.tensor([0, 5, 10], dtype=torch.int32)
    with pytest.raises(ValueError, match=pattern):
        attnkit.flash_attn_varlen_func(q, q, q, torch.tensor(cu_q, dtype=torch.int32), cu_k, max_q, 10)


@pytest.mark.parametrize(
    "kwargs,error,pattern",
    [
        (dict(k=torch.randn(2, 9, 3, 8), v=torch.randn(2, 9, 3, 8)), ValueError, r"k\.shape\[2\] must divide the query heads \(4\)"),
        (dict(window_size=(-2, 0)), ValueError, r"window_size\[0\] must be >= -1"),
        (dict(softcap=-1.0), ValueError, r"softcap must be finite and >= 0"),
        (dict(alibi_slopes=torch.rand(3)), ValueError, r"alibi_slopes\.shape\[0\] must equal the number of query heads"),
        (dict(alibi_slopes=torch.rand(4).double()), TypeError, r"alibi_slopes\.dtype must be f32"),
        (dict(q=torch.randn(2, 7, 4, 8).int()), TypeError, r"q\.dtype must be f32 or f64"),
    ],
)
def test_flash_errors(kwargs, error, pattern):
    args = dict(q=torch.randn(2, 7, 4, 8), k=torch.randn(2, 9, 4, 8), v=torch.randn(2, 9, 4, 8))
    args.update(kwargs)
    q, k, v = args.pop("q"), args.pop("k"), args.pop("v")
    with pytest.raises(error, match=pattern):
        attnkit.flash_attn_func(q, k, v, **args)


def test_dropout_is_seeded():
    q, k, v = (torch.randn(2, 64, 2, 16) for _ in range(3))
    attnkit.manual_seed(3)
    first = attnkit.flash_attn_func(q, k, v, dropout_p=0.25)
    attnkit.manual_seed(3)
    assert torch.equal(first, attnkit.flash_attn_func(q, k, v, dropout_p=0.25))
    assert not torch.equal(first, attnkit.flash_attn_func(q, k, v))


def test_a_nan_in_keys_a_block_never_attends_does_not_change_its_bits_with_the_thread_count():
    """Found by Tests/fuzz (fuzz_flash): a tile whose V held a NaN for keys only one block attends sent
    every block of that tile down the slow P·V path. Tasks group blocks differently for each thread
    count, so the last row's bits depended on the thread count. The path is now chosen per block."""
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 65, 6, 8), torch.randn(3, 65, 2, 8), torch.randn(3, 65, 2, 8)
    v[:, 10] = float("nan")   # attended by rows 10..13 only (window 3, causal)
    previous = attnkit.get_num_threads()
    outs = []
    try:
        for threads in (1, 2, 3):
            attnkit.set_num_threads(threads)
            outs.append(attnkit.flash_attn_func(q, k, v, causal=True, window_size=(3, 3), softcap=16.5,
                                                softmax_scale=-0.25))
    finally:
        attnkit.set_num_threads(previous)
    assert outs[0][:, 14:].isfinite().all()
    for other in outs[1:]:
        assert torch.equal(outs[0].nan_to_num(7.0), other.nan_to_num(7.0))
