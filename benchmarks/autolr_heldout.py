"""AutoLR on real small data kept outside the suite: scikit-learn's bundled diabetes (442 rows, 300 to train,
batch 32, 60 epochs, MLP 10-128-128-1, targets standardized), against one-cycle over the suite's lr grid.

Run: .venv/bin/python benchmarks/autolr_heldout.py   (about 30 s here)
Prints each config's validation MSE over 3 seeds, and the mean predictor's.
"""

from __future__ import annotations

import dataclasses
import statistics

import numpy as np
from sklearn.datasets import load_diabetes

from lrlab.apps.bench import LR_GRID, parse_config, run_one
from lrlab.data.loaders import DataLoaders
from lrlab.data.workloads import get_workload
from lrlab.data.workloads.tabular import _standardized, mlp

N_TRAIN = 300


def diabetes(seed: int, batch_size: int) -> DataLoaders:
    x, y = load_diabetes(return_X_y=True)
    order = np.random.RandomState(0).permutation(len(y))  # the file is ordered: one fixed shuffle
    x, y = _standardized(x[order], y[order], N_TRAIN)
    n = N_TRAIN
    return DataLoaders.from_tensors(x[:n], y[:n], x[n:], y[n:], batch_size, seed=seed)


def main() -> None:
    workload = dataclasses.replace(get_workload("small-reg"), name="diabetes", data=diabetes,
                                   model=lambda: mlp((10, 128, 128, 1)))  # fmt: skip
    print(f"mean predictor: {workload.baseline(workload.loaders(0)):.4f}")
    for config in [f"onecycle@{lr}" for lr in LR_GRID] + ["autolr_avg@1e-3", "autolr_avg@1e-1"]:
        finals = [run_one(workload, parse_config(config), seed)["final"] for seed in range(3)]
        print(f"{config:18s} {statistics.fmean(finals):.4f}  seeds {[round(v, 4) for v in finals]}")


if __name__ == "__main__":
    main()
