"""The attention guide's variants (issue 19): attnkit's sparse top-k, AFT and Linformer kernels against
the guide's torch implementations of the same math, timed in one run, side by side.

- sparse top-k, S 8192, k 64: the guide's method (per chunk of queries: scores, torch.topk, softmax,
  scatter into a dense [chunk, S] matrix, matmul by V) against attnkit's streaming running top-k;
- AFT at T 4096, d 512: the guide's AFTFull / AFTLocal / AFTSimple cores (exp(W) @ (exp(K) ⊙ V) over
  exp(W) @ exp(K), the local band by −inf fill, softmax over tokens) against attnkit's kernels; low-rank
  W = u·vᵀ is expanded for torch, never for attnkit;
- Linformer, S 8192, k 256: the guide's core (nn.Linear projections along the sequence, then torch SDPA
  over the k projected keys) against attnkit's one pass.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import header, median_ms, print_table, setup  # noqa: E402  (before torch: see timing.py)

import torch  # noqa: E402

import attnkit  # noqa: E402

F = torch.nn.functional


def guide_sparse_top_k(q, k, v, top, num_chunks=4):
    outs = []
    for chunk in q.chunk(num_chunks, dim=-2):
        scores = chunk @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
        values, index = scores.topk(top, dim=-1)
        dense = torch.zeros_like(scores).scatter_(-1, index, torch.softmax(values, dim=-1))
        outs.append(dense @ v)
    return torch.cat(outs, dim=-2)


def guide_aft(q, k, v, w):
    T = q.shape[1]
    w = torch.exp(w[:T, :T]).unsqueeze(0)
    ek = torch.exp(k)
    return torch.sigmoid(q) * (w @ (ek * v)) / (w @ ek)


def guide_aft_local(q, k, v, w, context):
    T = q.shape[1]
    t = torch.arange(T)
    band = w[:T, :T].masked_fill((t[:, None] - t[None, :]).abs() >= context, float("-inf"))
    return guide_aft(q, k, v, band)


def guide_aft_simple(q, k, v):
    return torch.sigmoid(q) * (torch.softmax(k, dim=1) * v).sum(dim=1, keepdim=True)


def guide_linformer(q, k, v, proj_e, proj_f):
    keys = proj_e(k.transpose(-1, -2)).transpose(-1, -2)      # nn.Linear(S, k) along the sequence
    values = proj_f(v.transpose(-1, -2)).transpose(-1, -2)
    return F.scaled_dot_product_attention(q, keys, values)


def row(name, flops, times, error):
    ours, theirs = times
    return [name, f"{ours:.1f}", f"{theirs:.1f}", f"{flops / ours / 1e6:.1f}", f"{theirs / ours:.2f}x", f"{error:.1e}"]


def max_error(a, b):
    return (a.double() - b.double()).abs().max().item()


def main():
    args = setup(__doc__.splitlines()[0], repeats=5)
    print(header(args, f"fp32; medians of {args.repeats} interleaved rounds"))
    rows = []
    with torch.no_grad():
        # Sparse top-k: B1 H8 S8192 D64, k 64.
        heads, seq, dim, top = 8, 8192, 64, 64
        q, k, v = (torch.randn(1, heads, seq, dim) for _ in range(3))
        flops = 2.0 * heads * seq * seq * dim + 2.0 * heads * seq * top * dim
        times = median_ms([lambda: attnkit.sparse_top_k_attention(q, k, v, top),
                           lambda: guide_sparse_top_k(q, k, v, top)], repeats=args.repeats)
        error = max_error(attnkit.sparse_top_k_attention(q, k, v, top), guide_sparse_top_k(q, k, v, top))
        rows.append(row(f"sparse top-k H{heads} S{seq} D{dim} k{top}", flops, times, error))

        # AFT: B1 T4096 d512; W dense, banded (s 256) or rank 16.
        length, features, context, rank = 4096, 512, 256, 16
        q, k, v = (torch.randn(1, length, features) for _ in range(3))
        w = 0.1 * torch.randn(length, length)
        u, f = 0.3 * torch.randn(length, rank), 0.3 * torch.randn(length, rank)
        full_flops = 2.0 * length * length * 2 * features
        times = median_ms([lambda: attnkit.aft_full(q, k, v, w), lambda: guide_aft(q, k, v, w)], repeats=args.repeats)
        rows.append(row(f"aft_full T{length} d{features}", full_flops, times,
                        max_error(attnkit.aft_full(q, k, v, w), guide_aft(q, k, v, w))))
        times = median_ms([lambda: attnkit.aft_full(q, k, v, (u, f)), lambda: guide_aft(q, k, v, u @ f.T)],
                          repeats=args.repeats)
        rows.append(row(f"aft_full rank {rank} (torch expands W)", full_flops + 2.0 * length * length * rank, times,
                        max_error(attnkit.aft_full(q, k, v, (u, f)), guide_aft(q, k, v, u @ f.T))))
        band = 2.0 * (2 * context - 1) * length * 2 * features
        times = median_ms([lambda: attnkit.aft_local(q, k, v, w, context), lambda: guide_aft_local(q, k, v, w, context)],
                          repeats=args.repeats)
        rows.append(row(f"aft_local s{context}", band, times,
                        max_error(attnkit.aft_local(q, k, v, w, context), guide_aft_local(q, k, v, w, context))))
        simple_flops = 6.0 * length * features
        times = median_ms([lambda: attnkit.aft_simple(q, k, v), lambda: guide_aft_simple(q, k, v)],
                          repeats=max(args.repeats, 15))
        rows.append(row("aft_simple", simple_flops, times,
                        max_error(attnkit.aft_simple(q, k, v), guide_aft_simple(q, k, v))))

        # Linformer: B1 H8 S8192 D64, k 256.
        heads, seq, dim, projected = 8, 8192, 64, 256
        q, k, v = (torch.randn(1, heads, seq, dim) for _ in range(3))
        proj_e, proj_f = torch.nn.Linear(seq, projected), torch.nn.Linear(seq, projected)
        flops = 2.0 * heads * (2 * seq * projected * dim + 2 * seq * projected * dim)
        times = median_ms([lambda: attnkit.linformer_attention(q, k, v, proj_e, proj_f),
                           lambda: guide_linformer(q, k, v, proj_e, proj_f)], repeats=args.repeats)
        rows.append(row(f"linformer H{heads} S{seq} D{dim} k{projected}", flops, times,
                        max_error(attnkit.linformer_attention(q, k, v, proj_e, proj_f),
                                  guide_linformer(q, k, v, proj_e, proj_f))))
    print_table(["variant", "attnkit ms", "guide (torch) ms", "attnkit GFLOP/s", "speedup", "max |diff|"], rows)


if __name__ == "__main__":
    main()
