"""NAdam, RAdam and Lion: parity with torch's NAdam and RAdam over 100 steps on two param groups with weight
decay, Lion against a float64 transcription of the paper's algorithm, the rules on Python floats, and real
training of the lesson CNN."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from lrlab.models import lesson_cnn
from lrlab.optim import OPTIMIZERS
from lrlab.optim.since_adam import Lion, NAdam, RAdam, lion_rule, nadam_rule, radam_rule
from lrlab.train.callbacks import MetricsCB, fit_one_cycle
from lrlab.train.learner import Learner
from tests.test_optim import SHAPES, assert_rel, grad_stream, init_params, run


def groups(lr_a: float, lr_b: float, wd: float):
    """Two param groups with their own lr; weight decay on the first."""
    return lambda ps: [{"params": ps[:1], "lr": lr_a, "weight_decay": wd}, {"params": ps[1:], "lr": lr_b}]


@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_nadam_matches_torch_over_100_steps(wd):
    init, grads = init_params(), grad_stream(SHAPES, 100)
    hp = dict(betas=(0.8, 0.99), eps=1e-6, momentum_decay=4e-3)
    ours, _ = run(lambda ps: NAdam(groups(1e-2, 3e-3, wd)(ps), **hp), init, grads)
    theirs, _ = run(lambda ps: torch.optim.NAdam(groups(1e-2, 3e-3, wd)(ps), decoupled_weight_decay=True, **hp),
                    init, grads)  # fmt: skip
    assert_rel(ours, theirs, 1e-6)


@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_radam_matches_torch_over_100_steps_through_its_switch(wd):
    init, grads = init_params(), grad_stream(SHAPES, 100)
    hp = dict(betas=(0.9, 0.99), eps=1e-6)  # rho_t passes 5 at step 6: both branches are exercised
    ours, _ = run(lambda ps: RAdam(groups(1e-2, 3e-3, wd)(ps), **hp), init, grads)
    theirs, _ = run(lambda ps: torch.optim.RAdam(groups(1e-2, 3e-3, wd)(ps), decoupled_weight_decay=True, **hp),
                    init, grads)  # fmt: skip
    assert_rel(ours, theirs, 1e-6)


def lion_float64(init, grads, lr, betas, wd):
    """Lion as the paper's Algorithm 2 writes it, in float64, written out here independently."""
    beta1, beta2 = betas
    params = [t.double().clone() for t in init]
    moms = [torch.zeros_like(p) for p in params]
    for step in grads:
        for i, g in enumerate(step):
            g = g.double()
            c = beta1 * moms[i] + (1 - beta1) * g
            params[i] = params[i] - lr * (torch.sign(c) + wd * params[i])
            moms[i] = beta2 * moms[i] + (1 - beta2) * g
    return params


@pytest.mark.parametrize("dtype, rel", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_lion_matches_the_papers_algorithm_over_100_steps(dtype, rel):
    init, grads = init_params(dtype), grad_stream(SHAPES, 100, dtype=dtype)
    ours, _ = run(lambda ps: Lion(ps, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1), init, grads)
    # float32 against the float64 reference: 100 steps of float32 rounding (about 2e-6 here), nothing more
    assert_rel(ours, lion_float64(init, grads, 1e-3, (0.9, 0.99), 0.1), rel)


def test_the_rules_run_on_python_floats():
    p, m = lion_rule(1.0, -2.0, 0.5, lr=0.1)
    assert p == pytest.approx(0.9) and m == pytest.approx(0.99 * 0.5 - 0.01 * 2.0)  # sign(0.45 - 0.2) = +1
    p, m, s = radam_rule(1.0, 2.0, 0.0, 0.0, 1, lr=0.1)  # first step: rho_1 < 5, plain momentum
    assert p == pytest.approx(1.0 - 0.1 * 2.0) and s == pytest.approx(0.001 * 4.0)
    p, m, s, mu_product = nadam_rule(1.0, 2.0, 0.0, 0.0, 1.0, 1, lr=0.1)
    assert p < 1.0 and 0 < mu_product < 1


def test_they_are_registered_and_refuse_compile():
    assert {"nadam", "radam", "lion"} <= set(OPTIMIZERS)
    with pytest.raises(ValueError, match="Lion has no compiled path yet"):
        Lion([torch.zeros(2, requires_grad=True)], compile=True)


@pytest.mark.parametrize("opt_func, lr", [(NAdam, 2e-2), (RAdam, 2e-2), (partial(Lion, betas=(0.95, 0.98)), 3e-3)],
                         ids=["nadam", "radam", "lion"])  # fmt: skip
@pytest.mark.slow
def test_each_trains_the_lesson_cnn_above_088_in_3_epochs(opt_func, lr, data_dir):
    from lrlab.data import get_dls

    torch.manual_seed(0)
    metrics = MetricsCB()
    learn = Learner(lesson_cnn(), get_dls(256, data_dir=data_dir), lr=lr, cbs=[metrics], opt_func=opt_func)
    fit_one_cycle(learn, 3, lr)  # the lesson's recipe: one-cycle to lr (Lion's smaller, with its paper's betas)
    assert metrics.history[-1]["valid_acc"] > 0.88, metrics.history[-1]
