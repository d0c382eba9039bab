"""What recording activation and gradient statistics costs: the lesson CNN with and without ActivationStats
(+ GradientStats), alternated epochs in one process. Goal: at most 15% of training time.

Run: .venv/bin/python benchmarks/stats_overhead.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lrlab.data import get_dls
from lrlab.models import lesson_cnn
from lrlab.train.callbacks.stats import ActivationStats, GradientStats
from lrlab.train.learner import Learner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    dls = get_dls(256, n_train=20480)
    learners = {}
    for name, cbs in (("plain", []), ("ActivationStats", [ActivationStats()]),
                      ("Activation+GradientStats", [ActivationStats(), GradientStats()])):  # fmt: skip
        torch.manual_seed(0)
        learners[name] = Learner(lesson_cnn(), dls, lr=1e-2, cbs=cbs)
        learners[name].fit(1, valid=False)
    times = {k: [] for k in learners}
    for _ in range(args.rounds):
        for name, learn in learners.items():
            start = time.perf_counter()
            learn.fit(1, valid=False)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["plain"])
    print(f"lesson CNN, {len(dls.train)} batches of 256 per epoch, median of {args.rounds} alternated epochs")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"{name:<26} {t:6.2f} s/epoch   overhead {100 * (t / base - 1):+5.1f}%")


if __name__ == "__main__":
    main()
