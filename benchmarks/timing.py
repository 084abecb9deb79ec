"""Timing helpers for the benchmarks (the shared ones live in attnkit._timing): medians of interleaved runs.

The machine is noisy, so attnkit and torch are timed alternately in one loop
(a slow spell hits both) and the median is reported.
"""
import argparse
import os
import sys

# torch's OpenMP workers spin for a while after each op (libgomp's default wait
# policy), so a kernel timed right after a torch call shares the cores with
# them. Measured on B1 H8 L1024 D64: attnkit 14.2 ms right after torch against
# 11.4 ms with PASSIVE, while torch's own time was the same either way (12.8
# and 12.6 ms). libgomp reads the policy once, when torch loads.
if "torch" in sys.modules:
    raise RuntimeError("import timing before torch: it sets OMP_WAIT_POLICY for torch's OpenMP runtime")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from attnkit._timing import attention_flops, cpu_model, median_ms, print_table  # noqa: E402,F401  (re-exported)
from attnkit._timing import header as shared_header  # noqa: E402


def setup(description, repeats=9):
    """Parses --repeats and --threads, seeds torch, and gives torch and attnkit the same thread count."""
    import torch

    import attnkit

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    attnkit.set_num_threads(args.threads)
    return args


def header(args, extra=""):
    """The first line of every benchmark (attnkit._timing.header): CPU model, kernel tiers, torch's ISA, threads."""
    return shared_header(args.threads, extra)
