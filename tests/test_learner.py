"""The Learner's loop: event order, cancellation, errors, callbacks per fit."""

from __future__ import annotations

import pytest
import torch

from lrlab.train.callbacks import DeviceCB, MetricsCB, ProgressCB, SingleBatchCB, StepEvalCB, TrainCB
from lrlab.train.callbacks.evaluate import steps_between_evals
from lrlab.train.learner import (
    EVENTS,
    Callback,
    CancelBatchException,
    CancelEpochException,
    Learner,
)
from tests.conftest import tiny_dls, tiny_model

ALL = list(EVENTS)


class EventLog(Callback):
    """Records (event, training) for every event."""

    def __init__(self):
        self.log = []
        for e in ALL:
            setattr(self, e, self._make(e))

    def _make(self, event):
        def handler(learn):
            self.log.append((event, learn.training) if event not in ("before_fit", "after_fit") else (event,))

        return handler


class RaiseAt(Callback):
    order = 1

    def __init__(self, event, exc, when=lambda learn: True):
        setattr(self, event, self._raise)
        self.exc, self.when = exc, when

    def _raise(self, learn):
        if self.when(learn):
            raise self.exc


def learner(**kw):
    return Learner(tiny_model(), tiny_dls(n=32, bs=16), lr=0.01, **kw)


def names(log):
    return [e[0] for e in log]


def test_events_fire_in_documented_order():
    rec = EventLog()
    learner(cbs=[rec]).fit(1)
    batch_train = ["before_batch", "after_pred", "after_loss", "after_backward", "after_step", "after_batch"]
    batch_valid = ["before_batch", "after_pred", "after_loss", "after_batch"]
    expected = (
        ["before_fit", "before_epoch"]
        + batch_train * 2
        + ["after_epoch", "before_epoch"]
        + batch_valid * 2
        + ["after_epoch", "after_fit", "cleanup_fit"]
    )
    assert names(rec.log) == expected
    assert [t for e, *t in rec.log if e == "after_epoch"] == [[True], [False]]


def test_callbacks_sorted_by_order():
    seen = []

    class A(Callback):
        order = 5

        def before_fit(self, learn):
            seen.append("A")

    class B(Callback):
        order = -1

        def before_fit(self, learn):
            seen.append("B")

    learner(cbs=[A(), B()]).fit(1, train=False, valid=False)
    assert seen == ["B", "A"]


def test_cancel_batch_skips_rest_of_batch_but_runs_after_batch():
    rec = EventLog()
    learn = learner(cbs=[rec, RaiseAt("after_loss", CancelBatchException())])
    before = [p.clone() for p in learn.model.parameters()]
    learn.fit(1, valid=False)
    assert "after_backward" not in names(rec.log)
    assert names(rec.log).count("after_cancel_batch") == 2 and names(rec.log).count("after_batch") == 2
    assert all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))


def test_cancel_epoch_stops_only_that_phase():
    rec = EventLog()
    learner(cbs=[rec, RaiseAt("before_batch", CancelEpochException(), lambda learn: learn.training)]).fit(2)
    log = names(rec.log)
    assert log.count("after_cancel_epoch") == 2 and log.count("after_epoch") == 4
    assert log.count("after_step") == 0 and log.count("after_loss") == 4  # valid batches still ran


def test_cancel_fit_runs_after_fit_and_stops_everything():
    rec = EventLog()
    learner(cbs=[rec, SingleBatchCB()]).fit(3)
    log = names(rec.log)
    assert log.count("before_batch") == 1 and log.count("after_step") == 1
    assert log[-3:] == ["after_cancel_fit", "after_fit", "cleanup_fit"]


def test_single_batch_gives_a_live_optimizer():
    learn = learner(cbs=[SingleBatchCB()]).fit(1)
    assert isinstance(learn.opt, torch.optim.Optimizer) and len(learn.opt.param_groups) == 1


def test_real_error_surfaces_unchanged_and_cleanup_runs():
    class Boom(RuntimeError):
        pass

    rec = EventLog()
    err = Boom("inside a callback")
    learn = learner(cbs=[rec, RaiseAt("after_step", err)])
    with pytest.raises(Boom) as caught:
        learn.fit(1)
    assert caught.value is err
    assert names(rec.log)[-1] == "cleanup_fit" and "after_fit" not in names(rec.log)


def test_fit_callbacks_are_removed_afterwards_even_on_error():
    learn = learner()
    learn.fit(1, cbs=[SingleBatchCB()])
    assert learn.cbs == []
    with pytest.raises(ZeroDivisionError):
        learn.fit(1, cbs=[RaiseAt("before_fit", ZeroDivisionError())])
    assert learn.cbs == []


def test_train_cb_replaces_the_default_step():
    calls = []

    class CountingTrain(TrainCB):
        def step(self, learn):
            calls.append(1)
            super().step(learn)

    learner(cbs=[CountingTrain()]).fit(1)
    assert len(calls) == 2


def test_training_reduces_loss_and_metrics_are_weighted():
    torch.manual_seed(0)
    dls = tiny_dls(n=40, bs=16)  # batches of 16, 16, 8
    metrics = MetricsCB()
    learn = Learner(tiny_model(), dls, lr=0.05, cbs=[metrics, DeviceCB("cpu")])
    learn.fit(5)
    hist = metrics.history
    assert len(hist) == 5 and hist[-1]["train_loss"] < hist[0]["train_loss"]
    # weighted mean over the valid set equals the loss of the whole set at once
    with torch.no_grad():
        x = torch.cat([b[0] for b in dls.valid])
        y = torch.cat([b[1] for b in dls.valid])
        full = torch.nn.functional.cross_entropy(learn.model(x), y).item()
        acc = (learn.model(x).argmax(1) == y).float().mean().item()
    assert hist[-1]["valid_loss"] == pytest.approx(full, rel=1e-5)
    assert hist[-1]["valid_acc"] == pytest.approx(acc)


def test_metrics_chunked_reduction_gives_the_same_numbers():
    results = []
    for chunk in (1, 2, 1000):
        torch.manual_seed(0)
        metrics = MetricsCB(chunk=chunk)
        Learner(tiny_model(), tiny_dls(n=40, bs=16), lr=0.05, cbs=[metrics]).fit(2)
        results.append([(r["train_acc"], r["valid_acc"], r["valid_loss"]) for r in metrics.history])
    assert results[0] == results[1] == results[2]


def test_metrics_without_valid_phase():
    metrics = MetricsCB()
    learner(cbs=[metrics]).fit(2, valid=False)
    assert len(metrics.history) == 2 and "valid_loss" not in metrics.history[0]


def test_progress_cb_runs(capsys):
    learner(cbs=[ProgressCB(every=0)]).fit(1)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_n_epochs(bad):
    with pytest.raises(ValueError, match="n_epochs"):
        learner().fit(bad)


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), float("inf"), "0.1"])
def test_bad_lr(bad):
    with pytest.raises(ValueError, match="lr must be"):
        Learner(tiny_model(), tiny_dls(), lr=bad)
    with pytest.raises(ValueError, match="lr must be"):
        learner().fit(1, lr=bad)


def test_model_output_not_matching_labels():
    learn = Learner(tiny_model(n_classes=3), tiny_dls(n_classes=10), lr=0.1)
    with pytest.raises(ValueError, match=r"output \(shape \(16, 3\)\).*labels"):
        learn.fit(1)


def test_not_a_model():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        Learner(lambda x: x, tiny_dls())


def test_step_eval_measures_a_fixed_subset_every_k_steps_and_leaves_training_unchanged():
    def train(cbs):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.3), torch.nn.Linear(784, 10))
        Learner(model, tiny_dls(n=40, bs=16), lr=0.05, cbs=cbs).fit(3)  # 3 batches an epoch: 9 steps
        return model

    evals = StepEvalCB(every=2, subset=24, seed=5)
    model = train([evals])
    plain = train([])
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), plain.parameters()))  # no RNG drawn; dropout on
    assert [row["step"] for row in evals.history] == [2, 4, 6, 8, 9]
    picked = torch.randperm(40, generator=torch.Generator().manual_seed(5))[:24].sort().values
    valid = tiny_dls(n=40, bs=16).valid
    x = torch.cat([b[0] for b in valid])[picked]
    y = valid.ds.labels[picked]
    with torch.no_grad():
        logits = model.eval()(x)
    assert evals.history[-1]["valid_loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item())
    assert evals.history[-1]["valid_acc"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert steps_between_evals(470) == 19 and steps_between_evals(10) == 1
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match=f"every must be an integer >= 1, got {bad!r}"):
            StepEvalCB(every=bad)
    with pytest.raises(ValueError, match="total_steps and evals must be >= 1"):
        steps_between_evals(0)
