"""flash_attn_with_kvcache and merge_attention_states (issue: decoding with a KV cache).

The reference rebuilds each sequence's keys and values from the cache (after its
own append, with rotary done in fp32 as flash-attn does), then attends with
flash-attn's semantics in fp64 (conftest.flash_reference). fp32 is held to the
fp32 tolerance; fp16/bf16 to the accuracy rule: our error against the same math
in fp32 is at most torch's in the dtype itself (or one ulp)."""
import itertools
import math

import numpy as np
import pytest
import torch

import attnkit
from conftest import FP32_RELATIVE_TOLERANCE, flash_reference, max_error
from test_lowp import flash_in_dtype, ulp_floor


def rotary_tables(seqlen, rotary_dim, dtype):
    inverse = 1.0 / (10000 ** (torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim))
    angles = torch.arange(seqlen, dtype=torch.float64)[:, None] * inverse[None]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate(x, cos, sin, positions, interleaved):
    """x (..., S, H, D) rotated at positions (S,), in fp32 (x·cos − y·sin, x·sin + y·cos), back to x's dtype."""
    half = cos.shape[1]
    rotary_dim = 2 * half
    out = x.float().clone()
    c, s = cos.float()[positions][:, None, :], sin.float()[positions][:, None, :]
    if interleaved:
        first, second = out[..., 0:rotary_dim:2].clone(), out[..., 1:rotary_dim:2].clone()
        out[..., 0:rotary_dim:2] = first * c - second * s
        out[..., 1:rotary_dim:2] = first * s + second * c
    else:
        first, second = out[..., :half].clone(), out[..., half:rotary_dim].clone()
        out[..., :half] = first * c - second * s
        out[..., half:rotary_dim] = first * s + second * c
    return out.to(x.dtype)


def positions_of(page_size, table_row, positions):
    """(page, offset) of cache positions in a paged cache, or None."""
    return [(table_row[p // page_size], p % page_size) for p in positions]


def reference(q, k_cache, v_cache, k, v, cos, sin, seqlens, batch_idx, leftpad, table, causal, window, softcap,
              interleaved, slopes):
    """Expected caches after the append, and per sequence the (q, K, V) attention sees."""
    k_cache, v_cache = k_cache.clone(), v_cache.clone()
    batch, queries = q.shape[0], q.shape[1]
    new = 0 if k is None else k.shape[1]
    local = causal or window != (-1, -1)
    sequences = []
    for b in range(batch):
        start, length = seqlens[b], seqlens[b] + new
        where = positions_of(k_cache.shape[1], table[b], range(length)) if table is not None else \
            [(batch_idx[b] if batch_idx is not None else b, p) for p in range(length)]
        if new:
            k_new = k[b]
            if cos is not None:
                k_new = rotate(k_new[None], cos, sin, torch.arange(start, length), interleaved)[0]
            for t in range(new):
                slot, offset = where[start + t]
                k_cache[slot, offset] = k_new[t]
                v_cache[slot, offset] = v[b, t]
        first = leftpad[b] if leftpad is not None else 0
        keys = torch.stack([k_cache[s, o] for s, o in where[first:]]) if length > first else \
            k_cache.new_zeros(0, *k_cache.shape[2:])
        values = torch.stack([v_cache[s, o] for s, o in where[first:]]) if length > first else \
            v_cache.new_zeros(0, *v_cache.shape[2:])
        q_b = q[b]
        if new and cos is not None:
            q_positions = torch.arange(start, start + queries) if local else torch.full((queries,), start)
            q_b = rotate(q_b[None], cos, sin, q_positions, interleaved)[0]
        sequences.append((q_b, keys, values))
    return k_cache, v_cache, sequences


def make_case(dtype, batch=3, queries=1, heads_k=2, group=4, dim=64, capacity=80, lengths=(0, 37, 65), new=1,
              page_size=None, rotary_dim=0, interleaved=True, batch_idx=False, leftpad=False, seed=0):
    generator = torch.Generator().manual_seed(seed)
    heads_q = heads_k * group

    def randn(*shape):
        return torch.randn(*shape, generator=generator).to(dtype)

    q = randn(batch, queries, heads_q, dim)
    k = randn(batch, new, heads_k, dim) if new else None
    v = randn(batch, new, heads_k, dim) if new else None
    lengths = [lengths[b % len(lengths)] for b in range(batch)]
    table = None
    if page_size:
        pages_per_sequence = (capacity + page_size - 1) // page_size
        blocks = batch * pages_per_sequence + 3
        permutation = torch.randperm(blocks, generator=generator)[:batch * pages_per_sequence]
        table = permutation.reshape(batch, pages_per_sequence).to(torch.int32)
        k_cache, v_cache = randn(blocks, page_size, heads_k, dim), randn(blocks, page_size, heads_k, dim)
    else:
        slots = batch + 2 if batch_idx else batch
        k_cache, v_cache = randn(slots, capacity, heads_k, dim), randn(slots, capacity, heads_k, dim)
    index = torch.randperm(batch + 2, generator=generator)[:batch].to(torch.int32) if batch_idx else None
    pad = torch.tensor([min(3, n) for n in lengths], dtype=torch.int32) if leftpad else None
    cos = sin = None
    if rotary_dim:
        cos, sin = rotary_tables(capacity + queries, rotary_dim, dtype)
    return dict(q=q, k_cache=k_cache, v_cache=v_cache, k=k, v=v, rotary_cos=cos, rotary_sin=sin,
                cache_seqlens=torch.tensor(lengths, dtype=torch.int32), cache_batch_idx=index, cache_leftpad=pad,
                block_table=table, rotary_interleaved=interleaved)


def check(case, dtype, causal=False, window=(-1, -1), softcap=0.0, slopes=None, num_splits=0):
    before_k, before_v = case["k_cache"].clone(), case["v_cache"].clone()
    out, lse = attnkit.flash_attn_with_kvcache(**case, causal=causal, window_size=window, softcap=softcap,
                                               alibi_slopes=slopes, num_splits=num_splits, return_softmax_lse=True)
    seqlens = case["cache_seqlens"].tolist()
    expected_k, expected_v, sequences = reference(
        case["q"], before_k, before_v, case["k"], case["v"], case["rotary_cos"], case["rotary_sin"], seqlens,
        None if case["cache_batch_idx"] is None else case["cache_batch_idx"].tolist(),
        None if case["cache_leftpad"] is None else case["cache_leftpad"].tolist(),
        None if case["block_table"] is None else case["block_table"].tolist(),
        causal, window, softcap, case["rotary_interleaved"], slopes)
    # The append is exact: every cache element equals the reference's bits.
    assert torch.equal(case["k_cache"], expected_k) and torch.equal(case["v_cache"], expected_v)
    for b, (q_b, keys, values) in enumerate(sequences):
        slope_b = None if slopes is None else (slopes if slopes.ndim == 1 else slopes[b])
        ref, ref_lse = flash_reference(q_b, keys, values, causal=causal, window=window, softcap=softcap, slopes=slope_b)
        finite = torch.isfinite(ref_lse)
        assert torch.equal(torch.isinf(lse[b].double()), ~finite), f"empty rows of sequence {b}"
        assert max_error(lse[b].double()[finite], ref_lse[finite]) <= 1e-4 * max(1.0, ref_lse[finite].abs().max().item()
                                                                                   if finite.any() else 0.0)
        if dtype == torch.float32:
            bound = FP32_RELATIVE_TOLERANCE * max(1.0, ref.abs().max().item() if ref.numel() else 0.0)
            assert max_error(out[b], ref) <= bound, f"sequence {b}"
        else:
            ref32 = flash_reference(q_b.float(), keys.float(), values.float(), causal=causal, window=window,
                                    softcap=softcap, slopes=slope_b)[0].float()
            theirs = flash_in_dtype(q_b, keys, values, causal, window, softcap,
                                    None if slope_b is None else slope_b) if keys.shape[0] else torch.zeros_like(ref32)
            ours_error = max_error(out[b], ref32)
            bound = max(max_error(theirs, ref32), ulp_floor(dtype, ref32))
            assert ours_error <= bound, f"sequence {b}: ours {ours_error:.3e} > {bound:.3e}"
    return out, lse


DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("queries,group,causal", list(itertools.product([1, 2, 7], [1, 4, 8], [False, True])))
def test_decode_parity_contiguous(dtype, queries, group, causal):
    case = make_case(dtype, queries=queries, group=group, heads_k=8 // group if group < 8 else 1,
                     lengths=(0, 1, 63, 64, 65), batch=5, capacity=80)
    check(case, dtype, causal=causal)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("page_size", [1, 16, 256])
def test_decode_parity_paged(dtype, page_size):
    case = make_case(dtype, batch=4, queries=2, lengths=(0, 63, 64, 1000), capacity=1040, page_size=page_size)
    check(case, dtype, causal=True)


@pytest.mark.parametrize("interleaved", [True, False])
@pytest.mark.parametrize("rotary_dim,causal", [(64, True), (32, False), (16, True)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_decode_rotary(dtype, rotary_dim, causal, interleaved):
    case = make_case(dtype, queries=2, new=2, rotary_dim=rotary_dim, interleaved=interleaved)
    check(case, dtype, causal=causal)


@pytest.mark.parametrize("dtype", DTYPES)
def test_decode_window_softcap_alibi_leftpad_batch_idx(dtype):
    slopes = torch.tensor([0.5 ** (h + 1) for h in range(8)], dtype=torch.float32)
    for window, softcap, use_slopes, extra in [((16, 0), 0.0, False, {}), ((-1, -1), 5.0, False, {"leftpad": True}),
                                               ((8, -1), 0.0, True, {"batch_idx": True}),
                                               ((-1, -1), 0.0, True, {"leftpad": True, "batch_idx": True})]:
        case = make_case(dtype, queries=3, lengths=(5, 40, 70), **extra)
        check(case, dtype, causal=True, window=window, softcap=softcap, slopes=slopes if use_slopes else None)


def test_decode_long_cache_splits_and_determinism():
    case = make_case(torch.float32, batch=2, queries=1, heads_k=2, group=4, dim=128, capacity=5000, lengths=(4000, 1234))
    first_k, first_v = case["k_cache"].clone(), case["v_cache"].clone()
    outs = []
    for threads, splits in [(1, 0), (2, 0), (2, 0), (2, 3), (1, 3)]:
        case["k_cache"].copy_(first_k)
        case["v_cache"].copy_(first_v)
        previous = attnkit.get_num_threads()
        attnkit.set_num_threads(threads)
        try:
            outs.append(check(case, torch.float32, causal=True, num_splits=splits))
        finally:
            attnkit.set_num_threads(previous)
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[1][0], outs[2][0]), "thread count changed the bits"
    assert torch.equal(outs[3][0], outs[4][0]), "thread count changed the bits with num_splits=3"


def test_no_new_tokens_and_cache_seqlens_forms():
    case = make_case(torch.float32, new=0, lengths=(10, 20, 30))
    check(case, torch.float32)
    as_int = dict(case, cache_seqlens=20)
    out = attnkit.flash_attn_with_kvcache(**as_int)
    as_list = dict(case, cache_seqlens=[20, 20, 20])
    assert torch.equal(out, attnkit.flash_attn_with_kvcache(**as_list))


BAD = [
    ("cache full", dict(cache_seqlens=torch.tensor([80, 0, 0], dtype=torch.int32)), "cache_seqlens"),
    ("negative length", dict(cache_seqlens=torch.tensor([-1, 0, 0], dtype=torch.int32)), "cache_seqlens"),
    ("batch_idx out of range", dict(cache_batch_idx=torch.tensor([0, 1, 9], dtype=torch.int32)), "cache_batch_idx"),
    ("leftpad past the cache", dict(cache_leftpad=torch.tensor([0, 50, 0], dtype=torch.int32)), "cache_leftpad"),
    ("rotary too short", dict(rotary_cos=torch.ones(4, 8), rotary_sin=torch.ones(4, 8)), "rotary_cos"),
    ("k dtype", dict(k=torch.zeros(3, 1, 2, 64, dtype=torch.float64)), "k"),
    ("only k", dict(v=None), "v"),
]


@pytest.mark.parametrize("label,change,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_input_leaves_the_cache_untouched(label, change, needle):
    case = make_case(torch.float32, lengths=(10, 20, 30))
    case.update(change)
    before_k, before_v = case["k_cache"].clone(), case["v_cache"].clone()
    with pytest.raises((ValueError, TypeError)) as error:
        attnkit.flash_attn_with_kvcache(**case)
    assert needle in str(error.value), str(error.value)
    assert torch.equal(case["k_cache"], before_k) and torch.equal(case["v_cache"], before_v)


def test_paged_bad_input():
    case = make_case(torch.float32, page_size=16, lengths=(10, 20, 30))
    table = case["block_table"].clone()
    table[1, 1] = table[1, 0]
    with pytest.raises(ValueError, match="block_table"):
        attnkit.flash_attn_with_kvcache(**dict(case, block_table=table))
    table = case["block_table"].clone()
    table[2, 0] = 10_000
    with pytest.raises(ValueError, match="block_table"):
        attnkit.flash_attn_with_kvcache(**dict(case, block_table=table))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("varlen", [False, True])
def test_merge_attention_states_equals_attention_over_the_union(dtype, varlen):
    torch.manual_seed(0)
    q, k, v = torch.randn(7, 4, 32, dtype=dtype), torch.randn(50, 2, 32, dtype=dtype), torch.randn(50, 2, 32, dtype=dtype)
    parts = []
    for keys in (slice(0, 20), slice(20, 50), slice(50, 50)):   # the last part is empty
        out, lse = flash_reference(q, k[keys], v[keys])
        parts.append((out.to(dtype), lse.transpose(0, 1).contiguous().float().t()))   # lse (H, T)
    whole, whole_lse = flash_reference(q, k, v)
    out, lse = parts[0]
    for other in parts[1:]:
        a, la = (out, lse) if varlen else (out[None], lse[None])   # (B, S, H, D) with (B, H, S)
        b, lb = (other[0], other[1]) if varlen else (other[0][None], other[1][None])
        merged, merged_lse = attnkit.merge_attention_states(a, la, b, lb)
        out, lse = (merged, merged_lse) if varlen else (merged[0], merged_lse[0])
    # lse is fp32 (as flash-attn's), so even fp64 outputs merge with fp32 weights: 4 ulp of fp32.
    tolerance = {torch.float32: 1e-5, torch.float64: 4 * 2.0**-23, torch.float16: 2e-3}[dtype]
    assert max_error(out, whole) <= tolerance * max(1.0, whole.abs().max().item())
    assert max_error(lse.double(), whole_lse) <= 1e-5 * max(1.0, whole_lse.abs().max().item())
    empty_a = torch.zeros(7, 4, 32, dtype=dtype), torch.full((4, 7), math.inf)
    both_empty = attnkit.merge_attention_states(*empty_a, *empty_a)
    assert torch.equal(both_empty[0], torch.zeros(7, 4, 32, dtype=dtype)) and torch.isinf(both_empty[1]).all()


def test_merge_attention_states_in_place_matches_a_fresh_output():
    """attn_merge_attention_states may write into out_a / lse_a (the header allows it): a
    running state merged in place, on strided views, gives the bits of a fresh output."""
    from attnkit import _attnkit

    torch.manual_seed(1)
    out_a, out_b = torch.randn(2, 9, 3, 16), torch.randn(2, 9, 3, 16)
    lse_a, lse_b = torch.randn(2, 3, 9), torch.randn(2, 3, 9)
    lse_a[0, 1, 2] = math.inf      # an empty row on one side
    fresh_out, fresh_lse = attnkit.merge_attention_states(out_a, lse_a, out_b, lse_b)
    big_out, big_lse = torch.zeros(2, 20, 3, 16), torch.zeros(2, 3, 20)
    view_out, view_lse = big_out[:, 5:14], big_lse[:, :, 5:14]     # strided views into a larger state
    view_out.copy_(out_a)
    view_lse.copy_(lse_a)
    _attnkit.merge_attention_states(view_out, view_lse, out_b, lse_b, view_out, view_lse)
    assert torch.equal(view_out, fresh_out) and torch.equal(view_lse, fresh_lse)


def quantize_rows(x):
    """Symmetric int8 per (…, head) row: levels and fp32 scales = absmax/127 (1 for zero rows)."""
    scale = x.abs().amax(-1) / 127
    scale = torch.where(scale == 0, torch.ones_like(scale), scale).float()
    levels = torch.round(x.float() / scale[..., None]).clamp(-127, 127).to(torch.int8)
    return levels, scale


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("paged,rotary_dim", [(False, 0), (True, 32), (False, 64)])
def test_int8_cache(dtype, paged, rotary_dim):
    case = make_case(dtype, batch=3, queries=2, new=2, lengths=(0, 37, 65), page_size=16 if paged else None,
                     rotary_dim=rotary_dim, interleaved=False)
    k_levels, k_scale = quantize_rows(case["k_cache"])
    v_levels, v_scale = quantize_rows(case["v_cache"])
    int8_case = dict(case, k_cache=k_levels.clone(), v_cache=v_levels.clone())
    out, lse = attnkit.flash_attn_with_kvcache(**int8_case, k_scale=k_scale, v_scale=v_scale, causal=True,
                                               return_softmax_lse=True)
    # The append: each new row, rotated in fp32 as flash-attn does, within half a step of its dequantized value.
    seqlens = case["cache_seqlens"].tolist()
    table = None if case["block_table"] is None else case["block_table"].tolist()
    for b in range(3):
        k_new = case["k"][b]
        if rotary_dim:
            k_new = rotate(k_new[None].float(), case["rotary_cos"], case["rotary_sin"],
                           torch.arange(seqlens[b], seqlens[b] + 2), False)[0]
        for t in range(2):
            position = seqlens[b] + t
            slot, offset = (table[b][position // 16], position % 16) if table else (b, position)
            for cache, scale, new in ((int8_case["k_cache"], k_scale, k_new[t]), (int8_case["v_cache"], v_scale, case["v"][b, t])):
                got = cache[slot, offset].double() * scale[slot, offset][:, None].double()
                step = new.float().abs().amax(-1).double() / 127
                # Half a step, plus fp32's rounding of x/scale (a tie can round either way).
                assert ((got - new.double()).abs() <= step[:, None] / 2 + new.double().abs() * 2.0**-21).all()
    # Attention over the dequantized cache, in fp64, as flash attention.
    dequantized = dict(case, k_cache=(int8_case["k_cache"].double() * k_scale[..., None]),
                       v_cache=(int8_case["v_cache"].double() * v_scale[..., None]), k=None, v=None)
    _, _, sequences = reference(case["q"], dequantized["k_cache"], dequantized["v_cache"], None, None, None, None,
                                [n + 2 for n in seqlens], None, None, table, True, (-1, -1), 0.0, False, None)
    for b, (q_b, keys, values) in enumerate(sequences):
        if rotary_dim:
            q_b = rotate(case["q"][b][None], case["rotary_cos"], case["rotary_sin"],
                         torch.arange(seqlens[b], seqlens[b] + 2), False)[0]
        ref, ref_lse = flash_reference(q_b, keys, values, causal=True)
        bound = (FP32_RELATIVE_TOLERANCE if dtype == torch.float32 else ULP_BOUND[dtype]) * max(1.0, ref.abs().max().item())
        assert max_error(out[b], ref) <= bound, f"sequence {b}: {max_error(out[b], ref):.3e}"
        assert max_error(lse[b].double(), ref_lse) <= 1e-4 * max(1.0, ref_lse.abs().max().item())


# Output rounding of the low-precision dtypes (the cache is int8 either way): one ulp at 1.
ULP_BOUND = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}
