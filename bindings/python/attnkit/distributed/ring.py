"""Ring attention: each rank keeps its query shard and passes its K/V shard around the ring,
merging the partial results through their log-sum-exp (docs/semantics.md §10). The next
shard's transfer is posted before the current shard's compute. The backward sends each K/V
shard's dK/dV accumulators around the ring behind it, as ring-flash-attention does."""
import torch

from .. import _attnkit
from ..flash import _scalar, _window
from ._blocks import (Options, Scratch, Segment, backward_blocks, check_shards, compute_dtype, empty_state,
                      forward_blocks)
from ._comm import Ring, agree


def _plain_segments(ring, length):
    return lambda rank: [Segment(rank * length, 0, length)]


def _zigzag_segments(ring, length):
    half = length // 2
    return lambda rank: [Segment(rank * half, 0, half), Segment((2 * ring.size - 1 - rank) * half, half, half)]


def _ring_forward(q, k, v, ring, segments, options):
    ctype = compute_dtype(q.dtype)
    qc = q.to(ctype)
    mine = segments(ring.rank)
    state, scratch = empty_state(qc, v.shape[3]), Scratch()
    k_shard, v_shard = k.contiguous(), v.contiguous()
    for step in range(ring.size):
        pending = ring.exchange([k_shard, v_shard]) if step + 1 < ring.size else None
        source = (ring.rank - step) % ring.size
        forward_blocks(qc, mine, k_shard.to(ctype), v_shard.to(ctype), segments(source), options, state, scratch)
        if pending is not None:
            k_shard, v_shard = pending.wait()
    return state   # out in the compute dtype: the caller rounds it once


def _ring_backward(dout, q, k, v, out, lse, ring, segments, options):
    """out: the forward's, unrounded (compute dtype), so that rowsum(dO ∘ O) carries no
    rounding of a narrow out."""
    ctype = compute_dtype(q.dtype)
    qc, outc, doutc = q.to(ctype), out, dout.to(ctype)
    mine = segments(ring.rank)
    dq, scratch = torch.zeros(q.shape, dtype=ctype), Scratch()
    k_shard, v_shard = k.contiguous(), v.contiguous()
    accumulators = None   # the dK/dV sums of the shard held now, arriving from the previous rank
    for step in range(ring.size):
        pending = ring.exchange([k_shard, v_shard]) if step + 1 < ring.size else None
        source = (ring.rank - step) % ring.size
        dk = torch.zeros(k.shape, dtype=ctype)
        dv = torch.zeros(v.shape, dtype=ctype)
        backward_blocks(doutc, qc, outc, lse, mine, k_shard.to(ctype), v_shard.to(ctype), segments(source), options,
                        dq, dk, dv, scratch)
        if accumulators is not None:
            dk_before, dv_before = accumulators.wait()
            dk.add_(dk_before)
            dv.add_(dv_before)
        # On to the next rank; after the last step that is the shard's owner.
        accumulators = ring.exchange([dk, dv], first_tag=2, kind="grad")
        if pending is not None:
            k_shard, v_shard = pending.wait()
    dk, dv = accumulators.wait()
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


class _RingFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, ring, segments, options):
        exact, lse = _ring_forward(q, k, v, ring, segments, options)
        ctx.save_for_backward(q, k, v, exact, lse)
        ctx.ring, ctx.segments, ctx.options = ring, segments, options
        ctx.mark_non_differentiable(lse)
        return exact.to(q.dtype), lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = _ring_backward(dout, q, k, v, out, lse, ctx.ring, ctx.segments, ctx.options)
        return dq, dk, dv, None, None, None


def _check_shards(function, q, k, v, options, zigzag):
    check_shards(4, "(batch, seq_local, heads, head_dim)", q=q, k=k, v=v)
    if k.shape[1] != q.shape[1]:
        raise ValueError(f"k.shape[1] must equal q.shape[1] (each rank holds the same positions of q and k), "
                         f"got {k.shape[1]} and {q.shape[1]}")
    if zigzag and q.shape[1] % 2:
        raise ValueError(f"q.shape[1] must be even for {function} (a rank holds two chunks of q.shape[1] / 2), "
                         f"got {q.shape[1]}")
    # The kernel's own rules (dtypes, GQA, head dims, window, scale, slopes) on an empty query slice.
    empty = torch.empty((q.shape[0], 0, q.shape[2], v.shape[3]), dtype=q.dtype)
    with torch.no_grad():
        _attnkit.flash_block_forward(0, q.detach()[:, :0], k.detach(), v.detach(), options.alibi_slopes, empty, None,
                                     *options.kernel_arguments())


def _signature(q, k, v, options, wants_grad):
    slopes = options.alibi_slopes
    return {"q.shape": tuple(q.shape), "k.shape": tuple(k.shape), "v.shape": tuple(v.shape), "dtype": str(q.dtype),
            "causal": options.causal, "softmax_scale": options.softmax_scale,
            "window_size": (options.window_left, options.window_right),
            "alibi_slopes": None if slopes is None else tuple(slopes.detach().flatten().tolist()),
            "requires_grad": wants_grad}


def _run(function, q, k, v, group, causal, softmax_scale, window_size, alibi_slopes, return_lse, zigzag):
    ring = Ring(group)
    left, right = _window(window_size)
    options = Options(bool(causal), _scalar("softmax_scale", softmax_scale, allow_none=True), left, right,
                      alibi_slopes)
    wants_grad = torch.is_grad_enabled() and any(isinstance(x, torch.Tensor) and x.requires_grad for x in (q, k, v))
    agree(ring, function, lambda: _check_shards(function, q, k, v, options, zigzag),
          _signature(q, k, v, options, wants_grad) if all(isinstance(x, torch.Tensor) for x in (q, k, v)) else None)
    segments = (_zigzag_segments if zigzag else _plain_segments)(ring, q.shape[1])
    if wants_grad:
        out, lse = _RingFunction.apply(q, k, v, ring, segments, options)
    else:
        with torch.no_grad():
            out, lse = _ring_forward(q, k, v, ring, segments, options)
            out = out.to(q.dtype)
    return (out, lse) if return_lse else out


def ring_attention(q, k, v, group=None, causal=False, softmax_scale=None, window_size=(-1, -1), alibi_slopes=None,
                   return_lse=False):
    """flash_attn_func over a sequence split across the ranks of `group` in order: rank r holds
    positions [r·S_local, (r+1)·S_local) of q, k and v.

    Args:
        q: (B, S_local, Hq, D); k: (B, S_local, Hk, D); v: (B, S_local, Hk, Dv): this rank's shard,
            torch CPU tensors of one dtype (float32, float64, float16, bfloat16), Hk dividing Hq.
            Every rank passes the same shapes and options.
        group: a torch.distributed process group (None: the default group); any backend with
            point-to-point (gloo on the CPU).
        causal, softmax_scale, window_size, alibi_slopes: flash_attn_func's, on global positions.
        return_lse: also return the shard's softmax_lse (B, Hq, S_local) float32.

    Returns:
        out (B, S_local, Hq, Dv), this rank's rows of flash_attn_func on the whole sequence
        (and lse). Differentiable: the backward is collective too (every rank must run it).

    A bad argument on any rank raises ValueError on every rank before the ring starts.
    """
    return _run("ring_attention", q, k, v, group, causal, softmax_scale, window_size, alibi_slopes, return_lse,
                zigzag=False)


def zigzag_ring_attention(q, k, v, group=None, causal=False, softmax_scale=None, window_size=(-1, -1),
                          alibi_slopes=None, return_lse=False):
    """ring_attention with causal load balancing: the sequence is cut into 2N chunks and rank r
    holds chunks r and 2N−1−r, concatenated (zigzag_split gives that layout, zigzag_merge undoes
    it), so every rank does the same work under a causal mask. S_local must be even; out and
    lse come in the same layout as q."""
    return _run("zigzag_ring_attention", q, k, v, group, causal, softmax_scale, window_size, alibi_slopes,
                return_lse, zigzag=True)


def zigzag_split(x, world_size, rank, dim=1):
    """Rank `rank`'s zigzag shard of a whole sequence: chunks rank and 2·world_size−1−rank of
    x cut into 2·world_size equal chunks along `dim`, concatenated."""
    chunks = 2 * world_size
    if x.shape[dim] % chunks:
        raise ValueError(f"x.shape[{dim}] must be a multiple of 2 * world_size = {chunks}, got {x.shape[dim]}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    parts = x.chunk(chunks, dim)
    return torch.cat([parts[rank], parts[chunks - 1 - rank]], dim)


def zigzag_merge(shards, dim=1):
    """The whole sequence from every rank's zigzag shard (a list in rank order)."""
    halves = [shard.chunk(2, dim) for shard in shards]
    count = len(shards)
    return torch.cat([halves[i][0] for i in range(count)] + [halves[count - 1 - i][1] for i in range(count)], dim)
