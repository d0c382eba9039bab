"""The automatic annealer's rule (the workbook's adam_ann sheet), shared by the lab and the training callback."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class AnnealDecision:
    """One check of the rule: the measure seen, its ratio to the best so far, and the lr before and after."""

    measure: float
    best: float
    ratio: float
    old_lr: float
    new_lr: float

    @property
    def fired(self) -> bool:
        return self.new_lr != self.old_lr


def anneal_step(measure: float, best: float, lr: float, threshold: float = 2.0, factor: float = 4.0) -> AnnealDecision:
    """Divide lr by `factor` when measure / best > threshold; best becomes min(best, measure) afterwards.

    `measure` is a gradient-size statistic (the workbook: sqrt of each weight's squared-gradient average,
    summed); a rise far above its best means training is bouncing around an optimum.
    """
    if not math.isfinite(measure):
        raise ValueError(f"the annealer's measure must be finite, got {measure!r}")
    ratio = measure / best
    new_lr = lr / factor if ratio > threshold else lr
    return AnnealDecision(measure, min(best, measure), ratio, lr, new_lr)
