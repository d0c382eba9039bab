"""Callbacks: each one small and doing one thing; import them from here."""

from lrlab.callbacks.anneal import AutoAnnealCB
from lrlab.callbacks.checkpoint import CheckpointCB, Diverged, DivergenceGuardCB, TrainingInterrupted
from lrlab.callbacks.core import DeviceCB, MetricsCB, ProgressCB, SingleBatchCB, TrainCB
from lrlab.callbacks.lr_finder import LRFinderCB, lr_find
from lrlab.callbacks.lrfree import ScheduleFreeCB
from lrlab.callbacks.recorder import RecorderCB
from lrlab.callbacks.schedule import BatchSchedCB, DeadlineSchedCB, EpochSchedCB, fit_one_cycle
from lrlab.callbacks.speed import TTACB, BatchAugmentCB, MixedPrecisionCB, StepLimitCB, TimeBudgetCB
from lrlab.callbacks.stats import ActivationStats, GradientStats

__all__ = [
    "ActivationStats",
    "AutoAnnealCB",
    "BatchAugmentCB",
    "BatchSchedCB",
    "CheckpointCB",
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
]
