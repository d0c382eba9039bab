"""The lab in pictures (PNG) and terminal tables: RMSE by epoch, all the sheets side by side, paths on the loss."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt

from lrlab.lab.engine import Sheet
from lrlab.plots import save


def plot_rmse(sheet: Sheet, path: str | Path) -> plt.Figure:
    """The sheet's RMSE-by-epoch chart (the workbook's 'Error by epoch')."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    epochs = [h["epoch"] for h in sheet.history]
    ax.plot(epochs, [h["rmse"] for h in sheet.history], marker="o" if len(epochs) <= 30 else None)
    ax.set_title(f"{sheet.name}: error by epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel("rmse" if sheet.textbook else "sqrt(sum err^2)")
    ax.grid(alpha=0.3)
    save(fig, path)
    return fig


def plot_compare(results: Sequence[dict], path: str | Path) -> plt.Figure:
    """Every optimizer's error by epoch on one log-scale chart."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for res in results:
        hist = res["history"]
        ax.plot([h["epoch"] for h in hist], [h["rmse"] for h in hist], label=res["sheet"])
    shown = [h["rmse"] for res in results for h in res["history"] if 0 < h["rmse"] < math.inf]
    if shown:  # matplotlib cannot log-scale an empty chart (every sheet overflowed in its first epoch)
        ax.set_xscale("log")
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no finite error: every sheet overflowed", ha="center", transform=ax.transAxes)
    ax.set_xlabel("epoch")
    textbook = {res.get("textbook", False) for res in results}
    ax.set_ylabel("rmse" if textbook == {True} else "error (workbook: sqrt of summed err^2; textbook: rmse)")
    ax.set_title(f"{len(results)} optimizers from Reset")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    save(fig, path)
    return fig


def plot_paths(results: Sequence[dict], data: Sequence[tuple[float, float]], path: str | Path) -> plt.Figure:
    """Each optimizer's (b, a) after every epoch, over the contours of the summed squared error."""
    import numpy as np

    bs = np.linspace(-5, 40, 200)
    as_ = np.linspace(0.5, 3.0, 200)
    grid_b, grid_a = np.meshgrid(bs, as_)
    with np.errstate(over="ignore", invalid="ignore"):  # huge data: inf cells, left blank by contour
        loss = np.log10(sum((y - (grid_a * x + grid_b)) ** 2 for x, y in data) + 1e-12)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    if np.isfinite(loss).any():
        ax.contour(grid_b, grid_a, np.ma.masked_invalid(loss), levels=20, cmap="Greys", linewidths=0.6)
    for res in results:
        hist = res["history"]
        pts = [(1.0, 1.0)] + [(h["b"], h["a"]) for h in hist]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", markersize=3, linewidth=1, label=res["sheet"])
    ax.plot([30], [2], marker="*", color="red", markersize=12, label="optimum (30, 2)")
    ax.set_xlabel("b (intercept)")
    ax.set_ylabel("a (slope)")
    ax.set_xlim(bs[0], bs[-1])
    ax.set_ylim(as_[0], as_[-1])
    ax.set_title("paths over log10 of the summed squared error")
    ax.legend(fontsize=8)
    save(fig, path)
    return fig


def cell(value: float) -> str:
    """A number as a spreadsheet column shows it: about 7 significant figures."""
    if isinstance(value, int):
        return str(value)
    if value == 0 or (1e-4 <= abs(value) < 1e7):
        return f"{value:.7g}" if abs(value) >= 1 else f"{value:.6f}".rstrip("0").rstrip(".")
    return f"{value:.4E}"


def table(headers: Sequence[str], rows: Sequence[Sequence], title: str | None = None) -> str:
    """A plain aligned text table."""
    body = [[cell(v) if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
    lines = [title] if title else []
    lines.append("  ".join(h.rjust(w) for h, w in zip(headers, widths)))
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in body]
    return "\n".join(lines)


def history_table(sheet: Sheet, last: int | None = None) -> str:
    """Per-epoch history: epoch, b, a, lr, rmse (and gradrat on adam_ann)."""
    keys = ["epoch", "b", "a", "lr", "rmse"] + (["gradrat"] if sheet.name == "adam_ann" else [])
    hist = sheet.history[-last:] if last else sheet.history
    return table(keys, [[h[k] for k in keys] for h in hist])


def rows_table(sheet: Sheet) -> str:
    """The rows the sheet displays now, columns as on the workbook."""
    rows = sheet.rows
    keys = [k for k in rows[0] if k not in ("err_b_bumped", "err_a_bumped")]
    return table(keys, [[r[k] for k in keys] for r in rows])


def compare_table(results: Sequence[dict], cap: int) -> str:
    """Epochs each optimizer needed from Reset to come within 0.01 of the best line's a and 0.1 of its b."""
    rows = []
    for res in results:
        reached = res["epochs"] if res["epochs"] is not None else f"not within {cap}"
        final = res["history"][-1] if res["history"] else {"rmse": math.nan}
        mode = "textbook" if res.get("textbook") else "workbook"
        rows.append([res["sheet"], mode, reached, res["a"], res["b"], res["lr"], final["rmse"]])
    a, b = results[0].get("target", (2.0, 30.0)) if results else (2.0, 30.0)
    return table(["sheet", "mode", f"epochs to |a-{a:.6g}|<0.01, |b-{b:.6g}|<0.1", "a", "b", "final lr", "error"], rows)
