"""The auto-anneal experiment (issue: automatic annealing compared honestly): the `lesson` preset,
3 seeds x 5 epochs on the full Fashion-MNIST, written to docs/results/auto-anneal.md with its plots.

Run: .venv/bin/python benchmarks/auto_anneal.py [--seeds 3] [--epochs 5] [--out docs/results]
"""

from __future__ import annotations

import argparse
import platform

import torch

from lrlab.apps.compare import PRESETS, get_configs, run_grid, write_report
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
    path = write_report(results, args.out, "Automatic annealing vs schedules and learning-rate-free optimizers",
                        notes, stem="auto-anneal")  # fmt: skip
    with open(path, "a") as f:
        f.write(FINDINGS)
    print(path)


FINDINGS = """
## Findings

- **Goal: auto-anneal with its defaults within 0.3 accuracy points of tuned one-cycle, and ahead of
  constant lr.** Measured (seeds 0-2, 5 epochs): auto-anneal 0.9014 against one-cycle 0.9039, **0.25 points
  behind: the goal is met**; ahead of constant lr (0.8929, +0.85), cosine, ReduceLROnPlateau, Prodigy and
  Schedule-Free AdamW, with neither an lr finder nor a schedule fixed in advance. Its spread across seeds
  (± 0.0066) is wider than one-cycle's (± 0.0015).
- **Held-out seeds.** The defaults were chosen by trying variants on seeds 0-2 (below), so they were checked
  on seeds 3-5, never used for choosing: one-cycle 0.9068 ± 0.0043, auto-anneal (factor 3) 0.9062 ± 0.0042
  (0.06 behind), auto-anneal with factor 4 0.9055 ± 0.0055.
- **The workbook's rule as it stands never fires on a real network**: its measure (mean root of Adam's
  second moment) only creeps up (1.0 to 1.8 times its best over 3 epochs at lr 1e-2), never to 2x.
  Checked per epoch and every 50 batches; the run ends where constant lr ends (seed 0: 0.8966).
- **Measures tried (seed 0, Adam, 5 epochs)**: second moment, ratio rule: never fires (0.8966);
  second moment, lecturer's "halving" rule: never fires, the measure rises rather than halves (0.8966);
  SASA-style stationarity test of Yaida's condition: never passes, because with BatchNorm the weight norm
  keeps growing under Adam (|mean z| / mean |dtheta|^2 stays near 16), so the condition the test looks for
  does not hold (0.8966); validation loss (plateau, patience 0): never fires in 5 epochs (0.8966);
  gradient noise (E|g|^2 / |E g|^2, from Adam's moments), ratio to the running minimum: fires at every check
  once the noise has doubled and collapses the lr to ~0 (0.8756).
- **What works**: the noise measure with the best *rebased* after each decision (fire once per rise by
  `threshold`), after a one-epoch linear warm-up from a high base lr (6e-2, the lesson's one-cycle peak).
  Means over seeds 0-2: threshold 2, factor 4, lr 3e-2, 100-batch warm-up: 0.8953 (it fired only once on
  seeds 1 and 2); threshold 1.5 at 3e-2: 0.8928; threshold 1.5, factor 4 at 6e-2 with one epoch of
  warm-up: 0.9008; then, changing one thing at a time: factor 3: 0.9014 (the default now); checks every 25
  batches: 0.8930; two epochs of warm-up: 0.8946; threshold 1.3: 0.8992.
- **Not done**: SALSA's line-search warm-up (only the fixed linear warm-up is implemented).
"""


if __name__ == "__main__":
    main()
