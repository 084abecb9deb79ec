"""Timing helpers shared by `python -m attnkit.bench` and the scripts in benchmarks/: medians of
interleaved runs, FLOP counts, the CPU's name and a plain-text table.

The machine is noisy, so attnkit and torch are timed alternately in one loop (a slow spell hits
both) and the median is reported.
"""
import statistics
import time


def median_ms(functions, repeats=15, warmup=2, budget_s=20.0):
    """Runs each function `warmup` times, then `repeats` rounds in turn; returns median ms per function."""
    for fn in functions:
        for _ in range(warmup):
            fn()
    samples = [[] for _ in functions]
    start = time.perf_counter()
    for round_index in range(repeats):
        for fn, bucket in zip(functions, samples):
            t0 = time.perf_counter()
            fn()
            bucket.append((time.perf_counter() - t0) * 1e3)
        if round_index >= 2 and time.perf_counter() - start > budget_s:
            break
    return [statistics.median(bucket) for bucket in samples]


def attention_flops(batch, heads, seq_q, seq_k, dim, causal=False, dim_v=None):
    """2·B·H·Sq·Sk·(D + Dv) flops for the two GEMMs, halved for a causal square mask."""
    dim_v = dim if dim_v is None else dim_v
    flops = 2.0 * batch * heads * seq_q * seq_k * (dim + dim_v)
    return flops / 2 if causal and seq_q == seq_k else flops


def print_table(headers, rows, file=None):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(str(h).rjust(w) for h, w in zip(headers, widths))
    print(line, file=file)
    print("-" * len(line), file=file)
    for row in rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(row, widths)), file=file)


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (or the platform's machine name)."""
    try:
        fields = {}
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
                if not line.strip():
                    break
        return f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')} model {fields.get('model', '?')})"
    except OSError:
        pass
    import platform
    return platform.machine()


def header(threads, extra=""):
    """CPU model, attnkit's kernel tier (and the tiers this CPU has), torch's version and the ISA its
    CPU kernels run (ATEN_CPU_CAPABILITY=avx2 etc. sets it), threads. Compare tiers like for like:
    ATTNKIT_ISA=avx2 with ATEN_CPU_CAPABILITY=avx2."""
    import torch

    import attnkit

    line = (f"CPU {cpu_model()}; attnkit {attnkit.__version__}, {attnkit.isa()} kernels "
            f"(this CPU runs: {', '.join(attnkit.available_isas())}); torch {torch.__version__}, "
            f"{torch.backends.cpu.get_cpu_capability()} kernels; {threads} threads")
    return line + (f"; {extra}" if extra else "")
