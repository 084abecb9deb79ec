"""Ranks for test_distributed.py: spawned processes that join a gloo group through a file://
rendezvous, run named cases on their shards and report plain numbers (errors and their
bounds) to the parent, which asserts on them. Every rank builds the same full-sequence
inputs from a fixed seed, so each can also compute the single-process references."""
import math
import os
import traceback
import zlib
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn.functional as F

from conftest import FP32_RELATIVE_TOLERANCE, max_error  # noqa: E402  (Tests/python is on the path)

EPS32 = torch.finfo(torch.float32).eps
FP32_GRADIENT_TOLERANCE = 1e-5   # test_backward.py's


def rank_bound(world, scale):
    """§10: a ring result differs from the single-process one by at most 8·N·ε32·scale (the
    N − 1 lse merges each round the running output and its weights)."""
    return 8 * world * EPS32 * scale


def lse_error(a, b):
    """Errors of lse, where +inf (an empty row) must match exactly."""
    a, b = a.double(), b.double()
    if not torch.equal(torch.isinf(a), torch.isinf(b)):
        return math.inf
    finite = torch.isfinite(b)
    return max_error(a[finite], b[finite]) if finite.any() else 0.0


def inputs(seed, batch, seq, hq, hk, dim, dtype=torch.float32, value_dim=None):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, seq, hq, dim, generator=g, dtype=torch.float64)
    k = torch.randn(batch, seq, hk, dim, generator=g, dtype=torch.float64)
    v = torch.randn(batch, seq, hk, value_dim or dim, generator=g, dtype=torch.float64)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def shard(x, rank, world, layout, dim=1):
    import attnkit.distributed as ad

    if layout == "zigzag":
        return ad.zigzag_split(x, world, rank, dim)
    return x.chunk(world, dim)[rank]


def ring_call(layout):
    import attnkit.distributed as ad

    return ad.zigzag_ring_attention if layout == "zigzag" else ad.ring_attention


# ---- forward --------------------------------------------------------------------------

FORWARD = {
    # name: (layout, batch, seq, hq, hk, dim, options)
    "plain": ("plain", 2, 96, 4, 4, 32, {}),
    "plain_causal": ("plain", 2, 96, 4, 4, 32, {"causal": True}),
    "zigzag_causal": ("zigzag", 2, 96, 4, 4, 32, {"causal": True}),
    "zigzag": ("zigzag", 1, 96, 2, 2, 16, {}),
    "gqa_causal": ("zigzag", 2, 96, 6, 2, 59, {"causal": True}),
    "mqa": ("plain", 1, 96, 4, 1, 33, {"causal": True}),
    "window_causal": ("zigzag", 1, 96, 2, 1, 16, {"causal": True, "window_size": (13, -1)}),
    "window_band": ("plain", 1, 96, 2, 2, 16, {"window_size": (7, 29)}),
    "window_narrow": ("plain", 1, 96, 2, 2, 16, {"window_size": (0, 0)}),
    "alibi_causal": ("zigzag", 2, 96, 4, 2, 16, {"causal": True, "alibi": True}),
    "scale": ("plain", 1, 96, 2, 2, 111, {"softmax_scale": 0.3}),
    "odd_shards": ("plain", 1, 68, 2, 2, 7, {"causal": True}),   # 34 or 17 positions per rank
    "fp64": ("zigzag", 1, 64, 2, 1, 16, {"causal": True, "dtype": torch.float64}),
}


def forward_case(name, rank, world):
    import attnkit

    layout, batch, seq, hq, hk, dim, options = FORWARD[name]
    options = dict(options)
    if options.pop("alibi", False):
        options["alibi_slopes"] = torch.tensor([2.0 ** -(h + 1) for h in range(hq)], dtype=torch.float32)
    dtype = options.pop("dtype", torch.float32)
    q, k, v = inputs(zlib.crc32(name.encode()) % 1000, batch, seq, hq, hk, dim, dtype)
    single, single_lse = attnkit.flash_attn_func(q, k, v, return_attn_probs=True, **options)[:2]
    exact, exact_lse = attnkit.flash_attn_func(q.double(), k.double(), v.double(), return_attn_probs=True,
                                               **options)[:2]
    out, lse = ring_call(layout)(shard(q, rank, world, layout), shard(k, rank, world, layout),
                                 shard(v, rank, world, layout), return_lse=True, **options)
    scale = max(1.0, v.abs().max().item())
    # fp64 too is held to the fp32 tolerance: the lse the kernels return, and the ring merges
    # through, is fp32 (the ABI's), so each merge weight carries fp32 rounding (§10).
    tolerance = FP32_RELATIVE_TOLERANCE
    return {"error_vs_fp64": max_error(out, shard(exact, rank, world, layout)),
            "bound_vs_fp64": tolerance * max(1.0, exact.abs().max().item()),
            "difference_vs_single": max_error(out, shard(single, rank, world, layout)),
            "lse_difference_vs_single": lse_error(lse, shard(single_lse, rank, world, layout, dim=2)),
            "rank_bound": rank_bound(world, scale),
            "lse_rank_bound": rank_bound(world, max(1.0, single_lse[torch.isfinite(single_lse)].abs().max().item()))}


def bf16_case(name, rank, world):
    """The accuracy rule: the ring's bf16 error against fp64 is at most torch SDPA's in bf16."""
    import attnkit

    layout, causal, hq, hk = {"bf16_zigzag_causal": ("zigzag", True, 4, 2), "bf16_plain": ("plain", False, 4, 4)}[name]
    q, k, v = inputs(7, 2, 128, hq, hk, 64)
    exact = attnkit.flash_attn_func(q.double(), k.double(), v.double(), causal=causal)
    lowp = [x.bfloat16() for x in (q, k, v)]
    out = ring_call(layout)(*(shard(x, rank, world, layout) for x in lowp), causal=causal)
    torch_out = F.scaled_dot_product_attention(*(x.transpose(1, 2) for x in lowp), is_causal=causal,
                                               enable_gqa=hq != hk).transpose(1, 2)
    single = attnkit.flash_attn_func(*lowp, causal=causal)
    mine = shard(exact, rank, world, layout)
    return {"ring_error": max_error(out, mine), "torch_error": max_error(shard(torch_out, rank, world, layout), mine),
            "single_error": max_error(shard(single, rank, world, layout), mine), "dtype": str(out.dtype)}


# ---- varlen ---------------------------------------------------------------------------

VARLEN = {
    # name: (document lengths (sum divisible by 4), hq, hk, dim, options)
    "varlen_causal": ([5, 40, 1, 30, 20], 4, 2, 16, {"causal": True}),
    "varlen": ([17, 33, 46], 2, 2, 16, {}),
    "varlen_window": ([50, 0, 46], 2, 1, 16, {"window_size": (9, 4)}),
    "varlen_alibi_causal": ([7, 65, 24], 4, 4, 16, {"causal": True, "alibi": True}),
    "varlen_one_document": ([96], 2, 2, 16, {"causal": True, "window_size": (20, -1)}),
}


def _varlen_inputs(name):
    lengths, hq, hk, dim, options = VARLEN[name]
    total = sum(lengths)
    g = torch.Generator().manual_seed(len(name))
    q = torch.randn(total, hq, dim, generator=g)
    k = torch.randn(total, hk, dim, generator=g)
    v = torch.randn(total, hk, dim, generator=g)
    cu = [0]
    for length in lengths:
        cu.append(cu[-1] + length)
    options = dict(options)
    if options.pop("alibi", False):
        options["alibi_slopes"] = torch.tensor([[0.5 ** (h + 1 + b) for h in range(hq)] for b in range(len(lengths))],
                                               dtype=torch.float32)
    return q, k, v, cu, max(lengths), options


def varlen_case(name, rank, world):
    import attnkit
    import attnkit.distributed as ad

    q, k, v, cu, longest, options = _varlen_inputs(name)
    cu_tensor = torch.tensor(cu, dtype=torch.int32)
    single, single_lse = attnkit.flash_attn_varlen_func(q, k, v, cu_tensor, cu_tensor, longest, longest,
                                                         return_attn_probs=True, **options)[:2]
    exact = attnkit.flash_attn_varlen_func(q.double(), k.double(), v.double(), cu_tensor, cu_tensor, longest, longest,
                                           **options)
    rows = slice(rank * q.shape[0] // world, (rank + 1) * q.shape[0] // world)
    out, lse = ad.ring_attention_varlen(q[rows], k[rows], v[rows], cu, max_seqlen=longest, return_lse=True, **options)
    return {"error_vs_fp64": max_error(out, exact[rows]),
            "bound_vs_fp64": FP32_RELATIVE_TOLERANCE * max(1.0, exact.abs().max().item()),
            "difference_vs_single": max_error(out, single[rows]),
            "lse_difference_vs_single": lse_error(lse, single_lse[:, rows]),
            "rank_bound": rank_bound(world, max(1.0, v.abs().max().item())),
            "lse_rank_bound": rank_bound(world, max(1.0, single_lse[torch.isfinite(single_lse)].abs().max().item()))}


# ---- backward -------------------------------------------------------------------------

BACKWARD = {
    "backward_plain_causal": ("plain", 2, 64, 4, 2, 32, {"causal": True}),
    "backward_zigzag_causal": ("zigzag", 1, 64, 4, 4, 17, {"causal": True}),
    "backward_zigzag_window": ("zigzag", 1, 64, 2, 1, 16, {"causal": True, "window_size": (11, -1)}),
    "backward_plain": ("plain", 1, 64, 2, 2, 16, {}),
    "backward_alibi": ("plain", 1, 64, 2, 2, 16, {"window_size": (5, 9), "alibi": True}),
}


def _gradients(function, q, k, v, weights):
    q, k, v = (x.detach().clone().requires_grad_(True) for x in (q, k, v))
    out = function(q, k, v)
    (out * weights).sum().backward()
    return q.grad, k.grad, v.grad


def backward_case(name, rank, world):
    import attnkit

    layout, batch, seq, hq, hk, dim, options = BACKWARD[name]
    options = dict(options)
    if options.pop("alibi", False):
        options["alibi_slopes"] = torch.tensor([0.25, 0.125], dtype=torch.float32)
    q, k, v = inputs(11, batch, seq, hq, hk, dim)
    weights = torch.randn(batch, seq, hq, dim, generator=torch.Generator().manual_seed(3))
    exact = _gradients(lambda a, b, c: attnkit.flash_attn_func(a, b, c, **options),
                       q.double(), k.double(), v.double(), weights.double())
    single = _gradients(lambda a, b, c: attnkit.flash_attn_func(a, b, c, **options), q, k, v, weights)
    parts = [shard(x, rank, world, layout) for x in (q, k, v)]
    ring = _gradients(lambda a, b, c: ring_call(layout)(a, b, c, **options), *parts,
                      shard(weights, rank, world, layout))
    result = {}
    for label, mine, truth, alone in zip(("dq", "dk", "dv"), ring, exact, single):
        truth, alone = shard(truth, rank, world, layout), shard(alone, rank, world, layout)
        result[f"{label}_error_vs_fp64"] = max_error(mine, truth)
        result[f"{label}_bound_vs_fp64"] = FP32_GRADIENT_TOLERANCE * max(1.0, truth.abs().max().item())
        result[f"{label}_difference_vs_single"] = max_error(mine, alone)
    return result


def bf16_backward_case(name, rank, world):
    """The accuracy rule for gradients: the ring's bf16 dq, dk, dv errors against fp64 are at
    most torch SDPA's bf16 autograd errors."""
    import attnkit

    q, k, v = inputs(13, 1, 64, 4, 2, 32)
    weights = torch.randn(1, 64, 4, 32, generator=torch.Generator().manual_seed(4))
    exact = _gradients(lambda a, b, c: attnkit.flash_attn_func(a, b, c, causal=True), q.double(), k.double(),
                       v.double(), weights.double())
    lowp = [x.bfloat16() for x in (q, k, v)]
    torch_grads = _gradients(lambda a, b, c: F.scaled_dot_product_attention(
        a.transpose(1, 2), b.transpose(1, 2), c.transpose(1, 2), is_causal=True, enable_gqa=True).transpose(1, 2),
        *lowp, weights.bfloat16())
    ring = _gradients(lambda a, b, c: ring_call("zigzag")(a, b, c, causal=True),
                      *(shard(x, rank, world, "zigzag") for x in lowp), shard(weights.bfloat16(), rank, world, "zigzag"))
    result = {}
    for label, mine, truth, theirs in zip(("dq", "dk", "dv"), ring, exact, torch_grads):
        truth, theirs = shard(truth, rank, world, "zigzag"), shard(theirs, rank, world, "zigzag")
        result[f"{label}_ring_error"] = max_error(mine, truth)
        result[f"{label}_torch_error"] = max_error(theirs, truth)
        result[f"{label}_dtype"] = str(mine.dtype)
    return result


def varlen_backward_case(name, rank, world):
    import attnkit
    import attnkit.distributed as ad

    q, k, v, cu, longest, options = _varlen_inputs("varlen_causal")
    cu_tensor = torch.tensor(cu, dtype=torch.int32)
    weights = torch.randn(q.shape[0], q.shape[1], v.shape[2], generator=torch.Generator().manual_seed(5))
    exact = _gradients(lambda a, b, c: attnkit.flash_attn_varlen_func(a, b, c, cu_tensor, cu_tensor, longest, longest,
                                                                      **options),
                       q.double(), k.double(), v.double(), weights.double())
    rows = slice(rank * q.shape[0] // world, (rank + 1) * q.shape[0] // world)
    ring = _gradients(lambda a, b, c: ad.ring_attention_varlen(a, b, c, cu, **options), q[rows], k[rows], v[rows],
                      weights[rows])
    result = {}
    for label, mine, truth in zip(("dq", "dk", "dv"), ring, exact):
        result[f"{label}_error_vs_fp64"] = max_error(mine, truth[rows])
        result[f"{label}_bound_vs_fp64"] = FP32_GRADIENT_TOLERANCE * max(1.0, truth.abs().max().item())
    return result


# ---- training -------------------------------------------------------------------------

class TinyLM(torch.nn.Module):
    """One pre-norm transformer block over learned token and position embeddings; `attend`
    is the attention (B, S, H, D) -> (B, S, H, D) with the positions this rank holds."""

    def __init__(self, vocab=48, width=32, heads=4, length=64):
        super().__init__()
        self.heads = heads
        self.tokens = torch.nn.Embedding(vocab, width)
        self.positions = torch.nn.Embedding(length, width)
        self.norm1, self.norm2 = torch.nn.LayerNorm(width), torch.nn.LayerNorm(width)
        self.qkv = torch.nn.Linear(width, 3 * width)
        self.proj = torch.nn.Linear(width, width)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(width, 4 * width), torch.nn.GELU(), torch.nn.Linear(4 * width, width))
        self.head = torch.nn.Linear(width, vocab)

    def forward(self, tokens, positions, attend):
        x = self.tokens(tokens) + self.positions(positions)
        b, s, w = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, s, 3, self.heads, w // self.heads).unbind(2)
        x = x + self.proj(attend(q, k, v).reshape(b, s, w))
        x = x + self.mlp(self.norm2(x))
        return self.head(x)


def training_case(name, rank, world, steps=20):
    """A tiny LM trained with its sequence split over the ranks (zigzag, causal) against the
    same model trained in one process on the whole sequence: the two loss curves."""
    import attnkit
    import attnkit.distributed as ad

    length, batch = 64, 2
    data = torch.randint(0, 48, (steps, batch, length + 1), generator=torch.Generator().manual_seed(1))
    positions = torch.arange(length).expand(batch, length)

    def train(attend, split):
        torch.manual_seed(0)
        model = TinyLM(length=length)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        losses = []
        for step in range(steps):
            inputs_, targets = data[step, :, :-1], data[step, :, 1:]
            logits = model(split(inputs_), split(positions), attend)
            # The mean over all batch·length tokens, as a sum of every rank's share.
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), split(targets).reshape(-1),
                                   reduction="sum") / (batch * length)
            optimizer.zero_grad()
            loss.backward()
            total = loss.detach().clone()
            if split is not _whole:
                dist.all_reduce(total)
                for parameter in model.parameters():
                    dist.all_reduce(parameter.grad)
            optimizer.step()
            losses.append(total.item())
        return losses

    single = train(lambda q, k, v: attnkit.flash_attn_func(q, k, v, causal=True), _whole)
    ring = train(lambda q, k, v: ad.zigzag_ring_attention(q, k, v, causal=True),
                 lambda x: ad.zigzag_split(x, world, rank, dim=1))
    return {"single": single, "ring": ring}


def _whole(x):
    return x


# ---- failure --------------------------------------------------------------------------

def failure_case(name, rank, world):
    """One rank passes a bad shard: every rank must raise, none may hang."""
    import attnkit.distributed as ad

    q, k, v = inputs(1, 1, 32 * world, 2, 2, 16)
    parts = [x.chunk(world, 1)[rank] for x in (q, k, v)]
    if rank == world - 1:
        if name == "failure_shape":
            parts[0] = parts[0][..., :8]            # head dim 8 where k has 16
        elif name == "failure_length":
            parts = [x[:, :-2] for x in parts]      # a shorter shard than the other ranks'
        elif name == "failure_rank":
            parts[1] = parts[1][0]                  # k of rank 3
    try:
        ad.ring_attention(*parts, causal=True)
    except ValueError as exc:
        return {"raised": str(exc)}
    return {"raised": None}


CASES = {}
CASES.update({name: forward_case for name in FORWARD})
CASES.update({name: bf16_case for name in ("bf16_zigzag_causal", "bf16_plain")})
CASES.update({name: varlen_case for name in VARLEN})
CASES.update({name: backward_case for name in BACKWARD})
CASES["varlen_backward"] = varlen_backward_case
CASES["bf16_backward"] = bf16_backward_case
CASES["training"] = training_case
CASES.update({name: failure_case for name in ("failure_shape", "failure_length", "failure_rank")})


def worker(rank, world, init_file, names, queue):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    import attnkit

    attnkit.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=120))
    results = {}
    try:
        for name in names:
            try:
                results[name] = CASES[name](name, rank, world)
            except Exception:
                results[name] = {"exception": traceback.format_exc()}
    finally:
        queue.put((rank, results))
        dist.destroy_process_group()


def run_ranks(world, names, timeout=900):
    """Spawns `world` ranks running `names`; returns {name: [rank 0's result, ...]}. Ranks still
    running after `timeout` seconds are killed and reported as a hang."""
    import multiprocessing
    import queue as queues
    import tempfile
    import time

    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    with tempfile.TemporaryDirectory() as directory:
        init_file = os.path.join(directory, "rendezvous")
        processes = [context.Process(target=worker, args=(rank, world, init_file, names, results), daemon=True)
                     for rank in range(world)]
        for process in processes:
            process.start()
        deadline = time.monotonic() + timeout
        gathered = {}
        try:
            while len(gathered) < world:
                try:
                    rank, values = results.get(timeout=1.0)
                    gathered[rank] = values
                    continue
                except queues.Empty:
                    pass
                dead = [rank for rank, process in enumerate(processes)
                        if rank not in gathered and process.exitcode is not None]
                if dead:
                    raise RuntimeError(f"{world} ranks running {names}: ranks {dead} exited (codes "
                                       f"{[processes[r].exitcode for r in dead]}) without reporting")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{world} ranks running {names}: only ranks {sorted(gathered)} finished "
                                       f"within {timeout} s (a hang)")
        finally:
            for process in processes:
                process.join(timeout=30)
                if process.is_alive():
                    process.kill()
    return {name: [gathered[rank][name] for rank in range(world)] for name in names}
