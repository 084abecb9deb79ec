"""int8_scaled_dot_product_attention (issue: int8 paths), docs/semantics.md §5: cosine >= 0.999
and relative L1 <= 0.03 against the fp32 result, on N(0,1) inputs and on K with a large
per-channel offset, causal and masked, GQA, every qk_quant mode."""
import itertools
import os
import subprocess
import sys

import pytest
import torch

import attnkit
from conftest import sdpa_reference

MIN_COSINE = 0.999
MAX_RELATIVE_L1 = 0.03
# Largest |difference| / max(1, max |reference|) that fp16 P·V may add: P and V are rounded
# to fp16 and each lane sums a tile's products (up to 64) in fp16, each addition off by up to
# 2^-11 of a partial sum that can reach the tile's Σp·|v|; with N(0,1) values that is ~2e-3
# typically and stays below 1e-2.
FP16_PV_ERROR = 1e-2
MODES = ["per_block", "per_token", "per_tensor"]


def accuracy(actual, reference):
    a, b = actual.double().flatten(), reference.double().flatten()
    cosine = (a @ b / (a.norm() * b.norm())).item()
    relative_l1 = ((a - b).abs().sum() / b.abs().sum()).item()
    return cosine, relative_l1


CASES = list(itertools.product(MODES, [False, True], ["normal", "offset"], ["none", "causal", "bool", "float"],
                               [(4, 4), (8, 2), (4, 1)]))


@pytest.mark.parametrize("mode,smooth,distribution,mask_kind,heads", CASES)
def test_int8_accuracy(mode, smooth, distribution, mask_kind, heads):
    torch.manual_seed(hash((mode, smooth, distribution, mask_kind, heads)) % 1000)
    heads_q, heads_k = heads
    q = torch.randn(2, heads_q, 150, 64)
    k = torch.randn(2, heads_k, 170, 64)
    v = torch.randn(2, heads_k, 170, 64)
    if distribution == "offset":
        k = k + torch.randn(1, heads_k, 1, 64) * 8    # a large per-channel offset: what smoothing is for
    mask = None
    if mask_kind == "bool":
        mask = torch.rand(150, 170) > 0.3
    elif mask_kind == "float":
        mask = torch.randn(2, 1, 150, 170)
    kwargs = dict(attn_mask=mask, is_causal=mask_kind == "causal", enable_gqa=heads_q != heads_k)
    out = attnkit.int8_scaled_dot_product_attention(q, k, v, qk_quant=mode, smooth_k=smooth, **kwargs)
    reference = sdpa_reference(q, k, v, mask, kwargs["is_causal"], None, kwargs["enable_gqa"])
    ours32 = attnkit.scaled_dot_product_attention(q, k, v, **kwargs)
    label = f"{mode} smooth={smooth} {distribution} {mask_kind} H{heads}"
    if distribution == "offset" and not smooth:
        # The case smoothing exists for: without it the offset eats the int8 range
        # (cosine about 0.9985, rel L1 about 0.05 here), so the bar is promised only
        # with smooth_k=True, the default. Smoothing must still not hurt:
        cosine, _ = accuracy(out, reference)
        assert cosine >= 0.99, label
        return
    for name, target in (("fp64 reference", reference), ("attnkit fp32", ours32)):
        cosine, relative_l1 = accuracy(out, target)
        assert cosine >= MIN_COSINE and relative_l1 <= MAX_RELATIVE_L1, \
            f"{label} vs {name}: cosine {cosine:.5f}, rel L1 {relative_l1:.4f}"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_int8_low_precision_inputs(dtype):
    q, k, v = (torch.randn(1, 4, 100, 32).to(dtype) for _ in range(3))
    out = attnkit.int8_scaled_dot_product_attention(q, k, v, is_causal=True)
    assert out.dtype == dtype
    cosine, relative_l1 = accuracy(out, sdpa_reference(q.float(), k.float(), v.float(), is_causal=True))
    assert cosine >= MIN_COSINE and relative_l1 <= MAX_RELATIVE_L1


def test_int8_rows_with_nothing_to_attend_and_nan():
    q, k, v = (torch.randn(1, 2, 70, 16) for _ in range(3))
    mask = torch.ones(70, 70, dtype=torch.bool)
    mask[3] = False
    out = attnkit.int8_scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.all(out[..., 3, :] == 0) and torch.isfinite(out).all()
    q[0, 0, 5, 2] = float("nan")
    out = attnkit.int8_scaled_dot_product_attention(q, k, v)
    assert torch.isnan(out[0, 0, 5]).all() and torch.isfinite(out[0, 0, :5]).all() and torch.isfinite(out[0, 1]).all()


@pytest.mark.parametrize(
    "kwargs,error,pattern",
    [
        (dict(qk_quant="per_row"), ValueError, r"qk_quant must be one of"),
        (dict(query=torch.randn(1, 2, 8, 16).double(), key=torch.randn(1, 2, 8, 16).double(),
              value=torch.randn(1, 2, 8, 16).double()), TypeError, r"query\.dtype must be f32 or f16 or bf16"),
        (dict(key=torch.randn(1, 3, 8, 16), value=torch.randn(1, 3, 8, 16)), ValueError, r"key\.shape\[-3\] must equal"),
        (dict(attn_mask=torch.ones(8, 8, dtype=torch.bool), is_causal=True), ValueError, r"attn_mask must be None"),
    ],
)
def test_int8_errors(kwargs, error, pattern):
    args = dict(query=torch.randn(1, 2, 8, 16), key=torch.randn(1, 2, 8, 16), value=torch.randn(1, 2, 8, 16))
    args.update(kwargs)
    with pytest.raises(error, match=pattern):
        attnkit.int8_scaled_dot_product_attention(**args)


# ---- varlen int8 mode and the pre-quantized entry ----

def packed_batch(generator, lengths_q=(5, 0, 130, 64), lengths_k=(9, 3, 0, 200), heads=(4, 2), dim=64, offset=6.0):
    cu_q = torch.tensor([0] + list(itertools.accumulate(lengths_q)), dtype=torch.int32)
    cu_k = torch.tensor([0] + list(itertools.accumulate(lengths_k)), dtype=torch.int32)
    q = torch.randn(int(cu_q[-1]), heads[0], dim, generator=generator)
    k = torch.randn(int(cu_k[-1]), heads[1], dim, generator=generator) + torch.randn(1, heads[1], dim, generator=generator) * offset
    v = torch.randn(int(cu_k[-1]), heads[1], dim, generator=generator)
    return q, k, v, cu_q, cu_k, max(lengths_q), max(lengths_k)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("features", [dict(), dict(causal=True), dict(window_size=(20, 5)),
                                      dict(causal=True, alibi_slopes=torch.rand(4) * 0.2),
                                      dict(softcap=5.0, smooth_k=False)])
def test_int8_varlen_accuracy_and_lse(mode, features):
    generator = torch.Generator().manual_seed(7)
    features = dict(features)   # parametrize shares the dict between cases
    smooth = features.pop("smooth_k", True)
    # Without smoothing (softcap forbids it) a large per-channel K offset is the known bad case.
    q, k, v, cu_q, cu_k, max_q, max_k = packed_batch(generator, offset=6.0 if smooth else 0.0)
    reference, ref_lse, _ = attnkit.flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, return_attn_probs=True,
                                                          **features)
    out, lse, _ = attnkit.int8_flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, qk_quant=mode, smooth_k=smooth,
                                                     return_attn_probs=True, **features)
    cosine, relative_l1 = accuracy(out, reference)
    assert cosine >= MIN_COSINE and relative_l1 <= MAX_RELATIVE_L1, f"{mode} {features}: {cosine:.5f} {relative_l1:.4f}"
    assert torch.equal(torch.isinf(lse), torch.isinf(ref_lse))
    finite = torch.isfinite(ref_lse)
    assert (lse[finite] - ref_lse[finite]).abs().max().item() < 0.05   # the true logits' lse, smoothing undone


def test_int8_varlen_rejects_smoothing_with_softcap():
    generator = torch.Generator().manual_seed(1)
    q, k, v, cu_q, cu_k, max_q, max_k = packed_batch(generator)
    with pytest.raises(ValueError, match="smooth_k must be False with softcap > 0"):
        attnkit.int8_flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, softcap=3.0)


def quantize_symmetric(x):
    """Per (row, head) symmetric int8, as a caller's KV cache would hold it."""
    scale = x.abs().amax(-1) / 127
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.clamp(torch.round(x / scale[..., None]), -127, 127).to(torch.int8), scale.float()


@pytest.mark.parametrize("features", [dict(causal=False), dict(causal=True), dict(window_size=(37, 3)),
                                      dict(causal=True, window_size=(20, -1))])
def test_prequantized_entry_is_exact_on_its_values(features):
    """Given int8 values and scales, the result is attention on scale·int8 in fp32: the int8
    QKᵀ is exact, so only fp32 rounding separates the two (and fp16 rounding where P·V is
    fp16; test.sh also runs this file with ATTNKIT_INT8_PV=fp32)."""
    generator = torch.Generator().manual_seed(3)
    q, k, v, cu_q, cu_k, max_q, max_k = packed_batch(generator)
    q8, q_scale = quantize_symmetric(q)
    k8, k_scale = quantize_symmetric(k)
    # Windows start blocks at odd keys, so a block's first key is not a tile's.
    out, lse, _ = attnkit.flash_attn_varlen_int8_func(q8, q_scale, k8, k_scale, v, cu_q, cu_k, max_q, max_k,
                                                      return_attn_probs=True, **features)
    dequantized_q, dequantized_k = q8.float() * q_scale[..., None], k8.float() * k_scale[..., None]
    reference, ref_lse, _ = attnkit.flash_attn_varlen_func(dequantized_q, dequantized_k, v, cu_q, cu_k, max_q, max_k,
                                                          return_attn_probs=True, **features)
    tolerance = FP16_PV_ERROR if attnkit.int8_pv_dtype() == "float16" else 1e-5
    assert (out - reference).abs().max().item() <= tolerance * max(1.0, reference.abs().max().item())
    finite = torch.isfinite(ref_lse)
    assert torch.equal(finite, torch.isfinite(lse))
    assert (lse[finite] - ref_lse[finite]).abs().max().item() <= 1e-4
    # ... and it matches the on-the-fly path, which quantizes to the same values per token.
    on_the_fly = attnkit.int8_flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, qk_quant="per_token",
                                                     smooth_k=False, **features)
    assert (out - on_the_fly).abs().max().item() <= 2e-3


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_value_reaches_only_the_rows_that_see_its_key(bad):
    """A NaN or Inf in one V row turns exactly the output rows whose window holds that key into
    NaN/Inf, in either P·V mode: a key that a block's rows exclude (before an odd window start)
    must not leak 0·NaN into them."""
    generator = torch.Generator().manual_seed(5)
    q, k, v, cu_q, cu_k, max_q, max_k = packed_batch(generator, lengths_q=(130,), lengths_k=(200,), offset=0.0)
    for key in (73, 127, 128):   # one inside a tile, the key just before a tile, the first of a tile
        poisoned = v.clone()
        poisoned[key, 0, 5] = bad
        for features in (dict(window_size=(37, 3)), dict(window_size=(0, 0)), dict(causal=True)):
            out = attnkit.int8_flash_attn_varlen_func(q, k, poisoned, cu_q, cu_k, max_q, max_k, **features)
            reference = attnkit.flash_attn_varlen_func(q, k, poisoned, cu_q, cu_k, max_q, max_k, **features)
            assert torch.equal(torch.isfinite(out), torch.isfinite(reference)), (key, features)
            assert 0 < (~torch.isfinite(reference)).sum() < reference.numel(), (key, features)
            finite = torch.isfinite(reference)
            assert accuracy(out[finite], reference[finite])[0] >= MIN_COSINE
    # Under window (37, 3) row i sees keys i+33 ..= i+73, so no row sees key 32, the key just
    # before the first one any block reads.
    poisoned = v.clone()
    poisoned[32, 1, 0] = bad
    out = attnkit.int8_flash_attn_varlen_func(q, k, poisoned, cu_q, cu_k, max_q, max_k, window_size=(37, 3))
    assert torch.isfinite(out).all()


def test_prequantized_entry_takes_broadcast_scales_and_bf16_values():
    generator = torch.Generator().manual_seed(4)
    q, k, v, cu_q, cu_k, max_q, max_k = packed_batch(generator)
    tensor_scale_q, tensor_scale_k = q.abs().max() / 127, k.abs().max() / 127
    q8 = torch.clamp(torch.round(q / tensor_scale_q), -127, 127).to(torch.int8)
    k8 = torch.clamp(torch.round(k / tensor_scale_k), -127, 127).to(torch.int8)
    q_scale = tensor_scale_q.reshape(1, 1).expand(q.shape[0], q.shape[1])     # per tensor: a stride-0 view
    k_scale = tensor_scale_k.reshape(1, 1).expand(k.shape[0], k.shape[1])
    out = attnkit.flash_attn_varlen_int8_func(q8, q_scale, k8, k_scale, v.to(torch.bfloat16), cu_q, cu_k, max_q, max_k)
    assert out.dtype == torch.bfloat16
    reference = attnkit.flash_attn_varlen_func(q8.float() * tensor_scale_q, k8.float() * tensor_scale_k,
                                               v.to(torch.bfloat16).float(), cu_q, cu_k, max_q, max_k)
    cosine, relative_l1 = accuracy(out, reference)
    assert cosine >= 0.9999 and relative_l1 <= 0.01
    with pytest.raises(TypeError, match=r"q_int8\.dtype must be i8"):
        attnkit.flash_attn_varlen_int8_func(q, q_scale, k8, k_scale, v, cu_q, cu_k, max_q, max_k)


PV_SCRIPT = r"""
import sys, torch, attnkit
cases = torch.load(sys.argv[1])
outs = [attnkit.int8_scaled_dot_product_attention(c["q"], c["k"], c["v"], attn_mask=c["mask"], is_causal=c["causal"],
                                                  enable_gqa=c["gqa"], qk_quant=c["mode"]) for c in cases]
torch.save((attnkit.int8_pv_dtype(), outs), sys.argv[2])
"""


def test_int8_pv_dtype_follows_the_cpu_and_the_environment():
    with open("/proc/cpuinfo") as info:
        has_fp16 = " avx512_fp16" in info.read()
    fp16 = has_fp16 and attnkit.isa() in ("avx512", "avx512_bf16") and os.environ.get("ATTNKIT_INT8_PV", "").lower() != "fp32"
    assert attnkit.int8_pv_dtype() == ("float16" if fp16 else "float32")


def test_the_other_pv_mode_keeps_the_accuracy_bars(tmp_path):
    """The int8 accuracy cases under the P·V mode this process does not run (ATTNKIT_INT8_PV
    =fp32 or fp16), in a child process since the mode is read once per process."""
    cases = []
    for index, (mode, distribution, mask_kind, (heads_q, heads_k)) in enumerate(
            itertools.product(MODES, ["normal", "offset"], ["none", "causal", "bool"], [(4, 4), (8, 2)])):
        torch.manual_seed(index)
        q, k, v = torch.randn(2, heads_q, 150, 64), torch.randn(2, heads_k, 170, 64), torch.randn(2, heads_k, 170, 64)
        if distribution == "offset":
            k = k + torch.randn(1, heads_k, 1, 64) * 8
        mask = torch.rand(150, 170) > 0.3 if mask_kind == "bool" else None
        cases.append(dict(q=q, k=k, v=v, mask=mask, causal=mask_kind == "causal", gqa=heads_q != heads_k, mode=mode,
                          label=f"{mode} {distribution} {mask_kind} H{heads_q}/{heads_k}"))
    torch.save(cases, tmp_path / "cases.pt")
    env = dict(os.environ, ATTNKIT_INT8_PV="fp32" if attnkit.int8_pv_dtype() == "float16" else "fp16")
    subprocess.run([sys.executable, "-c", PV_SCRIPT, str(tmp_path / "cases.pt"), str(tmp_path / "outs.pt")],
                   env=env, check=True)
    child_dtype, outs = torch.load(tmp_path / "outs.pt")
    for case, out in zip(cases, outs):
        kwargs = dict(attn_mask=case["mask"], is_causal=case["causal"], enable_gqa=case["gqa"])
        reference = sdpa_reference(case["q"], case["k"], case["v"], case["mask"], case["causal"], None, case["gqa"])
        cosine, relative_l1 = accuracy(out, reference)
        assert cosine >= MIN_COSINE and relative_l1 <= MAX_RELATIVE_L1, \
            f"{case['label']}: cosine {cosine:.5f}, rel L1 {relative_l1:.4f}"
        here = attnkit.int8_scaled_dot_product_attention(case["q"], case["k"], case["v"], qk_quant=case["mode"], **kwargs)
        # The two modes differ only by fp16 rounding, and only where one of them is fp16.
        assert (out - here).abs().max().item() <= FP16_PV_ERROR * max(1.0, here.abs().max().item()), case["label"]
        assert torch.equal(out, here) == (child_dtype == attnkit.int8_pv_dtype()), case["label"]
