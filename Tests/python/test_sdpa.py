"""attnkit.scaled_dot_product_attention against torch's semantics in fp64 (issue: SDPA)."""
import itertools

import numpy as np
import pytest
import torch

import attnkit
from conftest import assert_close, eager_reference, sdpa_reference

SEQ_PAIRS = list(itertools.product([1, 17, 64, 127, 300], repeat=2))
DIMS = [8, 59, 64, 111, 128]
MASKS = ["none", "causal", "bool_LS", "bool_B11S", "bool_BHLS", "float_LS", "float_B1LS", "bool_expanded"]
LEADING = [(), (2,), (2, 3)]
GQA = [(2, 2), (4, 2), (4, 1), (8, 2), (8, 1)]   # (Hq, Hk): ratios 1, 2, 2... and MQA; see test_gqa_ratios


def make(shape, strided, dtype=torch.float32):
    if not strided:
        return torch.randn(*shape, dtype=dtype)
    # Every other element of a wider buffer, and the last two dims swapped in memory.
    wide = torch.randn(*shape[:-2], shape[-1], 2 * shape[-2], dtype=dtype)
    return wide[..., ::2].transpose(-1, -2)


def make_mask(kind, leading, heads, seq_q, seq_k):
    batch = leading if leading else ()
    if kind in ("none", "causal"):
        return None
    if kind == "bool_LS":
        return torch.rand(seq_q, seq_k) > 0.3
    if kind == "bool_B11S":
        return torch.rand(*batch, 1, 1, seq_k) > 0.3
    if kind == "bool_BHLS":
        mask = torch.rand(*batch, heads, seq_q, seq_k) > 0.3
        mask[..., 0, :] = False   # a fully masked row in every head
        return mask
    if kind == "float_LS":
        return torch.randn(seq_q, seq_k)
    if kind == "float_B1LS":
        return torch.randn(*batch, 1, seq_q, seq_k) * 3
    if kind == "bool_expanded":
        return (torch.rand(1, seq_k) > 0.3).expand(seq_q, seq_k)   # stride-0 view, read in place
    raise AssertionError(kind)


def run(leading, heads_q, heads_k, seq_q, seq_k, dim, dim_v, mask_kind, scale=None, strided=False):
    query = make((*leading, heads_q, seq_q, dim), strided)
    key = make((*leading, heads_k, seq_k, dim), strided)
    value = make((*leading, heads_k, seq_k, dim_v), strided)
    mask = make_mask(mask_kind, leading, heads_q, seq_q, seq_k)
    causal = mask_kind == "causal"
    gqa = heads_q != heads_k
    out = attnkit.scaled_dot_product_attention(query, key, value, attn_mask=mask, is_causal=causal, scale=scale,
                                               enable_gqa=gqa)
    ref = sdpa_reference(query, key, value, mask, causal, scale, gqa)
    label = (f"N{leading} Hq{heads_q} Hk{heads_k} L{seq_q} S{seq_k} E{dim} Ev{dim_v} mask={mask_kind} "
             f"scale={scale} strided={strided}")
    assert out.shape == ref.shape and out.dtype == torch.float32, label
    return assert_close(out, ref, torch.float32, label)


GRID = list(itertools.product(SEQ_PAIRS, DIMS, MASKS))


@pytest.mark.parametrize("index", range(len(GRID)))
def test_sdpa_grid(index):
    """Every (L, S) x D x mask kind; leading dims, GQA, Ev != E, scale and strides cycle with the index."""
    (seq_q, seq_k), dim, mask_kind = GRID[index]
    leading = LEADING[index % 3]
    heads_q, heads_k = GQA[index % len(GQA)]
    dim_v = dim if index % 2 == 0 else dim + 5
    scale = None if index % 4 else 0.3
    run(leading, heads_q, heads_k, seq_q, seq_k, dim, dim_v, mask_kind, scale=scale, strided=index % 5 == 1)


@pytest.mark.parametrize("heads_q,heads_k", [(4, 4), (4, 2), (8, 2), (8, 1), (16, 2), (6, 1)])
@pytest.mark.parametrize("leading", LEADING)
@pytest.mark.parametrize("mask_kind", MASKS)
def test_gqa_ratios(heads_q, heads_k, leading, mask_kind):
    """GQA ratios 1, 2, 4, 8 and MQA with every mask kind and leading shape."""
    run(leading, heads_q, heads_k, 33, 47, 16, 16, mask_kind)


@pytest.mark.parametrize("seq_q,seq_k", [(5, 40), (40, 5), (64, 300), (300, 64)])
def test_causal_is_top_left_for_unequal_lengths(seq_q, seq_k):
    """With L < S every query sees keys 0..i; with L > S rows past S see every key."""
    run((1,), 2, 2, seq_q, seq_k, 32, 32, "causal")
    query, key, value = (torch.randn(1, 1, n, 8) for n in (seq_q, seq_k, seq_k))
    ours = attnkit.scaled_dot_product_attention(query, key, value, is_causal=True)
    theirs = torch.nn.functional.scaled_dot_product_attention(query, key, value, is_causal=True)
    assert (ours - theirs).abs().max().item() < 1e-5


def test_matches_torch_directly():
    query, key, value = (torch.randn(2, 4, 65, 32) for _ in range(3))
    mask = torch.randn(2, 1, 65, 65)
    for kwargs in (dict(), dict(is_causal=True), dict(attn_mask=mask), dict(attn_mask=mask > 0), dict(scale=0.2)):
        ours = attnkit.scaled_dot_product_attention(query, key, value, **kwargs)
        theirs = torch.nn.functional.scaled_dot_product_attention(query, key, value, **kwargs)
        assert (ours - theirs).abs().max().item() < 2e-5, kwargs


def test_fully_masked_rows_give_zero_and_finfo_min_gives_mean():
    query, key, value = (torch.randn(1, 2, 6, 8) for _ in range(3))
    mask = torch.ones(6, 6, dtype=torch.bool)
    mask[2] = False
    out = attnkit.scaled_dot_product_attention(query, key, value, attn_mask=mask)
    assert torch.all(out[..., 2, :] == 0)
    # A float mask of finfo.min is finite: the row is the uniform mean of V, as in torch.
    float_mask = torch.zeros(6, 6)
    float_mask[2] = torch.finfo(torch.float32).min
    out = attnkit.scaled_dot_product_attention(query, key, value, attn_mask=float_mask)
    assert torch.allclose(out[..., 2, :], value.mean(-2), atol=1e-5)


def test_fp64_and_numpy():
    query, key, value = (torch.randn(2, 3, 20, 16, dtype=torch.float64) for _ in range(3))
    out = attnkit.scaled_dot_product_attention(query, key, value, is_causal=True)
    assert out.dtype == torch.float64
    assert_close(out, sdpa_reference(query, key, value, is_causal=True), torch.float64, "fp64")
    q32 = query.float().numpy()
    out_np = attnkit.scaled_dot_product_attention(q32, q32, q32)
    assert isinstance(out_np, np.ndarray) and out_np.dtype == np.float32
    assert_close(torch.from_numpy(out_np), sdpa_reference(q32, q32, q32), torch.float32, "numpy")


def test_empty_shapes():
    for seq_q, seq_k in ((0, 5), (5, 0), (0, 0)):
        query, key, value = torch.randn(2, seq_q, 8), torch.randn(2, seq_k, 8), torch.randn(2, seq_k, 4)
        out = attnkit.scaled_dot_product_attention(query, key, value)
        assert out.shape == (2, seq_q, 4)
        assert torch.all(out == 0)


def test_long_sequence_runs_in_tiles():
    """L = S = 4096 with one head: the score matrix (64 MiB) is never materialized."""
    query, key, value = (torch.randn(1, 1, 4096, 64) for _ in range(3))
    out = attnkit.scaled_dot_product_attention(query, key, value, is_causal=True)
    theirs = torch.nn.functional.scaled_dot_product_attention(query, key, value, is_causal=True)
    assert (out - theirs).abs().max().item() < 1e-5


# ---- dropout ----

def dropout_probe(p, seq=256):
    """q = 0 gives a uniform softmax; with v = I the output is keep/(S·(1−p)) per (row, key)."""
    query = torch.zeros(1, 1, seq, 8)
    key = torch.randn(1, 1, seq, 8)
    value = torch.eye(seq).reshape(1, 1, seq, seq)
    return attnkit.scaled_dot_product_attention(query, key, value, dropout_p=p)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_dropout_fraction(p):
    out = dropout_probe(p)
    dropped = (out == 0).double().mean().item()
    assert abs(dropped - p) < 0.01, f"dropped {dropped:.4f} for p={p}"
    kept = out[out != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / (256 * (1 - p))), rtol=1e-5)


def test_dropout_mean_approaches_no_dropout():
    query, key, value = (torch.randn(1, 2, 16, 16) for _ in range(3))
    expected = attnkit.scaled_dot_product_attention(query, key, value)
    attnkit.manual_seed(123)
    mean = sum(attnkit.scaled_dot_product_attention(query, key, value, dropout_p=0.3) for _ in range(600)) / 600
    assert (mean - expected).abs().max().item() < 0.06


def test_dropout_seed_reproducible_across_threads():
    query, key, value = (torch.randn(2, 4, 100, 32) for _ in range(3))
    before = attnkit.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 2):
            attnkit.set_num_threads(threads)
            attnkit.manual_seed(7)
            first = attnkit.scaled_dot_product_attention(query, key, value, dropout_p=0.2, is_causal=True)
            second = attnkit.scaled_dot_product_attention(query, key, value, dropout_p=0.2, is_causal=True)
            assert not torch.equal(first, second), "consecutive calls draw different masks"
            results.append((first, second))
        for first, second in results[1:]:
            assert torch.equal(first, results[0][0]) and torch.equal(second, results[0][1])
    finally:
        attnkit.set_num_threads(before)


# ---- errors, as in torch ----

@pytest.mark.parametrize(
    "kwargs,error,pattern",
    [
        (dict(attn_mask=torch.ones(8, 8, dtype=torch.bool), is_causal=True), ValueError, r"attn_mask must be None when is_causal"),
        (dict(key=torch.randn(2, 2, 8, 16), value=torch.randn(2, 2, 8, 16)), ValueError, r"key\.shape\[-3\] must equal query\.shape\[-3\] \(4\) unless enable_gqa"),
        (dict(key=torch.randn(2, 3, 8, 16), value=torch.randn(2, 3, 8, 16), enable_gqa=True), ValueError,
         r"key\.shape\[-3\] must divide query\.shape\[-3\]"),
        (dict(key=torch.randn(2, 4, 8, 15)), ValueError, r"key\.shape\[3\] must equal query\.shape\[-1\]"),
        (dict(value=torch.randn(2, 4, 9, 16)), ValueError, r"value\.shape\[2\] must equal key\.shape\[-2\]"),
        (dict(key=torch.randn(4, 8, 16)), ValueError, r"key must have rank 4"),
        (dict(value=torch.randn(2, 4, 8, 16).double()), TypeError, r"value\.dtype must equal query\.dtype"),
        (dict(attn_mask=torch.ones(3, 8)), ValueError, r"attn_mask of shape \[3, 8\] does not broadcast"),
        (dict(attn_mask=torch.ones(8, 8).double()), TypeError, r"attn_mask\.dtype must be"),
        (dict(dropout_p=1.5), ValueError, r"dropout_p must be in \[0, 1\]"),
        (dict(query="nope"), TypeError, r"query must be a numpy.ndarray or a torch.Tensor"),
    ],
)
def test_sdpa_errors(kwargs, error, pattern):
    args = dict(query=torch.randn(2, 4, 8, 16), key=torch.randn(2, 4, 8, 16), value=torch.randn(2, 4, 8, 16))
    args.update(kwargs)
    with pytest.raises(error, match=pattern):
        attnkit.scaled_dot_product_attention(**args)


# ---- seed wrappers (docs/semantics.md §1) ----

@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("seq,heads,dim", [(1, 1, 8), (17, 2, 59), (127, 8, 64)])
def test_seed_wrappers_match_eager_and_reference(causal, masked, seq, heads, dim):
    q, k, v = (torch.randn(3, seq, heads * dim) for _ in range(3))
    mask = (torch.rand(3, seq) > 0.3) if masked else None
    if masked:
        mask[1] = False
    sdpa = attnkit.sdpa_causal_attention if causal else attnkit.sdpa_bidirectional_attention
    eager = attnkit.eager_causal_attention if causal else attnkit.eager_bidirectional_attention
    ours = sdpa(q, k, v, heads, dim, mask)
    assert ours.shape == q.shape
    reference, _ = eager_reference(q, k, v, heads, dim, mask, causal)
    assert_close(ours, reference, torch.float32, "sdpa seed wrapper vs fp64")
    assert (ours - eager(q, k, v, heads, dim, mask)).abs().max().item() < 5e-6


@pytest.mark.parametrize("rows,dim,mask_kind",
                         list(itertools.product([1, 2, 3, 4, 5, 16], [8, 59, 128, 200], ["none", "causal", "bool", "float"])))
def test_few_query_rows(rows, dim, mask_kind):
    """Decoding shapes (a few queries against many keys) take the engine's row-wise
    and one-chunk paths; GQA, strided V and odd dims included."""
    torch.manual_seed(rows * 1000 + dim)
    q = torch.randn(2, 4, rows, dim)
    k = torch.randn(2, 2, 333, dim)
    v = make((2, 2, 333, dim + 3), strided=True)
    mask = None
    if mask_kind == "bool":
        mask = torch.rand(rows, 333) > 0.2
        mask[0] = False                                   # a row with nothing to attend
    elif mask_kind == "float":
        mask = torch.randn(2, 1, rows, 333)
    causal = mask_kind == "causal"
    out = attnkit.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=True)
    assert_close(out, sdpa_reference(q, k, v, mask, causal, None, True), torch.float32, f"rows {rows} D{dim} {mask_kind}")


@pytest.mark.parametrize("rows", [1, 3, 16])
def test_few_query_rows_nan_in_value_reaches_only_its_rows(rows):
    q, k, v = torch.randn(1, 2, rows, 32), torch.randn(1, 2, 200, 32), torch.randn(1, 2, 200, 32)
    v[0, 0, 150, 5] = float("nan")
    mask = torch.ones(rows, 200, dtype=torch.bool)
    mask[0, 150] = False                                  # row 0 never sees the NaN key
    out = attnkit.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.isfinite(out[0, 0, 0]).all() and torch.isfinite(out[0, 1]).all()
    if rows > 1:
        assert torch.isnan(out[0, 0, 1:, 5]).all() and torch.isfinite(out[0, 0, 1:, :5]).all()
    expected = sdpa_reference(q, k, v.nan_to_num(0.0), mask)
    assert_close(out[0, 0, 0], expected[0, 0, 0], torch.float32, "row 0")
