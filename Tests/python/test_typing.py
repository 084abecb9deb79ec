"""Typed API: `mypy --strict` passes on an example that uses attnkit's public functions, and
flags a misuse (so the stubs are really read); help() shows each main function's contract."""
import os
import subprocess
import sys
import textwrap

import pytest

import attnkit

pytest.importorskip("mypy")

EXAMPLE = textwrap.dedent("""
    import numpy as np
    import torch

    import attnkit
    from attnkit.integrations.transformers import register
    from attnkit.plot import attention_heatmap

    q = torch.randn(2, 4, 16, 8)
    out: torch.Tensor = attnkit.scaled_dot_product_attention(q, q, q, is_causal=True, scale=0.5)
    packed = torch.randn(10, 4, 8)
    cu = torch.tensor([0, 3, 10], dtype=torch.int32)
    varlen: torch.Tensor = attnkit.flash_attn_varlen_func(packed, packed, packed, cu, cu, 7, 7, causal=True)
    full, lse, dmask = attnkit.flash_attn_func(q, q, q, window_size=(4, 0), return_attn_probs=True)
    x = np.zeros((1, 5, 16), dtype=np.float32)
    seed_out: np.ndarray = attnkit.eager_causal_attention(x, x, x, 2, 8)
    eager_out, weights = attnkit.eager_bidirectional_attention(x, x, x, 2, 8, return_weights=True)
    merged, merged_lse = attnkit.merge_attention_states(out, lse, out, lse)
    levels, scale, zero_point = attnkit.quantize_per_tensor(x)
    restored: np.ndarray = attnkit.dequantize_per_tensor(levels, scale, zero_point)
    threads: int = attnkit.get_num_threads()
    tier: str = attnkit.isa()
    register()
    figure = attention_heatmap(weights, head=0)
""")

MISUSE = EXAMPLE + "attnkit.eager_causal_attention(x, x, x, 'two', 8)\n"


def _mypy(tmp_path, source):
    path = tmp_path / "example.py"
    path.write_text(source)
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir",
                           str(tmp_path / "cache"), str(path)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)


def test_mypy_strict_accepts_the_example_and_flags_a_misuse(tmp_path):
    result = _mypy(tmp_path, EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr
    result = _mypy(tmp_path, MISUSE)
    assert result.returncode != 0 and "num_heads" in result.stdout, result.stdout


def test_package_ships_py_typed_and_stubs():
    package = os.path.dirname(attnkit.__file__)
    assert os.path.exists(os.path.join(package, "py.typed"))
    assert os.path.exists(os.path.join(package, "__init__.pyi"))


@pytest.mark.parametrize("name,terms", [
    ("flash_attn_varlen_func", ["cu_seqlens_q", "total_q", "bottom-right", "window_size", "softcap", "alibi_slopes",
                                "float16", "bfloat16", "lse", "+inf", "NaN", "differentiable", "ValueError"]),
    ("flash_attn_func", ["(B, Sq, Hq, D)", "bottom-right", "window_size", "float16", "NaN", "differentiable"]),
    ("scaled_dot_product_attention", ["(N..., Hq, L, E)", "top-left", "enable_gqa", "float16", "NaN", "0",
                                      "differentiable"]),
    ("flash_attn_with_kvcache", ["cache_seqlens", "block_table", "rotary", "bottom-right"]),
])
def test_help_shows_the_contract(name, terms):
    text = attnkit.__dict__[name].__doc__ or ""
    missing = [term for term in terms if term not in text]
    assert not missing, f"help(attnkit.{name}) does not mention {missing}"
