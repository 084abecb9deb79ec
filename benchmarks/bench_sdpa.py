"""attnkit.scaled_dot_product_attention against torch SDPA, side by side in one run.

Prints, per shape: max error of each against an fp64 reference, median ms,
GFLOP/s, the ratio against torch, and the share of the sgemm peak measured in
the same run. Also the extra peak RSS of one L = 16384 call.
"""
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import setup, attention_flops, header, median_ms, print_table  # noqa: E402  (before torch: see timing.py)

import torch

import attnkit  # noqa: E402

F = torch.nn.functional

SHAPES = [  # (B, H, L, D, causal)
    (1, 8, 1024, 64, False),
    (1, 8, 2048, 64, True),
    (1, 32, 4096, 128, True),
    (4, 16, 512, 64, False),
]


def sgemm_peak_gflops(threads, size=2048, repeats=9):
    """OpenBLAS sgemm (numpy's bundled OpenBLAS) on size³, the machine's practical fp32 peak: the
    fastest of `repeats` runs, since a median taken in one slow spell of this noisy machine once
    put 155 GFLOP/s here (and attnkit rows at 130% of it) where a quiet spell gives about 260."""
    a = np.random.rand(size, size).astype(np.float32)
    b = np.random.rand(size, size).astype(np.float32)
    try:
        from threadpoolctl import threadpool_limits
        limiter = threadpool_limits(threads)
    except ImportError:
        limiter = None
    np.matmul(a, b)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b)
        times.append(time.perf_counter() - t0)
    if limiter is not None:
        limiter.unregister() if hasattr(limiter, "unregister") else None
    return 2 * size**3 / min(times) / 1e9


def sdpa_rows(shapes, repeats, dtype=torch.float32, peak=None):
    rows = []
    for batch, heads, seq, dim, causal in shapes:
        q, k, v = (torch.randn(batch, heads, seq, dim, dtype=dtype) for _ in range(3))
        ours = attnkit.scaled_dot_product_attention(q, k, v, is_causal=causal)
        theirs = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        if seq <= 2048:
            exact = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=causal)
            err_ours = f"{(ours.double() - exact).abs().max().item():.1e}"
            err_torch = f"{(theirs.double() - exact).abs().max().item():.1e}"
        else:
            err_ours, err_torch = f"{(ours - theirs).abs().max().item():.1e}*", "-"
        ms_ours, ms_torch = median_ms([lambda: attnkit.scaled_dot_product_attention(q, k, v, is_causal=causal),
                                       lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)],
                                      repeats=repeats)
        flops = attention_flops(batch, heads, seq, seq, dim, causal)
        gf_ours, gf_torch = flops / ms_ours / 1e6, flops / ms_torch / 1e6
        row = ["sdpa" + (" causal" if causal else ""), f"B{batch} H{heads} L{seq} D{dim}", str(dtype).split(".")[1],
               err_ours, err_torch, f"{ms_ours:.2f}", f"{ms_torch:.2f}", f"{gf_ours:.0f}", f"{gf_torch:.0f}",
               f"{ms_torch / ms_ours:.2f}x"]
        if peak:
            row.append(f"{100 * gf_ours / peak:.0f}%")
        rows.append(row)
    return rows


MEMORY_PROBE = r"""
import sys, torch, attnkit

def high_water_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))

which, seq = sys.argv[1], int(sys.argv[2])
q, k, v = (torch.randn(1, 1, seq, 64) for _ in range(3))
out = torch.empty(1, 1, seq, 64)
tiny = [torch.randn(1, 1, 64, 64) for _ in range(3)]
attnkit.scaled_dot_product_attention(*tiny); torch.nn.functional.scaled_dot_product_attention(*tiny)
del out
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")          # reset the peak-RSS high-water mark to the current RSS
before = high_water_kib()
if which == "attnkit":
    out = attnkit.scaled_dot_product_attention(q, k, v, is_causal=True)
else:
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
print((high_water_kib() - before) / 1024)
"""


def extra_peak_rss_mib(which, seq=16384):
    """Peak RSS growth (MiB) of one causal call on [1, 1, seq, 64] in a fresh process, the 4 MiB output included."""
    result = subprocess.run([sys.executable, "-c", MEMORY_PROBE, which, str(seq)], capture_output=True, text=True,
                            check=True)
    return float(result.stdout.strip().splitlines()[-1])


HEADERS = ["kernel", "shape", "dtype", "err vs fp64", "torch err", "attnkit ms", "torch ms", "attnkit GFLOP/s",
           "torch GFLOP/s", "speedup"]


def main():
    args = setup(__doc__, repeats=21)
    peak = sgemm_peak_gflops(args.threads)
    print(header(args, f"sgemm peak (numpy OpenBLAS, 2048^3, best of 9) {peak:.0f} GFLOP/s; "
                       f"medians of up to {args.repeats} interleaved runs") + "\n")
    print_table(HEADERS + ["% sgemm peak"], sdpa_rows(SHAPES, args.repeats, peak=peak))
    print("\n* L > 2048: error against torch fp32 instead of fp64.")
    print(f"\nextra peak RSS, causal L=16384 D64 one head: attnkit {extra_peak_rss_mib('attnkit'):.1f} MiB, "
          f"torch {extra_peak_rss_mib('torch'):.1f} MiB")


if __name__ == "__main__":
    main()
