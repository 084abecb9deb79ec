# Type stubs for attnkit's public API. numpy in gives numpy out, torch in gives torch out: the
# array type of the first tensor argument is the type of the result. Shapes, dtypes and rules
# are in each function's docstring (help(attnkit.<name>)) and in docs/semantics.md.
from typing import Any, Literal, Optional, Sequence, Tuple, TypeVar, Union, overload

import numpy as np
import torch

from . import ops as ops

__version__: str

Array = TypeVar("Array", torch.Tensor, np.ndarray)
Index = Union[torch.Tensor, np.ndarray, Sequence[int]]
Window = Tuple[int, int]

def isa() -> str: ...
def available_isas() -> list[str]: ...
def int8_pv_dtype() -> str: ...
def get_num_threads() -> int: ...
def set_num_threads(num_threads: int) -> None: ...
def manual_seed(seed: int) -> None: ...

# ---- the seed API: [B, S, H*D] in and out, mask [B, S_k] bool (True: the key may be attended) ----
@overload
def eager_bidirectional_attention(q: Array, k: Array, v: Array, num_heads: int, head_dim: int,
                                  mask: Optional[Array] = ..., *, return_weights: Literal[False] = ...) -> Array: ...
@overload
def eager_bidirectional_attention(q: Array, k: Array, v: Array, num_heads: int, head_dim: int,
                                  mask: Optional[Array] = ..., *,
                                  return_weights: Literal[True]) -> Tuple[Array, Array]: ...
@overload
def eager_causal_attention(q: Array, k: Array, v: Array, num_heads: int, head_dim: int,
                           mask: Optional[Array] = ..., *, return_weights: Literal[False] = ...) -> Array: ...
@overload
def eager_causal_attention(q: Array, k: Array, v: Array, num_heads: int, head_dim: int, mask: Optional[Array] = ...,
                           *, return_weights: Literal[True]) -> Tuple[Array, Array]: ...
def sdpa_bidirectional_attention(q: Array, k: Array, v: Array, num_heads: int, head_dim: int,
                                 mask: Optional[Array] = ...) -> Array: ...
def sdpa_causal_attention(q: Array, k: Array, v: Array, num_heads: int, head_dim: int,
                          mask: Optional[Array] = ...) -> Array: ...
def flash_bidirectional_attention(q: Array, k: Array, v: Array, num_heads: int, head_dim: int, cu_seqlens: Index,
                                  max_seqlen: int) -> Array: ...
def flash_causal_attention(q: Array, k: Array, v: Array, num_heads: int, head_dim: int, cu_seqlens: Index,
                           max_seqlen: int) -> Array: ...

# ---- torch SDPA: query (N..., Hq, L, E), key (N..., Hk, S, E), value (N..., Hk, S, Ev) -> (N..., Hq, L, Ev) ----
def scaled_dot_product_attention(query: Array, key: Array, value: Array, attn_mask: Optional[Array] = ...,
                                 dropout_p: float = ..., is_causal: bool = ..., scale: Optional[float] = ...,
                                 enable_gqa: bool = ...) -> Array: ...
def int8_scaled_dot_product_attention(query: Array, key: Array, value: Array, attn_mask: Optional[Array] = ...,
                                      is_causal: bool = ..., scale: Optional[float] = ..., enable_gqa: bool = ...,
                                      qk_quant: Literal["per_block", "per_token", "per_tensor"] = ...,
                                      smooth_k: bool = ...) -> Array: ...

# ---- flash-attn: (B, S, H, D), or varlen (total, H, D) with cu_seqlens [B+1] ----
@overload
def flash_attn_func(q: Array, k: Array, v: Array, dropout_p: float = ..., softmax_scale: Optional[float] = ...,
                    causal: bool = ..., window_size: Window = ..., softcap: float = ...,
                    alibi_slopes: Optional[Array] = ..., deterministic: bool = ...,
                    return_attn_probs: Literal[False] = ...) -> Array: ...
@overload
def flash_attn_func(q: Array, k: Array, v: Array, dropout_p: float = ..., softmax_scale: Optional[float] = ...,
                    causal: bool = ..., window_size: Window = ..., softcap: float = ...,
                    alibi_slopes: Optional[Array] = ..., deterministic: bool = ..., *,
                    return_attn_probs: Literal[True]) -> Tuple[Array, Array, Optional[Array]]: ...
@overload
def flash_attn_varlen_func(q: Array, k: Array, v: Array, cu_seqlens_q: Index, cu_seqlens_k: Index, max_seqlen_q: int,
                           max_seqlen_k: int, dropout_p: float = ..., softmax_scale: Optional[float] = ...,
                           causal: bool = ..., window_size: Window = ..., softcap: float = ...,
                           alibi_slopes: Optional[Array] = ..., deterministic: bool = ...,
                           return_attn_probs: Literal[False] = ...) -> Array: ...
@overload
def flash_attn_varlen_func(q: Array, k: Array, v: Array, cu_seqlens_q: Index, cu_seqlens_k: Index, max_seqlen_q: int,
                           max_seqlen_k: int, dropout_p: float = ..., softmax_scale: Optional[float] = ...,
                           causal: bool = ..., window_size: Window = ..., softcap: float = ...,
                           alibi_slopes: Optional[Array] = ..., deterministic: bool = ..., *,
                           return_attn_probs: Literal[True]) -> Tuple[Array, Array, Optional[Array]]: ...
def flash_attn_qkvpacked_func(qkv: Array, dropout_p: float = ..., softmax_scale: Optional[float] = ...,
                              causal: bool = ..., window_size: Window = ..., softcap: float = ...,
                              alibi_slopes: Optional[Array] = ..., deterministic: bool = ...,
                              return_attn_probs: bool = ...) -> Union[Array, Tuple[Array, Array, Optional[Array]]]: ...
def flash_attn_kvpacked_func(q: Array, kv: Array, dropout_p: float = ..., softmax_scale: Optional[float] = ...,
                             causal: bool = ..., window_size: Window = ..., softcap: float = ...,
                             alibi_slopes: Optional[Array] = ..., deterministic: bool = ...,
                             return_attn_probs: bool = ...) -> Union[Array, Tuple[Array, Array, Optional[Array]]]: ...
def flash_attn_varlen_qkvpacked_func(qkv: Array, cu_seqlens: Index, max_seqlen: int, dropout_p: float = ...,
                                     softmax_scale: Optional[float] = ..., causal: bool = ...,
                                     window_size: Window = ..., softcap: float = ...,
                                     alibi_slopes: Optional[Array] = ..., deterministic: bool = ...,
                                     return_attn_probs: bool = ...
                                     ) -> Union[Array, Tuple[Array, Array, Optional[Array]]]: ...
def flash_attn_varlen_kvpacked_func(q: Array, kv: Array, cu_seqlens_q: Index, cu_seqlens_k: Index,
                                    max_seqlen_q: int, max_seqlen_k: int, dropout_p: float = ...,
                                    softmax_scale: Optional[float] = ..., causal: bool = ...,
                                    window_size: Window = ..., softcap: float = ...,
                                    alibi_slopes: Optional[Array] = ..., deterministic: bool = ...,
                                    return_attn_probs: bool = ...
                                    ) -> Union[Array, Tuple[Array, Array, Optional[Array]]]: ...
def int8_flash_attn_varlen_func(q: Array, k: Array, v: Array, cu_seqlens_q: Index, cu_seqlens_k: Index,
                                max_seqlen_q: int, max_seqlen_k: int, softmax_scale: Optional[float] = ...,
                                causal: bool = ..., window_size: Window = ..., softcap: float = ...,
                                alibi_slopes: Optional[Array] = ...,
                                qk_quant: Literal["per_block", "per_token", "per_tensor"] = ...,
                                smooth_k: bool = ..., return_attn_probs: bool = ...
                                ) -> Union[Array, Tuple[Array, Array, Optional[Array]]]: ...
def flash_attn_varlen_int8_func(q_int8: Array, q_scale: Array, k_int8: Array, k_scale: Array, v: Array,
                                cu_seqlens_q: Index, cu_seqlens_k: Index, max_seqlen_q: int, max_seqlen_k: int,
                                softmax_scale: Optional[float] = ..., causal: bool = ..., window_size: Window = ...,
                                softcap: float = ..., alibi_slopes: Optional[Array] = ...,
                                return_attn_probs: bool = ...) -> Union[Array, Tuple[Array, Array, Optional[Array]]]: ...

def sliding_window_attention(q: Array, k: Array, v: Array, window: int, causal: bool = ...,
                             softmax_scale: Optional[float] = ...) -> Array: ...

# ---- the attention guide's variants (docs/semantics.md §9); forward only ----
def sparse_top_k_attention(query: Array, key: Array, value: Array, k: int, num_chunks: int = ..., *,
                           causal: bool = ..., mask: Optional[Array] = ...,
                           softmax_scale: Optional[float] = ...) -> Array: ...
def aft_full(q: Array, k: Array, v: Array, w_bias: Union[Array, Tuple[Array, Array]], *,
             causal: bool = ...) -> Array: ...
def aft_local(q: Array, k: Array, v: Array, w_bias: Union[Array, Tuple[Array, Array]], local_context: int,
              outside: Literal["exclude", "zero_bias"] = ..., *, causal: bool = ...) -> Array: ...
def aft_simple(q: Array, k: Array, v: Array, *, causal: bool = ...) -> Array: ...
def linformer_attention(q: Array, k: Array, v: Array, proj_e: Any, proj_f: Any, bias_e: Optional[Array] = ...,
                        bias_f: Optional[Array] = ..., *, softmax_scale: Optional[float] = ...) -> Array: ...

# ---- decoding with a KV cache, and merging partial results ----
@overload
def flash_attn_with_kvcache(q: Array, k_cache: Array, v_cache: Array, k: Optional[Array] = ...,
                            v: Optional[Array] = ..., rotary_cos: Optional[Array] = ...,
                            rotary_sin: Optional[Array] = ..., cache_seqlens: Union[Index, int, None] = ...,
                            cache_batch_idx: Optional[Index] = ..., cache_leftpad: Optional[Index] = ...,
                            block_table: Optional[Array] = ..., softmax_scale: Optional[float] = ...,
                            causal: bool = ..., window_size: Window = ..., softcap: float = ...,
                            rotary_interleaved: bool = ..., alibi_slopes: Optional[Array] = ...,
                            num_splits: int = ..., return_softmax_lse: Literal[False] = ...,
                            k_scale: Optional[Array] = ..., v_scale: Optional[Array] = ...) -> Array: ...
@overload
def flash_attn_with_kvcache(q: Array, k_cache: Array, v_cache: Array, k: Optional[Array] = ...,
                            v: Optional[Array] = ..., rotary_cos: Optional[Array] = ...,
                            rotary_sin: Optional[Array] = ..., cache_seqlens: Union[Index, int, None] = ...,
                            cache_batch_idx: Optional[Index] = ..., cache_leftpad: Optional[Index] = ...,
                            block_table: Optional[Array] = ..., softmax_scale: Optional[float] = ...,
                            causal: bool = ..., window_size: Window = ..., softcap: float = ...,
                            rotary_interleaved: bool = ..., alibi_slopes: Optional[Array] = ...,
                            num_splits: int = ..., *, return_softmax_lse: Literal[True],
                            k_scale: Optional[Array] = ..., v_scale: Optional[Array] = ...) -> Tuple[Array, Array]: ...
def merge_attention_states(out_a: Array, lse_a: Array, out_b: Array, lse_b: Array) -> Tuple[Array, Array]: ...

# ---- seed 001's per-tensor quantization ----
def quantize_per_tensor(x: Array, num_bits: int = ...) -> Tuple[Array, float, float]: ...
def dequantize_per_tensor(q: Array, scale: float, zero_point: float, dtype: Optional[object] = ...) -> Array: ...
