"""The callback Schedule-Free needs (the learning-rate-free optimizers by name are in lrlab.optim.registry)."""

from __future__ import annotations

from lrlab.models import recompute_bn_keeping_order
from lrlab.train.learner import Callback, Learner


class ScheduleFreeCB(Callback):
    """Schedule-Free's train/eval switch, never forgotten: train weights for training, averaged weights (with
    BatchNorm statistics recomputed for them) for validation and after the fit.

    Args:
        bn_batches: training batches used to recompute BatchNorm statistics for the averaged weights.
        recompute_bn: whether to recompute them at all."""

    order = -20

    def __init__(self, bn_batches: int = 50, recompute_bn: bool = True) -> None:
        self.bn_batches, self.recompute_bn = bn_batches, recompute_bn

    def _to_eval(self, learn: Learner) -> None:
        learn.opt.eval()
        if self.recompute_bn:
            recompute_bn_keeping_order(learn.model, learn.dls.train, self.bn_batches)

    def before_epoch(self, learn: Learner) -> None:
        if learn.training:
            learn.opt.train()
        else:
            self._to_eval(learn)

    def after_fit(self, learn: Learner) -> None:
        if not learn.do_valid:  # otherwise the last validation already switched
            self._to_eval(learn)
