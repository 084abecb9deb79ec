"""Decoding: one query token per sequence against a long KV cache, through flash_attn_with_kvcache,
against torch SDPA on the same cache (concatenated, enable_gqa=True; padded with a key mask for
mixed lengths), side by side in one run. Every row reports the KV bytes read per second (K and V
once each, the bytes of the cache's dtype; int8 rows compare with torch on the fp32 cache) and, as the ceiling, the machine's single-pass read
bandwidth over a buffer of the same size, measured in the same run (a torch sum on as many threads
as attnkit uses)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import header, median_ms, print_table, setup  # noqa: E402  (before torch: see timing.py)

import torch

import attnkit  # noqa: E402

F = torch.nn.functional


def read_bandwidth(nbytes, repeats):
    """GB/s of one pass summing a buffer of `nbytes` (fp32), on torch's threads (set to attnkit's)."""
    buffer = torch.ones(max(nbytes // 4, 1), dtype=torch.float32)
    ms = median_ms([lambda: buffer.sum()], repeats=repeats)[0]
    return nbytes / ms / 1e6


def quantize_rows(x):
    """An int8 cache: symmetric levels per (position, head) row and their fp32 scales."""
    scale = (x.abs().amax(-1) / 127).clamp_min(1e-30)
    return torch.round(x / scale[..., None]).clamp(-127, 127).to(torch.int8), scale


def single_rows(lengths, dtypes, repeats, heads=32, kv_heads=8, dim=128):
    rows = []
    for keys in lengths:
        q32 = torch.randn(1, 1, heads, dim)
        k32, v32 = (torch.randn(1, keys, kv_heads, dim) for _ in range(2))
        exact = F.scaled_dot_product_attention(q32.transpose(1, 2).double(), k32.transpose(1, 2).double(),
                                               v32.transpose(1, 2).double(), enable_gqa=True).transpose(1, 2)
        for dtype in dtypes:
            int8 = dtype == torch.int8   # an int8 cache (per position and head scales), fp32 queries
            q, k_cache, v_cache = (x.to(torch.float32 if int8 else dtype) for x in (q32, k32, v32))
            qt, kt, vt = (x.transpose(1, 2).contiguous() for x in (q, k_cache, v_cache))
            lengths_t = torch.tensor([keys], dtype=torch.int32)
            scales = {}
            if int8:
                k_cache, scales["k_scale"] = quantize_rows(k_cache)
                v_cache, scales["v_scale"] = quantize_rows(v_cache)

            def ours():
                return attnkit.flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=lengths_t, **scales)

            def theirs():
                return F.scaled_dot_product_attention(qt, kt, vt, enable_gqa=True)

            out_ours, out_torch = ours(), theirs().transpose(1, 2)
            ms_ours, ms_torch = median_ms([ours, theirs], repeats=repeats)
            cache_bytes = 2 * k_cache.numel() * k_cache.element_size() + sum(x.numel() * 4 for x in scales.values())
            torch_bytes = 2 * kt.numel() * kt.element_size()
            ceiling = read_bandwidth(cache_bytes, repeats)
            gb_ours, gb_torch = cache_bytes / ms_ours / 1e6, torch_bytes / ms_torch / 1e6
            rows.append([f"B1 Hq{heads} Hkv{kv_heads} S{keys} D{dim}", str(dtype).replace("torch.", ""),
                         f"{(out_ours.double() - exact).abs().max().item():.1e}",
                         f"{(out_torch.double() - exact).abs().max().item():.1e}",
                         f"{ms_ours:.2f}", f"{ms_torch:.2f}", f"{gb_ours:.1f}", f"{gb_torch:.1f}", f"{ceiling:.1f}",
                         f"{100 * gb_ours / ceiling:.0f}%", f"{1e3 / ms_ours:.0f}", f"{ms_torch / ms_ours:.2f}x"])
    return rows


def paged_rows(repeats, batch=8, heads=32, kv_heads=8, dim=128, page=16, dtype=torch.float32):
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(512, 16385, (batch,), generator=generator)
    longest = int(lengths.max())
    pages_per_sequence = (longest + page - 1) // page
    blocks = batch * pages_per_sequence
    table = torch.randperm(blocks, generator=generator).reshape(batch, pages_per_sequence).to(torch.int32)
    k_cache, v_cache = (torch.randn(blocks, page, kv_heads, dim, generator=generator).to(dtype) for _ in range(2))
    q = torch.randn(batch, 1, heads, dim, generator=generator).to(dtype)
    seqlens = lengths.to(torch.int32)
    # torch: the same keys gathered into a padded (B, Hk, longest, D) cache with a key mask.
    flat_k = k_cache[table.long()].reshape(batch, pages_per_sequence * page, kv_heads, dim)[:, :longest]
    flat_v = v_cache[table.long()].reshape(batch, pages_per_sequence * page, kv_heads, dim)[:, :longest]
    kt, vt = flat_k.transpose(1, 2).contiguous(), flat_v.transpose(1, 2).contiguous()
    qt = q.transpose(1, 2).contiguous()
    mask = (torch.arange(longest)[None, :] < lengths[:, None])[:, None, None, :]

    def ours():
        return attnkit.flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=seqlens, block_table=table)

    def theirs():
        return F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, enable_gqa=True)

    error = (ours().double() - theirs().transpose(1, 2).double()).abs().max().item()
    ms_ours, ms_torch = median_ms([ours, theirs], repeats=repeats)
    cache_bytes = 2 * int(lengths.sum()) * kv_heads * dim * k_cache.element_size()
    ceiling = read_bandwidth(cache_bytes, repeats)
    gb_ours, gb_torch = cache_bytes / ms_ours / 1e6, cache_bytes / ms_torch / 1e6
    return [[f"B{batch} paged{page} S512..16k Hq{heads} Hkv{kv_heads} D{dim}", str(dtype).replace("torch.", ""),
             f"{error:.1e} vs torch", "-", f"{ms_ours:.2f}", f"{ms_torch:.2f}", f"{gb_ours:.1f}", f"{gb_torch:.1f}",
             f"{ceiling:.1f}", f"{100 * gb_ours / ceiling:.0f}%", f"{1e3 / ms_ours:.0f}", f"{ms_torch / ms_ours:.2f}x"]]


def main():
    args = setup(__doc__, repeats=15)
    torch.set_num_threads(attnkit.get_num_threads())
    print(header(args, f"medians of up to {args.repeats} interleaved runs; torch on {torch.get_num_threads()} threads")
          + "\n")
    rows = single_rows([4096, 16384, 32768], [torch.float32, torch.float16, torch.bfloat16, torch.int8], args.repeats)
    rows += paged_rows(args.repeats)
    print_table(["shape", "cache", "err vs fp64", "torch err", "attnkit ms", "torch ms", "attnkit GB/s", "torch GB/s",
                 "read GB/s", "of read", "tokens/s", "speedup"], rows)


if __name__ == "__main__":
    main()
