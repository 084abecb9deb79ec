"""Train a small causal language model with its sequence split across ranks (context
parallelism) through attnkit.distributed.zigzag_ring_attention, on CPUs over gloo.

    torchrun --standalone --nproc-per-node 2 examples/ring_train.py --steps 20

Every rank holds the same model and its zigzag shard of every sequence (positions of chunks r
and 2N-1-r); the attention passes K/V around the ring; the loss is the mean over all tokens and
the gradients are summed across ranks, so the run matches one process on the whole sequence.
"""
import argparse
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F

import attnkit
import attnkit.distributed as ad


class Block(torch.nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = torch.nn.LayerNorm(width), torch.nn.LayerNorm(width)
        self.qkv, self.proj = torch.nn.Linear(width, 3 * width), torch.nn.Linear(width, width)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(width, 4 * width), torch.nn.GELU(), torch.nn.Linear(4 * width, width))

    def forward(self, x):
        b, s, w = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, s, 3, self.heads, w // self.heads).unbind(2)
        # (B, S_local, H, D) shards; causal on global positions; differentiable.
        attended = ad.zigzag_ring_attention(q, k, v, causal=True)
        x = x + self.proj(attended.reshape(b, s, w))
        return x + self.mlp(self.norm2(x))


class LM(torch.nn.Module):
    def __init__(self, vocab, width, heads, layers, length):
        super().__init__()
        self.tokens, self.positions = torch.nn.Embedding(vocab, width), torch.nn.Embedding(length, width)
        self.blocks = torch.nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.head = torch.nn.Linear(width, vocab)

    def forward(self, tokens, positions):
        x = self.tokens(tokens) + self.positions(positions)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    dist.init_process_group("gloo")   # torchrun sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
    rank, world = dist.get_rank(), dist.get_world_size()
    threads = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world)))
    torch.set_num_threads(threads)
    attnkit.set_num_threads(threads)

    torch.manual_seed(0)                          # the same weights and data on every rank
    vocab = 256
    model = LM(vocab, width=128, heads=4, layers=2, length=args.length)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    positions = torch.arange(args.length).expand(args.batch, args.length)

    def shard(x):
        return ad.zigzag_split(x, world, rank, dim=1)

    for step in range(args.steps):
        data = torch.randint(0, vocab, (args.batch, args.length + 1))
        data[:, 1::2] = data[:, 0:-1:2]           # something learnable: every other token repeats
        inputs, targets = data[:, :-1], data[:, 1:]
        logits = model(shard(inputs), shard(positions))
        loss = F.cross_entropy(logits.flatten(0, 1), shard(targets).flatten(), reduction="sum")
        loss = loss / (args.batch * args.length)   # this rank's share of the mean over all tokens
        optimizer.zero_grad()
        loss.backward()
        for parameter in model.parameters():
            dist.all_reduce(parameter.grad)
        optimizer.step()
        total = loss.detach().clone()
        dist.all_reduce(total)
        if rank == 0:
            print(f"step {step:3d}  loss {total.item():.4f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
