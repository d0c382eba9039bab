"""Per-batch cost of the Learner over a hand-written loop: same model, data and optimizer, alternated.

Run: .venv/bin/python benchmarks/overhead.py [--rounds 7]
Goals: at most 40 µs per batch over the raw loop with Linear(784, 10) at batch size 256, and at least
0.97x the raw loop's throughput with the lesson CNN.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

from lrlab.data import get_dls
from lrlab.models import lesson_cnn
from lrlab.optim import Adam
from lrlab.train.callbacks import MetricsCB
from lrlab.train.learner import Learner


def raw_epoch(model: nn.Module, dl, opt: torch.optim.Optimizer) -> None:
    """The loop a user would write by hand."""
    model.train()
    for xb, yb in dl:
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(name: str, make_model, dls, rounds: int, with_metrics: bool) -> tuple[float, float]:
    torch.manual_seed(0)
    raw_model, learn_model = make_model(), make_model()
    learn_model.load_state_dict(raw_model.state_dict())
    raw_opt = Adam(raw_model.parameters(), lr=1e-3)
    cbs = [MetricsCB()] if with_metrics else []
    learn = Learner(learn_model, dls, lr=1e-3, cbs=cbs, opt_func=lambda ps, lr: Adam(ps, lr=lr))
    learn.fit(1, valid=False)  # builds the optimizer and warms up
    raw_epoch(raw_model, dls.train, raw_opt)
    raw_t, learn_t = [], []
    for _ in range(rounds):
        raw_t.append(timed(lambda: raw_epoch(raw_model, dls.train, raw_opt)))
        learn_t.append(timed(lambda: learn.fit(1, valid=False)))
    n = len(dls.train)
    raw, lrn = statistics.median(raw_t), statistics.median(learn_t)
    label = name + (" + MetricsCB" if with_metrics else "")
    print(
        f"{label:<32} raw {raw / n * 1e6:8.1f} µs/batch   Learner {lrn / n * 1e6:8.1f} µs/batch   "
        f"overhead {(lrn - raw) / n * 1e6:+7.1f} µs/batch   throughput {raw / lrn:.3f}x"
    )
    return (lrn - raw) / n * 1e6, raw / lrn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    dls = get_dls(256)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch size 256, {len(dls.train)} batches")
    print(f"median of {args.rounds} alternated epochs each")

    def linear():
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

    compare("Linear(784, 10)", linear, dls, args.rounds, with_metrics=False)
    compare("Linear(784, 10)", linear, dls, args.rounds, with_metrics=True)
    compare("lesson CNN", lesson_cnn, dls, max(3, args.rounds // 2), with_metrics=False)


if __name__ == "__main__":
    main()
