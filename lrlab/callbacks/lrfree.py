"""Learning-rate-free baselines (optional: pip install lrlab[lrfree]) and the callback Schedule-Free needs."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from lrlab.learner import Callback, Learner

LRFREE = {
    "prodigy": ("prodigyopt", "Prodigy"),
    "schedulefree": ("schedulefree", "AdamWScheduleFree"),
    "dadapt": ("dadaptation", "DAdaptAdam"),
}


def lrfree_opt_func(name: str, **kwargs) -> Callable[..., torch.optim.Optimizer]:
    """An opt_func for Prodigy, Schedule-Free AdamW or D-Adaptation Adam, with a clear error if not installed."""
    if name not in LRFREE:
        raise ValueError(f"unknown learning-rate-free optimizer {name!r}; choose one of {', '.join(LRFREE)}")
    module_name, cls_name = LRFREE[name]
    try:
        module = __import__(module_name)
    except ImportError:
        raise ImportError(f"{name} needs the package {module_name}: pip install 'lrlab[lrfree]'") from None
    return functools.partial(getattr(module, cls_name), **kwargs)


def recompute_bn_stats(model: nn.Module, batches, n_batches: int = 50) -> None:
    """Re-estimate every BatchNorm's running mean/var at the current weights (a cumulative average)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    was_training = model.training
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average over the batches below
    model.train()
    with torch.no_grad():
        for i, (xb, _) in enumerate(batches):
            if i >= n_batches:
                break
            model(xb)
    for bn, momentum in zip(bns, saved):
        bn.momentum = momentum
    model.train(was_training)


def recompute_bn_keeping_order(model: nn.Module, batches, n_batches: int = 50) -> None:
    """recompute_bn_stats, leaving the training order untouched: torch's random state (a shuffling torch
    DataLoader draws from it when iterated) and a lrlab loader's epoch, so a run stays reproducible."""
    epoch, rng = getattr(batches, "epoch", None), torch.get_rng_state()
    recompute_bn_stats(model, batches, n_batches)
    torch.set_rng_state(rng)
    if epoch is not None:
        batches.epoch = epoch


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
