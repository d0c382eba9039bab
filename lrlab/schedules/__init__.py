"""Schedules set ahead: torch's schedulers built, previewed and drawn before any training; the schedules torch
does not have (warmup-stable-decay, phased by a metric, ramps of momentum/betas/weight decay); and the
recorder of the hyperparameters each step really applied.

The documented import is this package: ``from lrlab.schedules import WarmupStableDecay, sched_lrs``.
Files: ``torch_schedules`` (build, preview, plot, presets), ``phased`` (WarmupStableDecay, PhasedLR,
HyperScheduler, Ramp), ``hyperparams`` (HyperRecorder). They use the optimizers' helpers, never the Learner.
"""

from lrlab.schedules.hyperparams import HyperRecorder, applied_hypers
from lrlab.schedules.phased import HYPERS, SHAPES, HyperScheduler, PhasedLR, Ramp, WarmupStableDecay, parse_ramp
from lrlab.schedules.torch_schedules import (
    PRESETS,
    SchedFunc,
    available_schedulers,
    build_sched,
    plot_sched,
    sched_func,
    sched_lrs,
    simulated_copy,
)

__all__ = [
    "HYPERS",
    "PRESETS",
    "SHAPES",
    "HyperRecorder",
    "HyperScheduler",
    "PhasedLR",
    "Ramp",
    "SchedFunc",
    "WarmupStableDecay",
    "applied_hypers",
    "available_schedulers",
    "build_sched",
    "parse_ramp",
    "plot_sched",
    "sched_func",
    "sched_lrs",
    "simulated_copy",
]
