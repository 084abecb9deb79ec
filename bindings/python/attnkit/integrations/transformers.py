"""Hugging Face transformers backend: attn_implementation="attnkit".

    import attnkit.integrations.transformers as backend
    backend.register()
    model = AutoModel.from_pretrained(path, attn_implementation="attnkit")   # or model.set_attn_implementation("attnkit")

register() adds the attention function to transformers' AttentionInterface and its mask
function to AttentionMaskInterface. The mask function is the one transformers uses for
flash_attention_2: the model's 2-D padding mask (or None when nothing is padded), never a
4-D one. Without a registered mask function transformers would pass no mask at all and padding
tokens would leak into every other token's output.

The attention function runs attnkit's flash kernels in flash-attn's conventions:
- causal masks are bottom-right aligned (decoding with a KV cache needs no offset);
- `sliding_window=w` attends the current token and the w - 1 before it, as transformers' masks do;
- `softcap` and GQA (key/value with fewer heads) go to the kernel as they are;
- a padded batch is unpadded and run by flash_attn_varlen_func, so padding costs nothing, and
  padded query positions get 0 (as with flash_attention_2; the "sdpa" backend leaves other
  values there, which no unpadded token reads);
- a packed batch (cu_seq_lens_q/k and max_length_q/k kwargs, or position_ids restarting at 0
  inside one row) runs as varlen, one document per sequence.
When the model asks for the weights (output_attentions=True), the eager kernel computes them
(no window or softcap; queries either as many as keys or a single decoding token).
"""
import torch

import attnkit

NAME = "attnkit"


def register(name: str = NAME) -> None:
    """Makes attn_implementation=name load attnkit's attention in transformers models."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    AttentionInterface.register(name, attention_forward)
    AttentionMaskInterface.register(name, flash_attention_mask)


def _cumulative(lengths):
    return torch.nn.functional.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))


def _packed_boundaries(position_ids, total):
    """cu_seqlens and the longest document of one row of position_ids restarting at 0, or None."""
    if position_ids is None or position_ids.dim() != 2 or position_ids.shape[0] != 1 or position_ids.shape[1] != total:
        return None
    row = position_ids[0]
    starts = torch.nonzero(row == 0).flatten()
    if total <= 1 or starts.numel() <= 1 or starts[0].item() != 0:
        return None
    cu = torch.cat([starts, torch.tensor([total])]).to(torch.int32)
    return cu, int((cu[1:] - cu[:-1]).max())


def _weights(module, query, key, value, attention_mask, scaling, sliding_window, softcap, is_causal):
    """(out, weights) through the eager kernel: [B, H, L, D] in, (B, L, H, D) and (B, H, L, S) out."""
    batch, heads, seq_q, dim = query.shape
    seq_k = key.shape[2]
    if sliding_window is not None or softcap:
        raise ValueError("output_attentions=True with sliding_window or softcap: attnkit's eager kernel has neither; "
                         "use attn_implementation='eager'")
    if scaling is not None and abs(scaling * dim ** 0.5 - 1) > 1e-6:
        raise ValueError(f"output_attentions=True needs scaling = head_dim**-0.5 (the eager kernel's), got {scaling}")
    if is_causal and seq_q not in (seq_k, 1):
        raise ValueError(f"output_attentions=True with causal attention needs query length 1 or {seq_k} "
                         f"(the key length), got {seq_q}")
    groups = heads // key.shape[1]
    key, value = (x.repeat_interleave(groups, dim=1) for x in (key, value))
    mask = None if attention_mask is None else attention_mask[:, -seq_k:].bool()

    def seed_layout(x):
        return x.transpose(1, 2).reshape(batch, x.shape[2], heads * dim)

    function = attnkit.eager_causal_attention if is_causal and seq_q > 1 else attnkit.eager_bidirectional_attention
    out, weights = function(seed_layout(query), seed_layout(key), seed_layout(value), heads, dim, mask,
                            return_weights=True)
    return out.view(batch, seq_q, heads, dim), weights


def attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, sliding_window=None,
                      softcap=None, is_causal=None, **kwargs):
    """transformers' attention signature: query [B, Hq, L, D], key/value [B, Hk, S, D] ->
    ((B, L, Hq, Dv), weights or None)."""
    for unsupported in ("position_bias", "s_aux"):
        if kwargs.get(unsupported) is not None:
            raise ValueError(f"attnkit's transformers backend does not support {unsupported}")
    is_causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    if kwargs.get("output_attentions", False):
        return _weights(module, query, key, value, attention_mask, scaling, sliding_window, softcap, is_causal)
    q, k, v = (x.transpose(1, 2) for x in (query, key, value))
    batch, seq_q, heads, _ = q.shape
    seq_k = k.shape[1]
    window = (sliding_window - 1, sliding_window - 1) if sliding_window is not None and seq_k > sliding_window \
        else (-1, -1)
    options = dict(dropout_p=float(dropout), softmax_scale=scaling, causal=bool(is_causal), window_size=window,
                   softcap=float(softcap or 0.0))

    if attention_mask is not None:   # a 2-D padding mask: unpad, run varlen, pad with zeros
        mask = attention_mask[:, -seq_k:].bool()
        if mask.shape[1] < seq_k:   # a static cache longer than what it holds
            k, v, seq_k = k[:, :mask.shape[1]], v[:, :mask.shape[1]], mask.shape[1]
        keys = torch.nonzero(mask.flatten()).flatten()
        lengths_k = mask.sum(1)
        query_mask = mask if seq_q == seq_k else (torch.ones(batch, 1, dtype=torch.bool) if seq_q == 1
                                                  else mask[:, -seq_q:])
        rows = torch.nonzero(query_mask.flatten()).flatten()
        lengths_q = query_mask.sum(1)
        packed = attnkit.flash_attn_varlen_func(
            q.reshape(batch * seq_q, heads, -1)[rows], k.reshape(batch * seq_k, k.shape[2], -1)[keys],
            v.reshape(batch * seq_k, v.shape[2], -1)[keys], _cumulative(lengths_q), _cumulative(lengths_k),
            int(lengths_q.max()), int(lengths_k.max()), **options)
        out = packed.new_zeros(batch * seq_q, heads, packed.shape[-1]).index_copy(0, rows, packed)
        return out.view(batch, seq_q, heads, -1), None

    cu_q, cu_k = kwargs.get("cu_seq_lens_q"), kwargs.get("cu_seq_lens_k")
    if cu_q is not None and cu_k is not None:
        lengths = (int(kwargs.get("max_length_q") or (cu_q[1:] - cu_q[:-1]).max()),
                   int(kwargs.get("max_length_k") or (cu_k[1:] - cu_k[:-1]).max()))
    elif batch == 1 and (boundaries := _packed_boundaries(kwargs.get("position_ids"), seq_q)) is not None \
            and seq_q == seq_k:
        cu_q = cu_k = boundaries[0]
        lengths = (boundaries[1], boundaries[1])
    else:
        return attnkit.flash_attn_func(q, k, v, **options), None
    out = attnkit.flash_attn_varlen_func(q.reshape(-1, heads, q.shape[-1]), k.reshape(-1, k.shape[2], k.shape[-1]),
                                         v.reshape(-1, v.shape[2], v.shape[-1]), cu_q.to(torch.int32),
                                         cu_k.to(torch.int32), lengths[0], lengths[1], **options)
    return out.view(batch, seq_q, heads, -1), None
