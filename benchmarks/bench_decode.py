"""Decode-shaped SDPA: one query token against a long KV cache (GQA 32/8, D128, fp32), attnkit against torch
SDPA side by side in one run. Reports median ms and the KV cache bytes read per second (K and V once each)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import header, median_ms, print_table, setup  # noqa: E402  (before torch: see timing.py)

import torch

import attnkit  # noqa: E402

F = torch.nn.functional


def decode_rows(lengths, repeats, heads=32, kv_heads=8, dim=128):
    rows = []
    for keys in lengths:
        q = torch.randn(1, heads, 1, dim)
        k, v = (torch.randn(1, kv_heads, keys, dim) for _ in range(2))
        ours = attnkit.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        exact = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), enable_gqa=True)
        theirs = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        ms_ours, ms_torch = median_ms([lambda: attnkit.scaled_dot_product_attention(q, k, v, enable_gqa=True),
                                       lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)], repeats=repeats)
        cache_gb = 2 * k.numel() * 4 / 1e9
        rows.append(["decode sdpa", f"Hq{heads} Hkv{kv_heads} S{keys} D{dim}",
                     f"{(ours.double() - exact).abs().max().item():.1e}",
                     f"{(theirs.double() - exact).abs().max().item():.1e}", f"{ms_ours:.2f}", f"{ms_torch:.2f}",
                     f"{cache_gb / ms_ours * 1e3:.2f}", f"{cache_gb / ms_torch * 1e3:.2f}", f"{ms_torch / ms_ours:.2f}x"])
    return rows


def main():
    args = setup(__doc__, repeats=21)
    print(header(args, f"fp32; medians of up to {args.repeats} interleaved runs") + "\n")
    print_table(["kernel", "shape", "err vs fp64", "torch err", "attnkit ms", "torch ms", "attnkit GB/s",
                 "torch GB/s", "speedup"], decode_rows([4096, 16384, 32768], args.repeats))


if __name__ == "__main__":
    main()
