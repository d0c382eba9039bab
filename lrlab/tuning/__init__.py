"""Tools that choose the learning rate while a loop trains, in any loop: they attach to the optimizer's step
hooks and have torch's scheduler shape (``step(loss)``, ``state_dict()``), so they know no Learner.

- ``AutoLR`` (``auto_lr``): the annealer lrlab recommends. It searches its own lr, holds it, then decays;
  ``LossWatch`` (``loss_watch``) is its guard's judge of a spike, ``KeepBest`` (``keep_best``) the
  best-validated weights that its callbacks hand over when the end is worse.
- ``find_lr_with`` and the range test's pieces (``lr_range``): the LR finder for any batch-loss function.
- ``AutoAnneal`` (``auto_anneal``) and ``anneal_step`` (``anneal_rule``): the lesson's workbook rule (cut the
  lr when the loss stops falling, restore on a spike), kept for the spreadsheet lab and the comparisons;
  for training, use AutoLR.

The Learner's adapters (AutoLRCB, lr_find) live in ``lrlab.train.callbacks``; Lightning's in ``lrlab.lightning``.
"""

from lrlab.tuning.anneal_rule import AnnealDecision, anneal_step
from lrlab.tuning.auto_anneal import MEASURES, RULES, AutoAnneal, check_settings
from lrlab.tuning.auto_lr import AutoLR, AutoLRError
from lrlab.tuning.keep_best import KeepBest
from lrlab.tuning.loss_watch import LossWatch
from lrlab.tuning.lr_range import LRFindResult, find_lr_in_loop, find_lr_with, suggest

__all__ = [
    "MEASURES",
    "RULES",
    "AnnealDecision",
    "AutoAnneal",
    "AutoLR",
    "AutoLRError",
    "KeepBest",
    "LRFindResult",
    "LossWatch",
    "anneal_step",
    "check_settings",
    "find_lr_in_loop",
    "find_lr_with",
    "suggest",
]
