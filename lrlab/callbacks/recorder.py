"""Record any per-batch value (lr, momentum, loss, ...) as training runs, and plot it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lrlab.learner import Callback, Learner

Recordable = Callable[[Learner], float]


def lr_of(group: int = 0) -> Recordable:
    """The learning rate of one parameter group."""
    return lambda learn: learn.opt.param_groups[group]["lr"]


def mom_of(group: int = 0) -> Recordable:
    """Momentum of one group: beta1 for Adam-like optimizers, else `momentum` (0 when there is none)."""

    def mom(learn: Learner) -> float:
        pg = learn.opt.param_groups[group]
        return pg["betas"][0] if "betas" in pg else pg.get("momentum", 0.0)

    return mom


def loss_value(learn: Learner) -> float:
    """The batch's training loss."""
    return float(learn.loss.detach())


class RecorderCB(Callback):
    """Record, after each optimizer step, the value each function returns: the values applied to that batch."""

    run_in_lr_find = False  # it follows or steers the real run

    order = 50

    def __init__(self, **fns: Recordable) -> None:
        if not fns:
            fns = {"lr": lr_of(0), "mom": mom_of(0), "loss": loss_value}
        self.fns = fns
        self.recs: dict[str, list[float]] = {k: [] for k in fns}

    def before_fit(self, learn: Learner) -> None:
        self.recs = {k: [] for k in self.fns}

    def state_dict(self) -> dict:
        return {"recs": self.recs}

    def load_state_dict(self, state: dict) -> None:
        self.recs = {k: list(v) for k, v in state["recs"].items()}

    def after_step(self, learn: Learner) -> None:
        for k, fn in self.fns.items():
            self.recs[k].append(fn(learn))

    def plot(self, path: str | Path = "recorder.png", keys: list[str] | None = None):
        """One panel per recorded value against the training step; saved as PNG and returned."""
        from lrlab.plots import plot_series

        keys = keys or list(self.recs)
        return plot_series({k: self.recs[k] for k in keys}, path, xlabel="training step")
