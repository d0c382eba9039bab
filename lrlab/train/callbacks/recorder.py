"""Record any per-batch value (lr, momentum, loss, ...) as training runs, and plot it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lrlab.optim.core import as_number, group_momentum
from lrlab.train.learner import EVENTS, STEPS, Callback, Learner

Recordable = Callable[[Learner], float]


def lr_of(group: int = 0) -> Recordable:
    """The learning rate of one parameter group."""
    return lambda learn: as_number(learn.opt.param_groups[group]["lr"])


def mom_of(group: int = 0) -> Recordable:
    """Momentum of one group: beta1 for Adam-like optimizers, else `momentum` (0 when there is none)."""

    return lambda learn: group_momentum(learn.opt.param_groups[group])


def loss_value(learn: Learner) -> float:
    """The batch's training loss."""
    return float(learn.loss.detach())


class RecorderCB(Callback):
    """Record, after each optimizer step, the value each function returns: the values applied to that batch.

    Each function gets the recorder, which reads through to the Learner (`cb.opt`, `cb.loss`, `cb.model`...)
    and holds `cb.pg`, the first param group: lrlab's recordables (written for the Learner) and the course's
    (`def _lr(cb): return cb.pg["lr"]`) both work.

    Args:
        **fns: name -> function; by default lr, mom (beta1 or momentum) and loss of the first group."""

    run_in_lr_find = False  # it follows or steers the real run

    order = 50

    def __init__(self, **fns: Recordable) -> None:
        if not fns:
            fns = {"lr": lr_of(0), "mom": mom_of(0), "loss": loss_value}
        self.fns = fns
        self.recs: dict[str, list[float]] = {k: [] for k in fns}

    def __getattr__(self, name: str):
        learn = self.__dict__.get("learn")
        if learn is None or name.startswith("_") or name in EVENTS or name in STEPS:
            raise AttributeError(name)
        return getattr(learn, name)

    def before_fit(self, learn: Learner) -> None:
        self.learn, self.pg = learn, learn.opt.param_groups[0]
        self.recs = {k: [] for k in self.fns}

    def state_dict(self) -> dict:
        return {"recs": self.recs}

    def load_state_dict(self, state: dict) -> None:
        self.recs = {k: list(v) for k, v in state["recs"].items()}

    def after_step(self, learn: Learner) -> None:
        for k, fn in self.fns.items():
            self.recs[k].append(fn(self))

    def plot(self, path: str | Path = "recorder.png", keys: list[str] | None = None):
        """One panel per recorded value against the training step; saved as PNG and returned."""
        from lrlab.plots import plot_series

        keys = keys or list(self.recs)
        return plot_series({k: self.recs[k] for k in keys}, path, xlabel="training step")
