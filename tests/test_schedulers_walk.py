"""Every torch.optim.lr_scheduler class drives every lrlab optimizer exactly as it drives torch's."""

from __future__ import annotations

import pytest
import torch
from torch.optim import lr_scheduler as S

from lrlab.optim import OPTIMIZERS
from lrlab.schedules import available_schedulers


def has_momentum(opt) -> bool:
    return "momentum" in opt.defaults or "betas" in opt.defaults


MAKERS = {
    "LambdaLR": lambda opt: S.LambdaLR(opt, lambda e: 0.9**e),
    "MultiplicativeLR": lambda opt: S.MultiplicativeLR(opt, lambda e: 0.95),
    "StepLR": lambda opt: S.StepLR(opt, step_size=3, gamma=0.5),
    "MultiStepLR": lambda opt: S.MultiStepLR(opt, milestones=[2, 5], gamma=0.5),
    "ConstantLR": lambda opt: S.ConstantLR(opt, factor=0.5, total_iters=4),
    "LinearLR": lambda opt: S.LinearLR(opt, start_factor=0.2, total_iters=5),
    "ExponentialLR": lambda opt: S.ExponentialLR(opt, gamma=0.9),
    "SequentialLR": lambda opt: S.SequentialLR(
        opt, [S.ConstantLR(opt, factor=0.5, total_iters=3), S.ExponentialLR(opt, 0.9)], milestones=[3]
    ),
    "PolynomialLR": lambda opt: S.PolynomialLR(opt, total_iters=10, power=2.0),
    "CosineAnnealingLR": lambda opt: S.CosineAnnealingLR(opt, T_max=10),
    "ChainedScheduler": lambda opt: S.ChainedScheduler([S.ConstantLR(opt, 0.5, 4), S.ExponentialLR(opt, 0.9)]),
    "ReduceLROnPlateau": lambda opt: S.ReduceLROnPlateau(opt, patience=1, factor=0.5),
    "CyclicLR": lambda opt: S.CyclicLR(opt, 1e-3, 1e-2, step_size_up=4, cycle_momentum=has_momentum(opt)),
    "OneCycleLR": lambda opt: S.OneCycleLR(opt, max_lr=1e-2, total_steps=20, cycle_momentum=has_momentum(opt)),
    "CosineAnnealingWarmRestarts": lambda opt: S.CosineAnnealingWarmRestarts(opt, T_0=5),
}
TORCH_TWIN = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=1e-2),
    "momentum": lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.9),
    "rmsprop": lambda ps: torch.optim.RMSprop(ps, lr=1e-2),
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-2),
    "nadam": lambda ps: torch.optim.NAdam(ps, lr=1e-2),
    "radam": lambda ps: torch.optim.RAdam(ps, lr=1e-2),
    # torch has no Lion: a twin with the same betas (the schedulers see only lr and betas) stands in for it
    "lion": lambda ps: torch.optim.Adam(ps, lr=1e-2, betas=(0.9, 0.99)),
    "ademamix": lambda ps: torch.optim.Adam(ps, lr=1e-2),  # the same lr and betas: what schedulers see
    "muon": lambda ps: torch.optim.Muon(ps, lr=1e-2),
    "schedulefree_adamw": lambda ps: trained(__import__("schedulefree").AdamWScheduleFree(ps, lr=1e-2)),
}
# Muon takes matrices (a vector would go to its AdamW groups, with their own lr): it is driven on one
MUON_SHAPE = (3, 3)


def trained(opt):
    """Schedule-Free optimizers step only in train mode."""
    opt.train()
    return opt


def param(opt_name: str) -> torch.Tensor:
    return torch.zeros(MUON_SHAPE if opt_name == "muon" else 3, requires_grad=True)


def ours_made(opt_name: str, p: torch.Tensor, **kwargs):
    opt = OPTIMIZERS[opt_name]([p], **kwargs)
    return trained(opt) if hasattr(opt, "train") else opt


def test_every_scheduler_class_is_covered():
    assert set(available_schedulers()) == set(MAKERS)


def drive(opt, sched, steps=20):
    lrs, moms = [], []
    p = opt.param_groups[0]["params"][0]
    for _ in range(steps):
        p.grad = torch.ones_like(p)
        opt.step()
        if isinstance(sched, S.ReduceLROnPlateau):
            sched.step(1.0)  # a loss that never improves
        else:
            sched.step()
        pg = opt.param_groups[0]
        lrs.append(float(pg["lr"]))  # a tensor lr is changed in place: record its value
        mom = pg["betas"][0] if "betas" in pg else pg.get("momentum")
        moms.append(None if mom is None else float(mom))
    return lrs, moms


@pytest.mark.parametrize("sched_name", sorted(MAKERS))
@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
def test_scheduler_drives_lrlab_optimizer_like_torchs(sched_name, opt_name):
    ours = ours_made(opt_name, param(opt_name), lr=1e-2)
    theirs = TORCH_TWIN[opt_name]([param(opt_name)])
    our_lrs, our_moms = drive(ours, MAKERS[sched_name](ours))
    their_lrs, their_moms = drive(theirs, MAKERS[sched_name](theirs))
    assert our_lrs == pytest.approx(their_lrs)
    if sched_name != "ReduceLROnPlateau":
        assert len(set(our_lrs)) > 1, "the schedule should have changed the lr"
    if opt_name != "sgd" and opt_name != "rmsprop":  # both sides have a momentum or a beta1 to cycle
        assert our_moms == pytest.approx(their_moms)


def test_one_cycle_cycles_adam_beta1_opposite_to_lr():
    opt = OPTIMIZERS["adam"]([torch.zeros(3, requires_grad=True)], lr=1e-2)
    sched = S.OneCycleLR(opt, max_lr=1e-2, total_steps=100)
    lrs, moms = drive(opt, sched, steps=99)
    peak = lrs.index(max(lrs))
    assert moms[peak] == pytest.approx(0.85, abs=1e-3)
    assert moms[0] > 0.94 and moms[-1] > 0.94


TORCH_TWIN_FOR_TENSOR_LR = {  # torch's single-tensor paths take a tensor lr
    "sgd": lambda ps, lr: torch.optim.SGD(ps, lr=lr, foreach=False),
    "momentum": lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9, foreach=False),
    "rmsprop": lambda ps, lr: torch.optim.RMSprop(ps, lr=lr, foreach=False),
    "adam": lambda ps, lr: torch.optim.Adam(ps, lr=lr, foreach=False),
    "nadam": lambda ps, lr: torch.optim.NAdam(ps, lr=lr, foreach=False),
    "radam": lambda ps, lr: torch.optim.RAdam(ps, lr=lr, foreach=False),
    "lion": lambda ps, lr: torch.optim.Adam(ps, lr=lr, betas=(0.9, 0.99), foreach=False),  # the lr's twin
    "ademamix": lambda ps, lr: torch.optim.Adam(ps, lr=lr, foreach=False),  # the lr's twin
    "muon": lambda ps, lr: torch.optim.Muon(ps, lr=lr),
    "schedulefree_adamw": lambda ps, lr: torch.optim.Adam(ps, lr=lr, foreach=False),  # the lr's twin
}


@pytest.mark.parametrize("impl", ["foreach", "reference"])
@pytest.mark.parametrize("sched_name", ["OneCycleLR", "CosineAnnealingLR", "CyclicLR", "ReduceLROnPlateau"])
@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
def test_a_tensor_lr_is_taken_as_torch_takes_it(opt_name, sched_name, impl):
    """torch lets a param group's lr be a tensor (its own lr_scheduler tests do); lrlab's optimizers too."""
    ours_p, theirs_p = param(opt_name), param(opt_name)
    ours = ours_made(opt_name, ours_p, lr=torch.tensor(1e-2), impl=impl)
    theirs = TORCH_TWIN_FOR_TENSOR_LR[opt_name]([theirs_p], torch.tensor(1e-2))
    our_lrs, _ = drive(ours, MAKERS[sched_name](ours))
    their_lrs, _ = drive(theirs, MAKERS[sched_name](theirs))
    assert our_lrs == pytest.approx(their_lrs)
    assert isinstance(ours.param_groups[0]["lr"], torch.Tensor)  # left a tensor, as torch leaves it
    # the same weights where the rules coincide (lrlab's momentum is the lesson's damped one; torch's SGD gets
    # momentum 0.85-0.95 from cycling schedulers, which lrlab's SGD, having none, refuses to invent)
    if opt_name in ("adam", "nadam", "radam") or (opt_name == "sgd" and sched_name not in ("OneCycleLR", "CyclicLR")):
        assert torch.allclose(ours_p, theirs_p, atol=1e-6)
    plain = ours_made(opt_name, param(opt_name), lr=1e-2, impl=impl)
    plain_lrs, _ = drive(plain, MAKERS[sched_name](plain))
    assert our_lrs == pytest.approx(plain_lrs)
    # a tensor lr computes what a float lr does (up to the float32 rounding of the lr tensor itself)
    assert torch.allclose(ours_p, plain.param_groups[0]["params"][0], rtol=1e-5, atol=1e-7)
