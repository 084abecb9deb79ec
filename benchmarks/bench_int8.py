"""int8 QKᵀ attention against torch fp32 SDPA and attnkit fp32, side by side in one run,
with the accuracy metrics of docs/semantics.md §5 (cosine, relative L1 against torch fp32).

P·V is fp16 on AVX512_FP16 CPUs (fp32 across tiles) and fp32 elsewhere;
ATTNKIT_INT8_PV=fp32 in the environment keeps it fp32. The header line says which ran."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import attention_flops, header, median_ms, print_table, setup  # noqa: E402  (before torch: see timing.py)

import torch

import attnkit  # noqa: E402

F = torch.nn.functional
SHAPES = [(1, 8, 1024, 64, False), (1, 8, 4096, 128, True)]


def accuracy(actual, reference):
    a, b = actual.double().flatten(), reference.double().flatten()
    return (a @ b / (a.norm() * b.norm())).item(), ((a - b).abs().sum() / b.abs().sum()).item()


def int8_rows(shapes, repeats, mode="per_block"):
    rows = []
    for batch, heads, seq, dim, causal in shapes:
        q, k, v = (torch.randn(batch, heads, seq, dim) for _ in range(3))
        k_offset = k + torch.randn(1, heads, 1, dim) * 8
        for label, key in (("N(0,1)", k), ("K offset", k_offset)):
            reference = F.scaled_dot_product_attention(q, key, v, is_causal=causal)
            out = attnkit.int8_scaled_dot_product_attention(q, key, v, is_causal=causal, qk_quant=mode)
            cosine, relative_l1 = accuracy(out, reference)
            if label == "N(0,1)":
                ms_int8, ms_fp32, ms_torch = median_ms([
                    lambda: attnkit.int8_scaled_dot_product_attention(q, k, v, is_causal=causal, qk_quant=mode),
                    lambda: attnkit.scaled_dot_product_attention(q, k, v, is_causal=causal),
                    lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)], repeats=repeats)
                flops = attention_flops(batch, heads, seq, seq, dim, causal)
                timing = [f"{ms_int8:.1f}", f"{ms_fp32:.1f}", f"{ms_torch:.1f}", f"{flops / ms_int8 / 1e6:.0f}",
                          f"{ms_torch / ms_int8:.2f}x"]
            else:
                timing = ["-"] * 5
            rows.append([f"int8 sdpa {mode}" + (" causal" if causal else ""), f"B{batch} H{heads} L{seq} D{dim}", label,
                         f"{cosine:.5f}", f"{relative_l1:.4f}"] + timing)
    return rows


def main():
    args = setup(__doc__, repeats=21)
    pv = attnkit.int8_pv_dtype()
    print(header(args, f"int8 P·V in {pv}; medians of up to {args.repeats} interleaved runs; "
                       f"accuracy against torch fp32") + "\n")
    print_table(["kernel", "shape", "inputs", "cosine", "rel L1", "int8 ms", "attnkit fp32 ms", "torch fp32 ms",
                 "int8 GFLOP/s", "vs torch fp32"], int8_rows(SHAPES, args.repeats))


if __name__ == "__main__":
    main()
