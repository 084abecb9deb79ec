"""What the ring functions share: the group's ring neighbours, point-to-point exchanges
posted before the compute they overlap, collective argument checks, and counters of the
bytes sent and of the time spent waiting for them."""
import time

import torch
import torch.distributed as dist

_ZERO = {"bytes_sent": 0, "messages": 0, "wait_seconds_kv": 0.0, "wait_seconds_grad": 0.0}
_stats = dict(_ZERO)


def comm_stats(reset=False):
    """This rank's ring traffic since the last reset: bytes sent, messages, and seconds spent
    waiting on K/V shards (transfers that compute did not hide) and on the backward's dK/dV
    sums (which also waits for the previous rank to finish computing them). reset=True zeroes
    the counters after reading."""
    snapshot = dict(_stats)
    if reset:
        _stats.update(_ZERO)
    return snapshot


class Ring:
    """The calling rank's place in `group` (None: the default group) and its neighbours,
    as global ranks for torch.distributed's point-to-point calls."""

    def __init__(self, group):
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("attnkit.distributed needs torch.distributed initialized "
                               "(torch.distributed.init_process_group) before the call")
        self.group = group
        self.size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        self.next = self.global_rank((self.rank + 1) % self.size)
        self.prev = self.global_rank((self.rank - 1) % self.size)

    def global_rank(self, rank):
        return rank if self.group is None else dist.get_global_rank(self.group, rank)

    def exchange(self, tensors, first_tag=0, kind="kv"):
        """Posts sends of `tensors` to the next rank and receives of tensors like them from the
        previous one, tagged from `first_tag` (exchanges in flight together need distinct
        tags); returns an Exchange whose wait() gives the received tensors."""
        return Exchange(self, tensors, first_tag, kind)


class Exchange:
    def __init__(self, ring, tensors, first_tag, kind):
        self.kind = kind
        self.sent = [t.contiguous() for t in tensors]   # kept alive until wait()
        self.received = [torch.empty_like(t) for t in self.sent]
        self.requests = []
        if ring.size == 1:
            self.received = self.sent
            return
        ops = []
        for tag, (tensor, buffer) in enumerate(zip(self.sent, self.received), start=first_tag):
            ops.append(dist.P2POp(dist.isend, tensor, ring.next, ring.group, tag))
            ops.append(dist.P2POp(dist.irecv, buffer, ring.prev, ring.group, tag))
            _stats["bytes_sent"] += tensor.numel() * tensor.element_size()
            _stats["messages"] += 1
        self.requests = dist.batch_isend_irecv(ops)

    def wait(self):
        start = time.perf_counter()
        for request in self.requests:
            request.wait()
        _stats["wait_seconds_" + self.kind] += time.perf_counter() - start
        self.requests, self.sent = [], []
        return self.received


def agree(ring, function, check, signature):
    """Runs `check` (which raises TypeError or ValueError on a bad argument) on every rank and
    compares the ranks' `signature`s, so that a bad call raises the same error on every rank
    before any rank enters the ring instead of leaving the others waiting on it."""
    error = None
    try:
        check()
    except (TypeError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    if ring.size == 1:
        if error is not None:
            raise ValueError(f"{function}: {error}")
        return
    gathered = [None] * ring.size
    dist.all_gather_object(gathered, (error, signature), group=ring.group)
    for rank, (message, _) in enumerate(gathered):
        if message is not None:
            raise ValueError(f"{function}: rank {rank} of {ring.size} passed a bad argument ({message}); "
                             "every rank raises this error")
    reference = gathered[0][1]
    for rank, (_, theirs) in enumerate(gathered):
        if theirs != reference:
            fields = [name for name in reference if reference[name] != theirs.get(name)]
            detail = ", ".join(f"{name}: rank 0 has {reference[name]!r}, rank {rank} has {theirs.get(name)!r}"
                               for name in fields)
            raise ValueError(f"{function}: every rank must pass the same shapes and options ({detail})")
