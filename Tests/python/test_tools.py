"""The user-facing tools: the benchmark CLI (table, progress, PNG, JSON), attention heatmaps
(colours monotone in the weights), the heatmap CLI, and that importing attnkit needs no matplotlib."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from attnkit.plot import attention_heatmap  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*args, cwd):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_importing_attnkit_needs_no_matplotlib(tmp_path):
    code = "import sys, attnkit; assert 'matplotlib' not in sys.modules, 'attnkit imported matplotlib'"
    result = _run("-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("op", ["sdpa", "decode"])
def test_bench_cli_sweep_writes_table_png_and_json(tmp_path, op):
    png, report = tmp_path / "sweep.png", tmp_path / "sweep.json"
    result = _run("-m", "attnkit.bench", "--op", op, "--sweep", "16,32,48", "--repeats", "2", "--threads", "1",
                  "--plot", str(png), "--plot-size", "640x400", "--json", str(report), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "CPU " in result.stdout and "kernels" in result.stdout   # the header names the CPU and the tier
    assert "3/3" in result.stderr                                    # the progress bar reached the end
    image = matplotlib.image.imread(png)
    assert image.shape[:2] == (400, 640)
    data = json.loads(report.read_text())
    for key in ("cpu", "isa", "torch_version", "torch_isa", "threads", "op", "dtype", "shape", "unit", "rows"):
        assert key in data, key
    assert data["op"] == op and data["unit"] == ("GB/s" if op == "decode" else "GFLOP/s")
    assert [row["seq_len"] for row in data["rows"]] == [16, 32, 48]
    for row in data["rows"]:
        assert row["attnkit_ms"] > 0 and row["torch_ms"] > 0 and row["attnkit_throughput"] > 0
        assert row["max_abs_difference"] < 1e-4          # attnkit and torch computed the same attention


def test_bench_cli_rejects_bad_arguments(tmp_path):
    result = _run("-m", "attnkit.bench", "--sweep", "16,x", cwd=tmp_path)
    assert result.returncode != 0 and "--sweep" in result.stderr
    result = _run("-m", "attnkit.bench", "--heads", "8", "--kv-heads", "3", cwd=tmp_path)
    assert result.returncode != 0 and "--kv-heads" in result.stderr


def _luminance(rgb):
    return 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]


def test_heatmap_colours_are_monotone_in_the_weights(tmp_path):
    """A hand-made 4 x 5 matrix of distinct weights: read the PNG back, sample each cell's centre,
    and the cells' brightness must rise with their weights (the largest weight is the brightest)."""
    weights = np.array([[0.05, 0.30, 0.10, 0.40, 0.15],
                        [0.60, 0.02, 0.08, 0.20, 0.09],
                        [0.12, 0.18, 0.45, 0.01, 0.24],
                        [0.22, 0.07, 0.03, 0.13, 0.55]])
    path = tmp_path / "heatmap.png"
    figure = attention_heatmap(weights, query_tokens=list("abcd"), key_tokens=list("vwxyz"), path=path)
    width, height = (figure.get_size_inches() * figure.dpi).round().astype(int)
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == (height, width)
    ax = figure.axes[0]
    brightness = np.zeros_like(weights)
    for i in range(weights.shape[0]):
        for j in range(weights.shape[1]):
            x, y = ax.transData.transform((j, i))   # the cell's centre, in pixels from the bottom left
            brightness[i, j] = _luminance(image[int(round(height - y)), int(round(x))][:3])
    plt.close(figure)
    assert len(np.unique(weights)) == weights.size
    order = np.argsort(weights, axis=None)
    assert np.all(np.diff(brightness.flatten()[order]) > 0), "cell brightness must increase with the weight"
    assert np.unravel_index(np.argmax(brightness), weights.shape) == np.unravel_index(np.argmax(weights),
                                                                                      weights.shape)


def test_heatmap_grid_of_heads_and_errors(tmp_path):
    torch = pytest.importorskip("torch")
    import attnkit

    q = torch.randn(1, 6, 3 * 8)
    _, weights = attnkit.eager_causal_attention(q, q, q, 3, 8, return_weights=True)
    figure = attention_heatmap(weights, path=tmp_path / "grid.png")
    assert sum(1 for ax in figure.axes if ax.images) == 3      # one panel per head
    plt.close(figure)
    figure = attention_heatmap(weights, head=2)
    assert sum(1 for ax in figure.axes if ax.images) == 1
    plt.close(figure)
    with pytest.raises(ValueError, match="head"):
        attention_heatmap(weights, head=3)
    with pytest.raises(ValueError, match="query_tokens"):
        attention_heatmap(weights, query_tokens=["a"])


def test_heatmap_cli_writes_a_png_per_layer(tmp_path):
    pytest.importorskip("transformers")
    model = tmp_path / "demo-bert"
    result = _run(os.path.join(REPO, "docs", "make_demo_model.py"), str(model), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "maps"
    result = _run("-m", "attnkit.heatmap", "the cat sat on the mat", "--model", str(model), "--out", str(out),
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for layer in (0, 1):
        image = matplotlib.image.imread(out / f"layer_{layer}.png")
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
