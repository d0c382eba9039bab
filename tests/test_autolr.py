"""AutoLR needs no lr for real: the same run from any starting lr, a spike judged against the loss's noise,
restores that are bounded, loud failures, and the best-validated weights handed over on data that overfits."""

from __future__ import annotations

import math
import random
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lrlab.apps.bench import parse_config, run_one
from lrlab.data.loaders import DataLoaders
from lrlab.data.workloads import get_workload, mean_mse
from lrlab.train.callbacks import MetricsCB
from lrlab.train.callbacks.anneal import AutoLRCB
from lrlab.train.callbacks.evaluate import validate
from lrlab.train.learner import Learner
from lrlab.tuning.auto_lr import AutoLR, AutoLRError
from lrlab.tuning.keep_best import KeepBest
from lrlab.tuning.loss_watch import LossWatch


def classifier_dls(bs: int = 32) -> DataLoaders:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(640, 10, generator=g)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()
    return DataLoaders.from_tensors(x[:512], y[:512], x[512:], y[512:], batch_size=bs, seed=1)


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))


def train_plain(opt_lr: float, epochs: int = 8) -> tuple[nn.Module, AutoLR]:
    """A plain loop with AutoLR on an optimizer built at opt_lr."""
    dls, model = classifier_dls(), net()
    opt = torch.optim.Adam(model.parameters(), lr=opt_lr)
    auto = AutoLR(opt, total_steps=epochs * len(dls.train))
    for _ in range(epochs):
        for xb, yb in dls.train:
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()
            auto.step(loss)
    return model, auto


def test_the_run_is_the_same_from_any_lr_the_optimizer_starts_at():
    reference, auto = train_plain(1e-3)
    assert auto.history["lr"][0] == 1e-4 and any(e["event"] == "search done" for e in auto.events)
    for lr in (1e-4, 1e-1, 0.0, 1e3):
        model, _ = train_plain(lr)
        assert all(torch.equal(a, b) for a, b in zip(reference.parameters(), model.parameters())), lr
    hits = sum(int((reference(x).argmax(1) == y).sum()) for x, y in classifier_dls().valid)
    assert hits / 128 > 0.8  # it trained (a majority guess: 0.45)


def test_a_learner_at_lr_1e3_or_1e_12_trains_as_at_1e_3():
    def fit(lr: float) -> tuple[Learner, AutoLRCB]:
        cb = AutoLRCB(average=None)
        learn = Learner(net(), classifier_dls(), loss_func=F.cross_entropy, lr=lr, cbs=[MetricsCB(), cb])
        return learn.fit(8), cb

    (reference, _), (huge, cb) = fit(1e-3), fit(1e3)
    assert all(torch.equal(a, b) for a, b in zip(reference.model.parameters(), huge.model.parameters()))
    assert cb.summary()["start_lr"] == 1e-4 and cb.summary()["found_lr"] < 1.0  # not raised to 3138 as it was
    assert huge.cb(MetricsCB).history[-1]["valid_acc"] > 0.8
    zero, _ = fit(1e-12)  # lrlab's optimizers refuse lr 0 (a plain loop's torch Adam at 0: the test above)
    assert all(torch.equal(a, b) for a, b in zip(reference.model.parameters(), zero.model.parameters()))


def noisy_near_zero(n: int, seed: int = 0) -> list[float]:
    """Batch losses of a classifier that fits its data: mostly ~1e-3, and now and then one misread example."""
    rng = random.Random(seed)
    return [1e-3 * rng.lognormvariate(0, 0.5) + (0.05 if rng.random() < 0.05 else 0.0) for _ in range(n)]


def test_near_zero_loss_noise_is_not_a_spike_but_a_divergence_is():
    losses = [2.3 * 0.97**i for i in range(60)] + noisy_near_zero(400)
    new, old = LossWatch(), LossWatch(noise_z=0.0, floor=0.0)  # old: "4x the moving average" alone
    fired_new, fired_old = 0, 0
    for value in losses:
        for watch in (new, old):
            spiked = watch.is_spike(value)
            if not spiked:
                watch.add(value)
            fired_new += spiked and watch is new
            fired_old += spiked and watch is old
    assert fired_old >= 10 and fired_new == 0  # the old rule fires on ordinary noise; the new one does not
    assert new.is_spike(3.0) and new.is_spike(math.nan) and new.is_spike(math.inf)  # back above the start
    assert not new.is_spike(0.02)  # 20x the average, but under a tenth of the starting loss
    with pytest.raises(ValueError, match="noise_z and floor must be >= 0, got -1 and 0.1"):
        LossWatch(noise_z=-1)


def test_autolr_near_zero_loss_does_not_restore_on_noise():
    model = net()
    opt = torch.optim.Adam(model.parameters())
    auto = AutoLR(opt, max_search=20, total_steps=500)
    for value in [2.3 * 0.9**i for i in range(40)] + noisy_near_zero(460):
        auto.step(value)
    assert auto.restores == 0 and auto.peak == pytest.approx(auto.events[0]["lr"])  # never cut


def test_restores_are_bounded_then_finite_spikes_pass_and_nan_raises():
    model = net()
    opt = torch.optim.Adam(model.parameters())
    auto = AutoLR(opt, max_search=12, max_restores=2, every=1000)
    for i in range(30):
        auto.step(2.0 * 0.98**i)
    found = auto.lr
    auto.step(1e6)  # one alone is batch noise: skipped, nothing restored
    for _ in range(10):
        auto.step(0.5)
    assert auto.restores == 0 and auto.lr == found
    for _ in range(2):  # three in a row make a divergence; then 10 ordinary steps (the averages settle again)
        for _ in range(3):
            auto.step(1e6)
        for _ in range(10):
            auto.step(0.5)
    assert auto.restores == 2 and auto.lr == pytest.approx(found / 9)
    for _ in range(3):  # a third: the lr is already two cuts down
        auto.step(1e6)
    assert auto.restores == 2 and auto.events[-1]["event"] == "spike ignored" and auto.lr == pytest.approx(found / 9)
    with pytest.raises(AutoLRError, match=r"the loss is nan at step 71 after 2 restores .* not an lr problem"):
        auto.step(math.nan)  # a non-finite loss needs no confirmation


def test_a_loss_that_is_nan_from_the_start_is_a_clear_error():
    auto = AutoLR(torch.optim.Adam(net().parameters()))
    with pytest.raises(AutoLRError, match="the loss is nan at the starting weights, before any update"):
        auto.step(math.nan)


def test_a_run_longer_than_total_steps_is_a_clear_error():
    auto = AutoLR(torch.optim.Adam(net().parameters()), total_steps=60)
    for i in range(60):
        auto.step(1.0 / (i + 1))
    assert auto.lr == 0.0
    with pytest.raises(AutoLRError, match="step 61 is past total_steps=60: the decay has ended at lr 0"):
        auto.step(0.01)


def test_another_hand_on_the_lr_is_a_clear_error():
    model = net()
    opt = torch.optim.Adam(model.parameters())
    auto = AutoLR(opt)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    auto.step(1.0)
    opt.step()
    sched.step()
    with pytest.raises(AutoLRError, match="the optimizer's lr is .*, not the .* AutoLR set: something else"):
        auto.step(1.0)
    learn = Learner(net(), classifier_dls(), loss_func=F.cross_entropy, cbs=[AutoLRCB(), AutoLRCB()])
    with pytest.raises(ValueError, match="two AutoLRCBs on one Learner would both set the lr; attach one"):
        learn.fit(1)


def test_a_short_run_searches_faster_and_a_too_short_one_warns():
    opt = torch.optim.Adam(net().parameters())
    assert AutoLR(opt).grow == 1.1 and AutoLR(opt, total_steps=2000).grow == 1.1
    assert AutoLR(opt, total_steps=100).grow == pytest.approx(1e5 ** (1 / 35))
    with pytest.warns(UserWarning, match="AutoLR: a run of 12 steps is too short to search an lr"):
        AutoLR(opt, total_steps=12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AutoLR(opt, total_steps=50)
    with pytest.raises(ValueError, match="start_lr must be a positive number, got 0"):
        AutoLR(opt, start_lr=0)
    with pytest.raises(ValueError, match="start_lr must be a positive number, got True"):
        AutoLR(opt, start_lr=True)  # --sched-arg start_lr=true reads as a boolean
    with pytest.raises(ValueError, match="max_restores must be an integer >= 0, got -1"):
        AutoLR(opt, max_restores=-1)


def test_keep_best_hands_back_the_best_weights_and_buffers_only_when_clearly_better():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    keeper = KeepBest(model, tolerance=0.01)
    assert keeper.observe(1.0, "start") and keeper.observe(0.5, 0) and not keeper.observe(0.6, 1)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.add_(3.0)
    assert keeper.restore(0.504) is None  # within 1% of the best: the final weights stay
    assert not torch.equal(model[1].running_mean, best["1.running_mean"])
    assert keeper.restore(0.7) == {"event": "restored best validation", "at": 0, "best": 0.5, "final": 0.7}
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
    assert not keeper.observe(math.nan, 2) and keeper.clearly_worse(math.nan)
    accuracy = KeepBest(model, higher_is_better=True, tolerance=0.005)
    accuracy.observe(0.9, 0)
    assert accuracy.clearly_worse(0.89) and not accuracy.clearly_worse(0.896)
    copy = KeepBest(model)
    copy.load_state_dict(keeper.state_dict())
    assert copy.best == 0.5 and copy.best_label == 0 and copy.history == keeper.history
    with pytest.raises(ValueError, match="tolerance must be >= 0, got -0.1"):
        KeepBest(model, tolerance=-0.1)


@pytest.fixture(scope="module")
def small_reg_runs() -> dict[str, list[dict]]:
    workload = get_workload("small-reg")
    runs = {c: [run_one(workload, parse_config(c), seed) for seed in range(3)] for c in ("autolr_avg@1e-3",)}
    runs["onecycle@1e-3"] = [run_one(workload, parse_config("onecycle@1e-3"), seed) for seed in range(3)]
    return runs


def test_on_small_data_that_overfits_autolr_hands_over_its_best_validated_weights(small_reg_runs):
    """make_regression, 300 rows, batch 32, 60 epochs: the found lr fits the noise within ~10 epochs. The
    best-validated weights come back, below the mean predictor on every seed, and at or below tuned
    one-cycle (its best lr of the grid here is 1e-3)."""
    workload = get_workload("small-reg")
    trivial = mean_mse(workload.loaders(0))
    for run in small_reg_runs["autolr_avg@1e-3"]:
        restored = [e for e in run["events"] if e["event"] == "restored best validation"]
        assert len(restored) == 1 and restored[0]["final"] > 1.2 * restored[0]["best"]
        assert run["final"] == pytest.approx(restored[0]["best"], rel=1e-5) and run["final"] < trivial
        assert run["history"][-1]["valid_loss"] == pytest.approx(restored[0]["final"], rel=1e-5)
        assert not [e for e in run["events"] if e["event"] == "restore"]  # no divergence on tiny epochs
    autolr = sum(r["final"] for r in small_reg_runs["autolr_avg@1e-3"]) / 3
    onecycle = sum(r["final"] for r in small_reg_runs["onecycle@1e-3"]) / 3
    assert autolr <= onecycle


def test_without_validation_aware_weights_the_same_run_ends_overfit():
    workload = get_workload("small-reg")
    torch.manual_seed(0)
    dls = workload.loaders(0)
    cb = AutoLRCB(keep_best=False)
    learn = Learner(workload.model(), dls, loss_func=workload.loss_func, cbs=[MetricsCB(accuracy=False), cb])
    learn.fit(workload.epochs)
    assert cb.restored is None and cb.keeper is None
    final, _ = validate(learn.model, dls.valid, workload.loss_func, accuracy=False)
    best = min(row["valid_loss"] for row in learn.cb(MetricsCB).history)
    assert final > 1.2 * best  # what keep_best hands back instead


def test_the_start_is_a_candidate_so_a_fit_never_ends_below_the_untrained_model():
    workload = get_workload("small-reg")
    torch.manual_seed(0)
    dls = workload.loaders(0)
    # an lr far too high from the start (the search skipped): training only makes validation worse
    cb = AutoLRCB(start_lr=3.0, max_search=1, average=None, max_restores=0)
    learn = Learner(workload.model(), dls, loss_func=workload.loss_func, cbs=[MetricsCB(accuracy=False), cb])
    untrained, _ = validate(learn.model, dls.valid, workload.loss_func, accuracy=False)
    learn.fit(5)  # 50 steps: enough to search (a shorter run holds a sound default instead)
    assert cb.restored is not None and cb.restored["at"] == "start"
    final, _ = validate(learn.model, dls.valid, workload.loss_func, accuracy=False)
    assert final == pytest.approx(untrained, rel=1e-6)


def test_small_data_workloads_are_in_the_suite_with_their_trivial_baselines():
    for name, metric, baseline in (("small-class", "accuracy", 0.325), ("small-reg", "mse", 0.8403)):
        workload = get_workload(name)
        dls = workload.loaders(0)
        assert workload.metric == metric and len(dls.train.ds) == 300 and len(dls.valid.ds) == 200
        assert workload.baseline(dls) == pytest.approx(baseline, abs=1e-4)
        assert workload.epochs == 60 and workload.batch_size == 32 and len(dls.train) == 10


def test_a_run_too_short_to_search_holds_the_optimizers_default_lr_and_says_so():
    from lrlab.optim.classic import Momentum
    from lrlab.tuning.auto_lr import default_lr

    cases = [(torch.optim.SGD, 1e-3), (torch.optim.Adam, 1e-3), (Momentum, 1e-2), (torch.optim.Adagrad, 1e-2)]
    for cls, expected in cases:
        opt = cls(net().parameters(), lr=5.0)  # the lr it was built with is not the default
        assert default_lr(opt) == expected
        with pytest.warns(UserWarning, match=f"holds {cls.__name__}'s default lr {expected:g}, then decays it"):
            auto = AutoLR(opt, total_steps=20)
        assert auto.lr == expected and auto.phase == "hold" and auto.events[0]["event"] == "too short to search"
    model, x = net(), torch.randn(64, 10)
    y = (x[:, 0] > 0).long()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with pytest.warns(UserWarning):
        auto = AutoLR(opt, total_steps=20)
    for _ in range(20):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        auto.step(loss)
    assert auto.history["lr"][:10] == [1e-3] * 10 and auto.history["lr"][-1] == pytest.approx(1e-4)  # held, decayed
    assert auto.lr == 0


def test_autolr_on_generated_2d_data_in_a_plain_loop_beats_chance_by_far():
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=600, noise=0.2, random_state=0)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    opt = torch.optim.Adam(model.parameters())
    epochs, bs = 30, 16
    auto = AutoLR(opt, total_steps=epochs * (400 // bs))
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        order = torch.randperm(400, generator=g)
        for i in range(0, 400, bs):
            idx = order[i : i + bs]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            auto.step(loss)
    accuracy = float((model(x[400:]).argmax(1) == y[400:]).float().mean())
    assert accuracy > 0.95, accuracy
    assert auto.restores <= 1, auto.events  # batch noise of 16 rows is not a spike
