"""A real generation loop (issue: decoding with a KV cache): a small GQA Llama-style model with random
weights (examples/tiny_llama.py) generates 32 greedy tokens through flash_attn_with_kvcache on a paged
cache with GPT-NeoX rotary, and through torch SDPA over a plain concatenated cache. Same tokens, and
logits within the fp32 rule at every step."""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples"))
from tiny_llama import Config, TinyLlama  # noqa: E402

# fp32 logits after two layers of fp32 attention, projections and norms: relative to the largest logit.
LOGIT_RELATIVE_TOLERANCE = 1e-4


def test_greedy_generation_matches_torch_sdpa_token_for_token():
    config = Config(page_size=16)
    model = TinyLlama(config, seed=0)
    prompt = torch.randint(0, config.vocab, (2, 7), generator=torch.Generator().manual_seed(1))
    ours, our_logits = model.generate(prompt, 32, "attnkit")
    theirs, their_logits = model.generate(prompt, 32, "torch")
    assert torch.equal(ours, theirs), f"tokens differ:\n{ours}\n{theirs}"
    scale = max(1.0, their_logits.abs().max().item())
    error = (our_logits - their_logits).abs().max().item()
    assert error <= LOGIT_RELATIVE_TOLERANCE * scale, f"logits: max error {error:.3e} (scale {scale:.2f})"


def test_generation_with_page_size_one_and_prefill_longer_than_a_page():
    config = Config(page_size=1, max_len=64)
    model = TinyLlama(config, seed=3)
    prompt = torch.randint(0, config.vocab, (1, 19), generator=torch.Generator().manual_seed(4))
    ours, _ = model.generate(prompt, 12, "attnkit")
    theirs, _ = model.generate(prompt, 12, "torch")
    assert torch.equal(ours, theirs)


def test_generation_on_an_int8_cache_follows_torch_until_the_margin_is_within_int8_error():
    """With an int8 cache the logits move by the quantization error; a token may differ from torch's
    only at a step whose top-2 logit margin (torch's) is below that error. Prints how many matched."""
    config = Config(page_size=16)
    model = TinyLlama(config, seed=0)
    prompt = torch.randint(0, config.vocab, (2, 7), generator=torch.Generator().manual_seed(1))
    theirs, their_logits = model.generate(prompt, 32, "torch")
    ours, our_logits = model.generate(prompt, 32, "attnkit-int8")
    for row in range(2):
        differs = (ours[row] != theirs[row]).nonzero()
        first = differs[0].item() if differs.numel() else 32
        # Up to the first difference both runs saw the same tokens, so their logits are comparable:
        # the int8 error bound is the largest logit gap observed over those steps (plus slack).
        gap = (our_logits[: first + 1, row] - their_logits[: first + 1, row]).abs().max().item()
        if first < 32:
            top2 = their_logits[first, row].topk(2).values
            margin = (top2[0] - top2[1]).item()
            assert margin <= 2 * gap, f"row {row}: token {first} differs with margin {margin:.3e} > 2 x error {gap:.3e}"
        print(f"int8 cache, row {row}: {first} of 32 tokens match torch (max logit error {gap:.2e})")
        assert gap < 0.5, f"int8 logit error {gap:.3e} is not small"
