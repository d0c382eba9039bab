"""lrlab's optimizers: equal to torch.optim where the definitions coincide, to float64 references elsewhere."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lrlab.optim import (
    OPTIMIZERS,
    SGD,
    Adam,
    Momentum,
    RMSProp,
    adam_rule,
    get_opt_func,
    momentum_rule,
    rmsprop_rule,
    sgd_rule,
)


def grad_stream(shapes, steps, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=g, dtype=torch.float64).to(dtype) for s in shapes] for _ in range(steps)]


def run(make_opt, init, grads):
    """Feed the same gradients to an optimizer; return the parameters after each step's end."""
    params = [t.clone().requires_grad_() for t in init]
    opt = make_opt(params)
    for step in grads:
        for p, g in zip(params, step):
            p.grad = g.clone()
        opt.step()
    return [p.detach() for p in params], opt


def two_groups(lr_a, lr_b, **extra):
    def groups(params):
        return [{"params": params[:1], "lr": lr_a, **extra}, {"params": params[1:], "lr": lr_b}]

    return groups


SHAPES = [(4, 3), (5,), (2, 3, 3)]


def init_params(dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float64).to(dtype) for s in SHAPES]


def assert_rel(actual, expected, rel, atol=None):
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a.double(), e.double(), rtol=rel, atol=rel * 1e-2 if atol is None else atol)


@pytest.mark.parametrize("impl", ["foreach", "reference"])
@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_adam_matches_torch_over_100_steps_with_groups(impl, wd):
    init, grads = init_params(), grad_stream(SHAPES, 100)
    torch_cls = torch.optim.AdamW if wd else torch.optim.Adam
    hp = dict(betas=(0.8, 0.99), eps=1e-6, weight_decay=wd)
    ours, _ = run(lambda ps: Adam(two_groups(1e-2, 3e-3)(ps), impl=impl, **hp), init, grads)
    theirs, _ = run(lambda ps: torch_cls(two_groups(1e-2, 3e-3)(ps), **hp), init, grads)
    assert_rel(ours, theirs, 1e-6)


@pytest.mark.parametrize("impl", ["foreach", "reference"])
def test_sgd_matches_torch_with_weight_decay(impl):
    init, grads = init_params(), grad_stream(SHAPES, 100)
    ours, _ = run(lambda ps: SGD(ps, lr=0.01, weight_decay=0.1, impl=impl), init, grads)
    theirs, _ = run(lambda ps: torch.optim.SGD(ps, lr=0.01, weight_decay=0.1), init, grads)
    assert_rel(ours, theirs, 1e-5)


@pytest.mark.parametrize("impl", ["foreach", "reference"])
def test_rmsprop_matches_torch_without_weight_decay(impl):
    init, grads = init_params(), grad_stream(SHAPES, 100)
    ours, _ = run(lambda ps: RMSProp(ps, lr=1e-3, alpha=0.9, eps=1e-6, impl=impl), init, grads)
    theirs, _ = run(lambda ps: torch.optim.RMSprop(ps, lr=1e-3, alpha=0.9, eps=1e-6), init, grads)
    assert_rel(ours, theirs, 1e-6)


def reference64(kind, init, grads, lr, wd, beta=0.9, eps=1e-8):
    """Independent float64 loops written straight from the formulas (not through lrlab's rules)."""
    ps = [t.double().clone() for t in init]
    state = [torch.zeros_like(p) for p in ps]
    for step in grads:
        for i, g in enumerate(step):
            g = g.double()
            if kind == "momentum":
                state[i] = beta * state[i] + (1 - beta) * g
                ps[i] = ps[i] - lr * wd * ps[i] - lr * state[i]
            else:  # rmsprop with decoupled decay
                state[i] = beta * state[i] + (1 - beta) * g**2
                ps[i] = ps[i] - lr * wd * ps[i] - lr * g / (state[i].sqrt() + eps)
    return ps


@pytest.mark.parametrize("impl", ["foreach", "reference"])
def test_momentum_matches_float64_reference_of_the_lesson(impl):
    init, grads = init_params(), grad_stream(SHAPES, 100)
    ours, _ = run(lambda ps: Momentum(ps, lr=0.05, momentum=0.9, weight_decay=0.01, impl=impl), init, grads)
    assert_rel(ours, reference64("momentum", init, grads, 0.05, 0.01), 1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["foreach", "reference"])
def test_rmsprop_with_decoupled_decay_matches_float64_reference(impl):
    init, grads = init_params(), grad_stream(SHAPES, 100)
    ours, _ = run(lambda ps: RMSProp(ps, lr=1e-3, alpha=0.9, weight_decay=0.1, impl=impl), init, grads)
    assert_rel(ours, reference64("rmsprop", init, grads, 1e-3, 0.1), 1e-5, atol=1e-5)


def test_momentum_differs_from_torch_sgd_momentum_as_documented():
    """torch accumulates (buf = m*buf + g); the lesson damps (m*avg + (1-m)*g): first step 10x smaller."""
    init, grads = init_params(), grad_stream(SHAPES, 1)
    ours, _ = run(lambda ps: Momentum(ps, lr=1.0, momentum=0.9), init, grads)
    theirs, _ = run(lambda ps: torch.optim.SGD(ps, lr=1.0, momentum=0.9), init, grads)
    for o, t, p in zip(ours, theirs, init):
        torch.testing.assert_close((p - o) * 10, p - t, rtol=1e-5, atol=1e-6)


def test_rules_run_on_python_floats():
    assert sgd_rule(1.0, 2.0, lr=0.1) == pytest.approx((0.8,))
    p, m = momentum_rule(1.0, 2.0, 0.0, lr=0.1, momentum=0.9)
    assert (p, m) == pytest.approx((0.98, 0.2))
    p, s = rmsprop_rule(1.0, 2.0, 0.0, lr=0.1, alpha=0.75, eps=0.0)
    assert s == pytest.approx(1.0) and p == pytest.approx(0.8)
    p, m, s = adam_rule(1.0, 2.0, 0.0, 0.0, 1, lr=0.1, beta1=0.9, beta2=0.99, eps=0.0)
    assert p == pytest.approx(0.9) and m == pytest.approx(0.2) and s == pytest.approx(0.04)  # first step = lr*sign(g)


@settings(max_examples=25, deadline=None)
@given(
    lr=st.floats(1e-4, 1e-1),
    beta1=st.floats(0.0, 0.99),
    beta2=st.floats(0.5, 0.9999),
    eps=st.floats(1e-8, 1e-3),
    wd=st.floats(0.0, 0.1),
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_adam_foreach_equals_rule_and_torch_property(lr, beta1, beta2, eps, wd, shape, dtype):
    shapes = [tuple(shape), (3,)]
    g = torch.Generator().manual_seed(0)
    init = [torch.randn(s, generator=g, dtype=torch.float64).to(dtype) for s in shapes]
    grads = grad_stream(shapes, 10, dtype=dtype)
    hp = dict(lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=wd)
    fast, _ = run(lambda ps: Adam(ps, **hp), init, grads)
    ref, _ = run(lambda ps: Adam(ps, impl="reference", **hp), init, grads)
    theirs, _ = run(lambda ps: torch.optim.AdamW(ps, **hp), init, grads)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    assert_rel(fast, ref, tol)
    assert_rel(fast, theirs, tol)


@settings(max_examples=15, deadline=None)
@given(
    name=st.sampled_from(sorted(OPTIMIZERS)),
    lr=st.floats(1e-4, 1e-2),
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=3),
)
def test_bfloat16_params_track_the_float64_rule(name, lr, shape):
    """bfloat16 parameters: the fast path stays close to the rule computed in float64."""
    shapes = [tuple(shape)]
    init = [torch.randn(shapes[0], dtype=torch.float64)]
    grads = grad_stream(shapes, 5, dtype=torch.float64)
    low, opt = run(
        lambda ps: OPTIMIZERS[name](ps, lr=lr), [t.bfloat16() for t in init], [[g.bfloat16() for g in s] for s in grads]
    )
    high, _ = run(lambda ps: OPTIMIZERS[name](ps, lr=lr, impl="reference"), init, grads)
    assert low[0].dtype == torch.bfloat16 and opt.state[opt.param_groups[0]["params"][0]]["step"] == 5
    torch.testing.assert_close(low[0].double(), high[0], rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_state_dict_round_trip_is_bit_identical(name):
    init, grads = init_params(), grad_stream(SHAPES, 20)
    full, _ = run(lambda ps: OPTIMIZERS[name](two_groups(1e-2, 1e-3)(ps)), init, grads)
    first, opt = run(lambda ps: OPTIMIZERS[name](two_groups(1e-2, 1e-3)(ps)), init, grads[:8])
    saved = copy.deepcopy(opt.state_dict())
    params = [p.clone().requires_grad_() for p in first]
    fresh = OPTIMIZERS[name](two_groups(1e-2, 1e-3)(params))
    fresh.load_state_dict(saved)
    for step in grads[8:]:
        for p, g in zip(params, step):
            p.grad = g.clone()
        fresh.step()
    for a, b in zip(params, full):
        assert torch.equal(a.detach(), b)


def test_parameters_without_grad_are_skipped_and_bias_correction_is_per_parameter():
    a, b = torch.ones(3, requires_grad=True), torch.ones(3, requires_grad=True)
    opt = Adam([a, b], lr=0.1)
    a.grad = torch.ones(3)
    opt.step()
    assert torch.equal(b.detach(), torch.ones(3)) and b not in opt.state
    b.grad = torch.ones(3)
    opt.step()
    assert opt.state[a]["step"] == 2 and opt.state[b]["step"] == 1
    # b's first step is a full lr step (bias-corrected) like a's first step was
    torch.testing.assert_close(b.detach(), torch.full((3,), 0.9))


def test_closure_is_called_and_returned():
    p = torch.tensor([2.0], requires_grad=True)
    opt = SGD([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(4.0)
    assert p.item() == pytest.approx(2.0 - 0.1 * 4.0)


def test_zero_grad_sets_none():
    p = torch.ones(2, requires_grad=True)
    opt = Momentum([p])
    p.grad = torch.ones(2)
    opt.zero_grad()
    assert p.grad is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lr=-1.0), "lr"),
        (dict(lr=float("nan")), "lr"),
        (dict(betas=(1.0, 0.9)), r"betas\[0\]"),
        (dict(betas=(0.9, -0.1)), r"betas\[1\]"),
        (dict(betas=(0.9,)), "pair"),
        (dict(eps=-1e-8), "eps"),
        (dict(weight_decay=-0.1), "weight_decay"),
    ],
)
def test_bad_hyperparameters_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Adam([torch.ones(1, requires_grad=True)], **kwargs)


def test_bad_hyperparameters_in_added_group_and_others():
    opt = SGD([torch.ones(1, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": [torch.ones(1, requires_grad=True)], "lr": -2.0})
    with pytest.raises(ValueError, match="momentum"):
        Momentum([torch.ones(1, requires_grad=True)], momentum=1.5)
    with pytest.raises(ValueError, match="alpha"):
        RMSProp([torch.ones(1, requires_grad=True)], alpha=1.0)
    with pytest.raises(ValueError, match="empty parameter list"):
        Adam([])
    with pytest.raises(ValueError, match="impl"):
        Adam([torch.ones(1, requires_grad=True)], impl="fast")
    with pytest.raises(ValueError, match="unknown optimizer 'adamx'.*adam"):
        get_opt_func("adamx")


def test_get_opt_func_builds_with_lr():
    opt = get_opt_func("adam", eps=1e-5)([torch.ones(1, requires_grad=True)], 0.3)
    assert isinstance(opt, Adam) and opt.defaults["lr"] == 0.3 and opt.defaults["eps"] == 1e-5


def test_lr_zero_is_allowed_and_moves_nothing():
    p = torch.ones(2, requires_grad=True)
    opt = Adam([p], lr=0.0)
    p.grad = torch.ones(2)
    opt.step()
    assert torch.equal(p.detach(), torch.ones(2)) and math.isfinite(opt.state[p]["exp_avg"].sum().item())


@pytest.mark.slow
def test_compiled_path_equals_torch_and_never_recompiles_on_lr_change():
    """compile=True: the pure rule under torch.compile (one compile, then schedulers change lr freely)."""
    import torch._dynamo

    torch._dynamo.reset()
    init, grads = init_params(), grad_stream(SHAPES, 30)
    hp = dict(lr=1e-2, betas=(0.9, 0.99), weight_decay=0.01)
    ours, opt = run(lambda ps: Adam(two_groups(1e-2, 2e-3)(ps), compile=True, **hp), init, grads)
    theirs, _ = run(lambda ps: torch.optim.AdamW(two_groups(1e-2, 2e-3)(ps), **hp), init, grads)
    assert_rel(ours, theirs, 1e-5)
    frames = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    for _ in range(5):
        opt.step()
        sched.step()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == frames
    mom, _ = run(lambda ps: Momentum(ps, lr=0.05, compile=True), init, grads[:5])
    ref, _ = run(lambda ps: Momentum(ps, lr=0.05, impl="reference"), init, grads[:5])
    assert_rel(mom, ref, 1e-6)


@pytest.mark.parametrize("impl", ["foreach", "reference"])
@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop"])
def test_maximize_matches_torch(name, impl):
    init, grads = init_params(), grad_stream(SHAPES, 50)
    ours_cls, theirs_cls, hp = {
        "sgd": (SGD, torch.optim.SGD, {}),
        "adam": (Adam, torch.optim.Adam, dict(betas=(0.8, 0.99), eps=1e-6)),
        "rmsprop": (RMSProp, torch.optim.RMSprop, dict(alpha=0.9, eps=1e-6)),
    }[name]
    ours, opt = run(lambda ps: ours_cls(two_groups(1e-2, 3e-3)(ps), impl=impl, maximize=True, **hp), init, grads)
    theirs, _ = run(lambda ps: theirs_cls(two_groups(1e-2, 3e-3)(ps), maximize=True, **hp), init, grads)
    descended, _ = run(lambda ps: ours_cls(two_groups(1e-2, 3e-3)(ps), impl=impl, **hp), init, grads)
    assert_rel(ours, theirs, 1e-5)
    assert not torch.allclose(ours[0], descended[0]) and opt.state_dict()["param_groups"][0]["maximize"] is True
    with pytest.raises(ValueError, match="maximize must be True or False, got 'yes'"):
        ours_cls(init, maximize="yes")


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_torch_optimizer_contract_hooks_groups_tensor_state_and_zero_grad(name, tmp_path):
    """What torch.optim.Optimizer promises beyond step(): each of lrlab's optimizers keeps it."""
    shape = (3, 3) if name == "muon" else (3,)  # Muon's own rule is for matrices (vectors go to its AdamW)
    a, b = torch.ones(shape, requires_grad=True), torch.ones(2, *shape[1:], requires_grad=True)
    opt = OPTIMIZERS[name]([a], lr=torch.tensor(0.01))
    opt.add_param_group({"params": [b], "lr": 0.02})
    seen = []
    opt.register_step_pre_hook(lambda o, args, kwargs: seen.append("pre"))
    opt.register_step_post_hook(lambda o, args, kwargs: seen.append("post"))
    for p in (a, b):
        p.grad = torch.ones_like(p)
    opt.step()
    assert seen == ["pre", "post"] and not torch.equal(b.detach(), torch.ones(2))  # the added group trains
    torch.save(opt.state_dict(), tmp_path / "opt.pt")
    loaded = torch.load(tmp_path / "opt.pt", weights_only=True)
    fresh = OPTIMIZERS[name]([a], lr=1.0)
    fresh.add_param_group({"params": [b]})
    fresh.load_state_dict(loaded)
    assert isinstance(fresh.param_groups[0]["lr"], torch.Tensor) and float(
        fresh.param_groups[0]["lr"]
    ) == pytest.approx(0.01)
    assert fresh.param_groups[1]["lr"] == 0.02 and str(fresh.state_dict()["state"]) == str(opt.state_dict()["state"])
    fresh.zero_grad(set_to_none=False)
    assert torch.equal(a.grad, torch.zeros(shape)) and torch.equal(b.grad, torch.zeros(2, *shape[1:]))
