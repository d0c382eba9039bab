"""The training loss's moving average and noise, and when a batch's loss is a divergence rather than noise.

AutoLR's guard used to call any loss above 4x the moving average a spike. Near zero loss that is ordinary
batch noise (one misread example in a batch of 32 is many times a loss of 0.001): on a small classifier it
restored 39 times and divided the lr down to 5e-21. A spike must now clear three bars: `ratio` x the moving
average, the moving average plus `noise_z` x the loss's own mean absolute deviation, and `floor` x the loss
training started from (a loss far below where it began has not diverged, whatever its ratio).
"""

from __future__ import annotations

import math


class LossWatch:
    """Exponential moving averages of the loss and of its absolute deviation (bias-corrected), and the first
    settled loss, to judge each new batch's loss against.

    Args:
        beta: the averages' decay per step (0.9: about the last 10 steps).
        ratio: a spike is above ratio x the moving average...
        noise_z: ...and above the average plus noise_z x the mean absolute deviation...
        floor: ...and above floor x the loss at the start (the average over the first `settle` steps).
        settle: steps before the averages are trusted.

    Raises:
        ValueError: beta outside (0, 1), ratio <= 1, noise_z or floor < 0, settle < 1."""

    def __init__(
        self, beta: float = 0.9, ratio: float = 4.0, noise_z: float = 6.0, floor: float = 0.1, settle: int = 5
    ) -> None:
        if not 0 < beta < 1:
            raise ValueError(f"beta must be in (0, 1), got {beta!r}")
        if not ratio > 1:
            raise ValueError(f"spike must be > 1, got {ratio!r}")
        if not (noise_z >= 0 and floor >= 0):
            raise ValueError(f"noise_z and floor must be >= 0, got {noise_z!r} and {floor!r}")
        if isinstance(settle, bool) or not isinstance(settle, int) or settle < 1:
            raise ValueError(f"settle must be an integer >= 1, got {settle!r}")
        self.beta, self.ratio, self.noise_z, self.floor, self.settle = beta, ratio, noise_z, floor, settle
        self.reset()
        self.start: float | None = None  # the loss training started from (kept across resets)

    def reset(self) -> None:
        """Forget the averages (after the weights went back to a snapshot): they start again from the next loss."""
        self.avg, self.dev, self.n = 0.0, 0.0, 0

    @property
    def mean(self) -> float:
        """The bias-corrected moving average (inf before any loss)."""
        return self.avg / (1 - self.beta**self.n) if self.n else math.inf

    @property
    def noise(self) -> float:
        """The bias-corrected mean absolute deviation of the loss from its moving average."""
        return self.dev / (1 - self.beta**self.n) if self.n else math.inf

    def is_spike(self, value: float) -> bool:
        """Whether this loss is non-finite, or (once settled) clears all three bars of a divergence."""
        if not math.isfinite(value):
            return True
        if self.n <= self.settle:
            return False
        mean = self.mean
        above_start = self.start is None or value > self.floor * self.start
        return value > self.ratio * mean and value > mean + self.noise_z * self.noise and above_start

    def add(self, value: float) -> None:
        """Take a (finite, not spiking) loss into the averages."""
        deviation = abs(value - self.mean) if self.n else 0.0
        self.n += 1
        self.avg = self.beta * self.avg + (1 - self.beta) * value
        self.dev = self.beta * self.dev + (1 - self.beta) * deviation
        if self.start is None and self.n == self.settle:
            self.start = self.mean

    def state_dict(self) -> dict:
        return {"avg": self.avg, "dev": self.dev, "n": self.n, "start": self.start}

    def load_state_dict(self, state: dict) -> None:
        self.avg, self.dev, self.n, self.start = state["avg"], state["dev"], state["n"], state["start"]
