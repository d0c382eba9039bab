"""Publish a `lrlab bench` run as docs/results/suite.md (+ .html and curves), with the machine and command.

Run the suite first (any number of times, on any number of machines with --shard, files copied together):
    .venv/bin/python -m lrlab bench --workloads all --configs baselines --seeds 3 --out runs/suite
then:
    .venv/bin/python benchmarks/suite_report.py runs/suite [--out docs/results] [--note TEXT] \
        [--save-json docs/results/suite-runs.json]
and, from the committed runs alone (no training), the same report again:
    .venv/bin/python benchmarks/suite_report.py docs/results/suite-runs.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from collections import Counter

import torch

from lrlab.apps.bench import load_runs
from lrlab.apps.bench_report import write_report
from lrlab.files import atomic_write_text

DROPPED = ("lrs", "decisions")  # per-step lrs and the annealer's checks: what the report never reads


def compact(record: dict) -> dict:
    """A run's record as the report reads it: its per-step lrs and the annealer's checks dropped."""
    return {k: v for k, v in record.items() if k not in DROPPED}


def read_runs(source: str) -> list[dict]:
    """The runs of a bench folder, or of a JSON file that --save-json wrote."""
    if source.endswith(".json"):
        return json.loads(open(source).read())["runs"]
    return load_runs(source)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", help="the --out folder of lrlab bench")
    parser.add_argument("--out", default="docs/results")
    parser.add_argument("--note", default="", help="what the run covered and how it was launched")
    parser.add_argument("--save-json", default=None, help="also write the runs, compacted, to this JSON file")
    args = parser.parse_args()
    runs = read_runs(args.runs)
    if args.save_json:
        atomic_write_text(args.save_json, json.dumps({"runs": [compact(r) for r in runs]}, default=float) + "\n")
    seeds = Counter((r["workload"], r["config"]) for r in runs)
    per_workload = Counter(r["workload"] for r in runs)
    cores = os.cpu_count()
    notes = (
        f"{len(runs)} runs: "
        + ", ".join(f"{w} {n}" for w, n in per_workload.items())
        + f"; seeds per (workload, config): {sorted(set(seeds.values()))}. Machine: {platform.machine()}, "
        f"{cores} CPU cores, torch {torch.__version__}. {args.note} "
        "Tuned = best lr of the grid 1e-3, 3e-3, 1e-2, 3e-2 per workload, chosen on the same validation metric "
        "it is scored on (optimistic for the tuned entrants); calibrated = one setting for the whole suite."
    )
    path = write_report(runs, args.out, "The workload suite: schedules, lr-free methods and the annealer", notes,
                        stem="suite")  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
