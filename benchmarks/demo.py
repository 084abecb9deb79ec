"""The main job: attnkit against torch on default shapes, parity and speed in one table.

Each row runs one attnkit entry point and its torch counterpart on the same
inputs, timed alternately (medians). Error columns are max|out − reference|:
fp64 math for fp32 rows, fp32 math on the same rounded inputs for fp16/bf16
rows, so the two columns say who is closer to the exact answer.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import header, print_table, setup  # noqa: E402  (before torch: see timing.py)

import torch

import attnkit  # noqa: E402
from bench_eager import eager_rows  # noqa: E402
from bench_flash import varlen_row  # noqa: E402
from bench_int8 import int8_rows  # noqa: E402
from bench_lowp import lowp_rows  # noqa: E402
from bench_sdpa import sdpa_rows  # noqa: E402


def main():
    args = setup(__doc__, repeats=7)
    print(header(args, f"medians of up to {args.repeats} interleaved runs") + "\n")
    rows = []
    rows += eager_rows([(4, 512, 8, 64, False, True), (1, 2048, 8, 64, True, False)], args.repeats)
    rows += sdpa_rows([(1, 8, 1024, 64, False), (1, 8, 2048, 64, True), (4, 16, 512, 64, False)], args.repeats)
    varlen = varlen_row(args.repeats)
    rows.append(varlen[:2] + ["fp32"] + varlen[2:9])
    rows += [r[:5] + r[6:] for r in lowp_rows([(1, 8, 1024, 64, False)], args.repeats)]
    for row in int8_rows([(1, 8, 1024, 64, False)], args.repeats)[:1]:
        # kernel, shape, "int8 QK", cosine/rel L1 against torch fp32, int8 ms, torch fp32 ms, GFLOP/s
        rows.append([row[0], row[1], "int8 QK", f"cos {row[3]}", f"L1 {row[4]}", row[5], row[7], row[8], "-", row[9]])
    print_table(["kernel", "shape", "dtype", "attnkit err", "torch err", "attnkit ms", "torch ms",
                 "attnkit GFLOP/s", "torch GFLOP/s", "speedup"], rows)
    print("\ntorch baselines: eager rows use the textbook torch code (matmul, masked_fill, softmax, matmul); "
          "sdpa rows torch SDPA; the varlen row torch SDPA on the batch padded to its longest sequence.")


if __name__ == "__main__":
    main()
