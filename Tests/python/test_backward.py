"""The backward pass: gradcheck in fp64, gradients against an fp64 autograd reference with the
accuracy rule against torch, determinism, rows with nothing to attend, and the forward-only paths."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import attnkit
from conftest import flash_allowed, flash_reference, max_error, sdpa_reference

# fp32 gradients: within this much of the fp64 reference, relative to max(1, max|reference|)
# (the forward's fp32 rule, docs/semantics.md §6, applied to each gradient).
FP32_GRADIENT_TOLERANCE = 1e-5
LOW_PRECISION = [torch.float16, torch.bfloat16]
ULP_AT_ONE = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}


def ulp_floor(dtype, reference):
    """One ulp of `dtype` at the reference's largest magnitude (test_lowp.py's floor)."""
    magnitude = reference.abs().max().item() if reference.numel() else 0.0
    return ULP_AT_ONE[dtype] * 2.0 ** math.floor(math.log2(max(magnitude, 2.0**-14)))


def assert_gradient_rule(name, dtype, mine, torchs, exact):
    """fp32: the fp32 rule. fp16/bf16: the accuracy rule of test_lowp.py, per gradient: our max
    error against the fp64 reference on the same rounded inputs is at most torch's in the same
    dtype, or one ulp of the dtype at the gradient's magnitude (both round one fp32 sum per
    element, so which of them lands the last ulp on the far side is luck)."""
    error, torch_error = max_error(mine, exact), max_error(torchs, exact)
    if dtype == torch.float32:
        bound = FP32_GRADIENT_TOLERANCE * max(1.0, exact.abs().max().item())
    else:
        bound = max(torch_error, ulp_floor(dtype, exact))
    assert error <= bound, f"d{name} {dtype}: attnkit {error:.3e} > {bound:.3e} (torch {torch_error:.3e})"


def _leaves(*tensors, dtype=torch.float64):
    return [t.detach().to(dtype).requires_grad_() for t in tensors]


def _gradients(function, inputs, grad_out):
    out = function(*inputs)
    out.backward(grad_out.to(out.dtype))
    return out.detach(), [x.grad.detach() for x in inputs]


def _gradcheck(function, *tensors):
    inputs = _leaves(*tensors)
    assert torch.autograd.gradcheck(function, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


# ---- gradcheck (fp64, small shapes) ----

SMALL = [(1, 1, 8), (5, 17, 13), (17, 5, 8), (17, 17, 13)]


@pytest.mark.parametrize("seq_q,seq_k,dim", SMALL)
@pytest.mark.parametrize("mask_kind", ["none", "bool", "additive", "causal"])
def test_gradcheck_sdpa(seq_q, seq_k, dim, mask_kind):
    q, k, v = torch.randn(2, 2, seq_q, dim), torch.randn(2, 2, seq_k, dim), torch.randn(2, 2, seq_k, dim)
    mask = None
    if mask_kind == "bool":
        mask = torch.rand(2, 1, seq_q, seq_k) > 0.3
        mask[..., 0] = True   # every row keeps a key: no empty rows in a finite-difference check
    elif mask_kind == "additive":
        mask = torch.randn(1, 2, seq_q, seq_k, dtype=torch.float64)
    causal = mask_kind == "causal"
    _gradcheck(lambda a, b, c: attnkit.scaled_dot_product_attention(a, b, c, attn_mask=mask, is_causal=causal,
                                                                    scale=0.7), q, k, v)


@pytest.mark.parametrize("group", [2, 4])
def test_gradcheck_sdpa_gqa(group):
    q, k, v = torch.randn(1, 4, 5, 8), torch.randn(1, 4 // group, 17, 8), torch.randn(1, 4 // group, 17, 8)
    _gradcheck(lambda a, b, c: attnkit.scaled_dot_product_attention(a, b, c, enable_gqa=True), q, k, v)


def test_gradcheck_sdpa_dropout():
    q, k, v = torch.randn(1, 2, 5, 8), torch.randn(1, 2, 17, 8), torch.randn(1, 2, 17, 8)

    def function(a, b, c):
        attnkit.manual_seed(11)   # the same pattern on every evaluation
        return attnkit.scaled_dot_product_attention(a, b, c, dropout_p=0.3)

    _gradcheck(function, q, k, v)


FLASH_FEATURES = [dict(causal=True), dict(window_size=(3, 1)), dict(alibi=True), dict(softcap=2.0),
                  dict(causal=True, alibi=True, softcap=1.5), dict()]


@pytest.mark.parametrize("seq_q,seq_k,dim", SMALL)
@pytest.mark.parametrize("features", FLASH_FEATURES, ids=lambda f: "-".join(f) or "plain")
@pytest.mark.parametrize("heads", [(2, 2), (4, 2)])
def test_gradcheck_flash(seq_q, seq_k, dim, features, heads):
    features = dict(features)
    slopes = torch.rand(heads[0], dtype=torch.float32) if features.pop("alibi", False) else None
    if features.get("causal") and seq_q > seq_k:
        features["causal"] = False   # bottom-right causal would leave rows empty
    q, k, v = torch.randn(2, seq_q, heads[0], dim), torch.randn(2, seq_k, heads[1], dim), torch.randn(2, seq_k, heads[1], dim)
    if "window_size" in features and seq_q > seq_k:
        features["window_size"] = (seq_q, 1)
    _gradcheck(lambda a, b, c: attnkit.flash_attn_func(a, b, c, alibi_slopes=slopes, **features), q, k, v)


def test_gradcheck_flash_dropout():
    q, k, v = torch.randn(1, 5, 2, 8), torch.randn(1, 17, 2, 8), torch.randn(1, 17, 2, 8)

    def function(a, b, c):
        attnkit.manual_seed(5)
        return attnkit.flash_attn_func(a, b, c, dropout_p=0.25, causal=True)

    _gradcheck(function, q, k, v)


@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck_varlen(causal):
    lengths_q, lengths_k = [1, 5, 17], [5, 17, 17]
    cu_q = torch.tensor([0] + list(np.cumsum(lengths_q)), dtype=torch.int32)
    cu_k = torch.tensor([0] + list(np.cumsum(lengths_k)), dtype=torch.int32)
    q, k, v = torch.randn(sum(lengths_q), 4, 13), torch.randn(sum(lengths_k), 2, 13), torch.randn(sum(lengths_k), 2, 13)
    _gradcheck(lambda a, b, c: attnkit.flash_attn_varlen_func(a, b, c, cu_q, cu_k, 17, 17, causal=causal,
                                                              softcap=3.0), q, k, v)


def test_gradcheck_packed():
    qkv = torch.randn(1, 5, 3, 2, 8)
    _gradcheck(lambda x: attnkit.flash_attn_qkvpacked_func(x, causal=True), qkv)
    q, kv = torch.randn(1, 5, 4, 8), torch.randn(1, 17, 2, 2, 8)
    _gradcheck(lambda a, b: attnkit.flash_attn_kvpacked_func(a, b), q, kv)
    cu = torch.tensor([0, 5, 22], dtype=torch.int32)
    packed = torch.randn(22, 3, 2, 8)
    _gradcheck(lambda x: attnkit.flash_attn_varlen_qkvpacked_func(x, cu, 17, causal=True), packed)


def test_gradcheck_seed_wrappers():
    q, k, v = torch.randn(2, 5, 16), torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    mask = torch.tensor([[True, True, False, True, True], [True, False, True, True, True]])
    _gradcheck(lambda a, b, c: attnkit.sdpa_causal_attention(a, b, c, 2, 8, mask=mask), q, k, v)
    _gradcheck(lambda a, b, c: attnkit.eager_bidirectional_attention(a, b, c, 2, 8, mask=mask), q, k, v)
    cu = torch.tensor([0, 3, 10], dtype=torch.int32)
    q, k, v = torch.randn(10, 16), torch.randn(10, 16), torch.randn(10, 16)
    _gradcheck(lambda a, b, c: attnkit.flash_causal_attention(a, b, c, 2, 8, cu, 7), q, k, v)


def _eager_math(q, k, v, heads, mask, causal):
    """The seed guide's eager attention in torch ops, in q's dtype: (out [B, S, H*D], weights [B, H, S, Sk]).
    Every row must have an allowed key (softmax of an all -inf row is NaN here)."""
    batch, seq_q, width = q.shape
    seq_k, dim = k.shape[1], width // heads

    def split(x):
        return x.reshape(batch, x.shape[1], heads, dim).transpose(1, 2)

    scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(dim)
    allowed = torch.ones(seq_q, seq_k, dtype=torch.bool)
    if causal:
        allowed = allowed.tril()
    allowed = allowed[None, None] if mask is None else allowed[None, None] & mask[:, None, None, :]
    weights = torch.softmax(scores.masked_fill(~allowed, -math.inf), dim=-1)
    out = (weights @ split(v)).transpose(1, 2).reshape(batch, seq_q, width)
    return out, weights


def _eager_weighted(function):
    """out and weights of an eager function as one scalar with fixed random weights, so both gradients count."""
    def loss(*inputs):
        out, weights = function(*inputs)
        generator = torch.Generator().manual_seed(7)
        g_out = torch.randn(out.shape, generator=generator, dtype=torch.float64).to(out.dtype)
        g_weights = torch.randn(weights.shape, generator=generator, dtype=torch.float64).to(weights.dtype)
        return (out * g_out).sum() + (weights * g_weights).sum()
    return loss


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("seq_q,seq_k", [(1, 1), (5, 5), (17, 17), (5, 17)])
def test_gradcheck_eager_through_weights(seq_q, seq_k, causal):
    q, k, v = torch.randn(2, seq_q, 26), torch.randn(2, seq_k, 26), torch.randn(2, seq_k, 26)
    mask = torch.rand(2, seq_k) > 0.3
    mask[:, 0] = True
    function = attnkit.eager_causal_attention if causal else attnkit.eager_bidirectional_attention
    _gradcheck(lambda a, b, c: function(a, b, c, 2, 13, mask=mask, return_weights=True), q, k, v)
    # Only weights used (out's gradient is None), and only out used.
    _gradcheck(lambda a, b, c: function(a, b, c, 2, 13, return_weights=True)[1], q, k, v)
    _gradcheck(lambda a, b, c: function(a, b, c, 2, 13, return_weights=True)[0], q, k, v)


@pytest.mark.parametrize("seq,dim,heads,causal,strided", [(7, 59, 2, False, False), (33, 64, 4, True, True),
                                                           (65, 111, 1, False, True), (127, 128, 2, True, False)],
                         ids=str)
@pytest.mark.parametrize("dtype", [torch.float32] + LOW_PRECISION, ids=str)
def test_eager_gradients_through_weights_against_fp64(seq, dim, heads, causal, strided, dtype):
    width = heads * dim
    if strided:   # every other column of a wider tensor
        q, k, v = (torch.randn(2, seq, 2 * width)[:, :, ::2] for _ in range(3))
    else:
        q, k, v = torch.randn(2, seq, width), torch.randn(2, seq, width), torch.randn(2, seq, width)
    mask = torch.rand(2, seq) > 0.2
    mask[:, 0] = True
    q, k, v = (x.to(dtype).to(torch.float32) for x in (q, k, v))
    exact = _gradients(_eager_weighted(lambda a, b, c: _eager_math(a, b, c, heads, mask, causal)),
                       _leaves(q, k, v), torch.tensor(1.0))[1]
    function = attnkit.eager_causal_attention if causal else attnkit.eager_bidirectional_attention

    def leaves():
        if strided:
            return [torch.zeros(2, seq, 2 * width, dtype=dtype)[:, :, ::2].copy_(x).requires_grad_() for x in (q, k, v)]
        return _leaves(q, k, v, dtype=dtype)

    ours = _gradients(_eager_weighted(lambda a, b, c: function(a, b, c, heads, dim, mask=mask, return_weights=True)),
                      leaves(), torch.tensor(1.0))[1]
    theirs = _gradients(_eager_weighted(lambda a, b, c: _eager_math(a, b, c, heads, mask, causal)),
                        _leaves(q, k, v, dtype=dtype), torch.tensor(1.0))[1]
    for name, mine, torchs, truth in zip("qkv", ours, theirs, exact):
        assert_gradient_rule(name, dtype, mine, torchs, truth)


# ---- accuracy against fp64, with torch in the same dtype ----

def _sdpa_case(batch, heads, key_heads, seq_q, seq_k, dim, dtype, strided):
    shape_q, shape_k = (batch, heads, seq_q, dim), (batch, key_heads, seq_k, dim)
    if strided:   # (B, S, H, D) memory seen as (B, H, S, D)
        q = torch.randn(batch, seq_q, heads, dim).transpose(1, 2)
        k = torch.randn(batch, seq_k, key_heads, dim).transpose(1, 2)
        v = torch.randn(batch, seq_k, key_heads, dim).transpose(1, 2)
    else:
        q, k, v = torch.randn(shape_q), torch.randn(shape_k), torch.randn(shape_k)
    grad = torch.randn(batch, heads, seq_q, dim)
    return q, k, v, grad


ACCURACY = [  # (seq_q, seq_k, dim, heads, key_heads, causal, strided)
    (1, 65, 64, 8, 1, False, False), (7, 33, 59, 4, 2, True, True), (17, 127, 111, 8, 8, False, True),
    (33, 33, 128, 8, 4, True, False), (65, 17, 64, 2, 2, False, False), (127, 127, 59, 4, 4, True, True),
]


@pytest.mark.parametrize("case", ACCURACY, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32] + LOW_PRECISION, ids=str)
def test_sdpa_gradients_against_fp64(case, dtype):
    seq_q, seq_k, dim, heads, key_heads, causal, strided = case
    q, k, v, grad = _sdpa_case(2, heads, key_heads, seq_q, seq_k, dim, dtype, strided)
    gqa = heads != key_heads
    q, k, v, grad = (x.to(dtype).to(torch.float32) for x in (q, k, v, grad))   # the inputs every path sees
    reference = _gradients(lambda a, b, c: sdpa_reference(a, b, c, is_causal=causal, enable_gqa=gqa),
                           _leaves(q, k, v), grad)[1]
    ours = _gradients(lambda a, b, c: attnkit.scaled_dot_product_attention(a, b, c, is_causal=causal, enable_gqa=gqa),
                      _leaves(q, k, v, dtype=dtype) if not strided else
                      [x.detach().to(dtype).requires_grad_() for x in (q, k, v)], grad)[1]
    theirs = _gradients(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=causal, enable_gqa=gqa),
                        _leaves(q, k, v, dtype=dtype), grad)[1]
    for name, mine, torchs, exact in zip("qkv", ours, theirs, reference):
        assert_gradient_rule(name, dtype, mine, torchs, exact)


FLASH_ACCURACY = [  # (seq_q, seq_k, dim, heads, key_heads, features)
    (7, 65, 64, 4, 1, dict(causal=True)), (33, 127, 59, 8, 2, dict(window_size=(20, 3))),
    (65, 33, 111, 4, 4, dict(softcap=5.0)), (17, 17, 128, 8, 8, dict(alibi=True, causal=True)),
]


@pytest.mark.parametrize("case", FLASH_ACCURACY, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32] + LOW_PRECISION, ids=str)
def test_flash_gradients_against_fp64(case, dtype):
    seq_q, seq_k, dim, heads, key_heads, features = case
    features = dict(features)
    slopes = torch.rand(heads) if features.pop("alibi", False) else None
    q, k, v = torch.randn(seq_q, heads, dim), torch.randn(seq_k, key_heads, dim), torch.randn(seq_k, key_heads, dim)
    grad = torch.randn(seq_q, heads, dim)
    q, k, v, grad = (x.to(dtype).to(torch.float32) for x in (q, k, v, grad))
    window = features.get("window_size", (-1, -1))

    def reference(a, b, c):
        return flash_reference(a, b, c, causal=features.get("causal", False), window=window,
                               softcap=features.get("softcap", 0.0), slopes=slopes)[0]

    exact = _gradients(reference, _leaves(q, k, v), grad)[1]
    ours = _gradients(lambda a, b, c: attnkit.flash_attn_func(a[None], b[None], c[None], alibi_slopes=slopes,
                                                              **features)[0], _leaves(q, k, v, dtype=dtype), grad)[1]
    theirs = _gradients(lambda a, b, c: _torch_flash(a, b, c, features, slopes), _leaves(q, k, v, dtype=dtype),
                        grad)[1]
    for name, mine, torchs, truth in zip("qkv", ours, theirs, exact):
        assert_gradient_rule(name, dtype, mine, torchs, truth)


def _torch_flash(q, k, v, features, slopes):
    """flash-attn's semantics through torch SDPA in q's dtype, where a mask can say them: bottom-right
    causal and windows as a bool mask, ALiBi as an additive one. Softcap has no SDPA form: its
    cases use torch on the fp64 reference's math in q's dtype (flash_reference computes in fp64,
    so there the ulp floor is the bound)."""
    if features.get("softcap", 0.0) > 0:
        return flash_reference(q, k, v, softcap=features["softcap"])[0].to(q.dtype)
    seq_q, heads, seq_k = q.shape[0], q.shape[1], k.shape[0]
    rows, cols = torch.arange(seq_q)[:, None], torch.arange(seq_k)[None, :]
    diagonal = rows + seq_k - seq_q
    allowed = flash_allowed(seq_q, seq_k, features.get("causal", False), features.get("window_size", (-1, -1)))
    mask = allowed
    if slopes is not None:
        bias = -slopes[:, None, None].double() * (diagonal - cols).abs()[None].double()
        mask = bias.masked_fill(~allowed[None], -math.inf).to(q.dtype)
    out = F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), attn_mask=mask,
                                         enable_gqa=heads != k.shape[1])
    return out.transpose(0, 1)


def test_varlen_gradients_match_per_sequence_fixed_length():
    # An empty sequence starts where the next one does: its units must not take the next one's keys.
    lengths_q, lengths_k = [1, 17, 5, 65, 33], [9, 0, 0, 70, 33]
    cu_q = torch.tensor([0] + list(np.cumsum(lengths_q)), dtype=torch.int32)
    cu_k = torch.tensor([0] + list(np.cumsum(lengths_k)), dtype=torch.int32)
    q, k, v = torch.randn(sum(lengths_q), 4, 64), torch.randn(sum(lengths_k), 2, 64), torch.randn(sum(lengths_k), 2, 48)
    grad = torch.randn(sum(lengths_q), 4, 48)
    _, packed = _gradients(lambda a, b, c: attnkit.flash_attn_varlen_func(a, b, c, cu_q, cu_k, 65, 70, causal=True),
                           _leaves(q, k, v, dtype=torch.float32), grad)
    for b in range(len(lengths_q)):
        (sq, eq), (sk, ek) = cu_q[b:b + 2].tolist(), cu_k[b:b + 2].tolist()
        if ek == sk:   # no keys: nothing attended, zero gradient
            assert torch.equal(packed[0][sq:eq], torch.zeros_like(packed[0][sq:eq]))
            continue
        exact = _gradients(lambda a, b_, c: flash_reference(a, b_, c, causal=True)[0],
                           _leaves(q[sq:eq], k[sk:ek], v[sk:ek]), grad[sq:eq])[1]
        for mine, truth, (start, end) in zip(packed, exact, [(sq, eq), (sk, ek), (sk, ek)]):
            bound = FP32_GRADIENT_TOLERANCE * max(1.0, truth.abs().max().item())
            assert max_error(mine[start:end], truth) <= bound


# ---- determinism, edge rows, forward-only paths ----

def test_gradients_are_the_same_bits_on_any_thread_count_and_rerun():
    q, k, v = torch.randn(1, 300, 8, 64), torch.randn(1, 300, 2, 64), torch.randn(1, 300, 2, 64)
    grad = torch.randn(1, 300, 8, 64)
    before = attnkit.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 2):
            attnkit.set_num_threads(threads)
            results.append(_gradients(lambda a, b, c: attnkit.flash_attn_func(a, b, c, causal=True, softcap=4.0),
                                      _leaves(q, k, v, dtype=torch.float32), grad)[1])
    finally:
        attnkit.set_num_threads(before)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_rows_with_nothing_to_attend_get_zero_gradient():
    q, k, v = _leaves(torch.randn(1, 2, 4, 8), torch.randn(1, 2, 6, 8), torch.randn(1, 2, 6, 8), dtype=torch.float32)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[1] = False   # row 1 sees nothing
    out = attnkit.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out.sum().backward()
    assert torch.equal(out[:, :, 1], torch.zeros_like(out[:, :, 1]))
    assert torch.equal(q.grad[:, :, 1], torch.zeros_like(q.grad[:, :, 1]))
    assert all(torch.isfinite(x.grad).all() for x in (q, k, v))
    # The eager kernel with weights: a batch whose key mask allows nothing.
    q, k, v = _leaves(torch.randn(2, 4, 16), torch.randn(2, 6, 16), torch.randn(2, 6, 16), dtype=torch.float32)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1] = False
    out, weights = attnkit.eager_bidirectional_attention(q, k, v, 2, 8, mask=mask, return_weights=True)
    (out.sum() + (weights * torch.randn(weights.shape)).sum()).backward()
    assert torch.equal(q.grad[1], torch.zeros_like(q.grad[1]))
    assert torch.equal(k.grad[1], torch.zeros_like(k.grad[1])) and torch.equal(v.grad[1], torch.zeros_like(v.grad[1]))
    assert all(torch.isfinite(x.grad).all() for x in (q, k, v))


def test_nan_in_an_attended_value_reaches_the_gradients_it_touches():
    q, k, v = torch.randn(1, 2, 3, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
    v[0, 0, 2, 0] = math.nan
    leaves = _leaves(q, k, v, dtype=torch.float32)
    attnkit.scaled_dot_product_attention(*leaves).sum().backward()
    assert torch.isnan(leaves[0].grad[0, 0]).any()          # head 0 attends the NaN
    assert torch.isfinite(leaves[0].grad[0, 1]).all()       # head 1 never sees it


def test_inputs_without_grad_take_the_forward_only_path():
    q = torch.randn(1, 2, 5, 8)
    out = attnkit.scaled_dot_product_attention(q, q, q)
    assert out.grad_fn is None
    with torch.no_grad():
        leaf = q.clone().requires_grad_()
        assert attnkit.flash_attn_func(leaf, leaf, leaf).grad_fn is None
    numpy_out = attnkit.scaled_dot_product_attention(q.numpy(), q.numpy(), q.numpy())
    assert isinstance(numpy_out, np.ndarray)


def test_forward_only_paths_refuse_inputs_that_require_grad():
    q = torch.randn(1, 2, 64, 16, requires_grad=True)
    refused = r"requires grad, but this attnkit function has no backward pass.*torch\.no_grad\(\)"
    with pytest.raises(ValueError, match="query " + refused):
        attnkit.int8_scaled_dot_product_attention(q, q, q)
    with pytest.raises(ValueError, match="q " + refused):
        attnkit.int8_flash_attn_varlen_func(q[0], q[0], q[0], [0, 2], [0, 2], 2, 2)
    cache = torch.zeros(1, 8, 2, 16)
    with pytest.raises(ValueError, match="q " + refused):
        attnkit.flash_attn_with_kvcache(q.transpose(1, 2)[:, :1], cache, cache, cache_seqlens=4)
    x = torch.randn(1, 5, 16, requires_grad=True)
    mask = torch.randn(5, 5, requires_grad=True)
    with pytest.raises(ValueError, match="attn_mask requires grad"):
        attnkit.scaled_dot_product_attention(x[:, None], x[:, None], x[:, None], attn_mask=mask)
    with torch.no_grad():
        assert attnkit.int8_scaled_dot_product_attention(q, q, q).grad_fn is None


def test_return_attn_probs_keeps_out_differentiable():
    q, k, v = _leaves(torch.randn(1, 9, 2, 8), torch.randn(1, 9, 2, 8), torch.randn(1, 9, 2, 8), dtype=torch.float32)
    out, lse, dmask = attnkit.flash_attn_func(q, k, v, causal=True, return_attn_probs=True)
    assert out.requires_grad and not lse.requires_grad and dmask is None
    out.sum().backward()
    expected = flash_reference(q.detach()[0], k.detach()[0], v.detach()[0], causal=True)[1]
    assert max_error(lse[0], expected) < 1e-5


# ---- memory and a real training loop ----

MEMORY_PROBE = r"""
import sys, torch, attnkit

def high_water_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))

seq = int(sys.argv[1])
q, k, v = (torch.randn(1, 1, seq, 64, requires_grad=True) for _ in range(3))
grad = torch.randn(1, 1, seq, 64)
tiny = [torch.randn(1, 1, 64, 64, requires_grad=True) for _ in range(3)]
attnkit.scaled_dot_product_attention(*tiny, is_causal=True).backward(torch.ones(1, 1, 64, 64))
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")          # reset the peak-RSS high-water mark to the current RSS
before = high_water_kib()
attnkit.scaled_dot_product_attention(q, k, v, is_causal=True).backward(grad)
print((high_water_kib() - before) / 1024)
"""


def test_backward_memory_stays_linear_in_the_sequence():
    """fwd+bwd at L = 16384, one head, fp32: beyond out, lse and the three gradients (16 MiB), the
    peak RSS grows by less than 64 MiB (an L x L score matrix would be 1 GiB)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", MEMORY_PROBE, "16384"], capture_output=True, text=True, check=True,
                            timeout=600)
    extra = float(result.stdout.strip().splitlines()[-1])
    tensors = (4 * 16384 * 64 * 4 + 16384 * 4) / 2**20
    assert extra - tensors < 64, f"peak RSS grew {extra:.1f} MiB ({tensors:.1f} MiB of it tensors)"


class _Block(torch.nn.Module):
    def __init__(self, width, heads, attention):
        super().__init__()
        self.heads, self.attention = heads, attention
        self.norm1, self.norm2 = torch.nn.LayerNorm(width), torch.nn.LayerNorm(width)
        self.qkv, self.proj = torch.nn.Linear(width, 3 * width), torch.nn.Linear(width, width)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(width, 4 * width), torch.nn.GELU(), torch.nn.Linear(4 * width, width))

    def forward(self, x):
        batch, seq, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(batch, seq, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        attended = self.attention(q, k, v, is_causal=True).transpose(1, 2).reshape(batch, seq, width)
        x = x + self.proj(attended)
        return x + self.mlp(self.norm2(x))


class _LanguageModel(torch.nn.Module):
    def __init__(self, attention, vocab=64, width=32, heads=4, layers=2, context=48):
        super().__init__()
        self.embed, self.position = torch.nn.Embedding(vocab, width), torch.nn.Embedding(context, width)
        self.blocks = torch.nn.ModuleList(_Block(width, heads, attention) for _ in range(layers))
        self.head = torch.nn.Linear(width, vocab)

    def forward(self, tokens):
        x = self.embed(tokens) + self.position(torch.arange(tokens.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def _train(attention, steps=30):
    torch.manual_seed(1234)
    model = _LanguageModel(attention)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    stream = torch.randint(0, 64, (4, 48), generator=torch.Generator().manual_seed(7))
    losses = []
    for _ in range(steps):
        logits = model(stream[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 64), stream[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_training_loop_matches_torch_sdpa():
    """A 2-layer transformer LM trained 30 AdamW steps with attnkit's attention gives torch SDPA's loss curve."""
    theirs = _train(F.scaled_dot_product_attention)
    ours = _train(attnkit.scaled_dot_product_attention)
    assert ours[-1] < ours[0] - 0.1   # it learns
    for step, (a, b) in enumerate(zip(ours, theirs)):
        assert abs(a - b) <= 1e-4 * abs(b), f"step {step}: attnkit loss {a} vs torch {b}"
