"""FlatAdam: one flat buffer per group and dtype, the same numbers as Adam's per-tensor path, per-tensor
semantics kept (no gradient: no update), state_dict as Adam's, exact round trip, and the compiled loop."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch

from lrlab.optim import Adam
from lrlab.optim.flat import FlatAdam
from tests.test_optim import SHAPES, assert_rel, grad_stream, init_params, run, two_groups

HP = dict(betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)


def test_flat_adam_equals_adam_bit_for_bit_over_100_steps_with_groups():
    init, grads = init_params(), grad_stream(SHAPES, 100)
    ours, opt = run(lambda ps: FlatAdam(two_groups(1e-2, 3e-3)(ps), **HP), init, grads)
    theirs, ref = run(lambda ps: Adam(two_groups(1e-2, 3e-3)(ps), **HP), init, grads)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert str(opt.state_dict()) == str(ref.state_dict())  # the same per-parameter entries and values


def test_parameters_and_state_live_in_one_buffer_per_group():
    params = [t.clone().requires_grad_() for t in init_params()]
    opt = FlatAdam(params, lr=1e-2)
    (flat,) = opt.param_groups[0]["_flat"].values()
    start, size = flat.param.data_ptr(), flat.param.numel() * flat.param.element_size()
    assert all(start <= p.data_ptr() < start + size for p in params)
    state_start = flat.exp_avg.data_ptr()
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    assert all(opt.state[p]["exp_avg"].data_ptr() >= state_start for p in params)
    assert torch.equal(flat.exp_avg[:12], opt.state[params[0]]["exp_avg"].flatten())


def test_a_parameter_without_a_gradient_is_not_updated_and_the_steps_stay_per_tensor():
    init = init_params()
    ours = [t.clone().requires_grad_() for t in init]
    theirs = [t.clone().requires_grad_() for t in init]
    flat, ref = FlatAdam(ours, lr=0.1), Adam(theirs, lr=0.1)
    for k in range(6):  # the second tensor has a gradient only from the third step: steps differ, then join
        for params, opt in ((ours, flat), (theirs, ref)):
            for i, p in enumerate(params):
                p.grad = None if (i == 1 and k < 2) else torch.full_like(p, 0.5 + k)
            opt.step()
        if k < 2:
            assert torch.equal(ours[1].detach(), init[1]) and "exp_avg" in flat.state[ours[1]]
    assert all(torch.equal(a.detach(), b.detach()) for a, b in zip(ours, theirs))
    assert [flat.state[p]["step"] for p in ours] == [6, 4, 6]


def test_state_dict_round_trip_continues_exactly():
    init, grads = init_params(), grad_stream(SHAPES, 20)
    full, _ = run(lambda ps: FlatAdam(two_groups(1e-2, 1e-3)(ps), **HP), init, grads)
    first, opt = run(lambda ps: FlatAdam(two_groups(1e-2, 1e-3)(ps), **HP), init, grads[:8])
    saved = copy.deepcopy(opt.state_dict())
    params = [p.clone().requires_grad_() for p in first]
    fresh = FlatAdam(two_groups(1e-2, 1e-3)(params), **HP)
    fresh.load_state_dict(saved)
    (flat,) = fresh.param_groups[0]["_flat"].values()
    assert fresh.state[params[0]]["exp_avg"].data_ptr() == flat.exp_avg.data_ptr()  # back in the buffer
    for step in grads[8:]:
        for p, g in zip(params, step):
            p.grad = g.clone()
        fresh.step()
    assert all(torch.equal(a.detach(), b) for a, b in zip(params, full))


def test_maximize_and_a_model_training_on_the_views():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = FlatAdam(model.parameters(), lr=1e-2)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    first = None
    for _ in range(50):
        loss = torch.nn.functional.mse_loss(model(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.8 * first
    up = torch.zeros(3, requires_grad=True)
    ascent = FlatAdam([up], lr=0.1, maximize=True)
    up.grad = torch.ones(3)
    ascent.step()
    assert torch.all(up > 0)


@pytest.mark.parametrize("dtype", [torch.float32])
def test_compiled_flat_loop_tracks_adam(dtype):
    init, grads = init_params(dtype), grad_stream(SHAPES, 20, dtype=dtype)
    ours, _ = run(lambda ps: FlatAdam(two_groups(1e-2, 3e-3)(ps), compile=True, **HP), init, grads)
    theirs, _ = run(lambda ps: Adam(two_groups(1e-2, 3e-3)(ps), **HP), init, grads)
    assert_rel(ours, theirs, 1e-5)


def test_gradients_accumulate_in_the_buffer_after_zero_grad_without_none():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    twin = copy.deepcopy(model)
    flat, ref = FlatAdam(model.parameters(), lr=1e-2), Adam(twin.parameters(), lr=1e-2)
    x = torch.randn(16, 4)
    for _ in range(5):
        for m, opt in ((model, flat), (twin, ref)):
            opt.zero_grad(set_to_none=False)
            m(x).pow(2).mean().backward()
            opt.step()
    (buffers,) = flat.param_groups[0]["_flat"].values()
    assert all(p.grad is v for p, v in zip(model.parameters(), buffers.grad_views))  # no copy on these steps
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters()))


def test_the_learner_keeps_a_flat_optimizers_gradients_in_its_buffer_and_trains_as_adam():
    """Learner + Adam(impl="flat"): backward writes into the flat buffer (zero_grad in place), the same
    weights as the per-tensor Adam bit for bit, and the LR finder leaves the buffer in use."""
    from lrlab.data import DataLoaders
    from lrlab.optim.flat import FlatAdam
    from lrlab.train.callbacks.lr_finder import lr_find
    from lrlab.train.learner import Learner

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(256, 8, generator=g), torch.randint(0, 3, (256,), generator=g)

    def trained(impl: str) -> Learner:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
        dls = DataLoaders.from_tensors(x[:192], y[:192], x[192:], y[192:], batch_size=32, seed=0)
        learn = Learner(model, dls, loss_func=torch.nn.functional.cross_entropy, lr=1e-2,
                        opt_func=partial(Adam, weight_decay=1e-2, impl=impl))  # fmt: skip
        learn.fit(2)
        return learn

    flat, per_tensor = trained("flat"), trained("foreach")
    assert isinstance(flat.opt, FlatAdam) and not isinstance(per_tensor.opt, FlatAdam)
    for a, b in zip(flat.model.parameters(), per_tensor.model.parameters()):
        assert torch.equal(a, b)
    buffers = [fg.grad for group in flat.opt.param_groups for fg in group["_flat"].values()]
    for p in flat.model.parameters():  # each gradient is a view of its group's buffer, zeroed after the step
        assert p.grad is not None and any(p.grad.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
                                          for b in buffers)  # fmt: skip
        assert not p.grad.any()
    assert all(p.grad is None for p in per_tensor.model.parameters())
    lr_find(flat, max_lr=1.0)  # the finder's steps keep the buffer too, and give the model back
    assert all(p.grad is not None and not p.grad.any() for p in flat.model.parameters())
