"""AutoLR's cost per batch against a lesson-CNN batch: the same plain loop with and without it, alternated.

Run: .venv/bin/python benchmarks/autolr_overhead.py [--rounds 7] [--n-train 12800] [--average 0.05]
Goal (the annealer issue): under 5% of a lesson-CNN batch. AutoLR is measured after its search (done
beforehand), with its snapshot every 20 steps and the annealer's check every 50; with --average, budgeted
(holding its lr) and keeping the weights' moving average, updated every step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from lrlab.data import get_dls
from lrlab.models import lesson_cnn, recompute_bn_stats
from lrlab.optim import Adam
from lrlab.tuning.auto_lr import AutoLR


def epoch(model, dl, opt, auto: AutoLR | None) -> float:
    start = time.perf_counter()
    for xb, yb in dl:
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if auto is not None:
            auto.step(loss)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n-train", type=int, default=12_800)
    parser.add_argument("--average", type=float, default=None, help="budgeted, with this moving-average horizon")
    args = parser.parse_args()
    dls = get_dls(256, n_train=args.n_train)
    torch.manual_seed(0)
    plain_model, auto_model = lesson_cnn(), lesson_cnn()
    auto_model.load_state_dict(plain_model.state_dict())
    plain_opt, auto_opt = Adam(plain_model.parameters(), lr=3e-3), Adam(auto_model.parameters(), lr=1e-3)
    budget = {} if args.average is None else {"total_steps": 10**9, "average": args.average}  # never decays here
    auto = AutoLR(auto_opt, max_search=20, **budget)
    epoch(plain_model, dls.train, plain_opt, None)  # warm up both, and let AutoLR finish its search
    epoch(auto_model, dls.train, auto_opt, auto)
    assert auto.phase in ("anneal", "hold") and (args.average is None) == (auto.average_params is None)
    plain_t, auto_t = [], []
    for _ in range(args.rounds):
        plain_t.append(epoch(plain_model, dls.train, plain_opt, None))
        auto_t.append(epoch(auto_model, dls.train, auto_opt, auto))
    n = len(dls.train)
    plain, with_auto = statistics.median(plain_t) / n, statistics.median(auto_t) / n
    what = "noise annealer" if args.average is None else f"budgeted, moving average over {args.average:g}"
    print(f"lesson CNN, batch 256, {torch.get_num_threads()} threads, median of {args.rounds} alternated epochs, "
          f"AutoLR {what}:")  # fmt: skip
    extra = (with_auto / plain - 1) * 100
    print(f"plain loop {plain * 1e3:.2f} ms/batch, with AutoLR {with_auto * 1e3:.2f} ms/batch: "
          f"{(with_auto - plain) * 1e3:+.3f} ms ({extra:+.1f}% of a batch; goal < 5%)")  # fmt: skip
    if args.average is not None:
        bn_cost(auto_model, dls.train, plain, args.rounds)


def bn_cost(model, dl, batch_seconds: float, rounds: int, bn_batches: int = 50) -> None:
    """The other cost of evaluating at the average: AutoLRCB re-estimates BatchNorm statistics for it
    before each validation (bn_batches forward passes), once per epoch rather than per batch."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        recompute_bn_stats(model, dl, bn_batches)
        times.append(time.perf_counter() - start)
    once = statistics.median(times)
    batches = min(bn_batches, len(dl))
    full_epoch = 60_000 // 256 + 1  # a Fashion-MNIST training epoch at batch 256
    print(f"BatchNorm re-estimation before each validation ({batches} batches forward): {once * 1e3:.0f} ms, "
          f"{once / batch_seconds:.1f} training batches' time, {once / (batch_seconds * full_epoch) * 100:.1f}% "
          f"of a full {full_epoch}-batch epoch")  # fmt: skip


if __name__ == "__main__":
    main()
