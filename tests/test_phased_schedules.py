"""WarmupStableDecay and PhasedLR: the factors by hand, previews equal to what a training run records (the
metric-driven one given the run's metrics), exact resume mid-plateau, and one-line refusals."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from lrlab.data.loaders import DataLoaders
from lrlab.optim import Adam
from lrlab.schedules import sched_func, sched_lrs
from lrlab.schedules.phased import PhasedLR, WarmupStableDecay
from lrlab.train.callbacks import BatchSchedCB, MetricsCB, RecorderCB
from lrlab.train.callbacks.recorder import lr_of
from lrlab.train.learner import Learner


def one_param_opt(lr: float = 0.1) -> torch.optim.Optimizer:
    return Adam([torch.zeros(1, requires_grad=True)], lr=lr)


def test_wsd_factors_by_hand():
    lrs = sched_lrs(partial(WarmupStableDecay, warmup=4, decay=5), 20, lr=0.1)["lr"]
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert lrs[4:15] == pytest.approx([0.1] * 11)
    assert lrs[15:] == pytest.approx([0.08, 0.06, 0.04, 0.02, 0.0])
    cosine = sched_lrs(partial(WarmupStableDecay, total_steps=10, warmup=0, decay=0.4, decay_shape="cosine",
                               floor=0.1), 10, lr=1.0)["lr"]  # fmt: skip
    assert cosine[6:] == pytest.approx([0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in (1, 2, 3, 4)])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(total_steps=10, warmup=6, decay=6), r"warm-up \(6\) and decay \(6\) steps exceed total_steps \(10\)"),
        (dict(total_steps=10, decay_shape="step"), "decay_shape must be one of linear, cosine, sqrt, got 'step'"),
        (dict(total_steps=10, floor=2.0), r"floor must be a number in \[0, 1\]"),
        (dict(total_steps=0), "total_steps must be an integer >= 1, got 0"),
    ],
)
def test_wsd_refuses_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WarmupStableDecay(one_param_opt(), **kwargs)


def regression_learner(make_sched, lr: float = 0.05, seed: int = 0) -> tuple[Learner, RecorderCB, MetricsCB, object]:
    """A small noisy linear regression: 8 batches an epoch, a validation loss that soon stops improving."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(320, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.5 * torch.randn(320, generator=g)
    dls = DataLoaders.from_tensors(x[:256], y[:256, None], x[256:], y[256:, None], batch_size=32)
    torch.manual_seed(seed)
    recorder, metrics, sched = RecorderCB(lr=lr_of(0)), MetricsCB(accuracy=False), BatchSchedCB(make_sched)
    learn = Learner(torch.nn.Linear(4, 1), dls, loss_func=torch.nn.functional.mse_loss, lr=lr,
                    cbs=[recorder, metrics, sched], opt_func=Adam)  # fmt: skip
    return learn, recorder, metrics, sched


def test_wsd_preview_equals_what_a_run_records():
    make = partial(WarmupStableDecay, warmup=0.1, decay=0.3, decay_shape="sqrt")
    learn, recorder, _, _ = regression_learner(make)
    learn.fit(6)
    assert recorder.recs["lr"] == pytest.approx(sched_lrs(make, 48, lr=0.05)["lr"], rel=1e-12)


def test_phased_preview_given_the_runs_metrics_equals_what_the_run_records():
    make = partial(PhasedLR, warmup=8, decay=16, patience=0, threshold=0.2, factor=0.5)
    learn, recorder, metrics, sched_cb = regression_learner(make, lr=0.5)
    learn.fit(12)
    reports = {8 * (e + 1): row["valid_loss"] for e, row in enumerate(metrics.history)}
    preview = sched_lrs(make, 96, lr=0.5, reports=reports)["lr"]
    assert recorder.recs["lr"] == pytest.approx(preview, rel=1e-12)
    recorded = recorder.recs["lr"]
    assert recorded[7] == pytest.approx(0.5) and min(recorded[8:80]) < 0.5  # a cut in the plateau phase
    assert sched_cb.sched.cuts and recorded[-1] < recorded[80]


def test_phased_resume_mid_plateau_is_exact():
    def drive(sched, opt, steps, start):
        out = []
        for k in range(start, start + steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
            if (k + 1) % 10 == 0:  # a validation every 10 steps, worse and worse after the first few
                sched.report(1.0 + 0.01 * max(0, k - 30))
        return out

    opt = one_param_opt()
    sched = PhasedLR(opt, total_steps=200, warmup=10, decay=40, patience=1)
    whole = drive(sched, opt, 200, 0)
    opt2 = one_param_opt()
    first = PhasedLR(opt2, total_steps=200, warmup=10, decay=40, patience=1)
    part = drive(first, opt2, 105, 0)
    assert first.phase() == "plateau" and first.cuts and first.bad_reports == 1  # stopped mid-plateau, mid-count
    state, opt_state = first.state_dict(), opt2.state_dict()
    opt3 = one_param_opt()
    opt3.load_state_dict(opt_state)
    resumed = PhasedLR(opt3, total_steps=200, warmup=10, decay=40, patience=1)
    resumed.load_state_dict(state)
    assert part + drive(resumed, opt3, 95, 105) == whole
    assert resumed.cuts == sched.cuts


def test_phased_refusals_and_presets():
    with pytest.raises(ValueError, match="factor must be a number in"):
        PhasedLR(one_param_opt(), total_steps=10, factor=1.5)
    sched = PhasedLR(one_param_opt(), total_steps=10)
    with pytest.raises(ValueError, match="needs a finite metric, got nan"):
        sched.report(float("nan"))
    make, step = sched_func("phased", 0.1, patience=2)
    assert step == "batch" and make.func is PhasedLR
    assert sched_func("wsd", 0.1)[0].func is WarmupStableDecay


def test_cli_sched_plot_previews_wsd(tmp_path, capsys):
    from lrlab.cli.main import main

    assert main(["sched-plot", "wsd", "--steps", "100", "--opt", "warmup=10", "--out", str(tmp_path / "w.png")]) == 0
    assert (tmp_path / "w.png").exists()


def test_hyper_scheduler_preview_equals_what_the_optimizer_applied_and_resumes_exactly():
    from lrlab.schedules.hyperparams import HyperRecorder
    from lrlab.schedules.phased import HyperScheduler, Ramp

    hypers = dict(beta1=Ramp(0.95, 0.85), beta2=Ramp(0.99, 0.999, "linear"), weight_decay=Ramp(0.0, 0.1, "linear"))
    makers = [partial(WarmupStableDecay, warmup=5, decay=10), partial(HyperScheduler, **hypers)]
    preview = sched_lrs(makers, 40, lr=0.01)

    def loop(steps, state=None):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        opt = Adam(model.parameters(), lr=0.01)
        scheds = [make(opt, total_steps=40) for make in makers]
        if state is not None:
            opt.load_state_dict(state["opt"])
            model.load_state_dict(state["model"])
            for sched, s in zip(scheds, state["scheds"]):
                sched.load_state_dict(s)
        recorder = HyperRecorder(opt)
        for _ in range(steps):
            model(torch.randn(8, 3)).pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
            for sched in scheds:
                sched.step()
        state = {"opt": opt.state_dict(), "model": model.state_dict(), "scheds": [s.state_dict() for s in scheds]}
        return recorder, state

    recorder, _ = loop(40)
    assert recorder["lr"] == pytest.approx(preview["lr"], rel=1e-12)
    assert recorder["momentum"] == pytest.approx(preview["mom"], rel=1e-12)
    assert recorder["beta2"] == pytest.approx(preview["beta2"], rel=1e-12)
    assert recorder["weight_decay"] == pytest.approx(preview["weight_decay"], rel=1e-12)
    assert preview["mom"][0] == 0.95 and preview["mom"][-1] == pytest.approx(0.85)
    first, state = loop(17)
    rest, _ = loop(23, state)
    for key in ("lr", "momentum", "beta2", "weight_decay"):
        assert first[key] + rest[key] == recorder[key]


def test_hyper_scheduler_refuses_what_it_cannot_schedule():
    from lrlab.schedules.phased import HyperScheduler, Ramp

    with pytest.raises(ValueError, match="cannot schedule 'lr'; choose from momentum, beta1, beta2, weight_decay"):
        HyperScheduler(one_param_opt(), total_steps=10, lr=Ramp(1, 0))
    sgd = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="SGD has no 'betas' to schedule"):
        HyperScheduler(sgd, total_steps=10, beta1=Ramp(0.9, 0.8))
    with pytest.raises(ValueError, match="a ramp's shape must be linear or cosine"):
        Ramp(0, 1, "step")


def test_cli_sched_plot_ramps_other_hyperparameters_and_draws_constant(tmp_path, capsys):
    from lrlab.cli.main import main

    args = ["sched-plot", "wsd", "--steps", "200", "--opt", "warmup=20", "--hyper", "weight_decay=0:0.1:linear",
            "--hyper", "beta1=0.95:0.85", "--out", str(tmp_path / "w.png")]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "lr starts 0.003, max 0.06, min 0, ends 0; momentum 0.85..0.95; weight_decay 0..0.1" in out
    assert main(["sched-plot", "constant", "--steps", "10", "--out", str(tmp_path / "c.png")]) == 0
    assert "max 0.06, min 0.06" in capsys.readouterr().out and (tmp_path / "c.png").exists()
    with pytest.raises(SystemExit):
        main(["sched-plot", "wsd", "--hyper", "lr=1:0"])
    assert "NAME one of momentum, beta1, beta2, weight_decay, got 'lr=1:0'" in capsys.readouterr().err


def test_cli_fit_with_wsd_and_a_weight_decay_ramp(tmp_path, data_dir):
    from lrlab.cli.main import main

    args = ["fit", "--sched", "wsd", "--hyper", "weight_decay=0:0.05:linear", "--epochs", "1", "--n-train", "4096",
            "--n-valid", "500", "--no-progress", "--data-dir", str(data_dir),
            "--run-dir", str(tmp_path / "run")]  # fmt: skip
    assert main(args) == 0
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert state["opt"]["param_groups"][0]["weight_decay"] == pytest.approx(0.05)  # ramped to its end


@pytest.mark.parametrize("cls", [WarmupStableDecay, PhasedLR])
def test_a_run_too_short_for_a_decay_phase_steps_to_its_end(cls):
    # `lrlab fit --sched phased --sched-step epoch --epochs 1`: one step in all, so no warm-up and no decay
    opt = one_param_opt()
    sched = cls(opt, total_steps=1)
    assert sched.decay_steps == 0 and sched.get_last_lr() == [0.1]
    opt.step()
    sched.step()  # past the last step: ZeroDivisionError before
    assert sched.get_last_lr() == [0.0]
