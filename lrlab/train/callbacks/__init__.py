"""Callbacks: each one small and doing one thing; import them from here."""

from lrlab.train.callbacks.anneal import AutoAnnealCB, AutoLRCB
from lrlab.train.callbacks.checkpoint import CheckpointCB, Diverged, DivergenceGuardCB, TrainingInterrupted
from lrlab.train.callbacks.core import DeviceCB, MetricsCB, ProgressCB, SingleBatchCB, TrainCB
from lrlab.train.callbacks.ddp import DDPCB
from lrlab.train.callbacks.evaluate import StepEvalCB
from lrlab.train.callbacks.lr_finder import LRFinderCB, lr_find
from lrlab.train.callbacks.lrfree import AveragedEvalCB, ScheduleFreeCB
from lrlab.train.callbacks.recorder import RecorderCB
from lrlab.train.callbacks.schedule import BatchSchedCB, DeadlineSchedCB, EpochSchedCB, fit_one_cycle
from lrlab.train.callbacks.speed import TTACB, BatchAugmentCB, MixedPrecisionCB, StepLimitCB, TimeBudgetCB
from lrlab.train.callbacks.stats import ActivationStats, GradientStats

__all__ = [
    "ActivationStats",
    "AutoAnnealCB",
    "AveragedEvalCB",
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
    "StepEvalCB",
    "StepLimitCB",
    "TTACB",
    "TimeBudgetCB",
    "TrainCB",
    "TrainingInterrupted",
    "fit_one_cycle",
    "lr_find",
]
