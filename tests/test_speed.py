"""Fast to a good model: mixed precision, the ResNets, batch augmentation, TTA, and the time budget."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from lrlab.apps.speedrun import Recipe, seconds_per_batch, seconds_to_evaluate, speedrun
from lrlab.cli.main import main
from lrlab.data import get_dls
from lrlab.models import get_model, lesson_cnn, n_params
from lrlab.optim import Adam
from lrlab.train.callbacks import MetricsCB
from lrlab.train.callbacks.schedule import fit_one_cycle
from lrlab.train.callbacks.speed import TTACB, BatchAugmentCB, MixedPrecisionCB, StepLimitCB, TimeBudgetCB
from lrlab.train.learner import Callback, Learner
from tests.conftest import tiny_dls


def test_model_family():
    assert 1.1e6 < n_params(get_model("resnet")) < 1.3e6
    assert 2.5e5 < n_params(get_model("resnet-small")) < 3.5e5
    for name in ("cnn", "cnn-wide", "resnet", "resnet-small"):
        assert get_model(name)(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="unknown model 'vgg'; choose one of cnn"):
        get_model("vgg")


@pytest.mark.slow
def test_bf16_autocast_trains_as_well_as_fp32(data_dir):
    """Same seed, data order and epochs; only the arithmetic differs."""
    dls = get_dls(256, data_dir=data_dir)
    accs = {}
    for name, cbs in (("fp32", []), ("bf16", [MixedPrecisionCB()])):
        torch.manual_seed(0)
        dls.train.epoch = 0
        metrics = MetricsCB()
        learn = Learner(
            lesson_cnn(), dls, lr=6e-2, cbs=[metrics, *cbs], opt_func=partial(Adam, eps=1e-5, weight_decay=1e-2)
        )
        fit_one_cycle(learn, 5, 6e-2)
        accs[name] = metrics.history[-1]["valid_acc"]
    assert abs(accs["bf16"] - accs["fp32"]) <= 0.003, accs
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())  # weights stay fp32


def test_autocast_really_computes_in_bf16_and_closes_its_context():
    seen = []

    class Spy(Callback):
        def after_pred(self, learn):
            seen.append((learn.preds.dtype, torch.is_autocast_enabled("cpu")))

    Learner(lesson_cnn(), tiny_dls(), lr=1e-2, cbs=[MixedPrecisionCB(channels_last=True), Spy()]).fit(1)
    assert seen and all(dtype == torch.bfloat16 and on for dtype, on in seen)
    assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="float16 autocast needs CUDA"):
        Learner(lesson_cnn(), tiny_dls(), lr=1e-2, cbs=[MixedPrecisionCB(torch.float16)]).fit(1)


def test_augmentation_changes_training_batches_only():
    dls = tiny_dls(n=64, bs=16)
    seen = {"train": [], "valid": []}

    class Spy(Callback):
        order = 0

        def before_batch(self, learn):
            seen["train" if learn.training else "valid"].append(learn.batch[0].clone())

    Learner(lesson_cnn(), dls, lr=1e-2, cbs=[BatchAugmentCB(pad=2, erase=0.5), Spy()]).fit(1)
    valid = torch.cat([x for x, _ in dls.valid])
    assert torch.equal(torch.cat(seen["valid"]), valid)
    assert len(seen["train"]) == 4 and seen["train"][0].shape == (16, 1, 28, 28)


def test_augment_ops():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4) + 1
    flipped = BatchAugmentCB(pad=0, flip=True)
    torch.manual_seed(0)
    out = flipped.augment(x)
    assert all(torch.equal(o, i) or torch.equal(o, i.flip(2)) for o, i in zip(out, x))
    for fill, border in ((0.0, 0.0), (None, 1.0)):  # None: the batch's darkest value (its background)
        out = BatchAugmentCB(pad=1, flip=False, fill=fill).augment(x)
        assert not torch.equal(out, x)  # (seeded) at least one image moved, so its border shows
        for o, i in zip(out, x):  # a shifted window of the padded image
            padded = torch.nn.functional.pad(i, (1, 1, 1, 1), value=border)
            assert any(torch.equal(o, padded[:, dy : dy + 4, dx : dx + 4]) for dy in range(3) for dx in range(3))
    erased = BatchAugmentCB(pad=0, flip=False, erase=1.0).augment(x)
    assert all((e == 0).any() for e in erased) and (erased == x).logical_or(erased == 0).all()


def test_tta_averages_the_image_and_its_mirror():
    model = lesson_cnn().eval()
    dls = tiny_dls(n=16, bs=16)
    learn = Learner(model, dls, lr=1e-2)
    learn.batch, learn.training = next(iter(dls.valid)), False
    TTACB().predict(learn)
    with torch.no_grad():
        x = learn.batch[0]
        expected = ((model(x).softmax(1) + model(x.flip(3)).softmax(1)) / 2).log()
    assert torch.allclose(learn.preds, expected, atol=1e-6)


class TickClock:
    """A clock that advances by `tick` seconds each time it is read: time-dependent logic, tested the same way
    on an idle machine and on a busy one."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def test_time_budget_stops_training():
    class Count(Callback):
        seen = 0

        def after_batch(self, learn):
            self.seen += 1

    budget, count = TimeBudgetCB(0.5, reserve=0.1, clock=TickClock(0.01)), Count()
    Learner(lesson_cnn(), tiny_dls(n=4096, bs=16), lr=1e-2, cbs=[budget, count]).fit(50, valid=False)
    assert budget.stopped_early and count.seen == 40  # 0.4 s of budget, one 0.01-s read per batch


def test_planning_times_batches_without_training_the_model():
    model, dls = lesson_cnn(), tiny_dls(n=512, bs=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    per_batch = seconds_per_batch(Recipe("cnn", lr=1e-2), dls, model, clock=TickClock(0.1))
    assert per_batch == pytest.approx(0.1)  # timed over batches 4.. until 12 batches and 1 s have passed
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BatchNorm statistics too
    assert dls.train.epoch == 0


def test_evaluation_time_is_estimated_from_a_few_batches():
    model, dl = lesson_cnn(), tiny_dls(n=256 * 8, bs=256).valid
    assert len(dl) == 8
    # 3 batches (after one of warm-up) read as 0.6 s: 0.2 s a batch, 1.6 s for the 8 batches
    assert seconds_to_evaluate(model, dl, clock=TickClock(0.6)) == pytest.approx(1.6)
    assert seconds_to_evaluate(model, tiny_dls(n=256, bs=256).valid, clock=TickClock(0.6)) == pytest.approx(0.6)


def test_step_limit_stops_in_the_middle_of_an_epoch():
    class Count(Callback):
        seen = 0

        def after_batch(self, learn):
            self.seen += learn.training

    count = Count()
    Learner(lesson_cnn(), tiny_dls(n=64, bs=16), lr=1e-2, cbs=[count, StepLimitCB(6)]).fit(3)
    assert count.seen == 6  # 1.5 of the 3 epochs
    with pytest.raises(ValueError, match="n_steps must be a positive integer, got 2.5"):
        StepLimitCB(2.5)


@pytest.mark.parametrize("compile_model", [False, True])
@pytest.mark.slow
def test_speedrun_plans_within_its_budget_by_its_clock(data_dir, compile_model):
    """Each read of the clock costs 0.02 s: one per timed batch and per trained batch, so the plan, the deadline
    and the report follow the rule whatever else the machine does."""
    recipe = Recipe("cnn", lr=2e-2, augment={"pad": 1, "flip": True}, compile=compile_model)
    result = speedrun(12, data_dir=data_dir, recipe=recipe, log=lambda s: None, clock=TickClock(0.02))
    assert result["wall"] <= 12 and result["test_acc"] > 0.85 and result["test_acc_tta"] > 0.85
    assert result["steps_trained"] + result["steps_skipped"] == result["steps"]  # the schedule ran to its end
    assert result["steps"] == result["steps_trained"] > 400  # a clock that keeps to the plan: nothing skipped
    with pytest.raises(ValueError, match="unknown budget 61"):
        speedrun(61)


@pytest.mark.slow
def test_cli_fit_with_speed_options(data_dir, tmp_path, capsys):
    args = ["fit", "--model", "resnet-small", "--bf16", "--augment", "--tta", "--label-smoothing", "0.1",
            "--epochs", "1", "--n-train", "2048", "--n-valid", "500", "--lr", "0.01"]  # fmt: skip
    assert main([*args, "--data-dir", str(data_dir), "--run-dir", str(tmp_path)]) == 0
    assert "resnet-small" in capsys.readouterr().out
