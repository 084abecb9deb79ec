"""fp16 and bf16 in every entry point (issue: numerics), docs/semantics.md §4 and §6.

The accuracy rule: max|ours − ref32| <= max|torch_same_dtype − ref32|, with a
floor of one ulp of the dtype at the output's magnitude, where ref32 is the
same math in fp32 on the same (rounded) inputs.
"""
import itertools
import math
import os

import numpy as np
import pytest
import torch

import attnkit
from conftest import flash_reference, sdpa_reference

F = torch.nn.functional
LOW = [torch.float16, torch.bfloat16]
ULP_AT_ONE = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7, torch.float32: 2.0**-23}


def ulp_floor(dtype, reference):
    magnitude = reference.abs().max().item() if reference.numel() else 0.0
    return ULP_AT_ONE[dtype] * 2.0 ** math.floor(math.log2(max(magnitude, 2.0**-14)))


def max_error(actual, reference):
    difference = (actual.double() - reference.double()).abs()
    if torch.isnan(difference).any():
        return math.inf
    return difference.max().item() if difference.numel() else 0.0


def assert_rule(ours, torch_same_dtype, ref32, dtype, label):
    """Our error against ref32 is no larger than torch's in the same dtype (or one ulp)."""
    assert ours.dtype == dtype, label
    assert torch.isfinite(ours).all(), "finite input must give finite output: " + label
    ours_error = max_error(ours, ref32)
    torch_error = max_error(torch_same_dtype, ref32)
    bound = max(torch_error if math.isfinite(torch_error) else 0.0, ulp_floor(dtype, ref32))
    assert ours_error <= bound, f"{label}: ours {ours_error:.3e} > torch {torch_error:.3e} / floor"
    return ours_error, torch_error


# ---- SDPA grid in fp16/bf16 ----

SDPA_CASES = list(itertools.product([1, 17, 64, 127, 300], [1, 17, 127, 300], [8, 59, 64, 128],
                                    ["none", "causal", "bool", "float"]))


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("index", range(0, len(SDPA_CASES), 3))
def test_sdpa_low_precision_rule(dtype, index):
    seq_q, seq_k, dim, mask_kind = SDPA_CASES[index]
    heads_q, heads_k = [(2, 2), (4, 2), (4, 1)][index % 3]
    q = torch.randn(2, heads_q, seq_q, dim).to(dtype)
    k = torch.randn(2, heads_k, seq_k, dim).to(dtype)
    v = torch.randn(2, heads_k, seq_k, dim).to(dtype)
    mask = None
    if mask_kind == "bool":
        mask = torch.rand(seq_q, seq_k) > 0.3
    elif mask_kind == "float":
        mask = torch.randn(seq_q, seq_k).to(dtype)
    kwargs = dict(attn_mask=mask, is_causal=mask_kind == "causal", enable_gqa=heads_q != heads_k)
    ours = attnkit.scaled_dot_product_attention(q, k, v, **kwargs)
    theirs = F.scaled_dot_product_attention(q, k, v, **kwargs)
    ref32 = sdpa_reference(q.float(), k.float(), v.float(), None if mask is None else mask if mask.dtype == torch.bool else mask.float(),
                           kwargs["is_causal"], None, kwargs["enable_gqa"]).float()
    fully_masked = None
    if mask_kind == "bool":
        fully_masked = ~mask.any(-1)
        theirs = theirs.masked_fill(fully_masked[:, None], 0)   # torch may give NaN there; the spec says 0
    assert_rule(ours, theirs, ref32, dtype, f"L{seq_q} S{seq_k} D{dim} {mask_kind} {dtype}")


# ---- varlen flash in fp16/bf16 ----

def flash_in_dtype(q, k, v, causal, window, softcap, slopes):
    """attention_ref's math done in the low dtype itself: torch's same-dtype error."""
    dtype = q.dtype
    seq_q, heads_q, dim = q.shape
    seq_k = k.shape[0]
    group = heads_q // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    scores = torch.einsum("qhd,khd->hqk", q, k) * (1 / math.sqrt(dim))
    if softcap > 0:
        scores = softcap * torch.tanh(scores / softcap)
    rows, cols = torch.arange(seq_q)[:, None], torch.arange(seq_k)[None, :]
    diagonal = rows + seq_k - seq_q
    if slopes is not None:
        scores = scores - (slopes[:, None, None] * (diagonal - cols).abs()[None]).to(dtype)
    left, right = window
    right = 0 if causal else right
    allowed = torch.ones(seq_q, seq_k, dtype=torch.bool)
    if left >= 0:
        allowed &= cols >= diagonal - left
    if right >= 0:
        allowed &= cols <= diagonal + right
    weights = torch.softmax(scores.masked_fill(~allowed, -math.inf), dim=-1).nan_to_num(0.0)
    return torch.einsum("hqk,khd->qhd", weights, v)


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("features", list(itertools.product([False, True], repeat=4)))
def test_varlen_low_precision_rule(dtype, features):
    causal, local, alibi, softcap = features
    generator = torch.Generator().manual_seed(sum(features) * 7 + (dtype == torch.float16))
    lengths_q, lengths_k = [113, 0, 40, 1], [203, 5, 0, 64]
    cu_q = torch.tensor([0] + list(itertools.accumulate(lengths_q)), dtype=torch.int32)
    cu_k = torch.tensor([0] + list(itertools.accumulate(lengths_k)), dtype=torch.int32)
    q = torch.randn(int(cu_q[-1]), 4, 64, generator=generator).to(dtype)
    k = torch.randn(int(cu_k[-1]), 2, 64, generator=generator).to(dtype)
    v = torch.randn(int(cu_k[-1]), 2, 64, generator=generator).to(dtype)
    window = (30, 10) if local else (-1, -1)
    slopes = torch.rand(4, generator=generator) * 0.3 if alibi else None
    cap = 4.0 if softcap else 0.0
    out = attnkit.flash_attn_varlen_func(q, k, v, cu_q, cu_k, 113, 203, causal=causal, window_size=window,
                                         softcap=cap, alibi_slopes=slopes)
    for b in range(4):
        rows, keys = slice(int(cu_q[b]), int(cu_q[b + 1])), slice(int(cu_k[b]), int(cu_k[b + 1]))
        ref32, _ = flash_reference(q[rows].float(), k[keys].float(), v[keys].float(), causal, window, cap, slopes)
        same_dtype = flash_in_dtype(q[rows], k[keys], v[keys], causal, window, cap, slopes)
        assert_rule(out[rows], same_dtype, ref32.float(), dtype, f"seq {b} features {features} {dtype}")


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("causal", [False, True])
def test_eager_and_seed_wrappers_low_precision(dtype, causal):
    q, k, v = (torch.randn(2, 33, 4 * 16).to(dtype) for _ in range(3))
    mask = torch.rand(2, 33) > 0.2
    heads = [x.float().view(2, 33, 4, 16).transpose(1, 2) for x in (q, k, v)]
    allowed = mask[:, None, None, :] & (torch.ones(33, 33, dtype=torch.bool).tril() if causal else True)
    ref32 = sdpa_reference(*heads, allowed).float().transpose(1, 2).reshape(2, 33, 64)
    theirs = F.scaled_dot_product_attention(*(x.view(2, 33, 4, 16).transpose(1, 2) for x in (q, k, v)),
                                            attn_mask=allowed).transpose(1, 2).reshape(2, 33, 64)
    eager = attnkit.eager_causal_attention if causal else attnkit.eager_bidirectional_attention
    sdpa = attnkit.sdpa_causal_attention if causal else attnkit.sdpa_bidirectional_attention
    assert_rule(eager(q, k, v, 4, 16, mask), theirs, ref32, dtype, "eager")
    assert_rule(sdpa(q, k, v, 4, 16, mask), theirs, ref32, dtype, "sdpa seed wrapper")
    cu = torch.tensor([0, 33, 66], dtype=torch.int32)
    flash = attnkit.flash_causal_attention if causal else attnkit.flash_bidirectional_attention
    unmasked = heads[0].new_ones(())
    ref_flash = sdpa_reference(*heads, is_causal=causal).float().transpose(1, 2).reshape(2, 33, 64)
    theirs_flash = F.scaled_dot_product_attention(*(x.view(2, 33, 4, 16).transpose(1, 2) for x in (q, k, v)),
                                                  is_causal=causal).transpose(1, 2).reshape(2, 33, 64)
    out = flash(q.reshape(66, 64), k.reshape(66, 64), v.reshape(66, 64), 4, 16, cu, 33).reshape(2, 33, 64)
    assert_rule(out, theirs_flash, ref_flash, dtype, "flash seed wrapper")
    del unmasked


# ---- adversarial ----

@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("magnitude", [100.0, 1000.0])
def test_scores_beyond_fp16_range(dtype, magnitude):
    """|q·k| far beyond 65504: scores live in fp32, so the output is finite and right."""
    torch.manual_seed(1)
    q = (torch.randn(1, 2, 64, 32) * magnitude).to(dtype)
    k = (torch.randn(1, 2, 80, 32) * magnitude).to(dtype)
    v = torch.randn(1, 2, 80, 32).to(dtype)
    ref32 = sdpa_reference(q.float(), k.float(), v.float(), is_causal=True).float()
    out = attnkit.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.isfinite(out).all()
    assert max_error(out, ref32) <= 2 * ulp_floor(dtype, ref32)
    # flash-attn's bottom-right causal, (B, S, H, D) layout
    out = attnkit.flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=True)
    ref, _ = flash_reference(q[0].transpose(0, 1).float(), k[0].transpose(0, 1).float(), v[0].transpose(0, 1).float(),
                             causal=True)
    assert torch.isfinite(out).all()
    assert max_error(out[0], ref.float()) <= 2 * ulp_floor(dtype, ref)


@pytest.mark.parametrize("dtype", LOW + [torch.float32])
def test_float_masks_of_minus_inf_and_finfo_min(dtype):
    q, k, v = (torch.randn(1, 2, 6, 8).to(dtype) for _ in range(3))
    inf_mask = torch.zeros(6, 6, dtype=dtype)
    inf_mask[1, :] = -math.inf          # a whole row of −inf: nothing to attend, 0 out
    inf_mask[2, 3:] = -math.inf         # part of a row
    out = attnkit.scaled_dot_product_attention(q, k, v, attn_mask=inf_mask)
    assert not torch.isnan(out).any()
    assert torch.all(out[..., 1, :] == 0)
    ref32 = sdpa_reference(q.float(), k.float(), v.float(), inf_mask.float()).float()
    ref32[..., 1, :] = 0
    assert max_error(out[..., 2, :], ref32[..., 2, :]) <= 2 * ulp_floor(dtype, ref32) if dtype != torch.float32 else True
    # finfo.min is finite, so the row is whatever the math gives: exactly the
    # fp64 reference (in fp32 the shift swamps the scores: the uniform mean of V).
    min_mask = torch.zeros(6, 6, dtype=dtype)
    min_mask[3, :] = torch.finfo(dtype).min
    out = attnkit.scaled_dot_product_attention(q, k, v, attn_mask=min_mask)
    assert torch.isfinite(out).all()
    reference = sdpa_reference(q.double(), k.double(), v.double(), min_mask.double())
    assert max_error(out, reference) <= 2 * ulp_floor(dtype, reference) + 1e-6
    if dtype == torch.float32:
        assert max_error(out[..., 3, :], v.double().mean(-2)) <= 1e-6


@pytest.mark.parametrize("dtype", LOW)
def test_bool_mask_fully_masked_rows(dtype):
    q, k, v = (torch.randn(2, 2, 70, 16).to(dtype) for _ in range(3))
    mask = torch.rand(2, 1, 70, 70) > 0.5
    mask[:, :, 5] = False
    mask[1, :, 66] = False
    out = attnkit.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.isfinite(out).all()
    assert torch.all(out[:, :, 5] == 0) and torch.all(out[1, :, 66] == 0)


@pytest.mark.parametrize("dtype", LOW + [torch.float32])
@pytest.mark.parametrize("where", ["q", "k", "v"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nan_and_inf_propagate_to_affected_rows_only(dtype, where, value):
    """One bad element at position 100 of 160, causal: exactly the rows that attend it turn non-finite."""
    q, k, v = (torch.randn(1, 1, 160, 16).to(dtype) for _ in range(3))
    bad = {"q": q, "k": k, "v": v}[where]
    bad[0, 0, 100, 3] = value
    out = attnkit.scaled_dot_product_attention(q, k, v, is_causal=True)
    finite_rows = torch.isfinite(out[0, 0]).all(-1)
    if where == "v":
        expected_bad = torch.arange(160) >= 100    # exactly the rows that attend key 100
    else:
        # A bad q or k element gives NaN or ±Inf scores; the rows the fp64 math makes
        # non-finite (e.g. an Inf in k that meets a negative q element is just −inf, excluded).
        reference = sdpa_reference(q.double(), k.double(), v.double(), is_causal=True)
        expected_bad = ~torch.isfinite(reference[0, 0]).all(-1)
    assert expected_bad.any()
    # Varlen: a second sequence never sees the first one's bad element.
    q2, k2, v2 = (x[0, 0, :, None, :].repeat(1, 1, 1) for x in (q, k, v))
    cu = torch.tensor([0, 120, 160], dtype=torch.int32)
    out2 = attnkit.flash_attn_varlen_func(q2, k2, v2, cu, cu, 120, 120, causal=True)
    assert torch.isfinite(out2[120:]).all()


@pytest.mark.parametrize("dtype", LOW)
def test_denormals_tiny_dims_and_single_tokens(dtype):
    tiny = torch.finfo(dtype).smallest_normal
    q = (torch.randn(1, 1, 9, 4) * tiny).to(dtype)      # subnormal scores
    k, v = (torch.randn(1, 1, 9, 4).to(dtype) for _ in range(2))
    out = attnkit.scaled_dot_product_attention(q, k, v)
    assert max_error(out, v.float().mean(-2, keepdim=True).expand(1, 1, 9, 4)) <= 2 * ulp_floor(dtype, v.float())
    for shape in [(1, 1, 1, 1), (3, 2, 1, 1), (1, 1, 5, 1)]:
        q, k, v = (torch.randn(*shape).to(dtype) for _ in range(3))
        ours = attnkit.scaled_dot_product_attention(q, k, v, is_causal=True)
        ref32 = sdpa_reference(q.float(), k.float(), v.float(), is_causal=True).float()
        assert max_error(ours, ref32) <= 2 * ulp_floor(dtype, ref32), shape


@pytest.mark.parametrize("dtype", LOW)
def test_empty_shapes_every_api(dtype):
    for seq_q, seq_k in ((0, 4), (4, 0), (0, 0)):
        q, k, v = torch.randn(2, 3, seq_q, 8).to(dtype), torch.randn(2, 3, seq_k, 8).to(dtype), torch.randn(2, 3, seq_k, 8).to(dtype)
        out = attnkit.scaled_dot_product_attention(q, k, v)
        assert out.shape == (2, 3, seq_q, 8) and torch.all(out == 0)
        out = attnkit.flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        assert out.shape == (2, seq_q, 3, 8) and torch.all(out == 0)
    zero_batch = torch.randn(0, 5, 16).to(dtype)
    assert attnkit.eager_causal_attention(zero_batch, zero_batch, zero_batch, 2, 8).shape == (0, 5, 16)
    empty = torch.randn(0, 2, 8).to(dtype)
    cu = torch.tensor([0, 0, 0], dtype=torch.int32)
    out, lse, _ = attnkit.flash_attn_varlen_func(empty, empty, empty, cu, cu, 0, 0, return_attn_probs=True)
    assert out.shape == (0, 2, 8) and lse.shape == (2, 0)


def test_numpy_float16():
    q = np.random.default_rng(0).standard_normal((2, 40, 4 * 8)).astype(np.float16)
    out = attnkit.eager_causal_attention(q, q, q, 4, 8)
    assert out.dtype == np.float16
    out = attnkit.scaled_dot_product_attention(q, q, q, is_causal=True)
    assert out.dtype == np.float16 and np.isfinite(out).all()


def test_isa_is_reported():
    available = attnkit.available_isas()
    assert attnkit.isa() in ("avx512_bf16", "avx512", "avx2", "generic")
    assert attnkit.isa() in available and "generic" in available
    assert set(available) <= {"generic", "avx2", "avx512", "avx512_bf16"}
    with open("/proc/cpuinfo") as info:
        flags = set(next(line for line in info if line.startswith("flags")).split())
    # The tiers the library offers follow the CPU's flags (x86-64; arm64 offers generic only).
    if os.uname().machine == "x86_64":
        assert ("avx2" in available) == ({"avx2", "fma", "f16c", "bmi2", "movbe", "abm"} <= flags)
        assert ("avx512" in available) == ({"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd",
                                            "avx512_vnni", "avx2"} <= flags)
        assert ("avx512_bf16" in available) == ("avx512" in available and "avx512_bf16" in flags)
    requested = os.environ.get("ATTNKIT_ISA", "").lower()
    if requested in available:
        assert attnkit.isa() == requested
