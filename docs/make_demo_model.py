"""Writes a tiny BERT-style model with random weights (seeded) and a word-level vocabulary to a
directory, for trying `python -m attnkit.heatmap` without downloading a model:

    python docs/make_demo_model.py build/demo-bert
    python -m attnkit.heatmap "the cat sat on the mat" --model build/demo-bert --out docs/heatmaps

Its weights are random, so its attention patterns show what the tool draws, not what a trained
model attends to. Point --model at any local transformers model directory for real ones.
"""
import os
import sys

import torch
from transformers import BertConfig, BertModel, BertTokenizer

WORDS = ("the cat sat on mat a dog ran to park and it was warm sun in sky attention is all you need "
         "kernels run fast cpu").split()


def make(directory, seed=0):
    os.makedirs(directory, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(WORDS))
    tokenizer = BertTokenizer(vocab={word: index for index, word in enumerate(words)}, do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=64)
    model = BertModel(config).eval()
    with torch.no_grad():   # larger query/key weights than BERT's init, so the softmax is not nearly uniform
        for layer in model.encoder.layer:
            layer.attention.self.query.weight.mul_(6)
            layer.attention.self.key.weight.mul_(6)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


if __name__ == "__main__":
    print(make(sys.argv[1] if len(sys.argv) > 1 else "build/demo-bert"))
