"""lrlab: see and automate how neural networks are optimized.

The names a user types most are here, loaded on first use (so ``import lrlab.optim`` loads no Learner):
``from lrlab import Learner, MetricsCB, AutoLRCB, lr_find``. The families have their own front doors:
``lrlab.optim``, ``lrlab.schedules``, ``lrlab.tuning``, ``lrlab.data``.
"""

from __future__ import annotations

import importlib
from typing import Any

from lrlab import _moved

_moved.install()

__version__ = "0.2.0"

_LEARNER = ("Callback", "CancelBatchException", "CancelEpochException", "CancelFitException", "Learner")
_CALLBACKS = (
    "ActivationStats",
    "AutoAnnealCB",
    "AutoLRCB",
    "BatchAugmentCB",
    "BatchSchedCB",
    "CheckpointCB",
    "DDPCB",
    "DeadlineSchedCB",
    "DeviceCB",
    "Diverged",
    "DivergenceGuardCB",
    "EpochSchedCB",
    "GradientStats",
    "LRFinderCB",
    "MetricsCB",
    "MixedPrecisionCB",
    "ProgressCB",
    "RecorderCB",
    "ScheduleFreeCB",
    "SingleBatchCB",
    "StepLimitCB",
    "TTACB",
    "TimeBudgetCB",
    "TrainCB",
    "TrainingInterrupted",
    "fit_one_cycle",
    "lr_find",
)
_WHERE = {
    **dict.fromkeys(_LEARNER, "lrlab.train.learner"),
    **dict.fromkeys(_CALLBACKS, "lrlab.train.callbacks"),
    "AutoLR": "lrlab.tuning",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    """A public name, imported from its module the first time it is asked for (PEP 562)."""
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lrlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
