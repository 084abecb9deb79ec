"""Longformer-style sliding-window attention (attnkit.sliding_window_attention, |i − j| <= w):
time against sequence length at a fixed window, to show it is linear in S (the flash engine
visits only the key tiles the band touches), beside torch SDPA with the band as a bool mask
(quadratic: it computes every score and its mask is S² bytes, so it is skipped above 16k)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import header, median_ms, print_table, setup  # noqa: E402  (before torch: see timing.py)

import torch

import attnkit  # noqa: E402

F = torch.nn.functional
TORCH_LIMIT = 16384   # its S x S bool mask: 256 MiB here, 1 GiB at 32k


def main():
    args = setup(__doc__.splitlines()[0], repeats=5)
    heads, dim, window = 8, 64, 256
    print(header(args, f"B1 H{heads} D{dim} window {window} (each side); fp32; medians of {args.repeats} rounds"))
    rows, base = [], None
    for seq in (8192, 16384, 32768):
        q, k, v = (torch.randn(1, seq, heads, dim) for _ in range(3))
        pairs = seq * (2 * window + 1) - window * (window + 1)   # (query, key) pairs inside the band
        flops = 4.0 * heads * pairs * dim
        functions = [lambda: attnkit.sliding_window_attention(q, k, v, window)]
        if seq <= TORCH_LIMIT:
            qt, kt, vt = (x.transpose(1, 2).contiguous() for x in (q, k, v))
            index = torch.arange(seq)
            mask = (index[:, None] - index[None, :]).abs() <= window
            functions.append(lambda: F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask))
        times = median_ms(functions, repeats=args.repeats)
        base = base or times[0] / seq
        torch_ms = f"{times[1]:.1f}" if len(times) > 1 else "skipped (S² mask)"
        speedup = f"{times[1] / times[0]:.1f}x" if len(times) > 1 else "-"
        rows.append([seq, f"{times[0]:.1f}", f"{times[0] / seq * 1000:.2f}", f"{times[0] / seq / base:.2f}",
                     f"{flops / times[0] / 1e6:.1f}", torch_ms, speedup])
    print_table(["S", "attnkit ms", "µs per token", "per-token vs 8k", "attnkit band GFLOP/s", "torch ms (band mask)",
                 "speedup"], rows)


if __name__ == "__main__":
    main()
