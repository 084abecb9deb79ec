"""Shared reference math and tolerances for the parity tests (docs/semantics.md §1 and §6)."""
import math

import pytest
import torch

# docs/semantics.md §6: fp32 must be within 1e-5 · max(1, max|ref64|) of the fp64 reference.
FP32_RELATIVE_TOLERANCE = 1e-5
# fp64 input is checked against the same math in fp64; only summation order differs.
FP64_RELATIVE_TOLERANCE = 1e-12

TOLERANCES = {torch.float32: FP32_RELATIVE_TOLERANCE, torch.float64: FP64_RELATIVE_TOLERANCE}


def max_error(actual, reference):
    """max|actual − reference| in fp64, with NaN counted as infinite error."""
    difference = (torch.as_tensor(actual).double() - reference.double()).abs()
    return math.inf if torch.isnan(difference).any() else (difference.max().item() if difference.numel() else 0.0)


def assert_close(actual, reference, dtype, label):
    bound = TOLERANCES[dtype] * max(1.0, reference.abs().max().item() if reference.numel() else 0.0)
    error = max_error(actual, reference)
    assert error <= bound, f"{label}: max error {error:.3e} > {bound:.3e}"
    return error


def eager_reference(q, k, v, num_heads, head_dim, mask=None, causal=False):
    """docs/semantics.md §1 in fp64: split heads, q·kᵀ, mask, softmax(/sqrt(D)), ·v, merge heads.

    q: [B, Sq, H*D]; k, v: [B, Sk, H*D]; mask: [B, Sk] bool. Rows with no allowed key give 0.
    Returns (out [B, Sq, H*D], weights [B, H, Sq, Sk]).
    """
    q, k, v = (torch.as_tensor(x).double() for x in (q, k, v))
    batch, seq_q, _ = q.shape
    seq_k = k.shape[1]

    def heads(x):
        return x.reshape(batch, x.shape[1], num_heads, head_dim).transpose(1, 2)

    scores = heads(q) @ heads(k).transpose(-1, -2)
    allowed = torch.ones(batch, 1, seq_q, seq_k, dtype=torch.bool)
    if mask is not None:
        allowed = allowed & torch.as_tensor(mask).bool()[:, None, None, :]
    if causal:
        allowed = allowed & torch.ones(seq_q, seq_k, dtype=torch.bool).tril()
    scores = scores.masked_fill(~allowed, -math.inf)
    weights = torch.softmax(scores / math.sqrt(head_dim), dim=-1)
    weights = torch.where(allowed.any(-1, keepdim=True), weights, torch.zeros(()).double())
    out = (weights @ heads(v)).transpose(1, 2).reshape(batch, seq_q, num_heads * head_dim)
    return out, weights


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def sdpa_reference(query, key, value, attn_mask=None, is_causal=False, scale=None, enable_gqa=False):
    """torch SDPA semantics (docs/semantics.md §2) in fp64, written out: top-left causal,
    bool masks exclude, float masks add, GQA by head groups, fully masked rows give 0."""
    q, k, v = (torch.as_tensor(x).double() for x in (query, key, value))
    if q.ndim >= 3 and k.shape[-3] != q.shape[-3]:
        group = q.shape[-3] // k.shape[-3]
        k = k.repeat_interleave(group, dim=-3)
        v = v.repeat_interleave(group, dim=-3)
    seq_q, seq_k = q.shape[-2], k.shape[-2]
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-1, -2)) * scale
    allowed = torch.ones(seq_q, seq_k, dtype=torch.bool)
    if is_causal:
        allowed = allowed.tril()
    allowed = allowed.expand(scores.shape)
    if attn_mask is not None:
        mask = torch.as_tensor(attn_mask)
        if mask.dtype == torch.bool:
            allowed = allowed & mask.expand(scores.shape)
        else:
            scores = scores + mask.double()
    scores = scores.masked_fill(~allowed, -math.inf)
    any_allowed = ((scores > -math.inf) | scores.isnan()).any(-1, keepdim=True)   # NaN is never hidden
    weights = torch.softmax(scores, dim=-1)
    weights = torch.where(any_allowed, weights, torch.zeros((), dtype=torch.float64))
    return weights @ v


def flash_allowed(seq_q, seq_k, causal=False, window=(-1, -1)):
    """flash-attn's (seq_q, seq_k) bool mask: bottom-right causal and the local window."""
    rows, cols = torch.arange(seq_q)[:, None], torch.arange(seq_k)[None, :]
    diagonal = rows + seq_k - seq_q
    left, right = window
    if causal:
        right = 0
    allowed = torch.ones(seq_q, seq_k, dtype=torch.bool)
    if left >= 0:
        allowed &= cols >= diagonal - left
    if right >= 0:
        allowed &= cols <= diagonal + right
    return allowed


def flash_reference(q, k, v, causal=False, window=(-1, -1), softcap=0.0, slopes=None, scale=None, weights_too=False):
    """flash-attn's attention_ref for one sequence, in fp64: bottom-right causal, local
    window, softcap before ALiBi, GQA by head groups. q [Sq, Hq, D], k [Sk, Hk, D],
    v [Sk, Hk, Dv], slopes [Hq] or None. Returns (out [Sq, Hq, Dv], lse [Hq, Sq]), and
    the softmax weights [Hq, Sq, Sk] too with weights_too; rows with no allowed key
    give out 0, lse +inf and weights 0."""
    q, k, v = (torch.as_tensor(x).double() for x in (q, k, v))
    seq_q, heads_q, dim = q.shape
    seq_k, heads_k = k.shape[0], k.shape[1]
    group = heads_q // heads_k
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    scale = 1 / math.sqrt(dim) if scale is None else scale
    scores = torch.einsum("qhd,khd->hqk", q, k) * scale
    if softcap > 0:
        scores = softcap * torch.tanh(scores / softcap)
    rows = torch.arange(seq_q)[:, None]
    cols = torch.arange(seq_k)[None, :]
    diagonal = rows + seq_k - seq_q
    if slopes is not None:
        slopes = torch.as_tensor(slopes).double()
        scores = scores - slopes[:, None, None] * (diagonal - cols).abs()[None]
    allowed = flash_allowed(seq_q, seq_k, causal, window)
    scores = scores.masked_fill(~allowed[None], -math.inf)
    lse = torch.logsumexp(scores, dim=-1)
    empty = ~allowed.any(-1)
    weights = torch.softmax(scores, dim=-1)
    weights = torch.where(empty[None, :, None], torch.zeros((), dtype=torch.float64), weights)
    lse = torch.where(empty[None], torch.full((), math.inf, dtype=torch.float64), lse)
    out = torch.einsum("hqk,khd->qhd", weights, v)
    return (out, lse, weights) if weights_too else (out, lse)
