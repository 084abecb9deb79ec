"""The seed stream for dropout: attnkit.manual_seed(s) makes every later
dropout call reproducible bit for bit, like torch.manual_seed."""
import os
import threading

_MASK64 = (1 << 64) - 1
_lock = threading.Lock()
_state = {"seed": int.from_bytes(os.urandom(8), "little"), "calls": 0}


def manual_seed(seed):
    """Seeds attnkit's dropout. The same seed and the same sequence of calls give the same bits."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    with _lock:
        _state["seed"] = seed & _MASK64
        _state["calls"] = 0


def next_seed():
    """A 64-bit seed for the next dropout call (splitmix64 of the stream position)."""
    with _lock:
        x = (_state["seed"] + 0x9E3779B97F4A7C15 * (_state["calls"] + 1)) & _MASK64
        _state["calls"] += 1
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)
