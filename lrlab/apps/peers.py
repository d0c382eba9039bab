"""The single-run peers AutoLR is judged against: methods that, like it, train once with no lr to tune.

Each is used as its authors publish it, at its published default: Prodigy and D-Adaptation (lr 1, with the
cosine decay their READMEs recommend), Schedule-Free AdamW (lr 2.5e-3, 5% warm-up, its train/eval switch),
Prodigy + Schedule-Free (lr 1, constant, its switch), DoG (lr 1, evaluated at its polynomial-decay average as
its authors require), Mechanic (around the workload's own optimizer at the middle of that optimizer's usual lr
range, cosine), lr_find + one-cycle (the workload's optimizer at the finder's suggestion, `onecycle@find`),
and AlgoPerf's calibrated baseline: NAdamW with the self-tuning ruleset's one setting for every workload
(lr 1.75e-3, beta1 0.933, beta2 0.9955, weight decay 0.081), 2% linear warm-up, cosine to zero. torch's
NAdam(decoupled_weight_decay=True) stands in for AlgoPerf's own NAdamW (torch keeps NAdam's momentum-decay
schedule). A peer builds its own optimizer, except Mechanic, which wraps the workload's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
from torch.optim import lr_scheduler

from lrlab.optim.registry import lrfree_opt_func, mechanized_opt_func
from lrlab.train.callbacks.lrfree import AveragedEvalCB, ScheduleFreeCB
from lrlab.train.callbacks.schedule import BatchSchedCB
from lrlab.train.learner import Callback

ALGOPERF = {"lr": 0.0017486387539278373, "betas": (1 - 0.06733926164, 0.9955159689799007),
            "weight_decay": 0.08121616522670176, "warmup": 0.02}  # fmt: skip

# family -> (its published setting, what it is)
PEERS = {
    "prodigy_cos": ("1", "Prodigy, lr 1, cosine decay"),
    "dadapt_cos": ("1", "D-Adaptation Adam, lr 1, cosine decay"),
    "schedulefree": ("2.5e-3", "Schedule-Free AdamW, lr 2.5e-3, 5% warm-up"),
    "prodigy_sf": ("1", "Prodigy + Schedule-Free, lr 1"),
    "dog": ("1", "DoG, lr 1, at its polynomial-decay average"),
    "mechanic": ("mid", "Mechanic around the workload's optimizer, its usual lr, cosine"),
    "algoperf": (f"{ALGOPERF['lr']:.4g}", "AlgoPerf's calibrated NAdamW, 2% warm-up, cosine to 0"),
}


def warmup_cosine(total: int, warmup: float) -> Callable[[int], float]:
    """The lr factor at each step: linear from 1/n up to 1 over the first `warmup` of the steps, then cosine to 0."""
    n_warm = max(1, int(total * warmup))

    def factor(step: int) -> float:
        if step < n_warm:
            return (step + 1) / n_warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - n_warm) / max(1, total - n_warm))))

    return factor


def cosine() -> Callback:
    return BatchSchedCB(partial(lr_scheduler.CosineAnnealingLR))


def peer_opt_func(family: str, base: Callable, n_steps: int) -> Callable[..., torch.optim.Optimizer]:
    """The opt_func of a peer family (`base`: the workload's own opt_func, for Mechanic).

    Raises:
        ImportError: the peer's package is not installed (the message names lrlab's extra)."""
    if family in ("prodigy_cos", "dadapt_cos"):
        return lrfree_opt_func(family.removesuffix("_cos"))
    if family == "schedulefree":
        return lrfree_opt_func("schedulefree", warmup_steps=max(1, n_steps // 20))
    if family in ("prodigy_sf", "dog"):
        return lrfree_opt_func(family)
    if family == "mechanic":
        return mechanized_opt_func(base)
    return partial(torch.optim.NAdam, betas=ALGOPERF["betas"], weight_decay=ALGOPERF["weight_decay"],
                   decoupled_weight_decay=True)  # fmt: skip


def peer_cbs(family: str) -> list[Callback]:
    """The callbacks a peer family trains with: its schedule, its train/eval switch or its average."""
    if family in ("prodigy_cos", "dadapt_cos", "mechanic"):
        return [cosine()]
    if family in ("schedulefree", "prodigy_sf"):
        return [ScheduleFreeCB()]
    if family == "dog":
        return [AveragedEvalCB()]
    return [BatchSchedCB(lambda opt, total_steps: lr_scheduler.LambdaLR(opt, warmup_cosine(total_steps, 0.02)))]
