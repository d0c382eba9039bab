"""The LR finder on a Learner: grow the lr each batch until the loss blows up, then put everything back."""

from __future__ import annotations

import copy
import math

import torch

from lrlab.train.learner import Callback, CancelFitException, Learner
from lrlab.tuning.lr_range import (
    MAX_STEPS,
    LRFindResult,
    find_lr_in_loop,
    finder_steps,
    minimum,
    smooth,
    steepest,
    suggest,
    valley,
)

__all__ = ["MAX_STEPS", "LRFindResult", "LRFinderCB", "finder_steps", "lr_find", "minimum", "smooth", "steepest",
           "valley"]  # fmt: skip


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


def lr_find(
    learn: Learner | torch.nn.Module,
    loss_func=None,
    data=None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    start_lr: float = 1e-7,
    max_lr: float = 10.0,
    mult: float = 1.3,
    stop_div: float = 3.0,
    n_inp: int = 1,
) -> LRFindResult:
    """Run the finder, put everything back exactly, and suggest an lr: `lr_find(learn)` on a Learner, or
    `lr_find(model, loss_func, data, optimizer)` in a plain PyTorch loop (see lr_range.find_lr_in_loop).

    On a Learner, model, optimizer, loader position and RNG are restored, and the callbacks that follow or
    steer the real run (schedules, metrics, recorders, checkpoints: those with `run_in_lr_find = False`) sit
    out the finder's fit and find their state untouched afterwards.

    Raises:
        ValueError: bad bounds or mult (see finder_steps), or too few batches to suggest anything.
        TypeError: neither a Learner nor a model with loss_func, data and optimizer."""
    ramp = dict(start_lr=start_lr, max_lr=max_lr, mult=mult, stop_div=stop_div)
    if isinstance(learn, torch.nn.Module):
        if loss_func is None or data is None or optimizer is None:
            raise TypeError("lr_find(model, loss_func, data, optimizer): give all four for a plain PyTorch loop")
        return find_lr_in_loop(learn, loss_func, data, optimizer, n_inp=n_inp, **ramp)
    if not isinstance(learn, Learner) or any(x is not None for x in (loss_func, data, optimizer)):
        raise TypeError(f"lr_find takes a Learner alone, or a model, loss_func, data and optimizer; got "
                        f"{type(learn).__name__}")  # fmt: skip
    return _lr_find_learner(learn, **ramp)


def _lr_find_learner(learn: Learner, start_lr: float, max_lr: float, mult: float, stop_div: float) -> LRFindResult:
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
    return suggest(finder.lrs, finder.losses)
