"""Context-parallel attention over torch.distributed (docs/semantics.md §10).

ring_attention and zigzag_ring_attention pass K/V shards around a ring of ranks, each
posting the next transfer before computing on the current shard; ring_attention_varlen
all-gathers K/V for packed documents. All three are differentiable and use only
torch.distributed (any backend with point-to-point and all-gather: gloo on the CPU).
"""
from ._comm import comm_stats
from .ring import ring_attention, zigzag_merge, zigzag_ring_attention, zigzag_split
from .varlen import ring_attention_varlen

__all__ = ["comm_stats", "ring_attention", "ring_attention_varlen", "zigzag_merge", "zigzag_ring_attention",
           "zigzag_split"]
