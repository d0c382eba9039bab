"""Publish a `lrlab bench` run as docs/results/suite.md (+ .html and curves), with the machine and command.

Run the suite first (any number of times, on any number of machines with --shard, files copied together):
    .venv/bin/python -m lrlab bench --workloads all --configs baselines --seeds 3 --out runs/suite
then:
    .venv/bin/python benchmarks/suite_report.py runs/suite [--out docs/results] [--note TEXT]
"""

from __future__ import annotations

import argparse
import os
import platform
from collections import Counter

import torch

from lrlab.apps.bench import load_runs
from lrlab.apps.bench_report import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", help="the --out folder of lrlab bench")
    parser.add_argument("--out", default="docs/results")
    parser.add_argument("--note", default="", help="what the run covered and how it was launched")
    args = parser.parse_args()
    runs = load_runs(args.runs)
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
