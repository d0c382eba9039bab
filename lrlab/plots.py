"""Small matplotlib helpers: every picture is returned and also saved as a PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt

from lrlab.files import atomic_write


def image_path(path: str | Path, name_in_folder: str = "plot.png") -> Path:
    """Where a picture asked for at `path` lands: `name_in_folder` inside an existing folder; a name without a
    suffix gets .png (as matplotlib would)."""
    path = Path(path)
    if path.is_dir():
        path = path / name_in_folder
    return path if path.suffix else path.with_name(path.name + ".png")


def save(fig, path: str | Path):
    """Lay out, write as PNG (or the format the suffix names) atomically, creating folders, release the
    figure's memory, and return it."""
    path = image_path(path)
    fig.tight_layout()
    fmt = path.suffix[1:].lower()
    try:
        atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return fig


def plot_series(
    series: dict[str, Sequence[float]], path: str | Path, xlabel: str = "step", logy: Sequence[str] = ()
) -> plt.Figure:
    """One panel per named series, side by side."""
    n = max(len(series), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.2), squeeze=False)
    for ax, (name, values) in zip(axes[0], series.items()):
        ax.plot(list(values))
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        if name in logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    save(fig, path)
    return fig


def plot_losses(history: list[dict], batch_losses: Sequence[float], path: str | Path) -> plt.Figure:
    """Training loss per batch, with each epoch's train and valid mean marked at its end."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    if batch_losses:
        ax.plot(batch_losses, alpha=0.5, label="train loss (batch)")
    n = len(batch_losses)
    if history and n:
        ends = [n * (i + 1) / len(history) for i in range(len(history))]
        for key, marker in (("train_loss", "o"), ("valid_loss", "s")):
            ys = [row.get(key) for row in history]
            if all(y is not None for y in ys):
                ax.plot(ends, ys, marker=marker, label=key.replace("_", " ") + " (epoch)")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, path)
    return fig
