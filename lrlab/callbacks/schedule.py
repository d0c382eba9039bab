"""Drive any torch.optim.lr_scheduler from the training loop, per batch or per epoch."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import torch
from torch.optim import lr_scheduler

from lrlab.learner import Callback, Learner

SchedFunc = Callable[..., object]


def _target(make_sched: SchedFunc) -> tuple[Callable, dict]:
    """The class a (possibly partial) scheduler factory builds, and the keywords already bound."""
    bound: dict = {}
    while isinstance(make_sched, functools.partial):
        bound = {**make_sched.keywords, **bound}
        make_sched = make_sched.func
    return make_sched, bound


def build_sched(make_sched: SchedFunc, opt: torch.optim.Optimizer, n_steps: int) -> object:
    """Build the scheduler, filling in its length (OneCycleLR total_steps, cosine T_max) when not given."""
    target, bound = _target(make_sched)
    try:
        names = inspect.signature(target).parameters
    except (TypeError, ValueError):
        names = {}
    extra = {}
    if "total_steps" in names and "total_steps" not in bound and "epochs" not in bound:
        extra["total_steps"] = n_steps
    if "T_max" in names and "T_max" not in bound:
        extra["T_max"] = n_steps
    has_momentum = "momentum" in opt.defaults or "betas" in opt.defaults
    if "cycle_momentum" in names and "cycle_momentum" not in bound and not has_momentum:
        extra["cycle_momentum"] = False  # e.g. plain SGD, RMSProp: nothing to cycle
    sched = make_sched(opt, **extra)
    total = getattr(sched, "total_steps", None)
    if isinstance(sched, lr_scheduler.OneCycleLR) and total is not None and total < n_steps:
        raise ValueError(
            f"the schedule lasts {total} steps but this fit needs {n_steps}: OneCycleLR cannot go past its end; "
            f"give total_steps >= {n_steps} or leave it out to have it filled in"
        )
    return sched


class BatchSchedCB(Callback):
    """Step a scheduler after every training batch (never during validation)."""

    def __init__(self, make_sched: SchedFunc) -> None:
        self.make_sched = make_sched

    def before_fit(self, learn: Learner) -> None:
        n = len(learn.dls.train) * learn.n_epochs if learn.do_train else 0
        self.sched = build_sched(self.make_sched, learn.opt, n)

    def after_batch(self, learn: Learner) -> None:
        if learn.training:
            self.sched.step()


class EpochSchedCB(Callback):
    """Step a scheduler after every epoch; ReduceLROnPlateau gets a metric (the valid loss by default)."""

    def __init__(self, make_sched: SchedFunc, metric: str = "valid_loss") -> None:
        self.make_sched, self.metric = make_sched, metric

    def before_fit(self, learn: Learner) -> None:
        self.sched = build_sched(self.make_sched, learn.opt, learn.n_epochs)
        self.plateau = isinstance(self.sched, lr_scheduler.ReduceLROnPlateau)

    def after_epoch(self, learn: Learner) -> None:
        if not self.plateau:
            if learn.training:
                self.sched.step()
            return
        if learn.training and learn.do_valid:
            return
        rows = [getattr(cb, "history", None) for cb in learn.cbs]
        rows = [h for h in rows if h and self.metric in h[-1]]
        if not rows:
            raise ValueError(
                f"ReduceLROnPlateau needs the metric {self.metric!r}: add a MetricsCB (it records "
                f"train_loss, train_acc, valid_loss, valid_acc)"
            )
        self.sched.step(rows[0][-1][self.metric])


def available_schedulers() -> list[str]:
    """The scheduler classes torch.optim.lr_scheduler offers (the lesson's capitalised-name filter, done right)."""
    base = (lr_scheduler.LRScheduler, lr_scheduler.ReduceLROnPlateau)
    names = [
        name
        for name, obj in vars(lr_scheduler).items()
        if inspect.isclass(obj)
        and issubclass(obj, base)
        and obj is not lr_scheduler.LRScheduler
        and not name.startswith("_")
        and obj.__module__ == lr_scheduler.__name__
    ]
    return sorted(set(names))


# Preset names for the CLI and fit_one_cycle: factory builder and whether it steps per batch.
PRESETS = ("onecycle", "cosine", "constant", "plateau")


def sched_func(name: str, lr: float, **kwargs) -> tuple[SchedFunc | None, str]:
    """A scheduler factory for a preset or any lr_scheduler class name, and its natural step ('batch'/'epoch')."""
    if name == "constant":
        return None, "batch"
    if name == "onecycle":
        return functools.partial(lr_scheduler.OneCycleLR, max_lr=lr, **kwargs), "batch"
    if name == "cosine":
        return functools.partial(lr_scheduler.CosineAnnealingLR, **kwargs), "batch"
    if name == "plateau":
        return functools.partial(lr_scheduler.ReduceLROnPlateau, **kwargs), "epoch"
    valid = available_schedulers()
    if name not in valid:
        raise ValueError(
            f"unknown scheduler {name!r}; choose a preset ({', '.join(PRESETS)}) or one of: {', '.join(valid)}"
        )
    cls = getattr(lr_scheduler, name)
    if cls is lr_scheduler.OneCycleLR:
        kwargs.setdefault("max_lr", lr)
    step = "epoch" if cls is lr_scheduler.ReduceLROnPlateau else "batch"
    return functools.partial(cls, **kwargs), step
