"""Eager attention (docs/semantics.md §1) against the textbook torch code, side by side in one run."""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import attention_flops, header, median_ms, print_table, setup  # noqa: E402  (before torch: see timing.py)

import torch

import attnkit  # noqa: E402


def torch_eager(q, k, v, heads, dim, mask, causal):
    """The textbook torch implementation the eager kernel replaces (docs/semantics.md §1)."""
    batch, seq, _ = q.shape
    qh, kh, vh = (x.view(batch, seq, heads, dim).transpose(1, 2) for x in (q, k, v))
    scores = qh @ kh.transpose(-1, -2)
    allowed = torch.ones(batch, 1, seq, seq, dtype=torch.bool)
    if mask is not None:
        allowed = allowed & mask[:, None, None, :]
    if causal:
        allowed = allowed & torch.ones(seq, seq, dtype=torch.bool).tril()
    weights = torch.softmax(scores.masked_fill(~allowed, -math.inf) / math.sqrt(dim), dim=-1)
    weights = weights.nan_to_num(0.0)
    return (weights @ vh).transpose(1, 2).reshape(batch, seq, heads * dim)


def eager_rows(shapes, repeats):
    rows = []
    for batch, seq, heads, dim, causal, masked in shapes:
        q, k, v = (torch.randn(batch, seq, heads * dim) for _ in range(3))
        mask = (torch.rand(batch, seq) > 0.1) if masked else None
        fn = attnkit.eager_causal_attention if causal else attnkit.eager_bidirectional_attention
        ours = fn(q, k, v, heads, dim, mask)
        theirs = torch_eager(q, k, v, heads, dim, mask, causal)
        exact = torch_eager(q.double(), k.double(), v.double(), heads, dim, mask, causal)
        ms_ours, ms_torch = median_ms([lambda: fn(q, k, v, heads, dim, mask),
                                       lambda: torch_eager(q, k, v, heads, dim, mask, causal)], repeats=repeats)
        flops = attention_flops(batch, heads, seq, seq, dim, causal)
        name = "eager_causal" if causal else "eager_bidirectional"
        rows.append([
            name + ("+mask" if masked else ""), f"B{batch} S{seq} H{heads} D{dim}", "fp32",
            f"{(ours - exact).abs().max().item():.1e}", f"{(theirs - exact).abs().max().item():.1e}",
            f"{ms_ours:.2f}", f"{ms_torch:.2f}", f"{flops / ms_ours / 1e6:.0f}", f"{flops / ms_torch / 1e6:.0f}",
            f"{ms_torch / ms_ours:.2f}x",
        ])
    return rows


SHAPES = [
    (4, 512, 8, 64, False, True),
    (1, 1024, 8, 64, False, False),
    (1, 2048, 8, 64, True, False),
    (2, 1024, 16, 128, True, True),
]


def main():
    args = setup(__doc__, repeats=9)
    print(header(args) + "\n")
    print_table(["kernel", "shape", "dtype", "err vs fp64", "torch err", "attnkit ms", "torch ms", "attnkit GFLOP/s",
                 "torch GFLOP/s", "speedup"], eager_rows(SHAPES, args.repeats))


if __name__ == "__main__":
    main()
