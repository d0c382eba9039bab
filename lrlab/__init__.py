"""lrlab: see and automate how neural networks are optimized."""

from lrlab.learner import (
    Callback,
    CancelBatchException,
    CancelEpochException,
    CancelFitException,
    Learner,
)

__all__ = ["Callback", "CancelBatchException", "CancelEpochException", "CancelFitException", "Learner"]
__version__ = "0.1.0"
