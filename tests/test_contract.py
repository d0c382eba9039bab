"""The Learner's contract in combination: each test reproduces a bug of issue 17 that broke a combination."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler as S

from lrlab.data import DataLoaders
from lrlab.models import lesson_cnn
from lrlab.train.callbacks import MetricsCB, TrainCB
from lrlab.train.callbacks.lr_finder import LRFinderCB, lr_find
from lrlab.train.callbacks.recorder import RecorderCB
from lrlab.train.callbacks.schedule import BatchSchedCB, EpochSchedCB
from lrlab.train.callbacks.speed import MixedPrecisionCB
from lrlab.train.learner import Callback, Learner
from tests.conftest import tiny_dls, tiny_model


class StepCounterCB(Callback):
    """Counts training batches in an attribute named like a Learner step (as AutoAnnealCB once did)."""

    def before_fit(self, learn):
        self.step = 0

    def after_batch(self, learn):
        self.step += learn.training


def test_a_callback_attribute_named_like_a_step_is_not_a_step():
    learn = Learner(tiny_model(), tiny_dls(), lr=1e-3, cbs=[StepCounterCB()])
    learn.fit(1)
    learn.fit(1)  # the counter (an int) used to become the Learner's optimizer step
    assert learn.cb(StepCounterCB).step == len(learn.dls.train)


def test_a_step_defined_twice_is_an_error_naming_both():
    with pytest.raises(ValueError, match="'backward' is defined by MixedPrecisionCB and TrainCB: keep one"):
        Learner(tiny_model(), tiny_dls(), cbs=[TrainCB(), MixedPrecisionCB()])


class TrainLearner(Learner):
    """The course's pattern: the training step as methods of a Learner subclass."""

    def predict(self):
        self.preds = self.model(self.batch[0])

    def get_loss(self):
        self.loss = self.loss_func(self.preds, self.batch[1])

    def backward(self):
        self.loss.backward()

    def step(self):
        self.opt.step()

    def zero_grad(self):
        self.opt.zero_grad()


class MomentumLearner(TrainLearner):
    """The course's MomentumLearner: gradients are kept, scaled by mom, instead of zeroed."""

    mom = 0.85
    zeroed = 0

    def zero_grad(self):
        self.zeroed += 1
        with torch.no_grad():
            for p in self.model.parameters():
                p.grad *= self.mom


def test_a_learner_subclass_defines_the_training_step():
    torch.manual_seed(0)
    plain = Learner(tiny_model(), tiny_dls(), lr=0.1, opt_func=torch.optim.SGD).fit(1)
    torch.manual_seed(0)
    course = TrainLearner(tiny_model(), tiny_dls(), lr=0.1, opt_func=torch.optim.SGD).fit(1)
    assert all(torch.equal(a, b) for a, b in zip(plain.model.parameters(), course.model.parameters()))
    torch.manual_seed(0)
    momentum = MomentumLearner(tiny_model(), tiny_dls(), lr=0.1, opt_func=torch.optim.SGD).fit(1)
    assert momentum.zeroed == 4  # 64 images in batches of 16
    assert not all(torch.equal(a, b) for a, b in zip(plain.model.parameters(), momentum.model.parameters()))


@pytest.mark.parametrize("sched_cb", ["onecycle", "cosine", "plateau"])
def test_lr_find_is_the_same_with_a_scheduler_attached(sched_cb):
    scheds = {
        "onecycle": BatchSchedCB(partial(S.OneCycleLR, max_lr=0.05)),
        "cosine": BatchSchedCB(S.CosineAnnealingLR),
        "plateau": EpochSchedCB(S.ReduceLROnPlateau),
    }

    def found(cbs):
        torch.manual_seed(0)
        learn = Learner(lesson_cnn(), tiny_dls(n=1024, bs=16), lr=1e-3, cbs=cbs)
        return lr_find(learn, start_lr=1e-5, max_lr=1.0).suggestion

    assert found([MetricsCB(), scheds[sched_cb]]) == found([MetricsCB()])


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 3)

    def forward(self, x1, x2):
        return self.a(x1) + self.b(x2)


def three_part_batches(n_batches: int, bs: int = 8) -> list:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(bs, 4, generator=g), torch.randn(bs, 4, generator=g), torch.randint(0, 3, (bs,), generator=g))
            for _ in range(n_batches)]  # fmt: skip


def test_n_inp_2_metrics_and_errors_use_the_targets_after_the_inputs():
    batches = three_part_batches(4)
    metrics = MetricsCB()
    learn = Learner(TwoInputs(), DataLoaders(batches, batches), lr=0.01, cbs=[TrainCB(n_inp=2), metrics]).fit(1)
    model = learn.model
    with torch.no_grad():
        hits = sum(int((model(x1, x2).argmax(1) == y).sum()) for x1, x2, y in batches)
    assert metrics.history[-1]["valid_acc"] == hits / 32
    bad = [(x1, x2, y + 5) for x1, x2, y in batches]  # class indices out of range
    with pytest.raises(ValueError, match=r"labels \(shape \(8,\), values 6\.\.7\)"):
        Learner(TwoInputs(), DataLoaders(bad, bad), lr=0.01, cbs=[TrainCB(n_inp=2)]).fit(1)


def test_an_error_in_the_loss_that_is_not_about_shapes_propagates_as_it_is():
    def loss_on_another_device(preds, y):
        raise RuntimeError("Expected all tensors to be on the same device")

    with pytest.raises(RuntimeError, match="same device"):
        Learner(tiny_model(), tiny_dls(), loss_func=loss_on_another_device).fit(1)


def test_one_cycle_ends_at_its_final_lr_and_stops_there():
    recorder = RecorderCB()
    learn = Learner(lesson_cnn(), tiny_dls(), lr=0.05, cbs=[recorder])
    learn.fit(2, cbs=[BatchSchedCB(partial(S.OneCycleLR, max_lr=0.05))])
    final = 0.05 / 25 / 1e4  # max_lr / div_factor / final_div_factor
    assert recorder.recs["lr"][-1] == pytest.approx(final)
    assert learn.opt.param_groups[0]["lr"] == pytest.approx(final)  # no step past the end


def test_one_callback_where_a_list_is_expected():
    learn = Learner(tiny_model(), tiny_dls(), cbs=MetricsCB())
    learn.fit(1, cbs=LRFinderCB(start_lr=1e-4, max_lr=1.0))
    assert len(learn.cbs) == 1
    learn.add_cbs(RecorderCB())
    learn.remove_cbs(learn.cb(RecorderCB))
    assert [type(cb) for cb in learn.cbs] == [MetricsCB]


def test_course_recorder_functions_and_metric_objects_work():
    class MeanAccuracy:
        """A torcheval-style metric object: update per batch, compute at the end, reset per epoch."""

        def __init__(self):
            self.reset()

        def reset(self):
            self.hits, self.n = 0, 0

        def update(self, preds, targets):
            self.hits += int((preds.argmax(1) == targets).sum())
            self.n += len(targets)

        def compute(self):
            return torch.tensor(self.hits / self.n)

    def _lr(cb):  # the course's recorder functions read the callback's param group
        return cb.pg["lr"]

    def error_rate(preds, targets):
        return (preds.argmax(1) != targets).float().mean()

    recorder = RecorderCB(lr=_lr, mom=lambda cb: cb.pg["betas"][0], loss=lambda cb: float(cb.loss.detach()))
    metrics = MetricsCB(accuracy=MeanAccuracy(), error=error_rate)
    builtin = MetricsCB()
    learn = Learner(tiny_model(), tiny_dls(), lr=0.05, cbs=[recorder, metrics, builtin])
    learn.fit(2, cbs=[BatchSchedCB(partial(S.OneCycleLR, max_lr=0.05))])
    assert len(recorder.recs["lr"]) == 8 and max(recorder.recs["lr"]) == pytest.approx(0.05, rel=0.05)
    for mine, reference in zip(metrics.history, builtin.history):
        assert mine["valid_accuracy"] == pytest.approx(reference["valid_acc"])
        assert mine["valid_error"] == pytest.approx(1 - reference["valid_acc"])
    with pytest.raises(TypeError, match="metric 'bad' must have update"):
        MetricsCB(bad=3)


def test_activation_stats_takes_a_predicate_or_a_class_as_the_course_does():
    from lrlab.models import GeneralRelu
    from lrlab.train.callbacks import ActivationStats

    by_class, by_predicate = ActivationStats(GeneralRelu), ActivationStats(lambda m: isinstance(m, GeneralRelu))
    Learner(lesson_cnn(), tiny_dls(), cbs=[by_class, by_predicate]).fit(1)
    assert by_class.names == by_predicate.names and len(by_class.names) == 4
    assert all("GeneralRelu" in name for name in by_class.names)


def test_the_course_optimizer_keywords_name_lrlab_s():
    from lrlab.optim import SGD, Adam, RMSProp

    params = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(TypeError, match="'wd' .* lrlab calls it weight_decay"):
        SGD(params, lr=0.1, wd=1e-2)
    with pytest.raises(TypeError, match=r"'mom' .* betas=\(mom, sqr_mom\)"):
        Adam(params, mom=0.9)
    with pytest.raises(TypeError, match="'sqr_mom' .* alpha"):
        RMSProp(params, sqr_mom=0.99)


def test_sched_lrs_simulates_a_built_scheduler_on_a_copy():
    from lrlab.schedules import sched_lrs

    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = S.OneCycleLR(opt, max_lr=0.1, total_steps=40)
    for p in model.parameters():
        p.grad = torch.ones_like(p)  # a live run with gradients: the simulation must not step them
    before = [p.detach().clone() for p in model.parameters()]
    ahead = sched_lrs(sched, 40)
    assert ahead["lr"] == pytest.approx(sched_lrs(partial(S.OneCycleLR, max_lr=0.1, total_steps=40), 40)["lr"])
    assert sched.last_epoch == 0 and opt.param_groups[0]["lr"] == pytest.approx(ahead["lr"][0])
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())) and not opt.state
    with pytest.raises(ValueError, match="at most 40 steps"):
        sched_lrs(sched, 41)


def test_progress_with_a_plot_saves_the_loss_after_each_epoch(tmp_path):
    from lrlab.train.callbacks import ProgressCB

    progress = ProgressCB(plot=True, plot_path=tmp_path / "progress.png")
    Learner(tiny_model(), tiny_dls(), cbs=progress).fit(2)
    assert len(progress.losses) == 8 and all(loss > 0 for loss in progress.losses)
    assert (tmp_path / "progress.png").read_bytes()[:4] == b"\x89PNG"


def test_names_shared_with_the_course_say_what_they_expect():
    from lrlab.models import get_model

    with pytest.raises(TypeError, match=r"lesson_cnn\(nfs=\.\.\., norm=\.\.\.\)"):
        get_model(act=nn.ReLU, nfs=(8, 16), norm=nn.BatchNorm2d)
    with pytest.raises(TypeError, match="'gamma' .* lrlab calls it mult"):
        LRFinderCB(gamma=1.3)
    assert isinstance(get_model("cnn"), nn.Sequential)


def course_rmsprop_step(p, g, state, lr, sqr_mom=0.99, eps=1e-5):
    """miniai's RMSProp.opt_step, transcribed in float64."""
    if "sqr_avg" not in state:
        state["sqr_avg"] = g**2
    state["sqr_avg"] = state["sqr_avg"] * sqr_mom + g**2 * (1 - sqr_mom)
    return p - lr * g / (state["sqr_avg"].sqrt() + eps)


def course_adam_step(p, g, state, lr, i, beta1=0.9, beta2=0.99, eps=1e-5):
    """miniai's Adam.opt_step (i counts from 0), transcribed in float64."""
    state.setdefault("avg", torch.zeros_like(g))
    state.setdefault("sqr_avg", torch.zeros_like(g))
    state["avg"] = beta1 * state["avg"] + (1 - beta1) * g
    unbias_avg = state["avg"] / (1 - beta1 ** (i + 1))
    state["sqr_avg"] = beta2 * state["sqr_avg"] + (1 - beta2) * g**2
    unbias_sqr_avg = state["sqr_avg"] / (1 - beta2 ** (i + 1))
    return p - lr * unbias_avg / (unbias_sqr_avg + eps).sqrt()


@pytest.mark.parametrize("impl", ["foreach", "reference"])
@pytest.mark.parametrize("name", ["rmsprop", "adam"])
def test_the_course_rules_exactly_as_an_option_side_by_side_with_torch_s(name, impl):
    from lrlab.optim import COURSE_RULES, OPTIMIZERS

    g_steps = [torch.randn(5, 3, generator=torch.Generator().manual_seed(i), dtype=torch.float64) for i in range(6)]
    start = torch.randn(5, 3, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
    course_p, state = start.clone(), {}
    ours = start.clone().requires_grad_()
    torch_default = start.clone().requires_grad_()
    opt = OPTIMIZERS[name]([ours], lr=0.01, impl=impl, **COURSE_RULES[name])
    plain = OPTIMIZERS[name]([torch_default], lr=0.01, impl=impl, eps=1e-5)
    for i, g in enumerate(g_steps):
        if name == "rmsprop":
            course_p = course_rmsprop_step(course_p, g, state, 0.01)
        else:
            course_p = course_adam_step(course_p, g, state, 0.01, i)
        for p, o in ((ours, opt), (torch_default, plain)):
            p.grad = g.clone()
            o.step()
    assert torch.allclose(ours.detach(), course_p, rtol=0, atol=1e-12)
    first_course = (start - ours.detach()).abs().max()  # the rules differ: lrlab's default moves differently
    assert not torch.allclose(torch_default.detach(), course_p, atol=1e-6), first_course
