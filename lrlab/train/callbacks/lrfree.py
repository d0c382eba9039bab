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


class AveragedEvalCB(Callback):
    """Validate (and hand over after the fit) a polynomial-decay average of the weights (Shamir & Zhang 2013),
    as DoG's authors require of it; training goes on from the trained weights. The average is the dog-optimizer
    package's PolynomialDecayAverager (buffers such as BatchNorm's statistics are averaged too).

    Args:
        gamma: the average's decay (8, DoG's default): the weight of step t is (gamma + 1) / (gamma + t).

    Raises:
        ImportError: dog-optimizer is not installed (pip install 'lrlab[lrfree]'), when the fit starts."""

    order = -20

    def __init__(self, gamma: float = 8.0) -> None:
        self.gamma, self.averager, self.live = gamma, None, None

    def before_fit(self, learn: Learner) -> None:
        try:
            from dog import PolynomialDecayAverager
        except ImportError:
            raise ImportError("AveragedEvalCB needs the package dog-optimizer: pip install 'lrlab[lrfree]'") from None
        self.averager, self.live = PolynomialDecayAverager(learn.model, gamma=self.gamma), None

    def after_batch(self, learn: Learner) -> None:
        if learn.training:
            self.averager.step()

    def _swap_in_average(self, learn: Learner) -> None:
        if self.live is None:
            self.live = {k: v.detach().clone() for k, v in learn.model.state_dict().items()}
            learn.model.load_state_dict(self.averager.av_model.state_dict())

    def before_epoch(self, learn: Learner) -> None:
        if not learn.training:
            self._swap_in_average(learn)
        elif self.live is not None:
            learn.model.load_state_dict(self.live)
            self.live = None

    def after_fit(self, learn: Learner) -> None:
        self._swap_in_average(learn)
