"""`python -m attnkit.bench` (or `attnkit-bench`): attnkit against torch on this machine.

    attnkit-bench --op sdpa --sweep 256,512,1024,2048 --causal --plot sdpa.png --json sdpa.json

Times attnkit and torch side by side in one run (medians of interleaved rounds), prints a table
of times, GFLOP/s (GB/s of KV cache read for decode), the speedup and the largest difference
between the two outputs, with the CPU model and attnkit's kernel tier in the header. --plot
draws throughput against sequence length, one line per implementation; --json writes the
numbers. Ops:
  sdpa      attnkit.scaled_dot_product_attention vs torch SDPA, (B, H, L, D)
  flash     flash_attn_func (B, L, H, D) vs torch SDPA on the same tensors, transposed
  varlen    flash_attn_varlen_func on a packed batch of lengths L, L/2, L/4 ... vs torch SDPA on
            the batch padded to L with a key padding mask (GFLOP/s count the packed work)
  int8      int8_scaled_dot_product_attention vs torch SDPA in fp32
  decode    flash_attn_with_kvcache, one query token against a cache of L keys, vs torch SDPA
  backward  fwd+bwd of scaled_dot_product_attention under autograd vs torch's (3.5x the forward's flops)
"""
import argparse
import json
import os
import sys

# torch's OpenMP workers spin after each op unless told otherwise, and would share the cores with
# attnkit's kernel timed right after (see benchmarks/timing.py); libgomp reads this when torch loads.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

OPS = ("sdpa", "flash", "varlen", "int8", "decode", "backward")
DTYPES = ("float32", "float16", "bfloat16")


def _arguments(argv):
    parser = argparse.ArgumentParser(prog="attnkit-bench", description="attnkit against torch on this CPU.")
    parser.add_argument("--op", choices=OPS, default="sdpa")
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=None, help="fewer key/value heads (GQA); default: --heads")
    parser.add_argument("--dim", type=int, default=64, help="head dim")
    parser.add_argument("--seq", type=int, default=1024, help="sequence length (keys: the cache length for decode)")
    parser.add_argument("--sweep", type=str, default=None, help="comma-separated sequence lengths, instead of --seq")
    parser.add_argument("--causal", action="store_true")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds per shape (median reported)")
    parser.add_argument("--plot", type=str, default=None, help="write a PNG of throughput against sequence length")
    parser.add_argument("--plot-size", type=str, default="900x540", help="the PNG's size in pixels, WIDTHxHEIGHT")
    parser.add_argument("--json", type=str, default=None, help="write the results as JSON to this path ('-': stdout)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = parser.parse_args(argv)
    try:
        args.lengths = [int(x) for x in args.sweep.split(",")] if args.sweep else [args.seq]
    except ValueError:
        parser.error(f"--sweep must be comma-separated integers, got {args.sweep!r}")
    if any(n < 1 for n in args.lengths):
        parser.error("sequence lengths must be >= 1")
    args.kv_heads = args.kv_heads or args.heads
    if args.heads % args.kv_heads:
        parser.error(f"--kv-heads ({args.kv_heads}) must divide --heads ({args.heads})")
    try:
        width, height = (int(x) for x in args.plot_size.lower().split("x"))
        args.plot_pixels = (width, height)
    except ValueError:
        parser.error(f"--plot-size must be WIDTHxHEIGHT, got {args.plot_size!r}")
    return args


def _progress(done, total, label, enabled):
    if not enabled:
        return
    filled = int(30 * done / total)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} {label:<24}")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _case(args, seq, torch, attnkit):
    """(attnkit fn, torch fn, work units, unit) for one sequence length: work in flops or bytes."""
    from ._timing import attention_flops

    F = torch.nn.functional
    dtype = getattr(torch, args.dtype)
    b, h, hk, d = args.batch, args.heads, args.kv_heads, args.dim
    gqa = hk != h

    def randn(*shape):
        return torch.randn(*shape).to(dtype)

    if args.op in ("sdpa", "int8", "backward"):
        q, k, v = randn(b, h, seq, d), randn(b, hk, seq, d), randn(b, hk, seq, d)
        flops = attention_flops(b, h, seq, seq, d, args.causal)
        if args.op == "sdpa":
            return (lambda: attnkit.scaled_dot_product_attention(q, k, v, is_causal=args.causal, enable_gqa=gqa),
                    lambda: F.scaled_dot_product_attention(q, k, v, is_causal=args.causal, enable_gqa=gqa), flops, "GFLOP/s")
        if args.op == "int8":
            q32, k32, v32 = q.float(), k.float(), v.float()
            return (lambda: attnkit.int8_scaled_dot_product_attention(q, k, v, is_causal=args.causal, enable_gqa=gqa),
                    lambda: F.scaled_dot_product_attention(q32, k32, v32, is_causal=args.causal, enable_gqa=gqa),
                    flops, "GFLOP/s")
        grad = randn(b, h, seq, d)

        def fwd_bwd(function):
            leaves = [x.detach().requires_grad_() for x in (q, k, v)]
            function(*leaves, is_causal=args.causal, enable_gqa=gqa).backward(grad)
            return leaves[0].grad

        return (lambda: fwd_bwd(attnkit.scaled_dot_product_attention),
                lambda: fwd_bwd(F.scaled_dot_product_attention), 3.5 * flops, "GFLOP/s")
    if args.op == "flash":
        q, k, v = randn(b, seq, h, d), randn(b, seq, hk, d), randn(b, seq, hk, d)
        qt, kt, vt = (x.transpose(1, 2).contiguous() for x in (q, k, v))
        return (lambda: attnkit.flash_attn_func(q, k, v, causal=args.causal),
                lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=args.causal, enable_gqa=gqa).transpose(1, 2),
                attention_flops(b, h, seq, seq, d, args.causal), "GFLOP/s")
    if args.op == "varlen":
        lengths = [max(1, seq >> i) for i in range(max(args.batch, 1))]
        total = sum(lengths)
        q, k, v = randn(total, h, d), randn(total, hk, d), randn(total, hk, d)
        cu = torch.tensor([0] + lengths, dtype=torch.int32).cumsum(0, dtype=torch.int32)
        padded = [torch.zeros(len(lengths), n_heads, seq, d, dtype=dtype) for n_heads in (h, hk, hk)]
        valid = torch.zeros(len(lengths), seq, dtype=torch.bool)
        for i, n in enumerate(lengths):
            for dst, src in zip(padded, (q, k, v)):
                dst[i, :, :n] = src[cu[i]:cu[i] + n].transpose(0, 1)
            valid[i, :n] = True
        mask = valid[:, None, None, :] & (torch.ones(seq, seq, dtype=torch.bool).tril() if args.causal else True)

        def theirs():
            out = F.scaled_dot_product_attention(*padded, attn_mask=mask, enable_gqa=gqa)
            return torch.cat([out[i, :, :n].transpose(0, 1) for i, n in enumerate(lengths)])

        flops = sum(attention_flops(1, h, n, n, d, args.causal) for n in lengths)
        return (lambda: attnkit.flash_attn_varlen_func(q, k, v, cu, cu, seq, seq, causal=args.causal),
                theirs, flops, "GFLOP/s")
    # decode: one token per sequence against a cache of `seq` keys
    q = randn(b, 1, h, d)
    k_cache, v_cache = randn(b, seq, hk, d), randn(b, seq, hk, d)
    qt, kt, vt = (x.transpose(1, 2).contiguous() for x in (q, k_cache, v_cache))
    lengths = torch.full((b,), seq, dtype=torch.int32)
    return (lambda: attnkit.flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=lengths),
            lambda: F.scaled_dot_product_attention(qt, kt, vt, enable_gqa=gqa).transpose(1, 2),
            2 * k_cache.numel() * k_cache.element_size(), "GB/s")


def run(args):
    """Measures every length; returns the JSON-able result."""
    import torch

    import attnkit

    from ._timing import cpu_model, median_ms

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    attnkit.set_num_threads(args.threads)
    rows = []
    show = not args.no_progress
    for index, seq in enumerate(args.lengths):
        _progress(index, len(args.lengths), f"{args.op} L={seq}", show)
        ours, theirs, work, unit = _case(args, seq, torch, attnkit)
        with torch.no_grad() if args.op != "backward" else torch.enable_grad():
            difference = (ours().double() - theirs().double()).abs().max().item()
        ms_ours, ms_torch = median_ms([ours, theirs], repeats=args.repeats)
        rows.append({"seq_len": seq, "attnkit_ms": ms_ours, "torch_ms": ms_torch,
                     "attnkit_throughput": work / ms_ours / 1e6, "torch_throughput": work / ms_torch / 1e6,
                     "speedup": ms_torch / ms_ours, "max_abs_difference": difference})
        _progress(index + 1, len(args.lengths), f"{args.op} L={seq}", show)
    return {"cpu": cpu_model(), "isa": attnkit.isa(), "available_isas": attnkit.available_isas(),
            "torch_version": torch.__version__, "torch_isa": torch.backends.cpu.get_cpu_capability(),
            "attnkit_version": attnkit.__version__, "threads": args.threads, "op": args.op, "dtype": args.dtype,
            "shape": {"batch": args.batch, "heads": args.heads, "kv_heads": args.kv_heads, "dim": args.dim,
                      "causal": args.causal},
            "unit": unit, "repeats": args.repeats, "rows": rows}


def print_result(result, file=None):
    from ._timing import print_table

    shape = result["shape"]
    print(f"CPU {result['cpu']}; attnkit {result['attnkit_version']}, {result['isa']} kernels; torch "
          f"{result['torch_version']}, {result['torch_isa']} kernels; {result['threads']} threads", file=file)
    print(f"{result['op']} {result['dtype']} B{shape['batch']} H{shape['heads']}/{shape['kv_heads']} D{shape['dim']}"
          f"{' causal' if shape['causal'] else ''}; medians of {result['repeats']} interleaved rounds", file=file)
    unit = result["unit"]
    print_table(["L", "attnkit ms", "torch ms", f"attnkit {unit}", f"torch {unit}", "speedup", "max |diff|"],
                [[r["seq_len"], f"{r['attnkit_ms']:.3f}", f"{r['torch_ms']:.3f}", f"{r['attnkit_throughput']:.1f}",
                  f"{r['torch_throughput']:.1f}", f"{r['speedup']:.2f}x", f"{r['max_abs_difference']:.1e}"]
                 for r in result["rows"]], file=file)


def plot(result, path, pixels):
    """Throughput against sequence length, one line per implementation (matplotlib, no display)."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install attnkit[plot]") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dpi = 100
    figure, axes = plt.subplots(figsize=(pixels[0] / dpi, pixels[1] / dpi), dpi=dpi)
    lengths = [r["seq_len"] for r in result["rows"]]
    for key, label, marker in (("attnkit_throughput", f"attnkit ({result['isa']})", "o"),
                               ("torch_throughput", f"torch ({result['torch_isa']})", "s")):
        axes.plot(lengths, [r[key] for r in result["rows"]], marker=marker, label=label)
    if len(lengths) > 1:
        axes.set_xscale("log", base=2)
    axes.set_xlabel("sequence length" + (" (KV cache)" if result["op"] == "decode" else ""))
    axes.set_ylabel(result["unit"])
    shape = result["shape"]
    axes.set_title(f"{result['op']} {result['dtype']} B{shape['batch']} H{shape['heads']} D{shape['dim']}"
                   f"{' causal' if shape['causal'] else ''}, {result['threads']} threads\n{result['cpu']}", fontsize=10)
    axes.grid(True, alpha=0.3)
    axes.set_ylim(bottom=0)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    plt.close(figure)


def main(argv=None):
    args = _arguments(argv)
    result = run(args)
    print_result(result, file=sys.stderr if args.json == "-" else None)
    if args.plot:
        plot(result, args.plot, args.plot_pixels)
    if args.json == "-":
        json.dump(result, sys.stdout, indent=2)
        print()
    elif args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
