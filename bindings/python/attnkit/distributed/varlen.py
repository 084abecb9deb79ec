"""Context parallelism for packed batches of documents (llama3-style): the packed tokens are
split evenly across the ranks in order, each rank all-gathers K and V and attends its own
queries to their documents' keys. The backward sums dK/dV over the ranks (all-reduce) and
keeps this rank's rows."""
import torch
import torch.distributed as dist

from .. import _attnkit
from ..flash import _index_tensor, _scalar, _window
from ._blocks import Options, check_shards, compute_dtype
from ._comm import Ring, agree


def _all_gather(ring, x):
    """x from every rank, concatenated along dim 0 in rank order. Two-byte dtypes travel as
    int16 (the same bits), so every backend's dtype support is enough."""
    wire = x.contiguous()
    if wire.element_size() == 2 and wire.dtype != torch.int16:
        wire = wire.view(torch.int16)
    parts = [torch.empty_like(wire) for _ in range(ring.size)]
    dist.all_gather(parts, wire, group=ring.group)
    return torch.cat(parts).view(x.dtype)


def _documents(boundaries, start, end, causal):
    """The documents this rank's tokens [start, end) belong to: per document, (index, its local
    query rows lo..hi, its first position, the end of the keys they may see)."""
    pieces = []
    for index in range(len(boundaries) - 1):
        first, last = boundaries[index], boundaries[index + 1]
        lo, hi = max(first, start), min(last, end)
        if lo < hi:
            key_end = hi if causal else last   # causal: no key after this rank's last query
            pieces.append((index, lo - start, hi - start, first, key_end))
    return pieces


def _slopes(options, index):
    slopes = options.alibi_slopes
    if slopes is None or slopes.ndim == 1:
        return slopes
    return slopes[index]


def _forward(q, k_all, v_all, documents, options, start):
    """Each document's local rows against its keys, written straight into out and lse (the
    documents' rows are disjoint)."""
    ctype = compute_dtype(q.dtype)
    qc, kc, vc = q.to(ctype).unsqueeze(0), k_all.to(ctype).unsqueeze(0), v_all.to(ctype).unsqueeze(0)
    out = torch.zeros((1, q.shape[0], q.shape[1], v_all.shape[2]), dtype=ctype)
    lse = torch.full((1, q.shape[1], q.shape[0]), float("inf"), dtype=torch.float32)
    for index, row_lo, row_hi, first, key_end in documents:
        rows, keys = slice(row_lo, row_hi), slice(first, key_end)
        _attnkit.flash_block_forward(start + row_lo - first, qc[:, rows], kc[:, keys], vc[:, keys],
                                     _slopes(options, index), out[:, rows], lse[:, :, rows], *options.kernel_arguments())
    return out[0], lse[0]   # in the compute dtype: the caller rounds it once


def _backward(dout, q, k_all, v_all, out, lse, documents, options, start, ring):
    """Each document's gradients written straight into dq, dk and dv (the documents' query rows
    and key rows are disjoint), then dK/dV summed over the ranks."""
    ctype = compute_dtype(q.dtype)
    qc, kc, vc = q.to(ctype).unsqueeze(0), k_all.to(ctype).unsqueeze(0), v_all.to(ctype).unsqueeze(0)
    outc, doutc, lse = out.unsqueeze(0), dout.to(ctype).unsqueeze(0), lse.unsqueeze(0)   # out unrounded
    dq = torch.zeros_like(qc)
    dk, dv = torch.zeros_like(kc), torch.zeros_like(vc)
    for index, row_lo, row_hi, first, key_end in documents:
        rows, keys = slice(row_lo, row_hi), slice(first, key_end)
        _attnkit.flash_block_backward(start + row_lo - first, doutc[:, rows], qc[:, rows], kc[:, keys], vc[:, keys],
                                      _slopes(options, index), outc[:, rows], lse[:, :, rows], dq[:, rows],
                                      dk[:, keys], dv[:, keys], *options.kernel_arguments())
    if ring.size > 1:
        dist.all_reduce(dk, group=ring.group)
        dist.all_reduce(dv, group=ring.group)
    local = slice(start, start + q.shape[0])
    return dq[0].to(q.dtype), dk[0, local].to(q.dtype), dv[0, local].to(q.dtype)


class _VarlenFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, ring, documents, options, start):
        k_all, v_all = _all_gather(ring, k), _all_gather(ring, v)
        exact, lse = _forward(q, k_all, v_all, documents, options, start)
        ctx.save_for_backward(q, k_all, v_all, exact, lse)
        ctx.ring, ctx.documents, ctx.options, ctx.start = ring, documents, options, start
        ctx.mark_non_differentiable(lse)
        return exact.to(q.dtype), lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k_all, v_all, out, lse = ctx.saved_tensors
        dq, dk, dv = _backward(dout, q, k_all, v_all, out, lse, ctx.documents, ctx.options, ctx.start, ctx.ring)
        return dq, dk, dv, None, None, None, None


def _check(q, k, v, boundaries, world, options, max_seqlen):
    check_shards(3, "(total_local, heads, head_dim)", q=q, k=k, v=v)
    if k.shape[0] != q.shape[0] or v.shape[0] != q.shape[0]:
        raise ValueError(f"k.shape[0] and v.shape[0] must equal q.shape[0] (each rank holds the same tokens of q, k "
                         f"and v), got {k.shape[0]}, {v.shape[0]} and {q.shape[0]}")
    if len(boundaries) < 2 or boundaries[0] != 0:
        raise ValueError(f"cu_seqlens must start at 0 and have at least 2 entries, got {boundaries}")
    if any(b > a for a, b in zip(boundaries[1:], boundaries)):
        raise ValueError(f"cu_seqlens must never decrease, got {boundaries}")
    if boundaries[-1] != world * q.shape[0]:
        raise ValueError(f"cu_seqlens[-1] must be the whole packed length, world_size * q.shape[0] = "
                         f"{world * q.shape[0]}, got {boundaries[-1]}")
    longest = max(b - a for a, b in zip(boundaries, boundaries[1:]))
    if max_seqlen is not None and max_seqlen < longest:
        raise ValueError(f"max_seqlen must be at least the longest sequence ({longest}), got {max_seqlen}")
    slopes = options.alibi_slopes
    if slopes is not None and isinstance(slopes, torch.Tensor) and slopes.ndim == 2 \
            and slopes.shape[0] != len(boundaries) - 1:
        raise ValueError(f"alibi_slopes of shape (B, Hq) must have B = len(cu_seqlens) - 1 = {len(boundaries) - 1} "
                         f"rows, got {tuple(slopes.shape)}")
    # The kernel's own rules on an empty query slice of one document.
    empty = torch.empty((1, 0, q.shape[1], v.shape[2]), dtype=q.dtype)
    with torch.no_grad():
        _attnkit.flash_block_forward(0, q.detach()[:0].unsqueeze(0), k.detach().unsqueeze(0), v.detach().unsqueeze(0),
                                     _slopes(options, 0), empty, None, *options.kernel_arguments())


def ring_attention_varlen(q, k, v, cu_seqlens, max_seqlen=None, group=None, causal=False, softmax_scale=None,
                          window_size=(-1, -1), alibi_slopes=None, return_lse=False):
    """flash_attn_varlen_func (cu_seqlens_q = cu_seqlens_k = cu_seqlens) over a packed batch
    whose tokens are split evenly across the ranks of `group` in order: rank r holds packed
    rows [r·T_local, (r+1)·T_local), and documents may cross rank boundaries.

    Args:
        q: (T_local, Hq, D); k: (T_local, Hk, D); v: (T_local, Hk, Dv): this rank's rows.
        cu_seqlens: the whole batch's (B + 1,) offsets (a list, or an int tensor), the same on
            every rank, ending at world_size · T_local.
        max_seqlen: optional; checked to be at least the longest document.
        causal, softmax_scale, window_size, alibi_slopes ((Hq,) or (B, Hq)), return_lse: as
            flash_attn_varlen_func's, per document; lse is (Hq, T_local).

    K and V are all-gathered (llama3-style context parallelism: memory O(T·Hk·D) per rank for
    K/V, not overlapped with compute), each document's local rows attend its keys, and the
    backward all-reduces dK/dV. Differentiable; the backward is collective.
    """
    ring = Ring(group)
    left, right = _window(window_size)
    options = Options(bool(causal), _scalar("softmax_scale", softmax_scale, allow_none=True), left, right,
                      alibi_slopes)
    index = _index_tensor("cu_seqlens", cu_seqlens)
    boundaries = [int(x) for x in (index.tolist() if hasattr(index, "tolist") else index)]
    tensors = all(isinstance(x, torch.Tensor) for x in (q, k, v))
    wants_grad = torch.is_grad_enabled() and tensors and any(x.requires_grad for x in (q, k, v))
    signature = None
    if tensors:
        slopes = alibi_slopes
        signature = {"q.shape": tuple(q.shape), "k.shape": tuple(k.shape), "v.shape": tuple(v.shape),
                     "dtype": str(q.dtype), "cu_seqlens": tuple(boundaries), "causal": options.causal,
                     "softmax_scale": options.softmax_scale, "window_size": (left, right),
                     "alibi_slopes": None if slopes is None else tuple(torch.as_tensor(slopes).flatten().tolist()),
                     "requires_grad": wants_grad}
    agree(ring, "ring_attention_varlen", lambda: _check(q, k, v, boundaries, ring.size, options, max_seqlen),
          signature)
    start = ring.rank * q.shape[0]
    documents = _documents(boundaries, start, start + q.shape[0], options.causal)
    if wants_grad:
        out, lse = _VarlenFunction.apply(q, k, v, ring, documents, options, start)
    else:
        with torch.no_grad():
            k_all, v_all = _all_gather(ring, k), _all_gather(ring, v)
            out, lse = _forward(q, k_all, v_all, documents, options, start)
            out = out.to(q.dtype)
    return (out, lse) if return_lse else out
