"""Forward + backward under autograd: attnkit against torch SDPA (torch's CPU flash backward),
side by side in one run.

Prints, per shape: the max gradient error of each against an fp64 autograd reference (L <= 2048),
median ms of fwd+bwd, GFLOP/s counted as 3.5x the forward's two GEMMs (the forward's 2, the
backward's 5 nominal, as flash-attn counts; attnkit's backward actually recomputes S and dP
once more), the ratio against torch, and the extra peak RSS of one fwd+bwd in a fresh process.
The varlen row runs flash_attn_varlen_func on a skewed packed batch against torch SDPA on the
same batch padded to its longest sequence (a key padding mask, causal folded in).
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import setup, attention_flops, header, median_ms, print_table  # noqa: E402  (before torch: see timing.py)

import torch

import attnkit  # noqa: E402

F = torch.nn.functional

SHAPES = [  # (B, H, L, D, causal)
    (1, 8, 1024, 64, False),
    (1, 8, 2048, 64, True),
    (1, 32, 4096, 128, True),
]
SKEWED = [2048, 512, 256, 128, 64, 32, 16, 8]   # one long document and many short ones


def fwd_bwd(function, inputs, grad):
    leaves = [x.detach().requires_grad_() for x in inputs]
    function(*leaves).backward(grad)
    return [x.grad for x in leaves]


def gradient_errors(ours, theirs, exact):
    mine = max((a.double() - e).abs().max().item() for a, e in zip(ours, exact))
    torchs = max((a.double() - e).abs().max().item() for a, e in zip(theirs, exact))
    return f"{mine:.1e}", f"{torchs:.1e}"


MEMORY_PROBE = r"""
import sys, torch, attnkit
F = torch.nn.functional

def high_water_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))

which, batch, heads, seq, dim, causal = sys.argv[1], *map(int, sys.argv[2:7])
q, k, v = (torch.randn(batch, heads, seq, dim, requires_grad=True) for _ in range(3))
grad = torch.randn(batch, heads, seq, dim)
tiny = [torch.randn(1, 1, 64, 64, requires_grad=True) for _ in range(3)]
attnkit.scaled_dot_product_attention(*tiny).sum().backward(); F.scaled_dot_product_attention(*tiny).sum().backward()
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")          # reset the peak-RSS high-water mark to the current RSS
before = high_water_kib()
attention = attnkit.scaled_dot_product_attention if which == "attnkit" else F.scaled_dot_product_attention
attention(q, k, v, is_causal=bool(causal)).backward(grad)
print((high_water_kib() - before) / 1024)
"""


def extra_peak_rss_mib(which, batch, heads, seq, dim, causal):
    """Peak RSS growth (MiB) of one fwd+bwd in a fresh process: out, lse and the three gradients included."""
    result = subprocess.run([sys.executable, "-c", MEMORY_PROBE, which, str(batch), str(heads), str(seq), str(dim),
                             str(int(causal))], capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def fixed_rows(repeats):
    rows = []
    for batch, heads, seq, dim, causal in SHAPES:
        q, k, v, grad = (torch.randn(batch, heads, seq, dim) for _ in range(4))

        def ours():
            return fwd_bwd(lambda a, b, c: attnkit.scaled_dot_product_attention(a, b, c, is_causal=causal), (q, k, v),
                           grad)

        def theirs():
            return fwd_bwd(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=causal), (q, k, v), grad)

        if seq <= 2048:
            exact = fwd_bwd(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=causal),
                            (q.double(), k.double(), v.double()), grad.double())
            err_ours, err_torch = gradient_errors(ours(), theirs(), exact)
        else:
            err_ours, err_torch = "-", "-"
        ms_ours, ms_torch = median_ms([ours, theirs], repeats=repeats, warmup=1, budget_s=60)
        flops = 3.5 * attention_flops(batch, heads, seq, seq, dim, causal)
        mem_ours = extra_peak_rss_mib("attnkit", batch, heads, seq, dim, causal)
        mem_torch = extra_peak_rss_mib("torch", batch, heads, seq, dim, causal)
        rows.append(["sdpa fwd+bwd" + (" causal" if causal else ""), f"B{batch} H{heads} L{seq} D{dim}", err_ours,
                     err_torch, f"{ms_ours:.1f}", f"{ms_torch:.1f}", f"{flops / ms_ours / 1e6:.0f}",
                     f"{flops / ms_torch / 1e6:.0f}", f"{ms_torch / ms_ours:.2f}x", f"{mem_ours:.0f} / {mem_torch:.0f}"])
    return rows


def varlen_row(repeats, heads=8, dim=64):
    lengths = SKEWED
    total, longest, batch = sum(lengths), max(lengths), len(lengths)
    cu = torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist(), dtype=torch.int32)
    q, k, v, grad = (torch.randn(total, heads, dim) for _ in range(4))
    # The padded batch torch needs: (B, H, longest, D), keys past each length masked, causal folded in.
    padded = [torch.zeros(batch, heads, longest, dim) for _ in range(4)]
    for b, (start, length) in enumerate(zip(cu[:-1].tolist(), lengths)):
        for tensor, source in zip(padded, (q, k, v, grad)):
            tensor[b, :, :length] = source[start:start + length].transpose(0, 1)
    keys = torch.arange(longest)
    mask = (keys[None, :] < torch.tensor(lengths)[:, None])[:, None, None, :] & torch.ones(longest, longest).tril().bool()
    mask = mask | torch.eye(longest, dtype=torch.bool)   # padded rows keep one key: no NaN rows in torch's softmax

    def ours():
        return fwd_bwd(lambda a, b, c: attnkit.flash_attn_varlen_func(a, b, c, cu, cu, longest, longest, causal=True),
                       (q, k, v), grad)

    def theirs():
        return fwd_bwd(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, attn_mask=mask), padded[:3], padded[3])

    ms_ours, ms_torch = median_ms([ours, theirs], repeats=repeats, warmup=1, budget_s=60)
    flops = 3.5 * sum(attention_flops(1, heads, n, n, dim, causal=True) for n in lengths)
    return ["varlen fwd+bwd causal", f"{batch} docs {min(lengths)}..{longest} H{heads} D{dim}", "-", "-",
            f"{ms_ours:.1f}", f"{ms_torch:.1f}", f"{flops / ms_ours / 1e6:.0f}", f"{flops / ms_torch / 1e6:.0f}",
            f"{ms_torch / ms_ours:.2f}x", "-"]


HEADERS = ["kernel", "shape", "grad err vs fp64", "torch grad err", "attnkit ms", "torch ms", "attnkit GFLOP/s",
           "torch GFLOP/s", "speedup", "extra peak MiB (ours / torch)"]


def main():
    args = setup(__doc__, repeats=7)
    print(header(args, f"fp32; fwd+bwd medians of up to {args.repeats} interleaved runs") + "\n")
    print_table(HEADERS, fixed_rows(args.repeats) + [varlen_row(args.repeats)])
    print("\nvarlen: torch runs the batch padded to its longest document with a key mask; its GFLOP/s "
          "counts the packed batch's useful work.")


if __name__ == "__main__":
    main()
