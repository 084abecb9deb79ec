"""attnkit: attention kernels for the CPU.

numpy arrays in give numpy arrays out; torch CPU tensors in give torch tensors out.
"""
import sys

from . import _attnkit
from ._random import manual_seed
from .decode import flash_attn_with_kvcache, merge_attention_states
from .eager import eager_bidirectional_attention, eager_causal_attention
from .flash import (flash_attn_func, flash_attn_kvpacked_func, flash_attn_qkvpacked_func, flash_attn_varlen_func,
                    flash_attn_varlen_kvpacked_func, flash_attn_varlen_qkvpacked_func, flash_bidirectional_attention,
                    flash_causal_attention, flash_attn_varlen_int8_func, int8_flash_attn_varlen_func)
from .quantize import dequantize_per_tensor, quantize_per_tensor
from .sdpa import (int8_scaled_dot_product_attention, scaled_dot_product_attention, sdpa_bidirectional_attention,
                   sdpa_causal_attention)
from .sliding import sliding_window_attention
from .variants import aft_full, aft_local, aft_simple, linformer_attention, sparse_top_k_attention


if "torch" in sys.modules:
    from . import ops  # noqa: F401  torch.ops.attnkit.*; otherwise registered by `import attnkit.ops` or a first torch call


def _version_string(number):
    return f"{number // 10000}.{number // 100 % 100}.{number % 100}"


__version__ = _version_string(_attnkit.version_number())


def isa():
    """The kernel tier in use: "generic", "avx2", "avx512" or "avx512_bf16".

    Chosen once per process from CPUID; ATTNKIT_ISA=<tier> overrides it where the CPU can run that tier."""
    return _attnkit.get_isa()


def available_isas():
    """The kernel tiers this CPU can run (each can be forced with ATTNKIT_ISA), narrowest first."""
    return list(_attnkit.get_available_isas())


def int8_pv_dtype():
    """The dtype of the int8 paths' P·V: "float16" on AVX512_FP16 CPUs with the AVX-512
    kernels, unless ATTNKIT_INT8_PV=fp32 was set at load; "float32" otherwise."""
    return _attnkit.get_int8_pv_dtype()


def get_num_threads():
    """The number of threads attnkit's kernels use."""
    return _attnkit.get_num_threads()


def set_num_threads(num_threads):
    """Sets the number of threads attnkit's kernels use (>= 1)."""
    _attnkit.set_num_threads(num_threads)


__all__ = [
    "__version__",
    "aft_full",
    "aft_local",
    "aft_simple",
    "available_isas",
    "eager_bidirectional_attention",
    "eager_causal_attention",
    "flash_attn_with_kvcache",
    "merge_attention_states",
    "flash_attn_func",
    "flash_attn_varlen_func",
    "flash_attn_varlen_int8_func",
    "flash_bidirectional_attention",
    "flash_causal_attention",
    "dequantize_per_tensor",
    "get_num_threads",
    "int8_flash_attn_varlen_func",
    "int8_scaled_dot_product_attention",
    "isa",
    "linformer_attention",
    "int8_pv_dtype",
    "manual_seed",
    "quantize_per_tensor",
    "scaled_dot_product_attention",
    "sdpa_bidirectional_attention",
    "sdpa_causal_attention",
    "set_num_threads",
    "sliding_window_attention",
    "sparse_top_k_attention",
]
