"""`python -m attnkit.heatmap "some text" --model DIR`: one PNG of attention heatmaps per layer.

Loads a local transformers model directory (AutoTokenizer and AutoModel) with
attn_implementation="attnkit", runs one forward pass with output_attentions=True (the weights
come from attnkit's eager kernel) and writes DIR_OUT/layer_<i>.png, each a grid of that
layer's heads with the tokens on both axes. Needs transformers and matplotlib.
"""
import argparse
import os
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m attnkit.heatmap", description=__doc__.splitlines()[0])
    parser.add_argument("text", help="the text to tokenize and run")
    parser.add_argument("--model", required=True, help="a local transformers model directory")
    parser.add_argument("--out", default="heatmaps", help="the directory for layer_<i>.png (created)")
    parser.add_argument("--layers", default=None, help="comma-separated layer indices (default: every layer)")
    parser.add_argument("--head", type=int, default=None, help="draw only this head (default: a grid of all)")
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModel, AutoTokenizer

    import attnkit.integrations.transformers as backend
    from attnkit.plot import attention_heatmap

    backend.register()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModel.from_pretrained(args.model, attn_implementation=backend.NAME).eval()
    inputs = tokenizer(args.text, return_tensors="pt")
    with torch.no_grad():
        attentions = model(**inputs, output_attentions=True).attentions
    if not attentions:
        raise SystemExit(f"{args.model}: the model returned no attention weights")
    tokens = tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])
    layers = range(len(attentions)) if args.layers is None else [int(x) for x in args.layers.split(",")]
    os.makedirs(args.out, exist_ok=True)
    import matplotlib.pyplot as plt

    for layer in layers:
        path = os.path.join(args.out, f"layer_{layer}.png")
        figure = attention_heatmap(attentions[layer], query_tokens=tokens, key_tokens=tokens, head=args.head,
                                   path=path, title=f"{os.path.basename(os.path.normpath(args.model))}, layer {layer}")
        plt.close(figure)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
