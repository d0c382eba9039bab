"""A whole training step (forward, backward, optimizer step, zero_grad): lrlab's Learner with its fastest Adam
(`Adam(impl="flat", compile=True)`, whose gradients the Learner keeps in the flat buffer) against a raw torch
loop with torch's fused Adam, alternated in one process, on two parameter sets: a ResNet-like model (56
tensors) and a stack of 27 convolutions (53 tensors: 27 filters of 64x64x3x3, 26 vectors of 64).

Run: .venv/bin/python benchmarks/train_step.py [--rounds 5] [--steps 30] [--threads 1]
Prints the median time of a step of each and the ratio Learner / raw (goal <= 1.0x).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from optim_step import conv_stack, resnet_like  # noqa: E402

from lrlab.data import DataLoaders  # noqa: E402
from lrlab.optim import Adam  # noqa: E402
from lrlab.train.learner import Callback, Learner  # noqa: E402


class StepClock(Callback):
    """The time between the ends of consecutive training batches: one whole step of the Learner's loop."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def after_batch(self, learn: Learner) -> None:
        if learn.training:
            self.ends.append(time.perf_counter())


def data(kind: str, steps: int, bs: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    if kind == "resnet":
        return torch.randn(steps * bs, 1, 16, 16, generator=g), torch.randint(0, 10, (steps * bs,), generator=g)
    return torch.randn(steps * bs, 64, 4, 4, generator=g), torch.randn(steps * bs, 64, 4, 4, generator=g)


def learner_step(model: torch.nn.Module, kind: str, steps: int) -> float:
    """Median seconds per step of Learner.fit with Adam(impl="flat", compile=True), after its warm-up."""
    x, y = data(kind, steps + 3)
    dls = DataLoaders.from_tensors(x, y, x[:8], y[:8], batch_size=8, seed=0)
    loss = F.cross_entropy if kind == "resnet" else F.mse_loss
    clock = StepClock()
    learn = Learner(model, dls, loss_func=loss, lr=1e-3, cbs=[clock],
                    opt_func=partial(Adam, impl="flat", compile=True))  # fmt: skip
    learn.fit(1)
    return statistics.median(b - a for a, b in zip(clock.ends[3:], clock.ends[4:]))


def raw_step(model: torch.nn.Module, kind: str, steps: int) -> float:
    """Median seconds per step of a hand-written loop with torch.optim.Adam(fused=True)."""
    x, y = data(kind, steps + 3)
    loss_func = F.cross_entropy if kind == "resnet" else F.mse_loss
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    ends = []
    model.train()
    for i in range(0, len(x), 8):
        loss = loss_func(model(x[i : i + 8]), y[i : i + 8])
        loss.backward()
        opt.step()
        opt.zero_grad()
        ends.append(time.perf_counter())
    return statistics.median(b - a for a, b in zip(ends[3:], ends[4:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch 8, {args.rounds} alternated rounds of "
          f"{args.steps} steps")  # fmt: skip
    for kind, make in (("resnet", lambda: resnet_like()), ("stack", lambda: conv_stack())):
        torch.manual_seed(0)
        learner_model, raw_model = make(), make()
        n = len(list(learner_model.parameters()))
        learner_step(learner_model, kind, 5)  # compile the flat update once (10-30 s)
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(learner_step(learner_model, kind, args.steps))
            theirs.append(raw_step(raw_model, kind, args.steps))
        a, b = statistics.median(ours), statistics.median(theirs)
        name = "ResNet-like" if kind == "resnet" else "27-conv stack"
        print(f"{name} ({n} tensors): Learner + Adam(impl='flat', compile=True) {a * 1e3:.2f} ms, "
              f"raw loop + torch fused Adam {b * 1e3:.2f} ms: {a / b:.2f}x (goal <= 1.0x)")  # fmt: skip


if __name__ == "__main__":
    main()
