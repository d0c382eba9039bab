"""Schedules: simulated, stepped by callbacks without off-by-one, recorded, and the LR finder."""

from __future__ import annotations

import itertools
import math
from functools import partial

import pytest
import torch
from torch.optim import lr_scheduler as S

from lrlab.optim import Adam
from lrlab.schedules import available_schedulers, build_sched, plot_sched, sched_func, sched_lrs
from lrlab.train.callbacks import MetricsCB
from lrlab.train.callbacks.lr_finder import LRFinderCB, lr_find, smooth, steepest, valley
from lrlab.train.callbacks.recorder import RecorderCB, loss_value, lr_of, mom_of
from lrlab.train.callbacks.schedule import BatchSchedCB, DeadlineSchedCB, EpochSchedCB, fit_one_cycle
from lrlab.train.callbacks.speed import StepLimitCB
from lrlab.train.learner import Learner
from tests.conftest import tiny_dls, tiny_model


def test_available_schedulers_are_scheduler_classes():
    names = available_schedulers()
    assert {"CosineAnnealingLR", "OneCycleLR", "ReduceLROnPlateau", "StepLR"} <= set(names)
    assert "LRScheduler" not in names and "Optimizer" not in names and "Counter" not in names


def test_cosine_matches_closed_form_past_t_max():
    lrs = sched_lrs(partial(S.CosineAnnealingLR, T_max=100), 120, lr=0.06)["lr"]
    expected = [0.06 * (1 + math.cos(math.pi * t / 100)) / 2 for t in range(120)]
    assert lrs == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert lrs[119] > lrs[100]  # rising again past T_max, as the lesson shows


def test_one_cycle_simulation_and_refusal_past_its_end():
    rec = sched_lrs(partial(S.OneCycleLR, max_lr=0.06, total_steps=100), 100)
    assert max(rec["lr"]) == pytest.approx(0.06, rel=1e-3) and min(rec["mom"]) == pytest.approx(0.85, abs=2e-3)
    with pytest.raises(ValueError, match="OneCycleLR"):
        sched_lrs(partial(S.OneCycleLR, max_lr=0.06, total_steps=100), 101)
    assert "mom" not in sched_lrs(partial(S.StepLR, step_size=2), 5)


def test_plot_sched_writes_png(tmp_path):
    plot_sched(partial(S.CosineAnnealingLR, T_max=10), 12, tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_sched_func_presets_and_unknown_name():
    make, step = sched_func("plateau", 0.1)
    assert step == "epoch" and make.func is S.ReduceLROnPlateau
    with pytest.raises(ValueError, match=r"unknown scheduler 'Cosine'.*CosineAnnealingLR"):
        sched_func("Cosine", 0.1)


def test_bad_steps():
    with pytest.raises(ValueError, match="steps"):
        sched_lrs(partial(S.StepLR, step_size=2), 0)


def fit_recorded(make_sched, n_epochs=3, cb_cls=BatchSchedCB, opt_func=None, **rec):
    torch.manual_seed(0)
    recorder = RecorderCB(**(rec or {"lr": lr_of(0), "mom": mom_of(0), "loss": loss_value}))
    opt_func = opt_func or partial(Adam)
    learn = Learner(tiny_model(), tiny_dls(n=64, bs=16), lr=0.01, cbs=[recorder, MetricsCB()], opt_func=opt_func)
    learn.fit(n_epochs, cbs=[cb_cls(make_sched)])
    return recorder, learn


def test_recorded_lr_is_what_the_scheduler_set_no_off_by_one():
    make = partial(S.OneCycleLR, max_lr=0.05)
    recorder, learn = fit_recorded(make)
    assert len(recorder.recs["lr"]) == 12  # 4 batches x 3 epochs
    assert recorder.recs["lr"] == pytest.approx(sched_lrs(partial(S.OneCycleLR, max_lr=0.05), 12)["lr"])
    assert recorder.recs["lr"][0] == pytest.approx(0.05 / 25)  # the first batch trains at the start lr


@pytest.mark.parametrize("opt_func", [partial(Adam), partial(torch.optim.AdamW)], ids=["lrlab", "torch"])
def test_one_cycle_beta1_moves_opposite_to_lr(opt_func):
    make = partial(S.OneCycleLR, max_lr=0.05, pct_start=0.5)
    recorder, _ = fit_recorded(make, n_epochs=5, opt_func=opt_func)
    lrs, moms = recorder.recs["lr"], recorder.recs["mom"]
    peak = lrs.index(max(lrs))
    assert moms[0] == pytest.approx(0.95) and moms[peak] == pytest.approx(0.85) and moms[-1] == pytest.approx(0.95)
    assert all((b - a) * (d - c) <= 0 for a, b, c, d in zip(lrs, lrs[1:], moms, moms[1:]))


def test_epoch_scheduler_steps_once_per_epoch():
    recorder, _ = fit_recorded(partial(S.CosineAnnealingLR), cb_cls=EpochSchedCB)
    lrs = recorder.recs["lr"]
    per_epoch = [lrs[i : i + 4] for i in range(0, 12, 4)]
    assert all(len(set(chunk)) == 1 for chunk in per_epoch)
    expected = [0.01 * (1 + math.cos(math.pi * t / 3)) / 2 for t in range(3)]
    assert [chunk[0] for chunk in per_epoch] == pytest.approx(expected)


def test_plateau_steps_with_valid_loss_and_needs_metrics():
    torch.manual_seed(0)
    metrics = MetricsCB()
    learn = Learner(tiny_model(), tiny_dls(n=64, bs=16), lr=0.01, cbs=[metrics])
    # mode="max" on a falling valid loss: every epoch after the first looks like no progress
    cb = EpochSchedCB(partial(S.ReduceLROnPlateau, mode="max", patience=0, factor=0.5))
    learn.fit(4, cbs=[cb])
    losses = [row["valid_loss"] for row in metrics.history]
    assert all(b < a for a, b in zip(losses, losses[1:]))
    assert cb.sched.best == pytest.approx(losses[0])
    assert learn.opt.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5**3)
    bare = Learner(tiny_model(), tiny_dls(), lr=0.1)
    with pytest.raises(ValueError, match="MetricsCB"):
        bare.fit(1, cbs=[EpochSchedCB(partial(S.ReduceLROnPlateau))])


def test_schedule_over_planned_steps_ends_mid_epoch():
    lr = partial(S.OneCycleLR, max_lr=0.05)
    recorder = RecorderCB(lr=lr_of(0))
    learn = Learner(tiny_model(), tiny_dls(n=64, bs=16), lr=0.01, cbs=[recorder])  # 4 batches an epoch
    learn.fit(3, cbs=[BatchSchedCB(lr, n_steps=6), StepLimitCB(6)])
    assert recorder.recs["lr"] == pytest.approx(sched_lrs(lr, 6)["lr"])  # the whole cycle in 1.5 epochs
    recorder = RecorderCB(lr=lr_of(0))
    Learner(tiny_model(), tiny_dls(n=64, bs=16), lr=0.01, cbs=[recorder]).fit(3, cbs=[BatchSchedCB(lr, n_steps=6)])
    lrs = recorder.recs["lr"]  # no StepLimitCB: the fit goes on at the schedule's last lr instead of failing
    assert len(lrs) == 12 and lrs[6:] == pytest.approx([0.05 / 25 / 1e4] * 6)  # OneCycleLR's final lr
    with pytest.raises(ValueError, match="n_steps must be a positive integer or None, got 0"):
        BatchSchedCB(lr, n_steps=0)


def test_deadline_schedule_keeps_pace_with_the_clock():
    lr = partial(S.OneCycleLR, max_lr=0.05)
    full = sched_lrs(lr, 20)["lr"]
    on_time = DeadlineSchedCB(lr, n_steps=20, seconds=1e9)  # the batches end first: the plain schedule
    recorder = RecorderCB(lr=lr_of(0))
    Learner(tiny_model(), tiny_dls(n=64, bs=16), lr=0.01, cbs=[recorder]).fit(9, cbs=[on_time])
    assert recorder.recs["lr"] == pytest.approx(full) and (on_time.trained, on_time.skipped) == (20, 0)
    ticks = itertools.count()  # each batch takes 1 s of a 10-s deadline: twice slower than the 20 planned
    late = DeadlineSchedCB(lr, n_steps=20, seconds=10, clock=lambda: float(next(ticks)))
    recorder = RecorderCB(lr=lr_of(0))
    Learner(tiny_model(), tiny_dls(n=64, bs=16), lr=0.01, cbs=[recorder]).fit(9, cbs=[late])
    assert recorder.recs["lr"] == pytest.approx(full[::2])  # every other position, down to the annealed end
    assert (late.trained, late.skipped) == (10, 10)
    with pytest.raises(ValueError, match="seconds must be positive, got 0"):
        DeadlineSchedCB(lr, n_steps=20, seconds=0)


def test_schedule_shorter_than_fit_raises_before_training():
    learn = Learner(tiny_model(), tiny_dls(n=64, bs=16), lr=0.01)
    before = [p.clone() for p in learn.model.parameters()]
    with pytest.raises(ValueError, match="lasts 5 steps but this fit needs 12"):
        learn.fit(3, cbs=[BatchSchedCB(partial(S.OneCycleLR, max_lr=0.1, total_steps=5))])
    assert all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))


def test_one_cycle_without_momentum_turns_cycling_off():
    opt = torch.optim.Adagrad([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = build_sched(partial(S.OneCycleLR, max_lr=0.1), opt, 10)
    assert sched.total_steps == 10 and not sched.cycle_momentum


def test_fit_one_cycle_peaks_at_lr_max():
    torch.manual_seed(0)
    recorder = RecorderCB(lr=lr_of(0))
    learn = Learner(tiny_model(), tiny_dls(n=64, bs=16), lr=0.01, cbs=[recorder])
    fit_one_cycle(learn, 2, 0.2)
    assert max(recorder.recs["lr"]) == pytest.approx(0.2, rel=0.05)
    assert learn.cbs == [recorder]


def test_recorder_plot_writes_png(tmp_path):
    recorder, _ = fit_recorded(partial(S.OneCycleLR, max_lr=0.05))
    recorder.plot(tmp_path / "rec.png")
    assert (tmp_path / "rec.png").stat().st_size > 5000


def test_lr_find_restores_everything_bit_for_bit(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
    )
    learn = Learner(model, tiny_dls(n=256, bs=16), lr=0.01, opt_func=partial(Adam))
    learn.fit(1)  # an optimizer with state
    state = {k: v.clone() for k, v in model.state_dict().items()}
    opt_state = {
        k: {n: t.clone() if torch.is_tensor(t) else t for n, t in v.items()}
        for k, v in learn.opt.state_dict()["state"].items()
    }
    result = lr_find(learn, start_lr=1e-5, max_lr=1.0)
    assert len(result.lrs) >= 3 and result.lrs[1] == pytest.approx(result.lrs[0] * 1.3)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    for k, v in learn.opt.state_dict()["state"].items():
        for n, t in v.items():
            assert torch.equal(t, opt_state[k][n]) if torch.is_tensor(t) else t == opt_state[k][n]
    assert learn.opt.param_groups[0]["lr"] == 0.01 and learn.cbs == []
    result.plot(tmp_path / "f.png")
    assert (tmp_path / "f.png").exists()


def test_lr_find_then_training_equals_training_without_it():
    def train(find: bool):
        torch.manual_seed(0)
        learn = Learner(tiny_model(), tiny_dls(n=128, bs=16), lr=0.01, opt_func=partial(Adam))
        if find:
            lr_find(learn, start_lr=1e-5, max_lr=1.0)
        learn.fit(2)
        return [p.detach().clone() for p in learn.model.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(train(True), train(False)))


def test_suggestions_on_a_known_curve():
    lrs = [1e-6 * 1.3**i for i in range(60)]
    # flat, then falls steadily between lr 1e-4 and 1e-1, then blows up
    losses = [
        2.0 if lr < 1e-4 else 2.0 - 0.5 * math.log10(lr / 1e-4) if lr < 1e-1 else 0.5 + 10 * (lr - 0.1) for lr in lrs
    ]
    assert 1e-4 < steepest(lrs, losses) < 1e-1
    assert 1e-3 < valley(lrs, losses) < 1e-1
    assert smooth([1.0, 2.0, 3.0], half_window=1) == pytest.approx([1.5, 2.0, 2.5])


def test_finder_rejects_bad_range():
    with pytest.raises(ValueError, match="start_lr"):
        LRFinderCB(start_lr=1.0, max_lr=0.1)
    with pytest.raises(ValueError, match="mult"):
        LRFinderCB(mult=1.0)
