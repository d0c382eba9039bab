"""`lrlab bench`: configurations x workloads x seeds, one result file per run, written as each run ends.

A configuration is `family@setting`: `constant@3e-3` is Adam at a constant 3e-3, `schedulefree@5e-3` is
Schedule-Free AdamW at lr 5e-3. The report (lrlab.apps.bench_report) turns families into fair entrants: a
schedule family "tuned" takes its best lr per workload, a learning-rate-free family "calibrated" takes the
one setting that is best across the whole suite, and "default" is its published default.

Files: OUT/runs/WORKLOAD/CONFIG/seedN.json, each written atomically when its run ends. A rerun skips the
runs whose file exists, so Ctrl-C loses only the runs in progress; `--jobs N` runs N at once on this machine
(processes, the cores split between them); `--shard i/n` splits the grid into n disjoint parts that any job
scheduler can run on other machines; copying their OUT/runs together and running the report merges them.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch.optim import lr_scheduler

from lrlab.apps.peers import PEERS, peer_cbs, peer_opt_func
from lrlab.apps.pool import parallel, torch_threads
from lrlab.data.workloads import Workload, get_workload, workload_names
from lrlab.files import atomic_write_text
from lrlab.optim.registry import lesson_opt_func, lrfree_opt_func, named_opt_func
from lrlab.train.callbacks import MetricsCB
from lrlab.train.callbacks.anneal import AutoAnnealCB, AutoLRCB
from lrlab.train.callbacks.checkpoint import Diverged, DivergenceGuardCB
from lrlab.train.callbacks.evaluate import StepEvalCB, steps_between_evals, validate
from lrlab.train.callbacks.lr_finder import lr_find
from lrlab.train.callbacks.recorder import RecorderCB, lr_of
from lrlab.train.callbacks.schedule import BatchSchedCB, EpochSchedCB
from lrlab.train.learner import Callback, Learner
from lrlab.tuning.auto_lr import AutoLRError

LR_GRID = ("1e-3", "3e-3", "1e-2", "3e-2")  # the "small lr grid per workload" every schedule family is tuned on


def wsd_lambda(total: int, warmup: float = 0.05, decay: float = 0.2) -> Callable[[int], float]:
    """Warm-up, stable, decay: linear up over the first 5% of steps, flat, linear down to 0 over the last 20%."""
    n_warm, n_decay = max(1, int(total * warmup)), max(1, int(total * decay))

    def factor(step: int) -> float:
        if step < n_warm:
            return (step + 1) / n_warm
        return min(1.0, max(0.0, (total - step) / n_decay))

    return factor


def schedule_cbs(family: str, lr: float) -> list[Callback]:
    """The callbacks of a schedule family or a single-run peer (lrlab.apps.peers)."""
    if family in PEERS:
        return peer_cbs(family)
    if family == "cosine":
        return [BatchSchedCB(partial(lr_scheduler.CosineAnnealingLR))]
    if family == "onecycle":
        return [BatchSchedCB(partial(lr_scheduler.OneCycleLR, max_lr=lr))]
    if family == "wsd":
        return [BatchSchedCB(lambda opt, total_steps: lr_scheduler.LambdaLR(opt, wsd_lambda(total_steps)))]
    if family == "plateau":
        return [EpochSchedCB(partial(lr_scheduler.ReduceLROnPlateau, patience=0, factor=0.25))]
    if family == "autoanneal":
        return [AutoAnnealCB()]
    if family == "autolr":
        return [AutoLRCB(budget=False)]  # the noise annealer (its files predate the budgeted default)
    if family == "autolr_budget":
        return [AutoLRCB(budget=True, average=None)]  # evaluated at the live weights
    if family == "autolr_avg":
        return [AutoLRCB(budget=True)]  # AutoLRCB's defaults: evaluated at the weights' average
    if family == "autolr_margin":
        return [AutoLRCB(margin=lr)]  # AutoLRCB's defaults but the margin (the setting): for choosing it
    return []


SCHEDULES = ("constant", "cosine", "onecycle", "wsd", "plateau")
LRFREE = {  # family -> (published default setting, calibration grid); the setting is the lr they are given
    "prodigy": ("1", ("0.5", "1", "2")),
    "schedulefree": ("2.5e-3", ("1e-3", "2.5e-3", "5e-3", "1e-2")),
    "dadapt": ("1", ("0.5", "1", "2")),
}
SINGLE = {"onecycle@find": "one-cycle at lr_find's suggestion", "autoanneal@6e-2": "AutoAnnealCB defaults, Adam 6e-2",
          "autolr@1e-3": "AutoLR from Adam's default lr 1e-3: it searches its own",
          "autolr_budget@1e-3": "AutoLR told the fit's length: search, hold, decay over the last half",
          "autolr_avg@1e-3": "autolr_budget, evaluated at the weights' moving average"}  # fmt: skip


@dataclass(frozen=True)
class BenchConfig:
    """One configuration: `family@setting`."""

    name: str

    @property
    def family(self) -> str:
        return self.name.split("@")[0]

    @property
    def setting(self) -> str:
        return self.name.split("@")[1]


def baseline_configs() -> list[str]:
    """The suite's baselines: each schedule over LR_GRID, the single configs, each lr-free family's grid."""
    names = [f"{family}@{lr}" for family in SCHEDULES for lr in LR_GRID] + list(SINGLE)
    names += [f"{family}@{s}" for family, (_, grid) in LRFREE.items() for s in grid]
    return names


def parse_config(name: str) -> BenchConfig:
    """A configuration name, checked.

    Raises:
        ValueError: not family@setting, an unknown family, or a setting that is not a positive number."""
    family, _, setting = name.partition("@")
    families = (*SCHEDULES, "autoanneal", "autolr", "autolr_budget", "autolr_avg", "autolr_margin", *LRFREE, *PEERS)
    if family not in families or not setting:
        raise ValueError(f"config must be family@setting with family one of {', '.join(families)}, got {name!r}")
    if not (family == "onecycle" and setting == "find") and not (family == "mechanic" and setting == "mid"):
        try:
            ok = float(setting) > 0 and math.isfinite(float(setting))
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"the setting of {name!r} must be a positive number (or 'find' for onecycle, 'mid' for "
                             "mechanic)")  # fmt: skip
    return BenchConfig(name)


def workload_opt_func(workload: Workload) -> Callable:
    """The optimizer a workload's lr schedules use: its own (a sampled workload's), else the suite's Adam."""
    if workload.optimizer is None:
        return lesson_opt_func("adam")
    return named_opt_func(workload.optimizer, **dict(workload.opt_settings))


def opt_func_for(config: BenchConfig, n_steps: int, workload: Workload | None = None) -> Callable:
    base = lesson_opt_func("adam") if workload is None else workload_opt_func(workload)
    if config.family in PEERS:
        return peer_opt_func(config.family, base, n_steps)
    if config.family in ("prodigy", "dadapt"):  # (Schedule-Free is a peer: its opt_func is lrlab.apps.peers')
        return lrfree_opt_func(config.family)  # the setting is their lr: a multiplier of the step they estimate
    return base


def steps_to_target(
    workload: Workload, history: list[dict], steps_per_epoch: int, evals: Sequence[dict] = ()
) -> tuple[float, float]:
    """Training steps and seconds until the validation metric first met the target (inf, inf if never): from
    the step-resolution evaluations when there are any (StepEvalCB's rows), else at epoch ends."""
    for row in evals:
        value = workload.score(row["valid_loss"], row.get("valid_acc"))
        if math.isfinite(value) and workload.reached(value):
            return float(row["step"]), row["seconds"]
    if evals:
        return math.inf, math.inf
    seconds = 0.0
    for row in history:
        seconds += row.get("seconds", 0.0)
        value = workload.score(row.get("valid_loss", math.nan), row.get("valid_acc"))
        if math.isfinite(value) and workload.reached(value):
            return float((row["epoch"] + 1) * steps_per_epoch), seconds
    return math.inf, math.inf


def run_one(workload: Workload, config: BenchConfig, seed: int, epochs: int | None = None) -> dict:
    """Train one (workload, config, seed) and return its record; a diverged run is recorded, not raised."""
    epochs = epochs or workload.epochs
    torch.manual_seed(seed)
    dls = workload.loaders(seed)
    n_steps = len(dls.train) * epochs
    metrics, recorder = MetricsCB(accuracy=workload.metric == "accuracy"), RecorderCB(lr=lr_of(0))
    evals = StepEvalCB(steps_between_evals(n_steps), workload.eval_subset, workload.metric == "accuracy")
    learn = Learner(workload.model(), dls, loss_func=workload.loss_func, lr=1e-3, cbs=[metrics, recorder, evals],
                    opt_func=opt_func_for(config, n_steps, workload))  # fmt: skip
    start = time.perf_counter()
    lr = lr_find(learn).suggestion if config.setting == "find" else mid_lr(workload) if config.setting == "mid" else \
        float(config.setting)  # fmt: skip
    cbs = schedule_cbs(config.family, lr)  # Schedule-Free's train/eval switch among them (lrlab.apps.peers)
    try:
        guard = [] if config.family.startswith("autolr") else [DivergenceGuardCB(factor=10)]  # AutoLR guards itself
        learn.fit(epochs, lr=lr, cbs=[*cbs, *guard])
        diverged, why = False, None
    except (Diverged, AutoLRError) as e:
        diverged, why = True, f"{type(e).__name__}: {e}"
    history = metrics.history
    last = history[-1] if history else {}
    final = workload.score(last.get("valid_loss", math.nan), last.get("valid_acc"))
    anneal = next((cb for cb in cbs if isinstance(cb, (AutoAnnealCB, AutoLRCB))), None)
    if not diverged and getattr(anneal, "restored", None):  # the fit handed over its best-validated weights
        final = workload.score(*validate(learn.model, dls.valid, workload.loss_func, workload.metric == "accuracy"))
    diverged = diverged or len(history) < epochs or not math.isfinite(final)
    to_target = steps_to_target(workload, history, len(dls.train), evals.history)
    return {"workload": workload.name, "config": config.name, "seed": seed, "epochs": epochs, "lr": lr,
            "metric": workload.metric, "final": None if diverged else final, "diverged": diverged,
            "steps_to_target": to_target[0], "seconds_to_target": to_target[1], "steps": n_steps,
            "wall": time.perf_counter() - start, "history": history, "evals": evals.history, "lrs": recorder.recs["lr"],
            "decisions": anneal.decisions if anneal else [], "events": getattr(anneal, "events", []),
            "stopped": why}  # fmt: skip


def mid_lr(workload: Workload) -> float:
    """The middle of a workload's lr grid (the suite's: 3e-3)."""
    grid = workload.lr_grid or tuple(float(lr) for lr in LR_GRID)
    return grid[len(grid) // 2]


def run_path(out: Path, workload: str, config: str, seed: int) -> Path:
    return out / "runs" / workload / config / f"seed{seed}.json"


def grid(workloads: Sequence[str], configs: Sequence[str], seeds: int) -> list[tuple[str, str, int]]:
    """Every (workload, config, seed), in a fixed order: workloads, then configs, then seeds."""
    return [(w, c, s) for w in workloads for c in configs for s in range(seeds)]


def shard_of(jobs: list, shard: tuple[int, int]) -> list:
    """Shard i of n (1-based): every n-th job from the (i-1)-th, so shards are disjoint and cover the grid."""
    i, n = shard
    return jobs[i - 1 :: n]


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' with 1 <= i <= n.

    Raises:
        ValueError: anything else."""
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        i = n = 0
    if not 1 <= i <= n:
        raise ValueError(f"--shard must be i/n with 1 <= i <= n, got {text!r}")
    return i, n


def resolve(workloads: Sequence[str], configs: Sequence[str]) -> tuple[list[str], list[str]]:
    """'all' and 'baselines' expanded; every name checked before anything runs.

    Raises:
        ValueError: an unknown workload or a malformed config, named."""
    names = workload_names() if list(workloads) == ["all"] else [get_workload(w).name for w in workloads]
    expanded = [c for name in configs for c in (baseline_configs() if name == "baselines" else [name])]
    return names, [parse_config(c).name for c in dict.fromkeys(expanded)]


def run_bench(
    out: str | Path,
    workloads: Sequence[str],
    configs: Sequence[str],
    seeds: int,
    shard: tuple[int, int] = (1, 1),
    epochs: int | None = None,
    log: Callable[[str], None] = print,
    runner: Callable[..., dict] = run_one,
    jobs: int = 1,
    threads: int | None = None,
    executor: str = "local",
    address: str | None = None,
) -> list[Path]:
    """Run this shard's part of the grid, skipping finished runs; returns the result files of the shard.

    Args:
        jobs: runs at once, each in its own process with `threads` torch threads (default: the cores / jobs);
            1 runs them one after another in this process (with `threads` threads if given).
        runner: what trains one run (it must be a module-level function when jobs > 1 or on Ray).
        executor: "local" (this machine, `jobs` at once) or "ray" (one Ray task per run, `threads` CPUs each,
            default 1; Ray decides how many run at once). A run whose worker dies leaves no file: it is
            logged, and a rerun does it.
        address: the Ray cluster to submit to (None: a local Ray on this machine's cores).

    Raises:
        ValueError: an unknown workload, config or executor, or jobs / threads < 1.
        ImportError: executor "ray" without the ray package (pip install 'lrlab[ray]')."""
    names, config_names = resolve(workloads, configs)
    shard_jobs = shard_of(grid(names, config_names, seeds), shard)
    return run_jobs(out, shard_jobs, epochs, log, runner, jobs, threads, executor, address)


def run_jobs(
    out: str | Path,
    shard_jobs: list[tuple[str, str, int]],
    epochs: int | None = None,
    log: Callable[[str], None] = print,
    runner: Callable[..., dict] = run_one,
    jobs: int = 1,
    threads: int | None = None,
    executor: str = "local",
    address: str | None = None,
) -> list[Path]:
    """Run these (workload, config, seed) jobs, skipping finished ones (run_bench's arguments); returns their
    files."""
    if executor not in ("local", "ray"):
        raise ValueError(f"executor must be 'local' or 'ray', got {executor!r}")
    if executor == "ray" and jobs != 1:
        raise ValueError(f"--jobs {jobs} is for --executor local: Ray runs as many at once as its CPUs allow "
                         f"(--threads each)")  # fmt: skip
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    out = Path(out)
    todo = [(k, job) for k, job in enumerate(shard_jobs, start=1) if read_result(run_path(out, *job)) is None]
    log(f"{len(shard_jobs)} runs in this shard, {len(shard_jobs) - len(todo)} already done")
    for _, job in todo:
        if run_path(out, *job).exists():  # cut short by a copy, say: not a result, so the run is done again
            log(f"{run_path(out, *job)} is not a whole result: this run is done again")

    def save(k: int, job: tuple[str, str, int], record: dict) -> None:
        # only whole results reach the disk, each atomically: a run killed midway leaves no file
        path = run_path(out, *job)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(record, default=float))
        value = "diverged" if record["diverged"] else f"{record['metric']} {record['final']:.4f}"
        log(f"[{k}/{len(shard_jobs)}] {job[0]} {job[1]} seed {job[2]}: {value}, {record['wall']:.1f} s")

    failed = execute(todo, partial(keyed_run, runner, epochs), save, jobs, threads, executor, address)
    if failed:
        log(f"{len(failed)} runs failed on their workers ({', '.join(' '.join(map(str, j)) for j in failed)}); "
            f"a rerun does them")  # fmt: skip
    return [run_path(out, *job) for job in shard_jobs]


def execute(todo: list, run: Callable, save: Callable, jobs: int, threads: int | None, executor: str,
            address: str | None) -> list[tuple[str, str, int]]:  # fmt: skip
    """Each (number, job) of `todo` through run(job) -> (job, record), then save(number, job, record): in this
    process, in a local pool of `jobs`, or on Ray. Returns the jobs whose worker died (Ray only)."""
    numbers = {job: k for k, job in todo}
    if executor == "ray":
        from lrlab.apps.bench_ray import run_on_ray

        return run_on_ray(todo, run, threads or 1, address, save)
    if jobs == 1:
        with torch_threads(threads):
            for _, job in todo:
                save(numbers[job], *run(job))
        return []
    with parallel(jobs, threads or max(1, (os.cpu_count() or 1) // jobs)) as pool:
        for job, record in pool.imap_unordered(run, [job for _, job in todo]):
            save(numbers[job], job, record)
    return []


def keyed_run(runner: Callable[..., dict], epochs: int | None, job: tuple[str, str, int]) -> tuple[tuple, dict]:
    """One run of the grid, (workload, config, seed), through `runner`; returns (job, its record)."""
    workload, config, seed = job
    return job, runner(get_workload(workload), parse_config(config), seed, epochs)


RESULT_KEYS = ("workload", "config", "seed", "final", "diverged")


def read_result(path: Path) -> dict | None:
    """A run's result file as a record, or None when there is none or it is not whole (cut short, foreign)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and all(k in record for k in RESULT_KEYS) else None


def load_runs(out: str | Path) -> list[dict]:
    """Every result file under OUT/runs (from any shard), in a fixed order.

    Raises:
        ValueError: a file that is not a whole result (cut short by a copy, say), named."""
    records = []
    for path in sorted(Path(out).glob("runs/*/*/seed*.json")):
        record = read_result(path)
        if record is None:
            raise ValueError(f"{path} is not a whole bench result: delete it, or run lrlab bench again to redo it")
        records.append(record)
    return records
