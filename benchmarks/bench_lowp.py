"""fp16 and bf16 attention: attnkit against torch SDPA in the same dtype, side by side in one run.

"err" columns are max|out − ref32|, ref32 being the same math in fp32 on the
same rounded inputs; "err ratio" is ours over torch's (the accuracy rule asks
for <= 1, with a one-ulp floor).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import attention_flops, header, median_ms, print_table, setup  # noqa: E402  (before torch: see timing.py)

import torch

import attnkit  # noqa: E402

F = torch.nn.functional
SHAPES = [(1, 8, 1024, 64, False), (1, 8, 2048, 64, True)]


def lowp_rows(shapes, repeats, dtypes=(torch.float16, torch.bfloat16)):
    rows = []
    for dtype in dtypes:
        for batch, heads, seq, dim, causal in shapes:
            q, k, v = (torch.randn(batch, heads, seq, dim).to(dtype) for _ in range(3))
            ref32 = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=causal)
            ours = attnkit.scaled_dot_product_attention(q, k, v, is_causal=causal)
            theirs = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            err_ours = (ours.float() - ref32).abs().max().item()
            err_torch = (theirs.float() - ref32).abs().max().item()
            ms_ours, ms_torch = median_ms([lambda: attnkit.scaled_dot_product_attention(q, k, v, is_causal=causal),
                                           lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)],
                                          repeats=repeats)
            flops = attention_flops(batch, heads, seq, seq, dim, causal)
            rows.append(["sdpa" + (" causal" if causal else ""), f"B{batch} H{heads} L{seq} D{dim}",
                         str(dtype).split(".")[1], f"{err_ours:.1e}", f"{err_torch:.1e}",
                         f"{err_ours / err_torch:.2f}" if err_torch else "-", f"{ms_ours:.2f}", f"{ms_torch:.2f}",
                         f"{flops / ms_ours / 1e6:.0f}", f"{flops / ms_torch / 1e6:.0f}", f"{ms_torch / ms_ours:.2f}x"])
    return rows


HEADERS = ["kernel", "shape", "dtype", "err vs ref32", "torch err", "err ratio", "attnkit ms", "torch ms",
           "attnkit GFLOP/s", "torch GFLOP/s", "speedup"]


def main():
    args = setup(__doc__, repeats=9)
    print(header(args, f"medians of up to {args.repeats} interleaved runs") + "\n")
    print_table(HEADERS, lowp_rows(SHAPES, args.repeats))


if __name__ == "__main__":
    main()
