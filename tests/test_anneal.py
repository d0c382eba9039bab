"""AutoAnnealCB: one rule with the lab's adam_ann sheet, its measures and variants, and bad input."""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import pytest
import torch

from lrlab.lab import Sheet
from lrlab.optim import SGD, Adam
from lrlab.train.callbacks import MetricsCB
from lrlab.train.callbacks.anneal import AutoAnnealCB
from lrlab.train.learner import Callback, Learner
from lrlab.tuning.anneal_rule import anneal_step
from tests.conftest import tiny_dls, tiny_model


class SheetCarryCB(Callback):
    """The workbook's Run quirk: the last row's update of each epoch is thrown away (state is kept)."""

    def after_backward(self, learn):
        if learn.iter == len(learn.dl) - 1:
            self.saved = [p.detach().clone() for p in learn.model.parameters()]

    def after_step(self, learn):
        if learn.iter == len(learn.dl) - 1:
            with torch.no_grad():
                for p, saved in zip(learn.model.parameters(), self.saved):
                    p.copy_(saved)


def test_same_decisions_as_the_adam_ann_sheet():
    """One rule, two front ends: Linear(1, 1), batch size 1, the sheet's Adam, through the Learner."""
    sheet = Sheet("adam_ann")
    model = torch.nn.Linear(1, 1).double()
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.bias.fill_(1.0)
    f64 = partial(torch.tensor, dtype=torch.float64)
    rows = [(f64([[x]]), f64([[y]])) for x, y in sheet.data]
    dls = SimpleNamespace(train=rows, valid=[])
    opt_func = partial(Adam, betas=(0.9, 0.95), eps=0.0, bias_correction=False, impl="reference")
    learn = Learner(model, dls, loss_func=lambda pred, y: ((pred - y) ** 2).sum(), lr=1.0, opt_func=opt_func)
    learn.opt = opt_func(model.parameters(), 1.0)
    mb, ma, sb, sa = sheet.state["mom"] + sheet.state["sq"]
    learn.opt.state[model.weight].update(step=0, exp_avg=f64([[ma]]), exp_avg_sq=f64([[sa]]))
    learn.opt.state[model.bias].update(step=0, exp_avg=f64([mb]), exp_avg_sq=f64([sb]))
    anneal = AutoAnnealCB.workbook(best=sheet.best_measure / 2)  # a mean of 2 roots: half the sheet's sum
    learn.fit(20, valid=False, cbs=[anneal, SheetCarryCB()])
    sheet.run(20)
    assert [d["new_lr"] for d in anneal.decisions] == [h["next_lr"] for h in sheet.history]
    fired = [d["epoch"] + 1 for d in anneal.decisions if d["new_lr"] != d["old_lr"]]
    assert fired == [h["epoch"] for h in sheet.history if h["next_lr"] != h["lr"]] and len(fired) >= 3
    assert [d["ratio"] for d in anneal.decisions] == pytest.approx([h["gradrat"] for h in sheet.history], rel=1e-9)
    assert model.weight.item() == pytest.approx(sheet.a, rel=1e-9) and model.bias.item() == pytest.approx(sheet.b)


def test_anneal_step_rule():
    d = anneal_step(5.0, 2.0, 1.0)
    assert d.fired and d.new_lr == 0.25 and d.best == 2.0 and d.ratio == 2.5
    d = anneal_step(1.0, 2.0, 1.0)
    assert not d.fired and d.best == 1.0
    with pytest.raises(ValueError, match="finite"):
        anneal_step(float("nan"), 1.0, 1.0)


def fit(cb, opt_func=None, lr=0.05, epochs=3, **kw):
    torch.manual_seed(0)
    opt_func = opt_func or partial(Adam)
    learn = Learner(tiny_model(), tiny_dls(n=96, bs=16), lr=lr, cbs=[MetricsCB(), cb], opt_func=opt_func)
    return learn.fit(epochs, **kw)


@pytest.mark.parametrize("measure", ["sq", "noise"])
@pytest.mark.parametrize(
    "opt_func", [partial(Adam), partial(SGD), partial(torch.optim.Adam)], ids=["ours", "sgd", "torch"]
)
def test_measures_work_with_any_optimizer(measure, opt_func):
    cb = AutoAnnealCB(measure=measure, every=2, warmup=0)
    fit(cb, opt_func=opt_func)
    assert len(cb.decisions) == 9 and all(d["measure"] > 0 for d in cb.decisions)


def test_halving_rule_fires_when_the_measure_halves():
    cb = AutoAnnealCB(measure="sq", rule="halving", every=1, warmup=0)
    learn = fit(cb, lr=1e-3)
    annealer = cb.annealer
    annealer.reference = 1.0
    fired, ratio = annealer._decide(0.4, 1.0)
    assert fired and ratio == 2.5 and annealer.reference == 0.4
    assert learn.opt is not None and not annealer._hooks  # detached from the optimizer after the fit


def test_valid_loss_measure_fires_on_plateau():
    cb = AutoAnnealCB(measure="valid_loss", every=None, warmup=0)
    fit(cb, lr=5.0, epochs=4)  # far too high: the valid loss does not improve every epoch
    assert len(cb.decisions) == 4
    assert cb.decisions[0]["new_lr"] == cb.decisions[0]["old_lr"]  # the first check only sets the best
    for d in cb.decisions:
        assert d["new_lr"] in (d["old_lr"], d["old_lr"] / cb.factor)


def test_stationarity_fires_once_training_is_stationary():
    """Noisy regression from far-off weights: first |theta| shrinks steadily (not stationary), later it
    fluctuates in SGD's noise ball, where the SASA-style test should pass."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 5), torch.randn(64, 1)
    batches = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 64, 8)]
    model = torch.nn.Linear(5, 1)
    with torch.no_grad():
        model.weight.fill_(3.0)
    cb = AutoAnnealCB(measure="stationarity", every=40, warmup=0)
    dls = SimpleNamespace(train=batches, valid=[])
    Learner(model, dls, loss_func=torch.nn.functional.mse_loss, lr=0.1, cbs=[cb], opt_func=SGD).fit(40, valid=False)
    fired = [d["step"] for d in cb.decisions if d["new_lr"] < d["old_lr"]]
    assert cb.decisions[0]["new_lr"] == cb.decisions[0]["old_lr"] and cb.decisions[0]["ratio"] > 1
    assert fired, [round(d["ratio"], 3) for d in cb.decisions]


def test_warmup_ramps_the_lr_then_checks():
    from lrlab.train.callbacks.recorder import RecorderCB, lr_of

    rec = RecorderCB(lr=lr_of(0))
    cb = AutoAnnealCB(warmup=6, every=3)
    torch.manual_seed(0)
    Learner(tiny_model(), tiny_dls(n=96, bs=16), lr=0.06, cbs=[rec, cb]).fit(2)
    assert rec.recs["lr"][:6] == pytest.approx([0.01 * i for i in range(1, 7)])
    assert all(d["step"] > 6 for d in cb.decisions)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(measure="loss"), "unknown measure 'loss'; choose one of sq, noise"),
        (dict(rule="half"), "unknown rule"),
        (dict(threshold=1.0), "threshold"),
        (dict(every=0), "every"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AutoAnnealCB(**kwargs)
