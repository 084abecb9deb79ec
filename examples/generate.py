"""Greedy generation with a small GQA Llama-style model (random weights, examples/tiny_llama.py):
attnkit's flash_attn_with_kvcache on a paged cache against torch SDPA on a concatenated cache.
Prints a progress bar, the tokens/s of each, and whether the tokens agree.

    .venv/bin/python examples/generate.py [--steps 64] [--batch 1] [--layers 4] [--prompt 32]"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tiny_llama import Config, TinyLlama  # noqa: E402

import attnkit  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(attnkit.get_num_threads())
    config = Config(layers=args.layers, hidden=512, heads=16, kv_heads=4, head_dim=32, ffn=1024,
                    max_len=args.prompt + args.steps + 1)
    model = TinyLlama(config)
    prompt = torch.randint(0, config.vocab, (args.batch, args.prompt), generator=torch.Generator().manual_seed(0))
    results = {}
    for backend in ("attnkit", "torch"):
        done = [0]

        def progress():
            done[0] += 1
            filled = done[0] * 30 // args.steps
            print(f"\r{backend:>8} [{'#' * filled}{'.' * (30 - filled)}] {done[0]}/{args.steps}", end="", flush=True)

        start = time.perf_counter()
        tokens, _ = model.generate(prompt, args.steps, backend, on_token=progress)
        seconds = time.perf_counter() - start
        results[backend] = tokens
        print(f"  {args.batch * args.steps / seconds:.1f} tokens/s")
    same = torch.equal(results["attnkit"], results["torch"])
    print(f"attnkit {attnkit.__version__} ({attnkit.isa()} kernels), torch {torch.__version__}; "
          f"tokens {'identical' if same else 'DIFFER'}")


if __name__ == "__main__":
    main()
