"""The LR finder: grow the lr each batch until the loss blows up, then put everything back as it was."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lrlab.learner import Callback, CancelFitException, Learner

MAX_STEPS = 10_000  # a ramp longer than this is a typo in mult, not a finer search


def finder_steps(start_lr: float, max_lr: float, mult: float) -> int:
    """Batches the ramp takes from start_lr to max_lr.

    Raises:
        ValueError: bounds out of order, mult <= 1, or a ramp of more than MAX_STEPS batches."""
    if not 0 < start_lr < max_lr:
        raise ValueError(f"need 0 < start_lr < max_lr, got start_lr={start_lr!r}, max_lr={max_lr!r}")
    if not mult > 1:
        raise ValueError(f"mult must be > 1, got {mult!r}")
    n_steps = math.ceil(math.log(max_lr / start_lr) / math.log(mult)) + 1
    if n_steps > MAX_STEPS:
        smallest = (max_lr / start_lr) ** (1 / (MAX_STEPS - 1))
        raise ValueError(
            f"mult={mult!r} needs {n_steps:,} batches from {start_lr:g} to {max_lr:g}; at most {MAX_STEPS:,} "
            f"(mult >= {smallest:.6g})"
        )
    return n_steps


class LRFinderCB(Callback):
    """Multiply the lr by `mult` after every training batch; stop past `max_lr` or when loss > stop_div x best.

    Args:
        start_lr, max_lr: the ramp's ends; mult: the factor per batch; stop_div: stop when the loss exceeds
            stop_div x its best.

    Raises:
        ValueError: bounds out of order, mult <= 1, or a ramp longer than MAX_STEPS batches."""

    order = 60
    COURSE_KEYWORDS = {"lr_mult": "mult", "gamma": "mult", "max_mult": "stop_div"}

    def __new__(cls, *args, **kwargs):
        course = [k for k in kwargs if k in cls.COURSE_KEYWORDS]
        if course:
            k = course[0]
            raise TypeError(f"LRFinderCB takes no {k!r} (the course's name): lrlab calls it {cls.COURSE_KEYWORDS[k]}")
        return super().__new__(cls)

    def __init__(self, start_lr: float = 1e-7, max_lr: float = 10.0, mult: float = 1.3, stop_div: float = 3.0) -> None:
        finder_steps(start_lr, max_lr, mult)
        self.start_lr, self.max_lr, self.mult, self.stop_div = start_lr, max_lr, mult, stop_div
        self.lrs: list[float] = []
        self.losses: list[float] = []

    def before_fit(self, learn: Learner) -> None:
        self.lrs, self.losses, self.best = [], [], math.inf
        for group in learn.opt.param_groups:
            group["lr"] = self.start_lr

    def after_batch(self, learn: Learner) -> None:
        if not learn.training:
            raise CancelFitException()
        loss = float(learn.loss.detach())
        lr = learn.opt.param_groups[0]["lr"]
        self.lrs.append(lr)
        self.losses.append(loss)
        self.best = min(self.best, loss)
        if not math.isfinite(loss) or loss > self.stop_div * self.best or lr * self.mult > self.max_lr:
            raise CancelFitException()
        for group in learn.opt.param_groups:
            group["lr"] *= self.mult


def smooth(values: list[float], half_window: int = 2) -> list[float]:
    """Centered moving average (window shrinks at the ends): no lag, so suggestions are not shifted."""
    n = len(values)
    out = []
    for i in range(n):
        lo, hi = max(0, i - half_window), min(n, i + half_window + 1)
        out.append(sum(values[lo:hi]) / (hi - lo))
    return out


def steepest(lrs: list[float], losses: list[float]) -> float:
    """The lr where the smoothed loss falls fastest per unit of log(lr)."""
    s = smooth(losses)
    if len(s) < 3:
        return lrs[0]
    slopes = [(s[i + 1] - s[i - 1]) / (math.log(lrs[i + 1]) - math.log(lrs[i - 1])) for i in range(1, len(s) - 1)]
    return lrs[1 + min(range(len(slopes)), key=slopes.__getitem__)]


def valley(lrs: list[float], losses: list[float]) -> float:
    """Inside the longest run of falling (smoothed) loss, the point 2/3 of the way down: safely before the minimum.

    The 'valley' is the longest decreasing subsequence of the smoothed losses; the suggestion sits
    past its middle, where the loss is still falling steadily, as fastai's `valley` does.
    """
    s = smooth(losses)
    n = len(s)
    run = [1] * n  # run[i]: length of the longest decreasing subsequence ending at i
    for i in range(1, n):
        for j in range(i):
            if s[i] < s[j] and run[j] + 1 > run[i]:
                run[i] = run[j] + 1
    end = max(range(n), key=run.__getitem__)
    start = end - run[end] + 1
    third = (end - start) / 3
    return lrs[min(n - 1, start + int(2 * third))]


def minimum(lrs: list[float], losses: list[float]) -> float:
    """The lr where the smoothed loss is lowest: the edge beyond which training stops improving."""
    s = smooth(losses)
    return lrs[min(range(len(s)), key=s.__getitem__)]


@dataclass
class LRFindResult:
    """What the finder saw, and its suggestions.

    steepest: fastest fall of the loss (a safe lr for a constant schedule); valley: fastai's pick inside the
    longest falling stretch; minimum: lowest loss. `suggestion` is minimum / 2, the peak lr for one-cycle:
    Smith's range test takes the largest lr that still trains as one-cycle's maximum, halved here for margin.
    """

    lrs: list[float]
    losses: list[float]
    steepest: float
    valley: float
    minimum: float
    suggestion: float = field(init=False)

    def __post_init__(self) -> None:
        self.suggestion = self.minimum / 2

    def plot(self, path: str | Path = "lr_find.png"):
        """Loss against lr on a log axis, both suggestions marked; saved as PNG."""
        import matplotlib.pyplot as plt

        from lrlab.plots import save

        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.plot(self.lrs, self.losses, alpha=0.4, label="loss")
        ax.plot(self.lrs, smooth(self.losses), label="smoothed")
        marks = (
            ("steepest", self.steepest, "C2"),
            ("valley", self.valley, "C3"),
            ("suggestion", self.suggestion, "C4"),
        )
        for name, lr, color in marks:
            ax.axvline(lr, color=color, linestyle="--", label=f"{name} {lr:.2g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.legend()
        ax.grid(alpha=0.3)
        save(fig, path)
        return fig


def lr_find(
    learn: Learner, start_lr: float = 1e-7, max_lr: float = 10.0, mult: float = 1.3, stop_div: float = 3.0
) -> LRFindResult:
    """Run the finder, restore model, optimizer, loader position and RNG exactly, and suggest an lr.

    Callbacks that follow or steer the real run (schedules, metrics, recorders, checkpoints: those with
    `run_in_lr_find = False`) sit out the finder's fit, and find their state untouched afterwards.

    Raises:
        ValueError: bad bounds or mult (see finder_steps), or too few batches to suggest anything."""
    n_steps = finder_steps(start_lr, max_lr, mult)
    saved_model = copy.deepcopy(learn.model.state_dict())
    had_opt = learn.opt is not None
    saved_opt = copy.deepcopy(learn.opt.state_dict()) if had_opt else None
    saved_rng = torch.get_rng_state()
    saved_epochs = [getattr(dl, "epoch", None) for dl in (learn.dls.train, learn.dls.valid)]
    finder = LRFinderCB(start_lr, max_lr, mult, stop_div)
    n_epochs = max(1, math.ceil(n_steps / len(learn.dls.train)))
    all_cbs = list(learn.cbs)
    learn.remove_cbs([cb for cb in all_cbs if not getattr(cb, "run_in_lr_find", True)])
    try:
        if not had_opt:
            learn.opt = learn.opt_func(learn.model.parameters(), learn.lr)
        learn.fit(n_epochs, valid=False, cbs=[finder])
    finally:
        learn.cbs = all_cbs  # the same list, in the same order (ties in `order` keep theirs)
        learn.add_cbs([])  # re-resolve the event handlers for it
        learn.model.load_state_dict(saved_model)
        if had_opt:
            learn.opt.load_state_dict(saved_opt)
        else:
            learn.opt = None
        torch.set_rng_state(saved_rng)
        for dl, epoch in zip((learn.dls.train, learn.dls.valid), saved_epochs):
            if epoch is not None:
                dl.epoch = epoch
    if len(finder.lrs) < 3:
        raise ValueError(f"the finder stopped after {len(finder.lrs)} batches: too few to suggest an lr")
    lrs, losses = finder.lrs, finder.losses
    return LRFindResult(lrs, losses, steepest(lrs, losses), valley(lrs, losses), minimum(lrs, losses))
