"""Runs per hour of a grid of the five cheap workloads (linear, regression, mnist1d, fmnist-mlp, fmnist-cnn):
one after another, then `--jobs 2` (processes, the cores split between them), then `--executor ray` (a local
Ray, one task of one CPU per run), from this one process, each into a fresh folder, so the ratios are
measured on the same machine at the same time.

Run: .venv/bin/python benchmarks/bench_throughput.py [--configs constant@1e-3,onecycle@3e-3] [--seeds 1]
     [--epochs 2] [--jobs 2] [--rounds 1] [--no-ray]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from lrlab.apps.bench import run_bench

CHEAP = ["linear", "regression", "mnist1d", "fmnist-mlp", "fmnist-cnn"]


def runs_per_hour(out: str, configs: list[str], seeds: int, epochs: int | None, jobs: int, threads: int,
                  executor: str = "local") -> float:  # fmt: skip
    """The grid into an empty folder; returns its runs per hour of wall time (a Ray start included)."""
    start = time.perf_counter()
    paths = run_bench(out, CHEAP, configs, seeds, epochs=epochs, log=lambda s: None, jobs=jobs, threads=threads,
                      executor=executor)  # fmt: skip
    return len(paths) / (time.perf_counter() - start) * 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="constant@1e-3,onecycle@3e-3")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2, help="every workload's epochs (0: their defaults)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="serial and parallel alternated this many times")
    parser.add_argument("--no-ray", action="store_true", help="leave out the local Ray")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    configs = args.configs.split(",")
    n = len(CHEAP) * len(configs) * args.seeds
    print(f"{n} runs: {', '.join(CHEAP)} x {', '.join(configs)} x {args.seeds} seeds, "
          f"{args.epochs or 'default'} epochs; {cores} cores")  # fmt: skip
    serial, parallel, on_ray = [], [], []
    epochs = args.epochs or None
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b, tempfile.TemporaryDirectory() as c:
            serial.append(runs_per_hour(a, configs, args.seeds, epochs, 1, cores))
            parallel.append(runs_per_hour(b, configs, args.seeds, epochs, args.jobs, cores // args.jobs))
            if not args.no_ray:
                on_ray.append(runs_per_hour(c, configs, args.seeds, epochs, 1, 1, executor="ray"))
    best_serial, best_parallel = max(serial), max(parallel)
    print(f"serial ({cores} threads):               {best_serial:8.0f} runs/hour")
    print(f"--jobs {args.jobs} ({cores // args.jobs} thread(s) each):    {best_parallel:8.0f} runs/hour "
          f"({best_parallel / best_serial:.2f}x serial; goal >= 1.6x)")  # fmt: skip
    if on_ray:
        best_ray = max(on_ray)
        print(f"--executor ray (local, 1 CPU a run):  {best_ray:8.0f} runs/hour ({best_ray / best_serial:.2f}x serial)")


if __name__ == "__main__":
    main()
