"""The weights at their best validation score, to hand over instead of worse final ones.

A search that maximizes training progress picks a high lr; on a few hundred rows a network at that lr fits
the noise, and its last weights can score below a model that predicts the mean. Kept best weights (from the
start on: the untrained model is a candidate too) make the run end no worse on validation than anything it
passed through, and say when that happened.
"""

from __future__ import annotations

import math

import torch


class KeepBest:
    """Remember a module's weights and buffers whenever its validation score is the best so far.

    Args:
        model: the module whose state_dict is kept (parameters and buffers such as BatchNorm's statistics).
        higher_is_better: True for a score such as accuracy, False for a loss.
        tolerance: the final score must be worse than the best by more than this fraction of the best (a loss)
            or by more than this many points (a score in [0, 1] that is better higher) before `restore` swaps
            the best back: differences within the noise of one validation set keep the final weights.

    Raises:
        ValueError: a negative tolerance."""

    def __init__(self, model: torch.nn.Module, higher_is_better: bool = False, tolerance: float = 0.01) -> None:
        if not tolerance >= 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
        self.model, self.higher_is_better, self.tolerance = model, higher_is_better, tolerance
        self.best: float | None = None
        self.best_label: object = None
        self.state: dict[str, torch.Tensor] | None = None
        self.history: list[tuple[object, float]] = []

    def _better(self, score: float, than: float) -> bool:
        return score > than if self.higher_is_better else score < than

    def observe(self, score: float, label: object) -> bool:
        """Record the model's score now (label: when, e.g. an epoch); keep its weights when it is the best.

        Returns:
            Whether it was the best so far (a non-finite score never is)."""
        self.history.append((label, float(score)))
        if not math.isfinite(score) or (self.best is not None and not self._better(score, self.best)):
            return False
        self.best, self.best_label = float(score), label
        self.state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return True

    def clearly_worse(self, final: float) -> bool:
        """Whether a final score is worse than the best by more than the tolerance (or not finite)."""
        if self.best is None:
            return False
        if not math.isfinite(final):
            return True
        if self.higher_is_better:
            return final < self.best - self.tolerance
        return final > self.best * (1 + self.tolerance) if self.best >= 0 else final > self.best + self.tolerance

    def restore(self, final: float) -> dict | None:
        """Put the best weights back when the final score is clearly worse.

        Returns:
            What was done ({"event": "restored best validation", "at", "best", "final"}), or None."""
        if not self.clearly_worse(final):
            return None
        self.model.load_state_dict(self.state)
        return {"event": "restored best validation", "at": self.best_label, "best": self.best, "final": final}

    def state_dict(self) -> dict:
        return {"best": self.best, "best_label": self.best_label, "state": self.state, "history": list(self.history)}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_label, self.state = state["best"], state["best_label"], state["state"]
        self.history = [tuple(row) for row in state["history"]]
