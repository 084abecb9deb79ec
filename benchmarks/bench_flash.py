"""attnkit's flash-attn API against torch SDPA, side by side in one run.

Rows: fixed-length batches (flash_attn_func vs torch SDPA on the same values), a
skewed varlen batch (flash_attn_varlen_func vs torch SDPA on the batch padded to
its longest sequence, with a padding mask), and the extra peak RSS of one
16384-token sequence. GFLOP/s count useful work only: padding is not credited.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import attention_flops, header, median_ms, print_table, setup  # noqa: E402  (before torch: see timing.py)

import torch

import attnkit  # noqa: E402

F = torch.nn.functional


def fixed_rows(repeats):
    rows = []
    for batch, heads, seq, dim, causal in [(1, 8, 1024, 64, False), (1, 8, 2048, 64, True)]:
        q, k, v = (torch.randn(batch, seq, heads, dim) for _ in range(3))
        qt, kt, vt = (x.transpose(1, 2).contiguous() for x in (q, k, v))   # torch's (B, H, S, D) layout
        ours = attnkit.flash_attn_func(q, k, v, causal=causal)
        exact = F.scaled_dot_product_attention(qt.double(), kt.double(), vt.double(), is_causal=causal).transpose(1, 2)
        theirs = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal).transpose(1, 2)
        # torch twice: on contiguous (B, H, S, D) copies, its best case, and on the caller's
        # (B, S, H, D) tensors as transposed views, which is what swapping flash_attn_func for
        # SDPA costs a flash-attn user. "speedup" is against the first.
        ms_ours, ms_torch, ms_views = median_ms([
            lambda: attnkit.flash_attn_func(q, k, v, causal=causal),
            lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal),
            lambda: F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                   is_causal=causal).transpose(1, 2)], repeats=repeats)
        flops = attention_flops(batch, heads, seq, seq, dim, causal)
        rows.append(["flash_attn_func" + (" causal" if causal else ""), f"B{batch} H{heads} L{seq} D{dim}",
                     f"{(ours.double() - exact).abs().max().item():.1e}", f"{(theirs.double() - exact).abs().max().item():.1e}",
                     f"{ms_ours:.2f}", f"{ms_torch:.2f}", f"{flops / ms_ours / 1e6:.0f}", f"{flops / ms_torch / 1e6:.0f}",
                     f"{ms_torch / ms_ours:.2f}x", f"{ms_views:.2f}", f"{ms_views / ms_ours:.2f}x"])
    return rows


def skewed_lengths(count=16, shortest=16, longest=2048):
    """Geometric lengths from `shortest` to `longest`."""
    ratio = (longest / shortest) ** (1 / (count - 1))
    return [round(shortest * ratio**i) for i in range(count)]


def varlen_row(repeats, heads=8, dim=64):
    lengths = skewed_lengths()
    longest, batch = max(lengths), len(lengths)
    cu = torch.tensor([0] + list(torch.tensor(lengths).cumsum(0)), dtype=torch.int32)
    total = int(cu[-1])
    q, k, v = (torch.randn(total, heads, dim) for _ in range(3))
    padded = [torch.zeros(batch, heads, longest, dim) for _ in range(3)]
    for b, length in enumerate(lengths):
        for target, source in zip(padded, (q, k, v)):
            target[b, :, :length] = source[int(cu[b]):int(cu[b + 1])].transpose(0, 1)
    keep = torch.arange(longest)[None, :] < torch.tensor(lengths)[:, None]          # key padding
    mask = (keep[:, None, None, :] & torch.ones(longest, longest, dtype=torch.bool).tril())  # causal too
    ours = attnkit.flash_attn_varlen_func(q, k, v, cu, cu, longest, longest, causal=True)
    theirs = F.scaled_dot_product_attention(*padded, attn_mask=mask)
    worst = 0.0
    for b, length in enumerate(lengths):
        rows = slice(int(cu[b]), int(cu[b + 1]))
        worst = max(worst, (ours[rows] - theirs[b, :, :length].transpose(0, 1)).abs().max().item())
    ms_ours, ms_torch = median_ms([lambda: attnkit.flash_attn_varlen_func(q, k, v, cu, cu, longest, longest, causal=True),
                                   lambda: F.scaled_dot_product_attention(*padded, attn_mask=mask)], repeats=repeats)
    flops = sum(attention_flops(1, heads, n, n, dim, causal=True) for n in lengths)
    return ["varlen causal, 16 seqs 16..2048", f"H{heads} D{dim} total {total}", f"{worst:.1e} vs torch", "-",
            f"{ms_ours:.2f}", f"{ms_torch:.2f}", f"{flops / ms_ours / 1e6:.0f}", f"{flops / ms_torch / 1e6:.0f}",
            f"{ms_torch / ms_ours:.2f}x", "-", "-"]


MEMORY_PROBE = r"""
import sys, torch, attnkit

def high_water_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))

tokens, heads, dim = int(sys.argv[1]), 8, 64
q, k, v = (torch.randn(tokens, heads, dim) for _ in range(3))
cu = torch.tensor([0, tokens], dtype=torch.int32)
small = torch.randn(64, heads, dim)
attnkit.flash_attn_varlen_func(small, small, small, torch.tensor([0, 64], dtype=torch.int32), torch.tensor([0, 64], dtype=torch.int32), 64, 64)
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")
before = high_water_kib()
out = attnkit.flash_attn_varlen_func(q, k, v, cu, cu, tokens, tokens, causal=True)
print((high_water_kib() - before) / 1024, out.numel() * 4 / 2**20)
"""


def extra_peak_rss(tokens=16384):
    result = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(tokens)], capture_output=True, text=True, check=True)
    growth, output = (float(x) for x in result.stdout.split())
    return growth, output


HEADERS = ["kernel", "shape", "err vs fp64", "torch err", "attnkit ms", "torch ms", "attnkit GFLOP/s",
           "torch GFLOP/s", "speedup", "torch ms (BSHD views)", "speedup vs views"]


def main():
    args = setup(__doc__, repeats=21)
    print(header(args, f"fp32; medians of up to {args.repeats} interleaved runs") + "\n")
    print_table(HEADERS, fixed_rows(args.repeats) + [varlen_row(args.repeats)])
    growth, output = extra_peak_rss()
    print(f"\nextra peak RSS, one causal sequence of 16384 tokens (H8 D64): {growth:.1f} MiB in all, "
          f"of which {output:.1f} MiB is the output itself -> {growth - output:.1f} MiB of working memory")


if __name__ == "__main__":
    main()
