"""A small GQA Llama-style decoder with random weights, written with torch modules, and two ways to
run its attention during generation:
  - "attnkit": flash_attn_with_kvcache on a paged KV cache, which also applies the (GPT-NeoX) rotary
    embedding to the new keys and the queries and appends the keys and values in place;
  - "attnkit-int8": the same on an int8 cache (symmetric, one fp32 scale per position and KV head);
  - "torch": rotary in torch, a plain concatenated cache, and F.scaled_dot_product_attention.
Used by examples/generate.py and Tests/python/test_generate.py."""
import math

import torch

import attnkit

F = torch.nn.functional


class Config:
    def __init__(self, vocab=256, hidden=128, layers=2, heads=8, kv_heads=2, head_dim=32, ffn=256, max_len=128,
                 page_size=16):
        self.vocab, self.hidden, self.layers, self.heads, self.kv_heads = vocab, hidden, layers, heads, kv_heads
        self.head_dim, self.ffn, self.max_len, self.page_size = head_dim, ffn, max_len, page_size


class RMSNorm(torch.nn.Module):
    def __init__(self, size):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(size))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class Layer(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.norm1, self.norm2 = RMSNorm(c.hidden), RMSNorm(c.hidden)
        self.q = torch.nn.Linear(c.hidden, c.heads * c.head_dim, bias=False)
        self.k = torch.nn.Linear(c.hidden, c.kv_heads * c.head_dim, bias=False)
        self.v = torch.nn.Linear(c.hidden, c.kv_heads * c.head_dim, bias=False)
        self.o = torch.nn.Linear(c.heads * c.head_dim, c.hidden, bias=False)
        self.gate = torch.nn.Linear(c.hidden, c.ffn, bias=False)
        self.up = torch.nn.Linear(c.hidden, c.ffn, bias=False)
        self.down = torch.nn.Linear(c.ffn, c.hidden, bias=False)


class TinyLlama(torch.nn.Module):
    def __init__(self, c, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.c = c
        self.embed = torch.nn.Embedding(c.vocab, c.hidden)
        self.layers = torch.nn.ModuleList(Layer(c) for _ in range(c.layers))
        self.norm = RMSNorm(c.hidden)
        self.head = torch.nn.Linear(c.hidden, c.vocab, bias=False)
        inverse = 1.0 / (10000 ** (torch.arange(0, c.head_dim, 2, dtype=torch.float64) / c.head_dim))
        angles = torch.arange(c.max_len, dtype=torch.float64)[:, None] * inverse[None]
        self.cos, self.sin = angles.cos().float(), angles.sin().float()   # (max_len, head_dim / 2)

    def neox_rotary(self, x, positions):
        """x (B, S, H, D) rotated GPT-NeoX style (dims i and i + D/2) at positions (S,), in fp32."""
        half = x.shape[-1] // 2
        c, s = self.cos[positions][None, :, None, :], self.sin[positions][None, :, None, :]
        first, second = x[..., :half], x[..., half:]
        return torch.cat([first * c - second * s, first * s + second * c], dim=-1)

    def step(self, tokens, caches, position, backend):
        """Logits (B, S, vocab) of `tokens` (B, S) at positions position ..< position + S,
        appending their keys and values to `caches`."""
        c = self.c
        batch, length = tokens.shape
        x = self.embed(tokens)
        for layer, cache in zip(self.layers, caches):
            h = layer.norm1(x)
            q = layer.q(h).view(batch, length, c.heads, c.head_dim)
            k = layer.k(h).view(batch, length, c.kv_heads, c.head_dim)
            v = layer.v(h).view(batch, length, c.kv_heads, c.head_dim)
            if backend in ("attnkit", "attnkit-int8"):
                seqlens = torch.full((batch,), position, dtype=torch.int32)
                attention = attnkit.flash_attn_with_kvcache(
                    q, cache["k"], cache["v"], k=k, v=v, rotary_cos=self.cos, rotary_sin=self.sin,
                    cache_seqlens=seqlens, block_table=cache["table"], causal=True, rotary_interleaved=False,
                    k_scale=cache.get("k_scale"), v_scale=cache.get("v_scale"))
            else:
                positions = torch.arange(position, position + length)
                q, k = self.neox_rotary(q, positions), self.neox_rotary(k, positions)
                cache["k"] = torch.cat([cache["k"], k], dim=1)
                cache["v"] = torch.cat([cache["v"], v], dim=1)
                qt, kt, vt = (t.transpose(1, 2) for t in (q, cache["k"], cache["v"]))
                # Bottom-right causal: query i sees keys <= position + i (is_causal is top-left in torch).
                keys = kt.shape[2]
                allowed = torch.arange(keys)[None, :] <= (torch.arange(length)[:, None] + keys - length)
                attention = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=allowed, enable_gqa=True).transpose(1, 2)
            x = x + layer.o(attention.reshape(batch, length, c.heads * c.head_dim))
            h = layer.norm2(x)
            x = x + layer.down(F.silu(layer.gate(h)) * layer.up(h))
        return self.head(self.norm(x))

    def new_caches(self, backend, batch, dtype=torch.float32):
        c = self.c
        if backend == "attnkit-int8":   # int8 levels with one fp32 scale per (page, position, KV head)
            caches = self.new_caches("attnkit", batch, torch.int8)
            for cache in caches:
                cache["k_scale"] = torch.ones(cache["k"].shape[:3])
                cache["v_scale"] = torch.ones(cache["v"].shape[:3])
            return caches
        if backend == "attnkit":
            pages = math.ceil(c.max_len / c.page_size)
            caches = []
            for layer in range(c.layers):
                # Pages handed out in a scrambled order, as a paged allocator would.
                table = torch.randperm(batch * pages, generator=torch.Generator().manual_seed(layer)).view(batch, pages)
                caches.append({"k": torch.zeros(batch * pages, c.page_size, c.kv_heads, c.head_dim, dtype=dtype),
                               "v": torch.zeros(batch * pages, c.page_size, c.kv_heads, c.head_dim, dtype=dtype),
                               "table": table.to(torch.int32)})
            return caches
        return [{"k": torch.zeros(batch, 0, c.kv_heads, c.head_dim, dtype=dtype),
                 "v": torch.zeros(batch, 0, c.kv_heads, c.head_dim, dtype=dtype)} for _ in range(c.layers)]

    @torch.no_grad()
    def generate(self, prompt, steps, backend, on_token=None):
        """Greedy decoding: (tokens (B, steps), logits of each step (steps, B, vocab))."""
        caches = self.new_caches(backend, prompt.shape[0])
        logits = self.step(prompt, caches, 0, backend)[:, -1]
        position = prompt.shape[1]
        tokens, all_logits = [], []
        for _ in range(steps):
            token = logits.argmax(-1)
            tokens.append(token)
            all_logits.append(logits)
            if on_token:
                on_token()
            logits = self.step(token[:, None], caches, position, backend)[:, -1]
            position += 1
        return torch.stack(tokens, 1), torch.stack(all_logits)
