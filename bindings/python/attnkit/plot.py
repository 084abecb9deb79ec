"""Attention heatmaps from the weights the eager kernel returns (matplotlib: pip install attnkit[plot]).

Importing attnkit never imports matplotlib; this module does, when a function here is called.
"""
import math
import os
import sys
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _as_array(weights):
    if hasattr(weights, "detach"):   # a torch tensor
        weights = weights.detach().float().cpu().numpy()
    return np.asarray(weights, dtype=np.float64)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("attnkit.plot needs matplotlib: pip install attnkit[plot]") from None
    if "matplotlib.pyplot" not in sys.modules:   # no display needed; a session that chose a backend keeps it
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def attention_heatmap(weights: Any, query_tokens: Optional[Sequence[str]] = None,
                      key_tokens: Optional[Sequence[str]] = None, head: Optional[int] = None,
                      path: Union[str, "os.PathLike[str]", None] = None, title: Optional[str] = None,
                      cell_pixels: Optional[float] = None) -> "Figure":
    """Draws attention weights as a heatmap; returns the matplotlib Figure (written to `path` if given).

    weights: (B, H, L, S) (the first batch entry is drawn), (H, L, S) or (L, S), torch or numpy, as
        attnkit.eager_*_attention(..., return_weights=True) returns them.
    query_tokens, key_tokens: labels for the L rows and S columns (e.g. the tokenizer's tokens).
    head: one head's index, or None for a grid of every head.
    Colours: viridis, from 0 (dark) to the largest weight drawn (bright), shared by every head, so
    a brighter cell always has a larger weight.
    """
    plt = _pyplot()
    w = _as_array(weights)
    if w.ndim == 4:
        w = w[0]
    if w.ndim == 2:
        w = w[None]
    if w.ndim != 3:
        raise ValueError(f"weights must have shape (B, H, L, S), (H, L, S) or (L, S), got {tuple(np.shape(weights))}")
    heads, rows, columns = w.shape
    if head is not None:
        if not -heads <= head < heads:
            raise ValueError(f"head must be in [0, {heads}), got {head}")
        w, names = w[head:head + 1], [f"head {head % heads}"]
    else:
        names = [f"head {h}" for h in range(heads)] if heads > 1 else [""]
    for name, labels, count in (("query_tokens", query_tokens, rows), ("key_tokens", key_tokens, columns)):
        if labels is not None and len(labels) != count:
            raise ValueError(f"{name} must have {count} labels (the weights' {name[:-7]} length), got {len(labels)}")
    grid_columns = math.ceil(math.sqrt(len(w)))
    grid_rows = math.ceil(len(w) / grid_columns)
    inches = 0.32 if cell_pixels is None else cell_pixels / 100   # per cell
    panel = (max(3.0, columns * inches + 1.2), max(2.6, rows * inches + 1.0))
    figure, axes = plt.subplots(grid_rows, grid_columns, squeeze=False, dpi=100, layout="constrained",
                                figsize=(panel[0] * grid_columns + 1.0, panel[1] * grid_rows + (0.4 if title else 0)))
    top = float(w.max()) if w.size and w.max() > 0 else 1.0
    image = None
    for index, ax in enumerate(axes.flat):
        if index >= len(w):
            ax.axis("off")
            continue
        image = ax.imshow(w[index], cmap="viridis", vmin=0.0, vmax=top, interpolation="nearest", aspect="auto")
        ax.set_title(names[index], fontsize=9)
        ax.set_xticks(range(columns))
        ax.set_yticks(range(rows))
        ax.set_xticklabels(key_tokens if key_tokens is not None else range(columns), rotation=90, fontsize=7)
        ax.set_yticklabels(query_tokens if query_tokens is not None else range(rows), fontsize=7)
        ax.set_xlabel("key", fontsize=8)
        ax.set_ylabel("query", fontsize=8)
    if image is not None:
        figure.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="attention weight")
    if title:
        figure.suptitle(title, fontsize=10)
    if path is not None:
        figure.savefig(path, dpi=100)
    return figure
