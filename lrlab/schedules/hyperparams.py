"""Record the hyperparameters an optimizer applied (lr, momentum/betas, weight decay per group), in any loop.

It hooks torch's `Optimizer.register_step_pre_hook`, so it sees each step's values as that step used them,
whoever changes them (a torch scheduler, lrlab's annealer, a Lightning schedule, the loop itself) and
without the loop calling it. Knows no Learner.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lrlab.optim.core import as_number, group_momentum


def applied_hypers(group: dict, extra: tuple[str, ...] = ()) -> dict[str, float]:
    """A param group's hyperparameters as plain numbers: lr, momentum (beta1 or momentum; 0 when none),
    beta2 (Adam-like only), weight_decay (0 when none), and any `extra` key the group has."""
    out = {"lr": float(as_number(group["lr"])), "momentum": float(group_momentum(group))}
    if "betas" in group:
        out["beta2"] = float(as_number(group["betas"][1]))
    out["weight_decay"] = float(as_number(group.get("weight_decay", 0.0)))
    for key in extra:
        if key in group:
            out[key] = float(as_number(group[key]))
    return out


class HyperRecorder:
    """Per param group, the hyperparameters each optimizer step applied.

    Args:
        optimizer: any torch.optim.Optimizer.
        extra: more group keys to record where present (Prodigy's "d", say).

    `recs[g][name]` is the list for group g, one value per step; `remove()` stops recording."""

    def __init__(self, optimizer: torch.optim.Optimizer, extra: tuple[str, ...] = ()) -> None:
        self.optimizer, self.extra = optimizer, tuple(extra)
        self.recs: list[dict[str, list[float]]] = [{} for _ in optimizer.param_groups]
        self._hook = optimizer.register_step_pre_hook(self._record)

    def _record(self, optimizer, args, kwargs) -> None:
        while len(self.recs) < len(optimizer.param_groups):  # add_param_group after recording began
            self.recs.append({})
        for rec, group in zip(self.recs, optimizer.param_groups):
            for name, value in applied_hypers(group, self.extra).items():
                rec.setdefault(name, []).append(value)

    def __getitem__(self, name: str) -> list[float]:
        """The first group's values of one hyperparameter: `rec["lr"]`."""
        return self.recs[0].get(name, [])

    def remove(self) -> None:
        """Stop recording (detach the hook); what was recorded stays."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def state_dict(self) -> dict:
        return {"recs": self.recs}

    def load_state_dict(self, state: dict) -> None:
        self.recs = [{k: list(v) for k, v in rec.items()} for rec in state["recs"]]

    def plot(self, path: str | Path = "hyperparams.png", group: int = 0):
        """One panel per hyperparameter of one group against the step; saved as PNG and returned.

        Raises:
            ValueError: no such group."""
        from lrlab.plots import plot_series

        if not 0 <= group < len(self.recs):
            raise ValueError(f"group must be 0..{len(self.recs) - 1}, got {group!r}")
        return plot_series(self.recs[group], path, xlabel="optimizer step")
