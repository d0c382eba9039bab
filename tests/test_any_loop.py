"""lrlab's tools in a plain PyTorch loop (no Learner), on a non-image dataset built from tensors."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lrlab.data.loaders import DataLoaders
from lrlab.optim import SGD, Adam
from lrlab.schedules import sched_lrs
from lrlab.schedules.hyperparams import HyperRecorder, applied_hypers
from lrlab.train.callbacks.lr_finder import lr_find
from lrlab.train.learner import Learner
from lrlab.tuning.auto_anneal import AutoAnneal
from lrlab.tuning.auto_lr import AutoLR


def tabular(n: int = 2048, n_features: int = 20, n_classes: int = 4, seed: int = 0):
    """Features and labels from a random two-layer teacher: learnable, well above chance, not trivial."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_features, generator=g)
    teacher = torch.randn(n_features, 32, generator=g), torch.randn(32, n_classes, generator=g)
    y = (torch.tanh(x @ teacher[0]) @ teacher[1]).argmax(1)
    return x, y


def tabular_dls(bs: int = 64) -> DataLoaders:
    x, y = tabular()
    return DataLoaders.from_tensors(x[:1536], y[:1536], x[1536:], y[1536:], batch_size=bs, seed=1)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 4))


def train_epoch(model, opt, data, scheduler=None) -> list[float]:
    """The plain PyTorch loop: nothing of lrlab's in it but the optimizer and the scheduler given."""
    model.train()
    losses = []
    for xb, yb in data:
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if scheduler is not None:
            scheduler.step(loss) if isinstance(scheduler, (AutoAnneal, AutoLR)) else scheduler.step()
        losses.append(float(loss.detach()))
    return losses


def accuracy(model, data) -> float:
    model.eval()
    with torch.no_grad():
        hits = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in data)
    return hits / sum(len(yb) for _, yb in data)


def snapshot(model, opt) -> tuple:
    return copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())


def test_lr_find_in_a_plain_loop_restores_everything_and_matches_the_learner():
    dls = tabular_dls()
    model = mlp()
    opt = Adam(model.parameters(), lr=1e-3)
    train_epoch(model, opt, dls.train)  # optimizer state to keep
    recorder = HyperRecorder(opt)
    before, rng, position = snapshot(model, opt), torch.get_rng_state(), dls.train.state_dict()
    found = lr_find(model, F.cross_entropy, dls.train, opt, start_lr=1e-5, max_lr=10.0)
    weights, opt_state = snapshot(model, opt)
    assert all(torch.equal(weights[k], v) for k, v in before[0].items())
    assert str(opt_state) == str(before[1]) and torch.equal(torch.get_rng_state(), rng)
    assert dls.train.state_dict() == position and recorder["lr"] == []  # its hooks did not see the finder
    assert 1e-4 < found.suggestion < 1.0 and found.losses[-1] > 3 * min(found.losses) or found.lrs[-1] > 5

    # the same ramp through a Learner on the same model, optimizer and loader: the same lrs and losses
    learn = Learner(model, dls, loss_func=F.cross_entropy, lr=1e-3)
    learn.opt = opt
    via_learner = lr_find(learn, start_lr=1e-5, max_lr=10.0)
    assert via_learner.lrs == found.lrs and via_learner.losses == pytest.approx(found.losses, rel=1e-6)
    assert via_learner.suggestion == found.suggestion


def test_lr_find_refuses_half_a_plain_loop():
    with pytest.raises(TypeError, match="give all four"):
        lr_find(mlp(), F.cross_entropy)
    with pytest.raises(ValueError, match="no batch"):
        model = mlp()
        lr_find(model, F.cross_entropy, [], SGD(model.parameters(), lr=0.1))


def test_lr_find_refuses_an_optimizer_of_another_model_and_a_generator_that_runs_dry():
    dls = tabular_dls()
    model, other = mlp(), mlp()
    with pytest.raises(ValueError, match="the optimizer holds none of the model's parameters"):
        lr_find(model, F.cross_entropy, dls.train, Adam(other.parameters(), lr=1e-3))
    one_pass = (batch for batch in dls.train)  # 24 batches, once: the ramp needs 62 from 1e-5
    with pytest.raises(ValueError, match=r"the data ended after 24 batches, before the ramp reached max_lr 10"):
        lr_find(model, F.cross_entropy, one_pass, Adam(model.parameters(), lr=1e-3), start_lr=1e-5)
    found = lr_find(model, F.cross_entropy, list(dls.train), Adam(model.parameters(), lr=1e-3), start_lr=1e-5)
    assert len(found.lrs) > 24  # a list starts again: the same batches, the whole ramp


def test_a_fit_that_leaves_nan_weights_warns():
    x, y = tabular()
    x[5, 3] = float("nan")  # one bad feature in one row
    dls = DataLoaders.from_tensors(x[:1536], y[:1536], x[1536:], y[1536:], batch_size=64, seed=1)
    learn = Learner(mlp(), dls, loss_func=F.cross_entropy, lr=1e-3)
    with pytest.warns(RuntimeWarning, match=r"4 of the model's parameter tensors hold NaN or inf \(first: 0.weight\)"):
        learn.fit(1)
    clean = Learner(mlp(), tabular_dls(), loss_func=F.cross_entropy, lr=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean.fit(1)


def test_recorder_records_what_a_torch_scheduler_applied_and_the_preview_agrees(tmp_path):
    dls = tabular_dls()
    model = mlp()
    opt = Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=2 * len(dls.train))
    preview = sched_lrs(sched, steps=2 * len(dls.train))  # simulated on a copy: the real one is untouched
    recorder = HyperRecorder(opt)
    for _ in range(2):
        train_epoch(model, opt, dls.train, sched)
    assert recorder["lr"] == pytest.approx(preview["lr"], rel=1e-12)
    assert recorder["momentum"] == pytest.approx(preview["mom"], rel=1e-12)  # beta1 cycled by OneCycleLR
    assert set(recorder["beta2"]) == {0.999} and set(recorder["weight_decay"]) == {1e-4}
    recorder.plot(tmp_path / "hyper.png")
    assert (tmp_path / "hyper.png").stat().st_size > 1000


def test_annealer_in_a_plain_loop_trains_records_and_resumes_exactly(tmp_path):
    dls = tabular_dls()

    def run(epochs: int, state=None):
        model = mlp()
        opt = Adam(model.parameters(), lr=3e-2)
        annealer = AutoAnneal(opt, measure="noise", every=8, warmup=24)
        recorder = HyperRecorder(opt)
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            annealer.load_state_dict(state["annealer"])
            dls.train.load_state_dict(state["loader"])
        else:
            dls.train.load_state_dict({"seed": 1, "epoch": 0, "skip": 0})
        for _ in range(epochs):
            train_epoch(model, opt, dls.train, annealer)
            annealer.epoch_end()
        state = {"model": model.state_dict(), "opt": opt.state_dict(), "annealer": annealer.state_dict(),
                 "loader": dls.train.state_dict()}  # fmt: skip
        return model, annealer, recorder, state

    model, annealer, recorder, _ = run(4)
    constant = mlp()
    constant_opt = Adam(constant.parameters(), lr=3e-2)
    dls.train.load_state_dict({"seed": 1, "epoch": 0, "skip": 0})
    for _ in range(4):
        train_epoch(constant, constant_opt, dls.train)
    annealed_acc, constant_acc = accuracy(model, dls.valid), accuracy(constant, dls.valid)
    assert annealed_acc > 0.7 and annealed_acc > constant_acc + 0.01, (annealed_acc, constant_acc)  # chance: 0.25
    lrs = recorder["lr"]
    assert lrs[:24] == pytest.approx([3e-2 * (i + 1) / 24 for i in range(24)])  # the warm-up, as applied
    fired = [d for d in annealer.decisions if d["new_lr"] < d["old_lr"]]
    assert fired and all(d["step"] > 24 and d["step"] % 8 == 0 for d in annealer.decisions)
    for d in fired:  # a decision after step s applies from step s + 1 on
        assert lrs[d["step"] - 1] == pytest.approx(d["old_lr"]) and lrs[d["step"]] == pytest.approx(d["new_lr"])
    assert all(d["loss"] is not None for d in annealer.decisions)

    torch.save(run(2)[3], tmp_path / "state.pt")  # stop after 2 epochs, resume from the file for 2 more
    resumed, resumed_annealer, _, _ = run(2, torch.load(tmp_path / "state.pt", weights_only=False))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), resumed.state_dict().values()))
    assert resumed_annealer.decisions == annealer.decisions


def test_annealer_refuses_bad_settings_by_name():
    opt = SGD(mlp().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="measure 'valid_loss' checks at epoch ends: give every=None"):
        AutoAnneal(opt, measure="valid_loss")
    with pytest.raises(ValueError, match="warmup must be a number of batches >= 0, got -1"):
        AutoAnneal(opt, warmup=-1)
    annealer = AutoAnneal(opt, measure="valid_loss", every=None)
    annealer.step()
    with pytest.raises(ValueError, match=r"needs epoch_end\(valid_loss=...\)"):
        annealer.epoch_end()
    annealer.remove()
    assert not opt._optimizer_step_pre_hooks


def test_applied_hypers_of_each_optimizer_family():
    params = [nn.Parameter(torch.zeros(2))]
    assert applied_hypers(SGD(params, lr=0.1).param_groups[0]) == {"lr": 0.1, "momentum": 0.0, "weight_decay": 0.0}
    group = torch.optim.Adam(params, lr=torch.tensor(0.01), betas=(0.8, 0.9)).param_groups[0]
    assert applied_hypers(group) == pytest.approx({"lr": 0.01, "momentum": 0.8, "beta2": 0.9, "weight_decay": 0.0})
    group = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.5).param_groups[0]
    assert applied_hypers(group, extra=("dampening", "absent")) == {
        "lr": 0.1, "momentum": 0.9, "weight_decay": 0.5, "dampening": 0.0}  # fmt: skip


def test_autolr_finds_its_lr_from_its_own_start_and_trains():
    dls = tabular_dls()
    model = mlp()
    opt = Adam(model.parameters())  # the optimizer's default lr: nothing chosen (AutoLR starts at 1e-4)
    auto = AutoLR(opt, every=8)
    assert auto.lr == 1e-4
    dls.train.load_state_dict({"seed": 1, "epoch": 0, "skip": 0})
    for _ in range(6):
        train_epoch(model, opt, dls.train, auto)
        auto.epoch_end()
    done = [e for e in auto.events if e["event"] == "search done"]
    assert len(done) == 1 and done[0]["lr"] == pytest.approx(done[0]["best_lr"] / 4) and done[0]["best_lr"] > 1e-3
    # it went back to a snapshot at least 10 steps before the smoothed loss's best, the latest such one
    assert done[0]["best_step"] - 15 <= done[0]["restored_to"] <= done[0]["best_step"] - 10
    assert not [e for e in auto.events if e["event"] == "restore"] and auto.decisions
    default = mlp()  # the same optimizer left at its default lr
    default_opt = Adam(default.parameters())
    dls.train.load_state_dict({"seed": 1, "epoch": 0, "skip": 0})
    for _ in range(6):
        train_epoch(default, default_opt, dls.train)
    assert accuracy(model, dls.valid) > accuracy(default, dls.valid) + 0.01


def test_autolr_restores_the_last_good_state_on_a_spike_and_a_nan():
    model = mlp()
    opt = Adam(model.parameters(), lr=1e-2)
    auto = AutoLR(opt, max_search=1, snapshot_every=5, factor=3.0)
    x, y = tabular(256)
    for i in range(12):
        loss = F.cross_entropy(model(x[i * 16 : (i + 1) * 16]), y[i * 16 : (i + 1) * 16])
        loss.backward()
        opt.step()
        opt.zero_grad()
        auto.step(loss)
    assert auto.phase == "anneal" and auto.snapshot["step"] == 10
    good = [t.clone() for t in auto.snapshot["params"]]  # the state after step 10, the last snapshot
    lr = auto.lr
    with torch.no_grad():  # a step that wrecks the weights, and its loss
        for p in model.parameters():
            p.add_(100.0)
    auto.step(1e6)
    auto.step(1e6)  # two in a row could still be batch noise: nothing restored yet
    assert auto.restores == 0 and not any(torch.equal(p, g) for p, g in zip(model.parameters(), good))
    auto.step(1e6)  # the third stays up: a divergence
    assert all(torch.equal(p, g) for p, g in zip(model.parameters(), good))
    assert auto.lr == pytest.approx(lr / 3) and auto.events[-1]["event"] == "restore"
    auto.step(float("nan"))
    assert auto.lr == pytest.approx(lr / 9) and auto.events[-1]["loss"] != auto.events[-1]["loss"]  # NaN


def test_autolr_resumes_exactly_and_refuses_bad_settings():
    dls = tabular_dls()

    def run(epochs: int, state=None):
        model = mlp()
        opt = Adam(model.parameters())
        auto = AutoLR(opt, every=8)
        if state is None:
            dls.train.load_state_dict({"seed": 1, "epoch": 0, "skip": 0})
        else:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            auto.load_state_dict(state["auto"])
            dls.train.load_state_dict(state["loader"])
        for _ in range(epochs):
            train_epoch(model, opt, dls.train, auto)
            auto.epoch_end()
        return model, auto, {"model": copy.deepcopy(model.state_dict()), "opt": copy.deepcopy(opt.state_dict()),
                             "auto": copy.deepcopy(auto.state_dict()), "loader": dls.train.state_dict()}  # fmt: skip

    full, full_auto, _ = run(3)
    resumed, resumed_auto, _ = run(2, run(1)[2])
    assert all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), resumed.state_dict().values()))
    assert resumed_auto.events == full_auto.events and resumed_auto.decisions == full_auto.decisions
    with pytest.raises(ValueError, match="grow must be > 1, got 0.9"):
        AutoLR(SGD(mlp().parameters(), lr=0.1), grow=0.9)
    with pytest.raises(ValueError, match="needs the batch's loss"):
        AutoLR(SGD(mlp().parameters(), lr=0.1)).step(None)


def test_autolr_plot_shows_lr_loss_and_statistic(tmp_path):
    dls = tabular_dls()
    model = mlp()
    opt = Adam(model.parameters())
    auto = AutoLR(opt, every=8)
    for _ in range(2):
        train_epoch(model, opt, dls.train, auto)
    assert len(auto.history["lr"]) == 2 * len(dls.train) == len(auto.history["loss"])
    fig = auto.plot(tmp_path / "autolr.png")
    assert (tmp_path / "autolr.png").stat().st_size > 5000 and len(fig.axes) == 3


def test_autolr_plot_of_a_budgeted_run_has_no_empty_statistic_panel(tmp_path):
    dls = tabular_dls()
    model = mlp()
    opt = Adam(model.parameters())
    auto = AutoLR(opt, total_steps=2 * len(dls.train))
    for _ in range(2):
        train_epoch(model, opt, dls.train, auto)
    assert auto.decisions == []
    fig = auto.plot(tmp_path / "budgeted.png")
    assert len(fig.axes) == 2 and fig.axes[-1].get_xlabel() == "step"
    assert (tmp_path / "budgeted.png").stat().st_size > 5000


def test_autolr_told_the_runs_length_holds_its_lr_then_decays_to_zero_and_resumes_exactly(tmp_path):
    dls = tabular_dls()  # 24 batches an epoch
    total = 24 * 6

    def run(epochs: int, state=None):
        model = mlp()
        opt = Adam(model.parameters())
        auto = AutoLR(opt, total_steps=total, decay=0.5)
        if state is None:
            dls.train.load_state_dict({"seed": 1, "epoch": 0, "skip": 0})
        else:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            auto.load_state_dict(state["auto"])
            dls.train.load_state_dict(state["loader"])
        for _ in range(epochs):
            train_epoch(model, opt, dls.train, auto)
            auto.epoch_end()
        return model, auto, {"model": copy.deepcopy(model.state_dict()), "opt": copy.deepcopy(opt.state_dict()),
                             "auto": copy.deepcopy(auto.state_dict()), "loader": dls.train.state_dict()}  # fmt: skip

    model, auto, _ = run(6)
    done = next(e for e in auto.events if e["event"] == "search done")
    decay = next(e for e in auto.events if e["event"] == "decay")
    lrs = auto.history["lr"]
    assert decay["step"] == total // 2 and not auto.decisions  # no noise annealer: the budget decides
    assert lrs[done["step"] : total // 2] == pytest.approx([done["lr"]] * (total // 2 - done["step"]))  # held
    assert lrs[total // 2] == pytest.approx(done["lr"] * (total - total // 2) / (total // 2))
    assert lrs[-1] == pytest.approx(done["lr"] / (total // 2)) and auto.lr == 0.0  # linearly to zero
    marks = {(line.get_xdata()[0], line.get_color()) for line in auto.plot(tmp_path / "a.png").axes[0].lines[1:]}
    assert marks == {(done["step"], "C2"), (decay["step"], "C1")}  # the search's end and the decay's start
    resumed, resumed_auto, _ = run(3, run(3)[2])  # cut mid-hold... and the decay continues exactly
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), resumed.state_dict().values()))
    assert resumed_auto.events == auto.events
    with pytest.raises(ValueError, match="total_steps must be an integer >= 1 or None, got 0"):
        AutoLR(Adam(mlp().parameters()), total_steps=0)
    with pytest.raises(ValueError, match=r"decay must be a fraction in \(0, 1\], got 1.5"):
        AutoLR(Adam(mlp().parameters()), total_steps=10, decay=1.5)


def test_autolr_average_is_the_moving_average_from_the_search_end_and_swaps_in_and_out():
    dls = tabular_dls()  # 24 batches an epoch
    total = 24 * 4
    model = mlp()
    opt = Adam(model.parameters())
    auto = AutoLR(opt, total_steps=total, average=0.25, max_search=30)
    dls.train.load_state_dict({"seed": 1, "epoch": 0, "skip": 0})
    expected, count = None, 0  # the same average, kept by hand: rate 1 / (0.25 x its steps x lr / peak)
    for _ in range(3):  # three of the four epochs: mid-decay, the average is not yet the live weights
        for xb, yb in dls.train:
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()
            searching = auto.phase == "search"
            auto.step(loss)
            if expected is not None:
                count += 1
                rate = 1 / max(1.0, 0.25 * count * auto.lr / auto.peak)
                expected = [m.lerp(p.detach(), rate) for m, p in zip(expected, model.parameters())]
            elif searching and auto.phase != "search":  # the search ended here: the average starts at its weights
                expected = [p.detach().clone() for p in model.parameters()]
    assert expected is not None and auto.average_params is not None
    assert all(torch.allclose(a, e, atol=1e-7) for a, e in zip(auto.average_params, expected))
    live = [p.detach().clone() for p in model.parameters()]
    assert not all(torch.equal(a, p) for a, p in zip(auto.average_params, live))
    assert auto.use_average() and not auto.use_average()  # in once; a second call changes nothing
    assert all(torch.equal(p, a) for p, a in zip(model.parameters(), auto.average_params))
    assert accuracy(model, dls.valid) > 0.6  # a trained model (untrained: 0.25)
    with pytest.raises(RuntimeError, match="call use_live"):
        auto.step(1.0)
    auto.use_live()
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), live))
    with pytest.raises(ValueError, match="average must be a fraction in \\(0, 1\\] of a known total_steps"):
        AutoLR(Adam(mlp().parameters()), average=0.1)
    with pytest.raises(ValueError, match="got average=0, total_steps=10"):
        AutoLR(Adam(mlp().parameters()), total_steps=10, average=0)
