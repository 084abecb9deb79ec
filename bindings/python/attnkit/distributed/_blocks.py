"""Attention between one rank's query segments and one K/V shard's key segments, each pair
a flash_block call with the pair's own diagonal (q's first position minus k's), merged
through the log-sum-exp. Computed in fp32 for fp32/fp16/bf16 input (fp64 for fp64): the
shards travel in their own dtype and are widened exactly, so the only rounding to a
narrow dtype is the final one."""
from dataclasses import dataclass
from typing import Optional

import torch

from .. import _attnkit


@dataclass(frozen=True)
class Segment:
    """`length` consecutive sequence positions from `position`, held at `offset` in a shard."""
    position: int
    offset: int
    length: int


@dataclass(frozen=True)
class Options:
    causal: bool
    softmax_scale: Optional[float]
    window_left: int
    window_right: int
    alibi_slopes: Optional[torch.Tensor]

    def sees(self, queries, keys, diagonal):
        """Whether any query i < queries sees any key j < keys, key j being aligned with
        query i when j == i + diagonal."""
        low = -(queries - 1) if self.window_left < 0 else max(-(queries - 1), diagonal - self.window_left)
        right = 0 if self.causal else self.window_right   # causal forces window_right = 0
        high = keys - 1 if right < 0 else min(keys - 1, diagonal + right)
        return queries > 0 and keys > 0 and low <= high

    def kernel_arguments(self):
        return (self.causal, self.softmax_scale, self.window_left, self.window_right, 0.0)


def check_shards(rank, layout, **tensors):
    """Each named shard must be a CPU torch.Tensor of the given rank."""
    for name, x in tensors.items():
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.device.type != "cpu":
            raise ValueError(f"{name} must be on the CPU, got {x.device}")
        if x.ndim != rank:
            raise ValueError(f"{name} must have rank {rank} {layout}, got shape {tuple(x.shape)}")


def compute_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _rows(x, segment):
    return x[:, segment.offset:segment.offset + segment.length]


class Scratch:
    """Buffers the kernels write and the caller consumes at once (block outputs, block
    gradients), reused across the block pairs and ring steps of one call instead of being
    allocated, and their pages faulted in, for every pair."""

    def __init__(self):
        self.buffers = {}

    def get(self, name, shape, dtype):
        buffer = self.buffers.get(name)
        if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
            buffer = self.buffers[name] = torch.empty(shape, dtype=dtype)
        return buffer


def empty_state(q, value_dim):
    """(out, lse) of a query shard that has seen no key yet: out 0, lse +inf (the flash functions'
    empty row), merged into in place as key shards arrive."""
    batch, length, heads = q.shape[0], q.shape[1], q.shape[2]
    return (torch.zeros((batch, length, heads, value_dim), dtype=q.dtype),
            torch.full((batch, heads, length), float("inf"), dtype=torch.float32))


def forward_blocks(q, q_segments, k, v, k_segments, options, state, scratch):
    """Merges the attention of q's segments over these keys into `state` = (out, lse) of the
    whole query shard, in place. q, k, v: (B, S, H, D) in the compute dtype."""
    batch, heads, value_dim = q.shape[0], q.shape[2], v.shape[3]
    out, lse = state
    for qs in q_segments:
        rows = slice(qs.offset, qs.offset + qs.length)
        for ks in k_segments:
            diagonal = qs.position - ks.position
            if not options.sees(qs.length, ks.length, diagonal):
                continue
            part_out = scratch.get("out", torch.Size((batch, qs.length, heads, value_dim)), q.dtype)
            part_lse = scratch.get("lse", torch.Size((batch, heads, qs.length)), torch.float32)
            _attnkit.flash_block_forward(diagonal, _rows(q, qs), _rows(k, ks), _rows(v, ks), options.alibi_slopes,
                                         part_out, part_lse, *options.kernel_arguments())
            # merge_attention_states with out and lse the first state itself (attn_merge_attention_states
            # reads each row's values before writing them, so in place is allowed).
            _attnkit.merge_attention_states(out[:, rows], lse[:, :, rows], part_out, part_lse, out[:, rows],
                                            lse[:, :, rows])
    return state


def backward_blocks(dout, q, out, lse, q_segments, k, v, k_segments, options, dq, dk, dv, scratch):
    """Adds this K/V shard's share of the gradients into dq (the query shard's) and into dk,
    dv (the K/V shard's), all in the compute dtype. out and lse are the merged forward's."""
    for qs in q_segments:
        for ks in k_segments:
            diagonal = qs.position - ks.position
            if not options.sees(qs.length, ks.length, diagonal):
                continue
            q_part, k_part, v_part = _rows(q, qs), _rows(k, ks), _rows(v, ks)
            dq_part = scratch.get("dq", q_part.shape, q_part.dtype)
            dk_part, dv_part = scratch.get("dk", k_part.shape, k_part.dtype), scratch.get("dv", v_part.shape, v_part.dtype)
            _attnkit.flash_block_backward(diagonal, _rows(dout, qs), q_part, k_part, v_part, options.alibi_slopes,
                                          _rows(out, qs), lse[:, :, qs.offset:qs.offset + qs.length], dq_part, dk_part,
                                          dv_part,
                                          *options.kernel_arguments())
            _rows(dq, qs).add_(dq_part)
            _rows(dk, ks).add_(dk_part)
            _rows(dv, ks).add_(dv_part)
