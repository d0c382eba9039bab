"""Muon, Schedule-Free AdamW and AdEMAMix: parity with torch.optim.Muon, the schedulefree package and a float64
transcription of AdEMAMix's paper over 100 steps on two param groups with weight decay, and real training of
the lesson CNN."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from lrlab.models import lesson_cnn
from lrlab.optim import OPTIMIZERS, Adam
from lrlab.optim.muon import Muon, newton_schulz
from lrlab.optim.schedule_free import ScheduleFreeAdamW
from lrlab.optim.since_adam import AdEMAMix, ademamix_warmup
from lrlab.train.callbacks import MetricsCB, fit_one_cycle
from lrlab.train.callbacks.lrfree import ScheduleFreeCB
from lrlab.train.learner import Learner
from tests.test_optim import SHAPES, assert_rel, grad_stream, init_params, run

MATRICES = [(16, 8), (8, 16), (10, 10)]


def matrix_groups(lr_a: float, lr_b: float, wd: float):
    return lambda ps: [{"params": ps[:2], "lr": lr_a, "weight_decay": wd}, {"params": ps[2:], "lr": lr_b}]


@pytest.mark.parametrize("nesterov, adjust", [(True, "original"), (False, "match_rms_adamw")])
def test_muon_equals_torch_over_100_steps(nesterov, adjust):
    grads = grad_stream(MATRICES, 100)
    init = [torch.randn(s, generator=torch.Generator().manual_seed(7)) for s in MATRICES]
    hp = dict(momentum=0.9, nesterov=nesterov)
    ours, _ = run(lambda ps: Muon(matrix_groups(2e-2, 5e-3, 0.05)(ps), adjust_lr=adjust, **hp), init, grads)
    theirs, _ = run(lambda ps: torch.optim.Muon(matrix_groups(2e-2, 5e-3, 0.05)(ps), adjust_lr_fn=adjust, **hp),
                    init, grads)  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))  # bit for bit: the same ops in the same order


def test_muon_trains_other_parameters_with_adamw_and_flattens_filters():
    init, grads = init_params(), grad_stream(SHAPES, 20)  # (4, 3), (5,), (2, 3, 3)
    ours, opt = run(lambda ps: Muon(ps, lr=0.02, adam_lr=3e-3, adam_betas=(0.8, 0.99), adam_weight_decay=0.01), init,
                    grads)  # fmt: skip
    assert [g["use_muon"] for g in opt.param_groups] == [True, False]
    assert [len(g["params"]) for g in opt.param_groups] == [2, 1]
    adam, _ = run(lambda ps: Adam(ps, lr=3e-3, betas=(0.8, 0.99), weight_decay=0.01, impl="reference"), [init[1]],
                  [[step[1]] for step in grads])  # fmt: skip
    assert torch.equal(ours[1], adam[0])  # the vector went to AdamW, step for step
    # a 3-D weight is orthogonalized as its (2, 9) matrix: the step's singular values are near 1
    p = torch.zeros(2, 3, 3, requires_grad=True)
    p.grad = torch.randn(2, 3, 3)
    Muon([p], lr=1.0, weight_decay=0.0, momentum=0.0, nesterov=False).step()
    singular = torch.linalg.svdvals(p.detach().reshape(2, 9))
    assert torch.all((singular > 0.5) & (singular < 1.5)), singular
    expected = newton_schulz(p.grad.reshape(2, 9)).float().reshape(2, 3, 3)
    assert torch.allclose(-p.detach(), expected)


def test_muon_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="adjust_lr must be 'original' or 'match_rms_adamw', got 'rms'"):
        Muon([torch.zeros(2, 2, requires_grad=True)], adjust_lr="rms")
    with pytest.raises(ValueError, match="ns_steps must be an integer from 1 to 99, got 0"):
        Muon([torch.zeros(2, 2, requires_grad=True)], ns_steps=0)
    opt = Muon([torch.zeros(2, 2, requires_grad=True)])
    opt.add_param_group({"params": [torch.zeros(3, requires_grad=True), torch.zeros(2, 2, requires_grad=True)]})
    assert [g["use_muon"] for g in opt.param_groups] == [True, True, False]  # split like the constructor's


def test_schedule_free_adamw_matches_the_schedulefree_package_through_train_and_eval():
    import schedulefree

    init, grads = init_params(), grad_stream(SHAPES, 100)
    hp = dict(lr=1e-2, betas=(0.9, 0.99), weight_decay=0.05, warmup_steps=10)

    def drive(make):
        params = [t.clone().requires_grad_() for t in init]
        opt = make([{"params": params[:2]}, {"params": params[2:], "lr": 3e-2}])
        opt.train()
        seen = []
        for k, step in enumerate(grads):
            for p, g in zip(params, step):
                p.grad = g.clone()
            opt.step()
            if k % 25 == 24:  # evaluate at x, then back to y
                opt.eval()
                seen += [p.detach().clone() for p in params]
                opt.train()
        return seen + [p.detach().clone() for p in params]

    ours = drive(lambda groups: ScheduleFreeAdamW(groups, **hp))
    theirs = drive(lambda groups: schedulefree.AdamWScheduleFree(groups, **hp))
    assert_rel(ours, theirs, 1e-6)


def test_schedule_free_adamw_steps_only_in_train_mode():
    opt = ScheduleFreeAdamW([torch.zeros(2, requires_grad=True)])
    opt.eval()
    with pytest.raises(RuntimeError, match=r"call optimizer.train\(\) before training"):
        opt.step()


def ademamix_float64(init, grads, lr, betas, beta3, alpha, eps, wd, warmup):
    """AdEMAMix as the paper's Algorithm 1 and its reference schedulers write it (alpha linear, beta3 by a
    linear half-life), in float64, written out here independently."""
    beta1, beta2 = betas

    def half_life(beta):
        return math.log(0.5) / math.log(beta) - 1

    params = [t.double().clone() for t in init]
    m1, m2, v = ([torch.zeros_like(p) for p in params] for _ in range(3))
    for t, step in enumerate(grads, start=1):
        a = min(t / warmup, 1.0) if warmup else 1.0
        alpha_t = a * alpha
        beta3_t = 0.5 ** (1 / ((1 - a) * half_life(beta1) + a * half_life(beta3) + 1)) if warmup else beta3
        for i, g in enumerate(step):
            g = g.double()
            m1[i] = beta1 * m1[i] + (1 - beta1) * g
            m2[i] = beta3_t * m2[i] + (1 - beta3_t) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            m_hat, v_hat = m1[i] / (1 - beta1**t), v[i] / (1 - beta2**t)
            params[i] = params[i] - lr * ((m_hat + alpha_t * m2[i]) / (v_hat.sqrt() + eps) + wd * params[i])
    return params


@pytest.mark.parametrize("warmup", [0, 60])
@pytest.mark.parametrize("dtype, rel", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_ademamix_matches_the_papers_algorithm_over_100_steps(warmup, dtype, rel):
    init, grads = init_params(dtype), grad_stream(SHAPES, 100, dtype=dtype)
    hp = dict(lr=1e-2, betas=(0.9, 0.99), beta3=0.999, alpha=4.0, eps=1e-8, weight_decay=0.05, warmup=warmup)
    ours, _ = run(lambda ps: AdEMAMix(ps, **hp), init, grads)
    reference = ademamix_float64(init, grads, hp["lr"], hp["betas"], hp["beta3"], hp["alpha"], hp["eps"],
                                 hp["weight_decay"], warmup)  # fmt: skip
    assert_rel(ours, reference, rel)
    assert ademamix_warmup(0, 4.0, 0.9, 0.999, 60) == (0.0, pytest.approx(0.9))  # the slow EMA starts as beta1


def test_they_are_registered():
    assert {"ademamix", "muon", "schedulefree_adamw"} <= set(OPTIMIZERS)


@pytest.mark.parametrize(
    "opt_func, lr, schedule_free",
    [
        (partial(Muon, weight_decay=0.0), 2e-2, False),
        # 3 epochs are ~700 steps: the slow EMA gets a memory of that order (beta3 0.999), not the paper's 10,000
        (partial(AdEMAMix, alpha=1.0, beta3=0.999), 1e-2, False),
        (partial(ScheduleFreeAdamW, warmup_steps=100), 1e-2, True),
    ],
    ids=["muon", "ademamix", "schedulefree_adamw"],
)
@pytest.mark.slow
def test_each_trains_the_lesson_cnn_above_088_in_3_epochs(opt_func, lr, schedule_free, data_dir):
    from lrlab.data import get_dls

    torch.manual_seed(0)
    metrics = MetricsCB()
    cbs = [metrics, ScheduleFreeCB()] if schedule_free else [metrics]
    learn = Learner(lesson_cnn(), get_dls(256, data_dir=data_dir), lr=lr, cbs=cbs, opt_func=opt_func)
    if schedule_free:
        learn.fit(3)  # no schedule: that is the point
    else:
        fit_one_cycle(learn, 3, lr)
    assert metrics.history[-1]["valid_acc"] > 0.88, metrics.history[-1]


def test_cli_fit_with_schedule_free_adamw_validates_at_the_averaged_weights(tmp_path, data_dir, capsys):
    from lrlab.cli.main import main

    args = ["fit", "--opt", "schedulefree_adamw", "--sched", "constant", "--lr", "0.01", "--epochs", "2",
            "--n-train", "8192", "--n-valid", "1000", "--no-progress", "--data-dir", str(data_dir),
            "--run-dir", str(tmp_path / "run")]  # fmt: skip
    assert main(args) == 0
    import json

    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["history"][-1]["valid_acc"] > 0.7, metrics["history"]
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert state["opt"]["param_groups"][0]["train_mode"] is False  # saved in eval mode: the averaged weights
