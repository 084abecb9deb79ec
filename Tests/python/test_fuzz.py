"""Bad input never crashes the process: random shapes, dtypes, strides and arguments
either work or raise TypeError/ValueError/MemoryError naming an argument.

Each batch runs in a child process, so a crash (a trap or a segfault) is seen as
the child's exit status instead of killing pytest."""
import subprocess
import sys

import pytest

FUZZ = r'''
import math, random, sys
import numpy as np
import torch
import attnkit

rng = random.Random(int(sys.argv[1]))
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int32, torch.int64, torch.bool, torch.uint8, torch.int8]
NUMBERS = [0, 1, 2, 3, 7, -1, -5, 2**31, 2**62, 2**63 - 1]
FLOATS = [0.0, 0.5, 1.0, -1.0, 1.5, math.nan, math.inf, -math.inf, 1e308]

def tensor():
    rank = rng.choice([0, 1, 2, 3, 4, 5])
    shape = [rng.choice([0, 1, 2, 3, 5, 8]) for _ in range(rank)]
    t = torch.randn(*shape) if shape else torch.randn(())
    dtype = rng.choice(DTYPES)
    t = t.to(dtype) if dtype != torch.bool else t > 0
    if rank >= 2 and rng.random() < 0.3:
        t = t.transpose(0, -1)
    if rank >= 1 and rng.random() < 0.2 and t.shape[0] > 0:
        t = t[::2]
    if rng.random() < 0.2:
        t = t.numpy() if t.dtype != torch.bfloat16 else t
    return t

def arg():
    kind = rng.random()
    if kind < 0.5:
        return tensor()
    if kind < 0.7:
        return rng.choice(NUMBERS)
    if kind < 0.85:
        return rng.choice(FLOATS)
    return rng.choice([None, "x", [1, 2], (3, -1)])

calls = [
    lambda: attnkit.eager_bidirectional_attention(tensor(), tensor(), tensor(), rng.choice(NUMBERS), rng.choice(NUMBERS), rng.choice([None, tensor()]), return_weights=rng.random() < 0.5),
    lambda: attnkit.eager_causal_attention(tensor(), tensor(), tensor(), rng.choice(NUMBERS), rng.choice(NUMBERS)),
    lambda: attnkit.scaled_dot_product_attention(tensor(), tensor(), tensor(), attn_mask=rng.choice([None, tensor()]),
                                                 dropout_p=rng.choice(FLOATS), is_causal=rng.random() < 0.5,
                                                 scale=rng.choice([None] + FLOATS), enable_gqa=rng.random() < 0.5),
    lambda: attnkit.sdpa_causal_attention(tensor(), tensor(), tensor(), rng.choice(NUMBERS), rng.choice(NUMBERS), rng.choice([None, tensor()])),
    lambda: attnkit.flash_attn_func(tensor(), tensor(), tensor(), dropout_p=rng.choice(FLOATS), softmax_scale=rng.choice([None] + FLOATS),
                                    causal=rng.random() < 0.5, window_size=(rng.choice(NUMBERS), rng.choice(NUMBERS)),
                                    softcap=rng.choice(FLOATS), alibi_slopes=rng.choice([None, tensor()]), return_attn_probs=rng.random() < 0.5),
    lambda: attnkit.flash_attn_varlen_func(tensor(), tensor(), tensor(), rng.choice([tensor(), [0, 1, 2], [0, -3]]),
                                           rng.choice([tensor(), [0, 1, 2]]), rng.choice(NUMBERS), rng.choice(NUMBERS),
                                           causal=rng.random() < 0.5, window_size=(rng.choice(NUMBERS), -1)),
    lambda: attnkit.flash_causal_attention(tensor(), tensor(), tensor(), rng.choice(NUMBERS), rng.choice(NUMBERS), tensor(), rng.choice(NUMBERS)),
    lambda: attnkit.int8_scaled_dot_product_attention(tensor(), tensor(), tensor(), attn_mask=rng.choice([None, tensor()]),
                                                      qk_quant=rng.choice(["per_block", "per_token", "per_tensor", "x"]),
                                                      smooth_k=rng.random() < 0.5),
    lambda: attnkit.quantize_per_tensor(tensor(), rng.choice(NUMBERS)),
    lambda: attnkit.dequantize_per_tensor(tensor(), rng.choice(FLOATS), rng.choice(FLOATS)),
    lambda: attnkit.set_num_threads(rng.choice(NUMBERS)),
]
outcomes = {}
for _ in range(int(sys.argv[2])):
    try:
        rng.choice(calls)()
        outcome = "ok"
    except (TypeError, ValueError, MemoryError, OverflowError) as error:
        outcome = type(error).__name__
    outcomes[outcome] = outcomes.get(outcome, 0) + 1
attnkit.set_num_threads(2)
print(outcomes)
'''


@pytest.mark.parametrize("seed", range(8))
def test_random_bad_input_never_crashes(seed):
    result = subprocess.run([sys.executable, "-c", FUZZ, str(seed), "400"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"seed {seed} crashed (exit {result.returncode}):\n{result.stderr[-3000:]}"
