"""Ring attention (issue 20): 2 ranks with 1 thread each, over gloo on localhost, against 1 process
with 2 threads, on a causal sequence (default L 16384, H 8, D 64, fp32, B 1).

For each of attnkit.flash_attn_func (one process), zigzag_ring_attention and ring_attention (plain,
whose causal work is unbalanced), forward and forward+backward:
- the median time (the slowest rank's, each round), GFLOP/s of the causal attention;
- the bytes each rank sent, the time ranks waited on K/V shards (transfers compute did not hide)
  and the share hidden: 1 − waited / (the same transfers timed alone, without compute); for the
  backward also the wait on the dK/dV sums, which includes the previous rank's compute;
- peak memory: each process's resident-set high-water mark during the call, above its level with
  the inputs already made (and that plus the inputs, the attention's whole footprint).
Then an extrapolation to N machines from the measured compute per block and loopback bandwidth.

Every configuration runs in fresh processes (spawned), so the memory figures are its own.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # as timing.py: before torch loads


def _reset_peak():
    """Resets this process's VmHWM (Linux: writing 5 to clear_refs) and returns VmRSS in bytes."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _status("VmRSS")


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _inputs(shape, rank, dtype, requires_grad):
    import torch

    g = torch.Generator().manual_seed(100 + rank)
    tensors = [torch.randn(shape, generator=g).to(dtype) for _ in range(3)]
    return [t.requires_grad_(requires_grad) for t in tensors]


def _run(rank, world, init_file, config, queue):
    import torch

    torch.set_num_threads(config["threads"])
    import attnkit

    attnkit.set_num_threads(config["threads"])
    length, heads, dim, dtype = config["length"], config["heads"], config["dim"], getattr(torch, config["dtype"])
    backward, repeats = config["backward"], config["repeats"]
    result = {"rank": rank}
    if world == 1:
        q, k, v = _inputs((1, length, heads, dim), rank, dtype, backward)

        def call():
            out = attnkit.flash_attn_func(q, k, v, causal=True)
            if backward:
                out.backward(torch.ones_like(out))
                q.grad = k.grad = v.grad = None

        sync = (lambda: None)
    else:
        import torch.distributed as dist

        import attnkit.distributed as ad

        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
        function = ad.zigzag_ring_attention if config["layout"] == "zigzag" else ad.ring_attention
        q, k, v = _inputs((1, length // world, heads, dim), rank, dtype, backward)

        def call():
            out = function(q, k, v, causal=True)
            if backward:
                out.backward(torch.ones_like(out))
                q.grad = k.grad = v.grad = None

        sync = dist.barrier
    inputs_bytes = sum(t.numel() * t.element_size() for t in (q, k, v))
    baseline = _reset_peak()
    call()                                   # the warm-up round also gives the memory figure
    result["peak_above_inputs"] = _status("VmHWM") - baseline
    result["inputs_bytes"] = inputs_bytes
    times = []
    if world > 1:
        ad.comm_stats(reset=True)
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        call()
        elapsed = time.perf_counter() - start
        if world > 1:
            slowest = torch.tensor([elapsed], dtype=torch.float64)
            dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
            elapsed = slowest.item()
        times.append(elapsed)
    result["seconds"] = statistics.median(times)
    if world > 1:
        stats = ad.comm_stats(reset=True)
        result["bytes_sent"] = stats["bytes_sent"] / repeats
        result["waited_kv"] = stats["wait_seconds_kv"] / repeats
        result["waited_grad"] = stats["wait_seconds_grad"] / repeats
        result["alone_kv"], result["alone_grad"] = _transfers_alone(q, k, v, world, backward, repeats)
        if config.get("extrapolate"):   # collective: every rank takes part
            result["loopback_bytes_per_s"] = _loopback_bandwidth(k)
        dist.destroy_process_group()
    if config.get("extrapolate") and rank == 0:
        result["block_seconds"] = _block_seconds(q, k, v)
    queue.put(result)


def _transfers_alone(q, k, v, world, backward, repeats):
    """The ring's transfers of one call, timed without compute: the K/V exchanges ((N − 1) per
    pass) and the backward's N exchanges of the fp32 dK/dV sums; medians, in seconds."""
    import torch
    import torch.distributed as dist

    from attnkit.distributed._comm import Ring

    ring = Ring(None)
    kv = [k.detach(), v.detach()]
    sums = [torch.zeros(k.shape, dtype=torch.float32), torch.zeros(v.shape, dtype=torch.float32)]
    kv_times, grad_times = [], []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        for _ in range(world - 1):
            ring.exchange(kv).wait()
        if backward:
            for _ in range(world - 1):
                ring.exchange(kv).wait()
        middle = time.perf_counter()
        if backward:
            for _ in range(world):
                ring.exchange(sums, first_tag=2, kind="grad").wait()
        kv_times.append(middle - start)
        grad_times.append(time.perf_counter() - middle)
    return statistics.median(kv_times), statistics.median(grad_times)


def _loopback_bandwidth(k):
    from attnkit.distributed._comm import Ring

    ring = Ring(None)
    start = time.perf_counter()
    for _ in range(3):
        ring.exchange([k.detach()]).wait()
    return 3 * k.numel() * k.element_size() / (time.perf_counter() - start)


def _block_seconds(q, k, v):
    """One thread's time for a full (non-causal) block of this rank's shard size, the unit the
    extrapolation scales from."""
    import torch

    import attnkit

    with torch.no_grad():
        q, k, v = q.detach(), k.detach(), v.detach()
        attnkit.flash_attn_func(q, k, v)
        start = time.perf_counter()
        attnkit.flash_attn_func(q, k, v)
        return time.perf_counter() - start


def _launch(world, config):
    import multiprocessing
    import tempfile

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    with tempfile.TemporaryDirectory() as directory:
        init_file = os.path.join(directory, "rendezvous")
        processes = [context.Process(target=_run, args=(rank, world, init_file, config, queue)) for rank in range(world)]
        for p in processes:
            p.start()
        results = [queue.get(timeout=3600) for _ in range(world)]
        for p in processes:
            p.join()
    return sorted(results, key=lambda r: r["rank"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=16384)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--world", type=int, default=2)
    args = parser.parse_args()
    from attnkit._timing import attention_flops, header

    import attnkit

    print(header(2, f"ring: {args.world} ranks x 1 thread (gloo, localhost) against 1 process x 2 threads; "
                    f"causal L {args.length} H {args.heads} D {args.dim} {args.dtype} B 1; "
                    f"medians of {args.repeats} rounds"))
    flops = attention_flops(1, args.heads, args.length, args.length, args.dim, causal=True)
    rows, figures = [], {}
    mib = 1 / 2 ** 20
    for backward in (False, True):
        pass_name = "fwd+bwd" if backward else "fwd"
        work = flops * (3.5 if backward else 1.0)   # the backward's five matmuls against the forward's two
        base = dict(length=args.length, heads=args.heads, dim=args.dim, dtype=args.dtype, repeats=args.repeats,
                    backward=backward)
        single = _launch(1, dict(base, threads=2, layout="single"))[0]
        figures[(pass_name, "single")] = single
        rows.append([pass_name, "flash_attn_func, 1 process x 2 threads", f"{single['seconds'] * 1e3:.0f}",
                     f"{work / single['seconds'] / 1e9:.1f}", "1.00", "-", "-", "-", "-",
                     f"{single['peak_above_inputs'] * mib:.0f}",
                     f"{(single['peak_above_inputs'] + single['inputs_bytes']) * mib:.0f}"])
        for layout in ("zigzag", "plain"):
            ranks = _launch(args.world, dict(base, threads=1, layout=layout, extrapolate=not backward and layout == "zigzag"))
            figures[(pass_name, layout)] = ranks
            seconds = ranks[0]["seconds"]
            sent = max(r["bytes_sent"] for r in ranks)
            waited = max(r["waited_kv"] for r in ranks)
            alone = max(r["alone_kv"] for r in ranks)
            hidden = max(0.0, 1 - waited / alone) if alone > 0 else 1.0
            grad = (f"{max(r['waited_grad'] for r in ranks) * 1e3:.0f} of {max(r['alone_grad'] for r in ranks) * 1e3:.0f}"
                    if backward else "-")
            peak = max(r["peak_above_inputs"] for r in ranks)
            footprint = max(r["peak_above_inputs"] + r["inputs_bytes"] for r in ranks)
            rows.append([pass_name, f"{layout} ring, {args.world} ranks x 1 thread", f"{seconds * 1e3:.0f}",
                         f"{work / seconds / 1e9:.1f}", f"{seconds / single['seconds']:.2f}", f"{sent * mib:.0f}",
                         f"{waited * 1e3:.0f} of {alone * 1e3:.0f}", f"{hidden * 100:.0f}%", grad, f"{peak * mib:.0f}",
                         f"{footprint * mib:.0f} ({footprint / (single['peak_above_inputs'] + single['inputs_bytes']) * 100:.0f}%)"])
    attnkit._timing.print_table(["pass", "how", "ms", "GFLOP/s", "x single", "MiB sent/rank",
                                 "K/V waited ms of alone", "K/V hidden", "dK/dV waited ms of alone", "peak MiB",
                                 "with inputs MiB"], rows)
    print("K/V waited: time blocked on K/V shards (their transfer not hidden by compute), against the same "
          "transfers timed alone. dK/dV waited also includes waiting for the previous rank to finish the sums.")
    _extrapolate(args, figures[("fwd", "zigzag")][0])


def _extrapolate(args, rank0):
    """Zigzag causal forward on N machines with one thread each, from this machine's figures:
    every step does half a full block of n = L/N rows (zigzag balances the causal work), and the
    step takes the longer of that compute and the K/V shard's transfer (they overlap)."""
    from attnkit._timing import print_table

    shard = args.length // args.world
    block = rank0["block_seconds"]                    # full n x n block, 1 thread, n = shard
    bandwidth = rank0["loopback_bytes_per_s"]
    element = 4 if args.dtype == "float32" else (8 if args.dtype == "float64" else 2)
    single_thread = block * (args.length / shard) ** 2 / 2     # the whole causal sequence, 1 thread
    rows = []
    for n_ranks in (1, 2, 4, 8, 16, 32, 64):
        n = args.length // n_ranks
        compute = block * (n / shard) ** 2 / 2
        transfer = 2 * n * args.heads * args.dim * element / bandwidth if n_ranks > 1 else 0.0
        total = compute * n_ranks if n_ranks == 1 else n_ranks * max(compute, transfer)
        rows.append([n_ranks, n, f"{compute * 1e3:.1f}", f"{transfer * 1e3:.1f}", f"{total * 1e3:.0f}",
                     f"{single_thread / total:.1f}", "compute" if compute >= transfer else "transfer"])
    print(f"\nEXTRAPOLATION (not measured on N machines): zigzag causal forward, L {args.length}, 1 thread per rank, "
          f"from a measured {shard}x{shard} block = {block * 1e3:.0f} ms and gloo loopback "
          f"{bandwidth / 1e9:.2f} GB/s (a real network is slower: the transfer column scales with 1/bandwidth)")
    print_table(["ranks", "rows/rank", "compute/step ms", "transfer/step ms", "total ms", "speedup", "bound by"], rows)


if __name__ == "__main__":
    main()
