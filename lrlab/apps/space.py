"""`lrlab bench --sample N --space-seed S`: AutoLR against the single-run peers and tuned one-cycle on N
workloads drawn from lrlab.data.workloads.space, and the report that says who won where.

The field, per workload: AutoLR (AutoLRCB's defaults, no lr given: `autolr_avg@1e-3`, whose 1e-3 it never
uses), every single-run peer of lrlab.apps.peers, lr_find + one-cycle, and one-cycle tuned over the workload's
optimizer's factor-2 grid (7 points of its usual range); when the best grid point (mean of seeds) is at an
edge, the grid grows by a point past it, up to EXTEND times a side, and the report says so. Two views: AutoLR
against the best single-run method (the same compute: one run) and against tuned one-cycle (7 or more runs).

Results are bench result files (OUT/runs/...), so `--jobs`, `--shard` and reruns that skip finished runs work
as for `lrlab bench`; `compact` keeps of each what the report needs, small enough to commit.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

from lrlab.apps.bench import read_result, run_jobs, shard_of
from lrlab.apps.peers import PEERS
from lrlab.data.workloads import METRICS, get_workload
from lrlab.data.workloads.space import draw, parse_name, sample

AUTOLR = "autolr_avg@1e-3"
SINGLE_RUN = ("onecycle@find", *(f"{family}@{setting}" for family, (setting, _) in PEERS.items()))
EXTEND = 2
CLOSE, CLOSE_SEEDS = 0.01, 5  # within a point of accuracy (2% of a loss), two entrants get 5 seeds


def grid_config(lr: float) -> str:
    return f"onecycle@{lr:.4g}"


def base_jobs(names: Sequence[str], seeds: int) -> list[tuple[str, str, int]]:
    """AutoLR, the single-run peers and the grid's one-cycles of every workload, each over the seeds."""
    jobs = []
    for name in names:
        configs = [AUTOLR, *SINGLE_RUN, *(grid_config(lr) for lr in get_workload(name).lr_grid)]
        jobs += [(name, config, seed) for config in configs for seed in range(seeds)]
    return jobs


def _mean(records: Sequence[dict]) -> float:
    """The mean final metric over seeds; a run that diverged counts as the worst (inf or -inf)."""
    if not records:
        return math.nan
    higher = METRICS[records[0]["metric"]]
    values = [r["final"] if r["final"] is not None else (-math.inf if higher else math.inf) for r in records]
    return statistics.fmean(values) if all(math.isfinite(v) for v in values) else min(values) if higher else max(values)


def by_config(records: Sequence[dict], workload: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in records:
        if r["workload"] == workload:
            out.setdefault(r["config"], []).append(r)
    return out


def grid_lrs(configs: dict[str, list[dict]]) -> list[float]:
    return sorted(float(c.split("@")[1]) for c in configs if c.startswith("onecycle@") and not c.endswith("@find"))


def best(configs: dict[str, list[dict]], names: Sequence[str], higher: bool) -> tuple[str | None, float]:
    """The config among `names` with the best mean final metric, and that mean."""
    scored = [(name, _mean(configs[name])) for name in names if name in configs]
    scored = [(n, v) for n, v in scored if not math.isnan(v)]
    if not scored:
        return None, math.nan
    return max(scored, key=lambda nv: nv[1]) if higher else min(scored, key=lambda nv: nv[1])


def edge_jobs(records: Sequence[dict], names: Sequence[str], seeds: int) -> list[tuple[str, str, int]]:
    """One more grid point past each edge where the best one-cycle sits, within EXTEND points of the grid."""
    jobs = []
    for name in names:
        workload, configs = get_workload(name), by_config(records, name)
        lrs = grid_lrs(configs)
        if not lrs:
            continue
        winner, _ = best(configs, [grid_config(lr) for lr in lrs], workload.higher_is_better)
        base = workload.lr_grid
        lr = float(winner.split("@")[1]) if winner else math.nan
        for edge, step, limit in ((lrs[0], 0.5, base[0] / 2**EXTEND), (lrs[-1], 2.0, base[-1] * 2**EXTEND)):
            nxt = edge * step
            if math.isclose(lr, edge, rel_tol=1e-6) and (nxt >= limit * 0.999 if step < 1 else nxt <= limit * 1.001):
                jobs += [(name, grid_config(nxt), seed) for seed in range(seeds)]
    return jobs


def close_jobs(records: Sequence[dict], names: Sequence[str], seeds: int = CLOSE_SEEDS) -> list[tuple[str, str, int]]:
    """Seeds up to `seeds` for AutoLR and the entrant it is compared with (the best single-run peer, the best
    grid point), wherever the two are within CLOSE of each other: there two or three seeds cannot tell."""
    jobs = []
    for name in names:
        workload, configs = get_workload(name), by_config(records, name)
        higher, auto = workload.higher_is_better, _mean(configs.get(AUTOLR, []))
        rivals = [
            best(configs, SINGLE_RUN, higher),
            best(configs, [grid_config(lr) for lr in grid_lrs(configs)], higher),
        ]
        for config, value in rivals:
            if config is None or not (math.isfinite(auto) and math.isfinite(value)):
                continue
            close = abs(auto - value) <= (CLOSE if workload.metric == "accuracy" else CLOSE * 2 * abs(value))
            if close:
                jobs += [(name, c, seed) for c in (AUTOLR, config) for seed in range(seeds)]
    return list(dict.fromkeys(jobs))


def run_space(out: str | Path, n: int, space_seed: int, seeds: int, shard: tuple[int, int] = (1, 1),
              log: Callable[[str], None] = print, **run) -> list[dict]:  # fmt: skip
    """Run the field on n draws of a space, grow the grids past their edges, and give close comparisons
    CLOSE_SEEDS seeds. With a shard (i/n), only its part of the first grid: the growth and the added seeds need
    every run of a workload, so a later run without --shard (skipping what is done) does them.

    Args:
        **run: run_jobs's keywords (jobs, threads, executor, address, runner, epochs).

    Returns:
        The result records of the runs done or found."""
    draws = sample(n, space_seed)
    names = [d.name for d in draws]
    for d in draws:
        log(f"{d.name}: {d.describe()}")
    jobs = shard_of(base_jobs(names, seeds), shard)
    paths = run_jobs(out, jobs, log=log, **run)
    records = [r for r in (read_result(p) for p in paths) if r is not None]
    if shard != (1, 1):
        log("the grids grow past their edges, and close comparisons get more seeds, in a run without --shard")
        return records
    for grow in [True] * (2 * EXTEND) + [False] * 2:  # the grids first, then the seeds of close comparisons
        found = edge_jobs(records, names, seeds) if grow else close_jobs(records, names)
        why = "past a grid's edge" if grow else "for close comparisons"
        queued = set(jobs)
        more = [j for j in found if j not in queued]
        if not more:
            continue
        log(f"{len(more)} runs {why}")
        jobs += more
        paths = run_jobs(out, jobs, log=log, **run)
        records = [r for r in (read_result(p) for p in paths) if r is not None]
    return records


COMPACT = ("workload", "config", "seed", "metric", "final", "diverged", "lr", "steps", "wall", "stopped")


def compact(record: dict) -> dict:
    """What the space report reads of a run's record (no per-step curves), and AutoLR's found lr and restores."""
    small = {k: record.get(k) for k in COMPACT}
    events = record.get("events") or []
    found = next((e for e in events if e.get("event") in ("search done", "too short to search")), None)
    if found is not None:
        small["found_lr"] = found["lr"]
        small["restores"] = sum(e.get("event") == "restore" for e in events)
        small["kept_best"] = any(e.get("event") == "restored best validation" for e in events)
    return small


def results(records: Sequence[dict], names: Sequence[str]) -> dict:
    """The committable results: each workload's description and trivial baseline, every run compacted."""
    workloads = {}
    for name in names:
        w = get_workload(name)
        workloads[name] = {"about": w.about, "metric": w.metric, "trivial": w.baseline(w.loaders(0)),
                           "draw": draw(*parse_name(name)).as_dict()}  # fmt: skip
    return {"workloads": workloads, "runs": [compact(r) for r in records]}


def _fmt(metric: str, value: float) -> str:
    return "diverged" if not math.isfinite(value) else f"{value:.4f}"


def _at_or_above(higher: bool, a: float, b: float) -> bool:
    return a >= b if higher else a <= b


def _gap(metric: str, a: float, b: float) -> str:
    """a against b: points of accuracy, or percent of a loss."""
    if not (math.isfinite(a) and math.isfinite(b)):
        return "n/a"
    return f"{100 * (a - b):+.2f} pt" if metric == "accuracy" else f"{100 * (a - b) / abs(b):+.1f}%"


def workload_row(name: str, info: dict, configs: dict[str, list[dict]]) -> dict:
    """One workload's verdict: AutoLR, the best single-run peer, tuned one-cycle, and the trivial baseline."""
    metric, higher = info["metric"], METRICS[info["metric"]]
    auto = _mean(configs.get(AUTOLR, []))
    peer, peer_value = best(configs, SINGLE_RUN, higher)
    lrs = grid_lrs(configs)
    tuned, tuned_value = best(configs, [grid_config(lr) for lr in lrs], higher)
    tuned_lr = float(tuned.split("@")[1]) if tuned else math.nan
    edge = bool(lrs) and (math.isclose(tuned_lr, lrs[0]) or math.isclose(tuned_lr, lrs[-1]))
    auto_runs = configs.get(AUTOLR, [])
    # not strictly better than the trivial predictor (or diverged)
    below = [r["seed"] for r in auto_runs if r["final"] is None or _at_or_above(higher, info["trivial"], r["final"])]
    rank = 1 + sum(1 for c in SINGLE_RUN if c in configs and not _at_or_above(higher, auto, _mean(configs[c])))
    return {"name": name, "metric": metric, "auto": auto, "peer": peer, "peer_value": peer_value, "tuned_lr": tuned_lr,
            "tuned_value": tuned_value, "edge": edge, "grid": len(lrs), "below_trivial": below, "rank": rank,
            "first": _at_or_above(higher, auto, peer_value), "vs_tuned": _at_or_above(higher, auto, tuned_value),
            "found_lr": [r.get("found_lr") for r in auto_runs], "restores": [r.get("restores", 0) for r in auto_runs],
            "seeds": len(auto_runs)}  # fmt: skip


def report(data: dict, title: str, notes: str = "") -> str:
    """The space report (markdown) from `results`'s dictionary alone."""
    runs = data["runs"]
    configs = {name: by_config(runs, name) for name in data["workloads"]}
    rows = [workload_row(n, info, configs[n]) for n, info in data["workloads"].items()]
    rows = [r for r in rows if r["seeds"]]
    n = len(rows)
    first, above = sum(r["first"] for r in rows), sum(r["vs_tuned"] for r in rows)
    below = sum(len(r["below_trivial"]) for r in rows)
    auto_runs = sum(r["seeds"] for r in rows)
    share = {k: f"{100 * v / max(n, 1):.0f}%" for k, v in (("first", first), ("above", above))}
    lines = [f"# {title}", "", notes, "",
             f"- **AutoLR first among single-run methods**: {first} of {n} workloads ({share['first']}; goal 90%)",
             f"- **AutoLR at or above tuned one-cycle** (mean of seeds): {above} of {n} ({share['above']}; goal 75%)",
             f"- **AutoLR runs below the trivial predictor**: {below} of {auto_runs} (goal 0)", ""]  # fmt: skip
    lines += ["AutoLR against each single-run method (workloads where AutoLR's mean is at or above it):", "",
              "| method | what it is | AutoLR at or above |", "|---|---|---|"]  # fmt: skip
    for config in SINGLE_RUN:
        family = config.split("@")[0]
        about = PEERS[family][1] if family in PEERS else "lr_find's suggestion, one-cycle, the workload's optimizer"
        wins = sum(_at_or_above(METRICS[r["metric"]], r["auto"], _mean(configs[r["name"]].get(config, [])))
                   for r in rows)  # fmt: skip
        lines.append(f"| `{config}` | {about} | {wins} of {n} |")
    lines += ["", "| workload | what it is | metric | trivial | AutoLR | AutoLR's lr (restores) | best single-run "
              "peer | tuned one-cycle (lr) | AutoLR vs tuned |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        info = data["workloads"][r["name"]]
        lrs = ", ".join(f"{lr:.2g}" if lr else "-" for lr in r["found_lr"])
        edge = ", at the grid's edge" if r["edge"] else ""
        flag = " (below trivial: seeds " + ", ".join(map(str, r["below_trivial"])) + ")" if r["below_trivial"] else ""
        lines.append(f"| {r['name']} | {info['about']} | {r['metric']} | {info['trivial']:.4f} | "
                     f"{_fmt(r['metric'], r['auto'])}{flag} | {lrs} ({sum(r['restores'])}) | "
                     f"{_fmt(r['metric'], r['peer_value'])} `{r['peer']}` | {_fmt(r['metric'], r['tuned_value'])} "
                     f"({r['tuned_lr']:.3g}, {r['grid']} points{edge}) | "
                     f"{_gap(r['metric'], r['auto'], r['tuned_value'])} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def write_results(path: str | Path, data: dict) -> None:
    """The results as JSON, atomically."""
    from lrlab.files import atomic_write_text

    atomic_write_text(Path(path), json.dumps(data, indent=1, default=float) + "\n")
