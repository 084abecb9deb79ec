"""Sparse top-k, AFT and Linformer (issue 19, docs/semantics.md §9) against the attention guide's
formulas in fp64: odd sizes, GQA, masks, causal, strided input, large magnitudes, fp16/bf16 (the
accuracy rule of §6), errors, and memory that stays O(tile) / O(T·d)."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import attnkit
from conftest import assert_close
from test_lowp import LOW, assert_rule

# ---------------------------------------------------------------- sparse top-k


def top_k_reference(q, k, v, top, causal=False, mask=None, scale=None):
    """The guide's sparse top-k in fp64 on [B, H, S, D]: scores, keep the top `top` of each row (a stable
    descending sort: ties to the lower key), softmax over them, average their values."""
    q, k, v = (x.double() for x in (q, k, v))
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    scores = (q @ k.transpose(-1, -2)) * (scale if scale is not None else 1 / math.sqrt(q.shape[-1]))
    allowed = torch.ones(scores.shape[-2:], dtype=torch.bool).expand(scores.shape).clone()
    if causal:
        allowed &= torch.ones(scores.shape[-2:], dtype=torch.bool).tril()
    if mask is not None:
        allowed &= mask[:, None, None, :]
    scores = scores.masked_fill(~allowed, -math.inf)
    kept, index = torch.sort(scores, dim=-1, descending=True, stable=True)
    kept, index = kept[..., :top], index[..., :top]
    weights = torch.softmax(kept, dim=-1).nan_to_num(0.0)   # a row with no allowed key gives 0
    picked = torch.gather(v.unsqueeze(2).expand(*scores.shape, v.shape[-1]), 3,
                          index.unsqueeze(-1).expand(*index.shape, v.shape[-1]))
    return (weights.unsqueeze(-1) * picked).sum(3)


@pytest.mark.parametrize("seq,top", [(1, 1), (7, 3), (33, 1), (65, 64), (127, 127), (17, 5)])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_sparse_top_k_against_fp64(seq, top, causal, masked):
    torch.manual_seed(seq * 10 + top)
    q = torch.randn(2, 4, seq, 59)
    k, v = torch.randn(2, 2, seq, 59), torch.randn(2, 2, seq, 17)
    mask = torch.rand(2, seq) > 0.3 if masked else None
    if masked:
        mask[1] = False   # batch 1: every key masked, so every row is 0
    out = attnkit.sparse_top_k_attention(q, k, v, top, causal=causal, mask=mask)
    assert_close(out, top_k_reference(q, k, v, top, causal, mask), torch.float32,
                 f"S={seq} k={top} causal={causal} masked={masked}")


def test_sparse_top_k_rank3_strided_numpy_fp64_and_chunks():
    base = torch.randn(3, 40, 2, 8, dtype=torch.float64)
    x = base[:, :, 0]                      # [3, 40, 8], non-contiguous
    expected = top_k_reference(x[:, None], x[:, None], x[:, None], 6, scale=0.3)[:, 0]
    for chunks in (1, 4, 7):
        out = attnkit.sparse_top_k_attention(x.numpy(), x.numpy(), x.numpy(), 6, num_chunks=chunks, softmax_scale=0.3)
        assert isinstance(out, np.ndarray) and out.shape == (3, 40, 8)
        assert_close(torch.from_numpy(out), expected, torch.float64, f"numpy strided, num_chunks={chunks}")


def test_sparse_top_k_ties_go_to_lower_keys():
    # Integer scores with many exact ties: both fp32 and fp64 hold them exactly.
    q = torch.randint(-2, 3, (1, 2, 40, 4)).float()
    k = torch.randint(-1, 2, (1, 2, 300, 4)).float()
    v = torch.randn(1, 2, 300, 5)
    for top in (1, 3, 16, 64):
        out = attnkit.sparse_top_k_attention(q, k, v, top, softmax_scale=1.0)
        assert_close(out, top_k_reference(q, k, v, top, scale=1.0), torch.float32, f"ties, k={top}")


def test_sparse_top_k_against_torch_topk_and_guide_method():
    # The guide's method (chunked scores, torch.topk, softmax, scatter to dense, matmul) in fp64.
    torch.manual_seed(3)
    q, k, v = (torch.randn(1, 2, 96, 16, dtype=torch.float64) for _ in range(3))
    out = attnkit.sparse_top_k_attention(q, k, v, 8)
    assert_close(out, guide_sparse_top_k(q, k, v, 8, num_chunks=4), torch.float64, "guide method")


def guide_sparse_top_k(q, k, v, top, num_chunks):
    """The attention guide's implementation, as the benchmark runs it: dense [chunk, S] weights."""
    outs = []
    for chunk in q.chunk(num_chunks, dim=-2):
        scores = chunk @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        values, index = scores.topk(top, dim=-1)
        dense = torch.zeros_like(scores).scatter_(-1, index, torch.softmax(values, dim=-1))
        outs.append(dense @ v)
    return torch.cat(outs, dim=-2)


@pytest.mark.parametrize("dtype", LOW)
def test_sparse_top_k_low_precision_rule(dtype):
    torch.manual_seed(5)
    q, k, v = (torch.randn(1, 2, 65, 32).to(dtype) for _ in range(3))
    for top in (65, 64):
        ours = attnkit.sparse_top_k_attention(q, k, v, top)
        ref32 = top_k_reference(q.float(), k.float(), v.float(), top).float()
        theirs = guide_sparse_top_k(q, k, v, top, 4) if top < 65 else torch.softmax(
            (q @ k.transpose(-1, -2)) / 32**0.5, -1) @ v
        assert_rule(ours, theirs, ref32, dtype, f"sparse top-k {dtype} k={top}")


def test_sparse_top_k_errors_name_the_argument():
    q = torch.randn(1, 1, 8, 4)
    with pytest.raises(ValueError, match=r"^k must be <= the key length S_k = 8, got 9"):
        attnkit.sparse_top_k_attention(q, q, q, 9)
    with pytest.raises(ValueError, match="k must be >= 1"):
        attnkit.sparse_top_k_attention(q, q, q, 0)
    with pytest.raises(ValueError, match="num_chunks"):
        attnkit.sparse_top_k_attention(q, q, q, 2, num_chunks=0)
    with pytest.raises(ValueError, match="key_mask"):
        attnkit.sparse_top_k_attention(q, q, q, 2, mask=torch.ones(1, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\[B, S, D\] or all \[B, H, S, D\]"):
        attnkit.sparse_top_k_attention(q, q[0], q, 2)
    with pytest.raises(NotImplementedError, match="no backward"):
        attnkit.sparse_top_k_attention(q.requires_grad_(), q, q, 2)


def _peak_growth(script):
    """Runs `script` (numpy only) in a fresh interpreter; it prints {"before": rss, "after": rss} in KiB."""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    sizes = json.loads(done.stdout.strip().splitlines()[-1])
    return (sizes["after"] - sizes["before"]) / 1024   # MiB


PEAK = """
import json, resource, numpy as np, attnkit
attnkit.set_num_threads(2)
rng = np.random.default_rng(0)
{setup}
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
before = peak()
{call}
print(json.dumps({{"before": before, "after": peak()}}))
"""


def test_sparse_top_k_memory_is_per_tile():
    # 4096 queries over S = 65536 keys, k = 32: the guide's dense [chunk, S] weights (4 chunks) are 256 MiB
    # in fp32, its score chunk as much again; ours streams tiles of keys.
    growth = _peak_growth(PEAK.format(
        setup="q = rng.standard_normal((1, 1, 4096, 16), dtype=np.float32)\n"
              "k = rng.standard_normal((1, 1, 65536, 16), dtype=np.float32)",
        call="attnkit.sparse_top_k_attention(q, k, k, 32)"))
    assert growth < 32, f"peak RSS grew {growth:.1f} MiB"


# ---------------------------------------------------------------- AFT
# The references are the AFT formula (the guide's AFTFull/AFTLocal/AFTSimple cores) in fp64. They deliberately do not follow the guide's
# `xk.max(dim=-1)` shift, a max over features per token: that shift is not constant along the token
# sum, so it changes the result (test_guide_feature_max_shift_is_not_the_formula shows it).


def aft_reference(q, k, v, w=None, causal=False, local_context=None, outside="exclude"):
    """Y = σ(Q) ⊙ (exp(W) @ (exp(K) ⊙ V)) / (exp(W) @ exp(K)) in fp64. The ratio is a softmax over t' of
    W[t,t'] + K[t',c], computed as one so that inputs of any magnitude stay in range."""
    q, k, v = (x.double() for x in (q, k, v))
    length = q.shape[1]
    w = torch.zeros(length, length, dtype=torch.float64) if w is None else w[:length, :length].double()
    t = torch.arange(length)
    if local_context is not None:
        far = (t[:, None] - t[None, :]).abs() >= local_context
        w = w.masked_fill(far, -math.inf if outside == "exclude" else 0.0)
    if causal:
        w = w.masked_fill(t[None, :] > t[:, None], -math.inf)
    exponents = w[None, :, :, None] + k[:, None, :, :]          # [B, t, t', c]
    weights = torch.softmax(exponents, dim=2)
    return torch.sigmoid(q) * (weights * v[:, None, :, :]).sum(2)


def aft_inputs(batch, length, features, magnitude=1.0, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    q, v = (torch.randn(batch, length, features, generator=generator, dtype=dtype) for _ in range(2))
    k = magnitude * torch.randn(batch, length, features, generator=generator, dtype=dtype)
    w = magnitude * torch.randn(length + 3, length + 2, generator=generator, dtype=dtype)
    return q, k, v, w


@pytest.mark.parametrize("length", [1, 7, 65, 130])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("magnitude", [1.0, 100.0])
def test_aft_full_against_fp64(length, causal, magnitude):
    q, k, v, w = aft_inputs(2, length, 33, magnitude, seed=length)
    out = attnkit.aft_full(q, k, v, w, causal=causal)
    assert torch.isfinite(out).all()
    assert_close(out, aft_reference(q, k, v, w, causal), torch.float32, f"T={length} causal={causal} ±{magnitude}")


@pytest.mark.parametrize("length,context", [(1, 1), (17, 4), (65, 8), (40, 40), (40, 1000)])
@pytest.mark.parametrize("outside", ["exclude", "zero_bias"])
@pytest.mark.parametrize("causal", [False, True])
def test_aft_local_against_fp64(length, context, outside, causal):
    q, k, v, w = aft_inputs(2, length, 11, seed=context)
    out = attnkit.aft_local(q, k, v, w, context, outside, causal=causal)
    assert_close(out, aft_reference(q, k, v, w, causal, context, outside), torch.float32,
                 f"T={length} s={context} {outside} causal={causal}")


def test_aft_local_reads_only_the_band():
    q, k, v, w = aft_inputs(1, 50, 8)
    far = (torch.arange(53)[:, None] - torch.arange(52)[None, :]).abs() >= 5
    poisoned = w.masked_fill(far, math.nan)
    assert_close(attnkit.aft_local(q, k, v, poisoned, 5), aft_reference(q, k, v, w, local_context=5),
                 torch.float32, "NaN outside the band is never read")


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("magnitude", [1.0, 100.0])
def test_aft_simple_against_fp64(causal, magnitude):
    for length in (1, 17, 300):
        q, k, v, _ = aft_inputs(3, length, 65, magnitude, seed=length)
        out = attnkit.aft_simple(q, k, v, causal=causal)
        assert_close(out, aft_reference(q, k, v, causal=causal), torch.float32, f"T={length} causal={causal}")
    if not causal:   # the guide's AFTSimple core: softmax over tokens of K, per feature
        guide = torch.sigmoid(q.double()) * (torch.softmax(k.double(), dim=1) * v.double()).sum(1, keepdim=True)
        assert_close(out, guide, torch.float32, "guide AFTSimple")


@pytest.mark.parametrize("causal", [False, True])
def test_aft_low_rank_bias_is_never_expanded_but_equal(causal):
    q, k, v, _ = aft_inputs(2, 70, 16, 3.0, dtype=torch.float64)
    u, f = torch.randn(72, 4, dtype=torch.float64), torch.randn(75, 4, dtype=torch.float64)
    expected = aft_reference(q, k, v, u[:70] @ f[:70].T, causal)
    assert_close(attnkit.aft_full(q, k, v, (u, f), causal=causal), expected, torch.float64, "low rank")
    assert_close(attnkit.aft_local(q.float(), k.float(), v.float(), (u.float(), f.float()), 9, causal=causal),
                 aft_reference(q, k, v, u[:70] @ f[:70].T, causal, 9), torch.float32, "low rank local")


def test_aft_numpy_strided_fp64():
    q, k, v, w = aft_inputs(2, 30, 12, dtype=torch.float64)
    wide = torch.stack([q, k, v], dim=-1)      # [2, 30, 12, 3]: every tensor strided
    out = attnkit.aft_full(wide[..., 0].numpy(), wide[..., 1].numpy(), wide[..., 2].numpy(), w.T.numpy())
    assert isinstance(out, np.ndarray)
    assert_close(torch.from_numpy(out), aft_reference(q, k, v, w.T), torch.float64, "numpy strided")


def test_guide_feature_max_shift_is_not_the_formula():
    # The guide shifts K by its max over features (per token): e^(K − m_t) is not a common factor of the
    # sums over t', so the result moves. Ours follows the formula.
    q, k, v, w = aft_inputs(1, 20, 6, dtype=torch.float64)
    guide_k = k - k.max(dim=-1, keepdim=True).values
    shifted = aft_reference(q, guide_k, v, w)
    formula = aft_reference(q, k, v, w)
    assert (shifted - formula).abs().max() > 1e-3
    assert_close(attnkit.aft_full(q, k, v, w), formula, torch.float64, "formula")


@pytest.mark.parametrize("dtype", LOW)
def test_aft_low_precision_rule(dtype):
    q, k, v, w = aft_inputs(2, 33, 16, seed=9)
    q, k, v, w = (x.to(dtype) for x in (q, k, v, w))
    ref32 = aft_reference(q.float(), k.float(), v.float(), w.float()).float()
    ref32_simple = aft_reference(q.float(), k.float(), v.float()).float()
    theirs = torch.sigmoid(q) * (torch.exp(w[:33, :33]) @ (torch.exp(k) * v)) / (torch.exp(w[:33, :33]) @ torch.exp(k))
    theirs_simple = torch.sigmoid(q) * (torch.softmax(k, dim=1) * v).sum(1, keepdim=True)
    assert_rule(attnkit.aft_full(q, k, v, w), theirs, ref32, dtype, f"aft_full {dtype}")
    assert_rule(attnkit.aft_simple(q, k, v), theirs_simple, ref32_simple, dtype, f"aft_simple {dtype}")


def test_aft_errors_name_the_argument():
    q = torch.randn(1, 8, 4)
    with pytest.raises(ValueError, match=r"w_bias.shape\[1\] must be >= the sequence length"):
        attnkit.aft_full(q, q, q, torch.zeros(8, 7))
    with pytest.raises(ValueError, match="local_context must be >= 1"):
        attnkit.aft_local(q, q, q, torch.zeros(8, 8), 0)
    with pytest.raises(ValueError, match="outside"):
        attnkit.aft_local(q, q, q, torch.zeros(8, 8), 2, "drop")
    with pytest.raises(ValueError, match=r"w_bias\[1\].shape\[1\] must equal w_bias\[0\].shape\[1\]"):
        attnkit.aft_full(q, q, q, (torch.zeros(8, 2), torch.zeros(8, 3)))
    with pytest.raises(ValueError, match=r"k.shape\[1\] must equal"):
        attnkit.aft_simple(q, torch.randn(1, 9, 4), q)


def test_aft_memory_is_linear_for_simple_and_low_rank():
    # T = 16384, d = 64: a dense [T, T] fp32 bias, or exp(W), would be 1 GiB.
    growth = _peak_growth(PEAK.format(
        setup="q = rng.standard_normal((1, 16384, 64), dtype=np.float32)\n"
              "u = rng.standard_normal((16384, 8), dtype=np.float32)",
        call="attnkit.aft_simple(q, q, q); attnkit.aft_simple(q, q, q, causal=True)\n"
             "attnkit.aft_full(q, q, q, (u, u))"))
    assert growth < 64, f"peak RSS grew {growth:.1f} MiB"


# ---------------------------------------------------------------- Linformer


def linformer_reference(q, k, v, e, f, be=None, bf=None, scale=None):
    """The Linformer core in fp64: E and F sliced to the sequence, then softmax attention."""
    q, k, v, e, f = (x.double() for x in (q, k, v, e, f))
    seq = k.shape[-2]
    groups = q.shape[-3] // k.shape[-3] if q.ndim == 4 else 1
    kp = e[:, :seq] @ k + (0 if be is None else be.double()[:, None])
    vp = f[:, :seq] @ v + (0 if bf is None else bf.double()[:, None])
    if q.ndim == 4:
        kp, vp = kp.repeat_interleave(groups, 1), vp.repeat_interleave(groups, 1)
    scores = (q @ kp.transpose(-1, -2)) * (scale if scale is not None else 1 / math.sqrt(q.shape[-1]))
    return torch.softmax(scores, dim=-1) @ vp


@pytest.mark.parametrize("seq,projected", [(1, 1), (7, 3), (65, 17), (127, 64)])
@pytest.mark.parametrize("biased", [False, True])
def test_linformer_against_fp64(seq, projected, biased):
    torch.manual_seed(seq)
    q = torch.randn(2, 4, seq, 59)
    k, v = torch.randn(2, 2, seq, 59), torch.randn(2, 2, seq, 111)
    e, f = torch.randn(projected, seq + 5) / seq**0.5, torch.randn(projected, seq + 5) / seq**0.5
    be, bf = (torch.randn(projected), torch.randn(projected)) if biased else (None, None)
    out = attnkit.linformer_attention(q, k, v, e, f, be, bf)
    assert_close(out, linformer_reference(q, k, v, e, f, be, bf), torch.float32, f"S={seq} kp={projected}")


def test_linformer_and_the_guides_zero_padding():
    # The guide pads the sequence to max_seq_len with zeros before projecting. Zero rows of K and V add
    # nothing to E·K, so padding K/V equals slicing E and F (what we do), in fp64 both ways. Padding the
    # hidden states before a biased k/v projection instead makes the padded rows that bias, which does
    # change the result: ours reproduces it when given those rows explicitly.
    torch.manual_seed(1)
    seq, max_len, projected = 50, 64, 16
    q, k, v = (torch.randn(1, 2, seq, 8, dtype=torch.float64) for _ in range(3))
    e, f = torch.randn(projected, max_len, dtype=torch.float64), torch.randn(projected, max_len, dtype=torch.float64)
    padded = [torch.nn.functional.pad(x, (0, 0, 0, max_len - seq)) for x in (k, v)]
    guide = linformer_reference(q, *padded, e, f)
    ours = attnkit.linformer_attention(q, k, v, e, f)
    assert_close(ours, guide, torch.float64, "zero-padded K/V = sliced projections")
    assert_close(ours, linformer_reference(q, k, v, e, f), torch.float64, "sliced formula")
    bias_k, bias_v = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    biased_pad = [torch.cat([x, b.expand(1, 2, max_len - seq, 8)], dim=2) for x, b in ((k, bias_k), (v, bias_v))]
    guide_biased = linformer_reference(q, *biased_pad, e, f)
    assert (guide_biased - ours).abs().max() > 1e-3
    assert_close(attnkit.linformer_attention(q, *biased_pad, e, f), guide_biased, torch.float64, "explicit padding")


def test_linformer_modules_rank3_strided_numpy():
    torch.manual_seed(2)
    proj_e, proj_f = torch.nn.Linear(40, 6, dtype=torch.float64), torch.nn.Linear(40, 6, dtype=torch.float64)
    x = torch.randn(3, 33, 2, 10, dtype=torch.float64)[:, :, 1]       # [3, 33, 10], strided
    with torch.no_grad():
        out = attnkit.linformer_attention(x, x, x, proj_e, proj_f)
        expected = linformer_reference(x, x, x, proj_e.weight, proj_f.weight, proj_e.bias, proj_f.bias)
    assert out.shape == (3, 33, 10)
    assert_close(out, expected, torch.float64, "nn.Linear projections, rank 3")
    flat = attnkit.linformer_attention(x.numpy(), x.numpy(), x.numpy(), proj_e.weight.detach().numpy(),
                                       proj_f.weight.detach().numpy())
    assert_close(torch.from_numpy(flat), linformer_reference(x, x, x, proj_e.weight, proj_f.weight),
                 torch.float64, "numpy")


@pytest.mark.parametrize("dtype", LOW)
def test_linformer_low_precision_rule(dtype):
    torch.manual_seed(4)
    q, k, v = (torch.randn(1, 2, 65, 32).to(dtype) for _ in range(3))
    e, f = (torch.randn(16, 80).div(8).to(dtype) for _ in range(2))
    ref32 = linformer_reference(q.float(), k.float(), v.float(), e.float(), f.float()).float()
    kp, vp = e[:, :65] @ k, f[:, :65] @ v
    theirs = torch.softmax((q @ kp.transpose(-1, -2)) / 32**0.5, dim=-1) @ vp
    assert_rule(attnkit.linformer_attention(q, k, v, e, f), theirs, ref32, dtype, f"linformer {dtype}")


def test_linformer_errors_name_the_argument():
    q = torch.randn(1, 1, 8, 4)
    with pytest.raises(ValueError, match=r"proj_e.shape\[1\] .*must be >= the sequence length"):
        attnkit.linformer_attention(q, q, q, torch.zeros(3, 7), torch.zeros(3, 8))
    with pytest.raises(ValueError, match=r"proj_f.shape\[0\] must equal proj_e.shape\[0\]"):
        attnkit.linformer_attention(q, q, q, torch.zeros(3, 8), torch.zeros(2, 8))
    with pytest.raises(ValueError, match=r"bias_e.shape\[0\]"):
        attnkit.linformer_attention(q, q, q, torch.zeros(3, 8), torch.zeros(3, 8), torch.zeros(2))
    with pytest.raises(TypeError, match="q.dtype"):
        attnkit.linformer_attention(q, q, q, torch.zeros(3, 8, dtype=torch.float64), torch.zeros(3, 8))
