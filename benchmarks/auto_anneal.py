"""The auto-anneal experiment (issue: automatic annealing compared honestly): the `lesson` preset,
3 seeds x 5 epochs on the full Fashion-MNIST, written to docs/results/auto-anneal.md with its plots.

Run: .venv/bin/python benchmarks/auto_anneal.py [--seeds 3] [--epochs 5] [--out docs/results]
"""

from __future__ import annotations

import argparse
import platform

import torch

from lrlab.compare import PRESETS, get_configs, run_grid, write_report
from lrlab.data import get_dls
from lrlab.models import lesson_cnn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--configs", default=",".join(PRESETS["lesson"]))
    parser.add_argument("--out", default="docs/results")
    args = parser.parse_args()
    dls = get_dls(256)

    def make_dls(seed: int):
        dls.train.seed, dls.train.epoch = seed, 0
        return dls

    seeds = list(range(args.seeds))
    results = run_grid(get_configs(args.configs.split(",")), seeds, args.epochs, make_dls, lesson_cnn)
    notes = (
        f"Lesson CNN on Fashion-MNIST (60k train, accuracy on the 10k test set), batch size 256, {args.epochs} epochs, "
        f"seeds {seeds}; torch {torch.__version__} on {platform.machine()} with {torch.get_num_threads()} threads. "
        "Produced by benchmarks/auto_anneal.py."
    )
    print(write_report(results, args.out, "Automatic annealing vs schedules and learning-rate-free optimizers", notes,
                       stem="auto-anneal"))  # fmt: skip


if __name__ == "__main__":
    main()
