"""Honest comparisons: a grid of (optimizer, schedule) configurations x seeds, and a report with plots."""

from __future__ import annotations

import base64
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch.optim import lr_scheduler

from lrlab.files import atomic_write_text
from lrlab.optim.registry import lesson_opt_func, lrfree_opt_func
from lrlab.train.callbacks import MetricsCB
from lrlab.train.callbacks.anneal import AutoAnnealCB, AutoLRCB
from lrlab.train.callbacks.checkpoint import Diverged, DivergenceGuardCB
from lrlab.train.callbacks.lr_finder import lr_find
from lrlab.train.callbacks.lrfree import ScheduleFreeCB
from lrlab.train.callbacks.recorder import RecorderCB, lr_of
from lrlab.train.callbacks.schedule import BatchSchedCB, EpochSchedCB
from lrlab.train.learner import Callback, Learner
from lrlab.tuning.auto_lr import AutoLRError

ADAM = lesson_opt_func("adam")


@dataclass
class Config:
    """One way to set the learning rate: an optimizer, a base lr ('find' = ask lr_find) and callbacks
    (built from the lr the run ends up using)."""

    name: str
    what: str
    opt_func: Callable = ADAM
    lr: float | str = 1e-2
    make_cbs: Callable[[float], list[Callback]] = lambda lr: []


def auto_anneal_defaults(lr: float) -> list[Callback]:
    """AutoAnnealCB with its defaults (see lrlab.train.callbacks.anneal)."""
    return [AutoAnnealCB()]


CONFIGS: dict[str, Config] = {
    c.name: c
    for c in [
        Config("constant", "Adam, constant lr 1e-2"),
        Config("cosine", "Adam, cosine per batch from 6e-2", lr=6e-2,
               make_cbs=lambda lr: [BatchSchedCB(partial(lr_scheduler.CosineAnnealingLR))]),
        Config("onecycle", "Adam, one-cycle at lr_find's suggestion", lr="find",
               make_cbs=lambda lr: [BatchSchedCB(partial(lr_scheduler.OneCycleLR, max_lr=lr))]),
        Config("plateau", "Adam 1e-2, ReduceLROnPlateau(valid loss, patience 0, factor 0.25)",
               make_cbs=lambda lr: [EpochSchedCB(partial(lr_scheduler.ReduceLROnPlateau, patience=0, factor=0.25))]),
        Config("autoanneal", "Adam 6e-2, AutoAnnealCB with its defaults (the workbook's rule)", lr=6e-2,
               make_cbs=auto_anneal_defaults),
        Config("autolr", "Adam, AutoLRCB with its defaults (no lr: its search starts at its own 1e-4)", lr=1e-3,
               make_cbs=lambda lr: [AutoLRCB()]),
        Config("prodigy", "Prodigy (lr 1, learning-rate-free)", opt_func=None, lr=1.0),
        Config("schedulefree", "Schedule-Free AdamW (lr 2.5e-3, its default; 5% warm-up)", opt_func=None, lr=2.5e-3,
               make_cbs=lambda lr: [ScheduleFreeCB()]),
        Config("dadapt", "D-Adaptation Adam (lr 1, learning-rate-free)", opt_func=None, lr=1.0),
    ]
}  # fmt: skip
PRESETS = {"lesson": ["constant", "cosine", "onecycle", "plateau", "autoanneal", "prodigy", "schedulefree"]}


def get_configs(names: Sequence[str]) -> list[Config]:
    """Configs by name; an unknown one lists the valid names.

    Raises:
        ValueError: an unknown or repeated name (a repeat would count the same runs twice as separate seeds)."""
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise ValueError(f"unknown config {unknown[0]!r}; choose from {', '.join(CONFIGS)}")
    repeated = sorted({n for n in names if list(names).count(n) > 1})
    if repeated:
        raise ValueError(f"config {repeated[0]!r} is named more than once; name each config once (--seeds sets runs)")
    return [CONFIGS[n] for n in names]


def _opt_func(config: Config, n_steps: int) -> Callable:
    if config.opt_func is not None:
        return config.opt_func
    if config.name == "schedulefree":
        return lrfree_opt_func("schedulefree", warmup_steps=max(1, n_steps // 20))
    return lrfree_opt_func({"prodigy": "prodigy", "dadapt": "dadapt"}[config.name])


def run_one(config: Config, seed: int, epochs: int, make_dls: Callable, make_model: Callable) -> dict:
    """Train one (config, seed) and return its record; a diverged run is recorded, not raised."""
    torch.manual_seed(seed)
    dls = make_dls(seed)
    n_steps = len(dls.train) * epochs
    metrics, recorder = MetricsCB(), RecorderCB(lr=lr_of(0))
    learn = Learner(make_model(), dls, lr=1e-3, cbs=[metrics, recorder], opt_func=_opt_func(config, n_steps))
    start = time.perf_counter()
    lr = lr_find(learn).suggestion if config.lr == "find" else config.lr
    cbs = config.make_cbs(lr)
    try:
        learn.fit(epochs, lr=lr, cbs=[*cbs, DivergenceGuardCB()])
        diverged = False
    except (Diverged, AutoLRError):
        diverged = True
    wall = time.perf_counter() - start
    hist = metrics.history
    last = hist[-1] if hist else {}
    diverged = diverged or not all(math.isfinite(v) for v in last.values())
    anneal = next((cb for cb in cbs if isinstance(cb, AutoAnnealCB)), None)
    return {
        "config": config.name,
        "seed": seed,
        "lr": lr,
        "diverged": diverged,
        "test_acc": None if diverged else last.get("valid_acc"),
        "train_loss": last.get("train_loss"),
        "valid_loss": last.get("valid_loss"),
        "wall": wall,
        "history": hist,
        "lrs": recorder.recs["lr"],
        "decisions": anneal.decisions if anneal else [],
    }


def run_grid(
    configs: Sequence[Config],
    seeds: Sequence[int],
    epochs: int,
    make_dls: Callable,
    make_model: Callable,
    log: Callable[[str], None] = print,
    results: list[dict] | None = None,
    after_run: Callable[[list[dict]], None] | None = None,
) -> list[dict]:
    """Every config for every seed; progress as one line per run. Each finished run is appended to `results`
    (when given) as soon as it ends, then `after_run(results)` is called (to save them): a caller interrupted
    mid-grid still holds every finished run."""
    results = [] if results is None else results
    total = len(configs) * len(seeds)
    for i, (config, seed) in enumerate(((c, s) for c in configs for s in seeds), start=1):
        res = run_one(config, seed, epochs, make_dls, make_model)
        results.append(res)
        if after_run is not None:
            after_run(results)
        acc = "diverged" if res["diverged"] else f"acc {res['test_acc']:.4f}"
        log(f"[{i}/{total}] {config.name} seed {seed}: {acc}, lr {res['lr']:.3g}, {res['wall']:.1f} s")
    return results


def summarize(results: Sequence[dict]) -> list[dict]:
    """Per config: mean ± std test accuracy over its seeds, final losses, wall seconds, lr used."""
    rows = []
    for name in dict.fromkeys(r["config"] for r in results):
        runs = [r for r in results if r["config"] == name]
        ok = [r for r in runs if not r["diverged"]]
        accs = [r["test_acc"] for r in ok]

        def mean(key, runs=ok):
            vals = [r[key] for r in runs if r[key] is not None]
            return statistics.fmean(vals) if vals else math.nan

        rows.append({
            "config": name,
            "what": CONFIGS[name].what if name in CONFIGS else name,
            "seeds": len(runs),
            "diverged": len(runs) - len(ok),
            "acc_mean": statistics.fmean(accs) if accs else math.nan,
            "acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "train_loss": mean("train_loss"),
            "valid_loss": mean("valid_loss"),
            "wall": mean("wall", runs),
            "lr": ", ".join(f"{r['lr']:.3g}" for r in runs),
        })  # fmt: skip
    return rows


def table_markdown(rows: Sequence[dict]) -> str:
    lines = [
        "| config | what | test accuracy (mean ± std) | train loss | valid loss | seconds | lr used |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        acc = f"{r['acc_mean']:.4f} ± {r['acc_std']:.4f}" if math.isfinite(r["acc_mean"]) else "diverged"
        if r["diverged"] and math.isfinite(r["acc_mean"]):
            acc += f" ({r['diverged']} of {r['seeds']} diverged)"
        lines.append(
            f"| {r['config']} | {r['what']} | {acc} | {r['train_loss']:.4f} | {r['valid_loss']:.4f} | "
            f"{r['wall']:.1f} | {r['lr']} |"
        )
    return "\n".join(lines)


def plot_report(results: Sequence[dict], out: Path, stem: str = "report") -> list[Path]:
    """Valid accuracy by epoch (mean over seeds), lr by step (first seed), the annealer's decisions."""
    import matplotlib.pyplot as plt

    from lrlab.plots import save

    names = list(dict.fromkeys(r["config"] for r in results))
    paths = []
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name in names:
        runs = [r for r in results if r["config"] == name and not r["diverged"] and r["history"]]
        if not runs:
            continue
        n = min(len(r["history"]) for r in runs)
        accs = [statistics.fmean(r["history"][e].get("valid_acc", math.nan) for r in runs) for e in range(n)]
        ax.plot(range(1, n + 1), accs, marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("valid accuracy (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    paths.append(out / f"{stem}-valid_acc.png")
    save(fig, paths[-1])

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name in names:
        first = next(r for r in results if r["config"] == name)
        ax.plot(first["lrs"], label=name)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("lr (first seed)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    paths.append(out / f"{stem}-lr.png")
    save(fig, paths[-1])

    annealed = [r for r in results if r["decisions"]]
    if annealed:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
        for r in annealed:
            steps = [d["step"] for d in r["decisions"]]
            ax1.plot(steps, [d["ratio"] for d in r["decisions"]], marker=".", label=f"{r['config']} seed {r['seed']}")
            ax2.plot(steps, [d["new_lr"] for d in r["decisions"]], marker=".", label=f"{r['config']} seed {r['seed']}")
        ax1.set_title("annealer: measure / best at each check")
        ax2.set_title("annealer: lr after each check")
        ax2.set_yscale("log")
        for ax in (ax1, ax2):
            ax.set_xlabel("training step")
            ax.grid(alpha=0.3)
        ax1.legend(fontsize=7)
        paths.append(out / f"{stem}-anneal.png")
        save(fig, paths[-1])
    return paths


def write_report(results: Sequence[dict], out: str | Path, title: str, notes: str = "", stem: str = "report") -> Path:
    """STEM.md, a self-contained STEM.html (images inlined) and STEM-results.json, with the plots."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = summarize(results)
    table = table_markdown(rows)
    plots = plot_report(results, out, stem)
    md = [f"# {title}", "", notes, "", table, ""] + [f"![{p.stem}]({p.name})" for p in plots]
    atomic_write_text(out / f"{stem}.md", "\n".join(md) + "\n")
    html_rows = "".join(
        "<tr>" + "".join(f"<td>{c.strip()}</td>" for c in line.strip("|").split("|")) + "</tr>"
        for line in table.splitlines()[2:]
    )
    head = "".join(f"<th>{c.strip()}</th>" for c in table.splitlines()[0].strip("|").split("|"))
    imgs = "".join(
        f'<p><img alt="{p.stem}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}"></p>'
        for p in plots
    )
    html = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px}</style></head>"
        f"<body><h1>{title}</h1><p>{notes}</p><table><tr>{head}</tr>{html_rows}</table>{imgs}</body></html>"
    )
    atomic_write_text(out / f"{stem}.html", html)
    atomic_write_text(out / f"{stem}-results.json", json.dumps(list(results), indent=1, default=float))
    return out / f"{stem}.md"
