"""Callbacks: each one small and doing one thing; import them from here."""

from lrlab.callbacks.core import DeviceCB, MetricsCB, ProgressCB, SingleBatchCB, TrainCB

__all__ = ["DeviceCB", "MetricsCB", "ProgressCB", "SingleBatchCB", "TrainCB"]
