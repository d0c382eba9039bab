"""Fault injection: interruptions any number of times, collisions, closed pipes, crafted files, bad input.

Each test reproduces a data-loss or silent-wrong case of issue 16; real subprocesses and signals where that is
what happens in life."""

from __future__ import annotations

import os
import signal
from functools import partial

import pytest
import torch

from lrlab.models import lesson_cnn
from lrlab.optim import Adam
from lrlab.schedules.phased import PhasedLR
from lrlab.train import checkpoint
from lrlab.train.callbacks import MetricsCB
from lrlab.train.callbacks.anneal import AutoLRCB
from lrlab.train.callbacks.checkpoint import CheckpointCB, DivergenceGuardCB, TrainingInterrupted
from lrlab.train.callbacks.recorder import RecorderCB
from lrlab.train.callbacks.schedule import BatchSchedCB, EpochSchedCB
from lrlab.train.learner import Callback, Learner
from tests.conftest import tiny_dls

N_EPOCHS, N_BATCHES = 3, 6  # 96 images in batches of 16


class SignalAt(Callback):
    """Deliver a real SIGTERM to this process when the fit reaches one of the given points."""

    order = 90  # before CheckpointCB (100) sees the batch

    def __init__(self, *points: tuple[int, str, int]) -> None:
        self.points = set(points)

    def after_batch(self, learn):
        here = (learn.epoch, "train" if learn.training else "valid", learn.iter + 1)
        if here in self.points:
            os.kill(os.getpid(), signal.SIGTERM)


def make_learner(folder, sched: str, cbs=()) -> Learner:
    torch.manual_seed(0)
    if sched == "onecycle":
        scheduler = BatchSchedCB(partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.05))
    elif sched == "phased":  # warm-up, plateau cut by the validation loss (only a 90% fall counts), decay
        scheduler = BatchSchedCB(partial(PhasedLR, warmup=3, decay=4, patience=0, threshold=0.9))
    elif sched == "autolr-average":  # validation swaps the weights' average in, training takes them back
        scheduler = AutoLRCB(start_lr=0.05, max_search=4, average=0.3, bn_batches=2, snapshot_every=2)
    else:
        scheduler = EpochSchedCB(partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5))
    cbs = [MetricsCB(), RecorderCB(), scheduler, DivergenceGuardCB(factor=10), CheckpointCB(folder, every=2), *cbs]
    return Learner(lesson_cnn(), tiny_dls(n=96, bs=16), lr=0.05, cbs=cbs, opt_func=partial(Adam, eps=1e-5))


def without_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def run_with_interruptions(folder, sched: str, stops: list[tuple[int, str, int]]) -> tuple[Learner, int]:
    """Fit, interrupted at each stop in turn (each resume starts in a fresh Learner), to the end."""
    resume, interruptions = None, 0
    for stop in [*stops, None]:
        learn = make_learner(folder, sched, [SignalAt(stop)] if stop else [])
        if resume is not None:  # everything must come from the checkpoint
            with torch.no_grad():
                for p in learn.model.parameters():
                    p.fill_(0.5)
        try:
            learn.fit(N_EPOCHS, resume=resume)
        except TrainingInterrupted:
            interruptions += 1
            resume = folder
            continue
        assert stop is None, f"the fit ended before reaching {stop}"
    return learn, interruptions


STOPS = {
    "twice-in-one-epoch": [(1, "train", 2), (1, "train", 3)],
    "three-times-in-one-epoch": [(1, "train", 1), (1, "train", 4), (1, "train", 5)],
    "in-validation-then-mid-epoch": [(0, "valid", 3), (1, "train", 5), (2, "train", 1)],
    "last-batch-of-epoch": [(0, "train", N_BATCHES), (0, "valid", 1)],
    "every-epoch": [(0, "train", 3), (1, "train", 3), (2, "train", 3), (2, "valid", 2)],
}


@pytest.mark.parametrize("sched", ["onecycle", "step-per-epoch", "phased", "autolr-average"])
@pytest.mark.parametrize("name", sorted(STOPS))
@pytest.mark.filterwarnings("ignore:AutoLR. a run of 18 steps is too short")
def test_any_number_of_interruptions_resume_bit_identically(name, sched, tmp_path):
    full = make_learner(tmp_path / "full", sched).fit(N_EPOCHS)
    if sched == "phased":
        assert full.cb(BatchSchedCB).sched.cuts  # the plateau phase cut the lr: its state is part of the resume
    if sched == "autolr-average":  # the fit hands over the average its validation scored, or its best one
        cb = full.cb(AutoLRCB)
        assert cb.autolr.live_params is not None and cb.autolr.average_params is not None
        handed = cb.keeper.state.values() if cb.restored else cb.autolr.average_params
        assert all(torch.equal(p, a) for p, a in zip(full.model.parameters(), handed))
    resumed, interruptions = run_with_interruptions(tmp_path / "run", sched, STOPS[name])
    assert interruptions == len(STOPS[name])
    assert all(torch.equal(a, b) for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()))
    assert resumed.cb(RecorderCB).recs == full.cb(RecorderCB).recs
    assert len(full.cb(RecorderCB).recs["lr"]) == N_EPOCHS * N_BATCHES
    assert without_time(resumed.cb(MetricsCB).history) == without_time(full.cb(MetricsCB).history)
    assert all(row["train_n"] == 96 and row["valid_n"] == 96 for row in resumed.cb(MetricsCB).history)
    assert not list((tmp_path / "run").glob("*.tmp"))
    best_full = checkpoint.load(tmp_path / "full" / "best.pt")
    best_resumed = checkpoint.load(tmp_path / "run" / "best.pt")
    assert best_full["position"] == best_resumed["position"]
    assert all(torch.equal(best_full["model"][k], v) for k, v in best_resumed["model"].items())


def test_best_pt_survives_a_crash_between_best_and_last(tmp_path, monkeypatch):
    full = make_learner(tmp_path / "full", "onecycle").fit(N_EPOCHS)
    real_save = checkpoint.save_atomic
    written = []

    def crash_after_best(data, path):  # the process dies after best.pt, before last.pt, at the end of epoch 2
        if path.name == "last.pt" and written and written[-1] == "best.pt" and len(written) > 3:
            raise KeyboardInterrupt("power cut")
        written.append(path.name)
        return real_save(data, path)

    monkeypatch.setattr(checkpoint, "save_atomic", crash_after_best)
    crashed = make_learner(tmp_path / "run", "onecycle")
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(N_EPOCHS)
    monkeypatch.undo()
    assert "best.pt" in written
    make_learner(tmp_path / "run", "onecycle").fit(N_EPOCHS, resume=tmp_path / "run")
    best_full = checkpoint.load(tmp_path / "full" / "best.pt")
    best_run = checkpoint.load(tmp_path / "run" / "best.pt")
    assert best_full["position"] == best_run["position"]
    assert all(torch.equal(best_full["model"][k], v) for k, v in best_run["model"].items())
    assert full.cb(CheckpointCB).best == checkpoint.load(tmp_path / "run")["callbacks"]["CheckpointCB#0"]["best"]


class NaNValidationAt(Callback):
    order = -6  # before MetricsCB (-5) sees the loss

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def after_loss(self, learn):
        if not learn.training and learn.epoch == self.epoch:
            learn.loss = learn.loss * float("nan")


def test_a_nan_validation_loss_never_becomes_the_best(tmp_path):
    learn = make_learner(tmp_path, "onecycle", [NaNValidationAt(0)]).fit(N_EPOCHS)
    history = learn.cb(MetricsCB).history
    assert history[0]["valid_loss"] != history[0]["valid_loss"]  # NaN
    finite = [row["valid_loss"] for row in history[1:]]
    best = checkpoint.load(tmp_path / "best.pt")
    assert best["position"]["epoch"] == 2 + finite.index(min(finite))
    assert learn.cb(CheckpointCB).best == min(finite)


def test_a_huge_finite_loss_stops_the_fit_before_it_reaches_a_checkpoint(tmp_path):
    from lrlab.train.callbacks.checkpoint import Diverged

    class Explode(Callback):
        order = -6  # before the guard (-4) looks at the loss

        def after_loss(self, learn):
            if learn.training and (learn.epoch, learn.iter) == (2, 1):
                learn.loss = learn.loss * 1e23

    learn = make_learner(tmp_path, "onecycle", [Explode()])
    with pytest.raises(Diverged, match="exceeded 10 x its best"):
        learn.fit(N_EPOCHS)
    assert checkpoint.load(tmp_path)["position"] == {"epoch": 2, "phase": "train", "batch": 0}


def test_a_crafted_checkpoint_cannot_run_code(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"version": 1, "model": Payload()}, tmp_path / "last.pt")
    learn = make_learner(tmp_path / "run", "onecycle")
    with pytest.raises(ValueError, match="not a plain-data lrlab checkpoint; refused"):
        learn.fit(1, resume=tmp_path / "last.pt")
    assert not marker.exists()


def test_a_checkpoint_from_another_world_size_is_refused_before_training(tmp_path):
    make_learner(tmp_path, "onecycle", [SignalAt((0, "train", 2))])
    with pytest.raises(TrainingInterrupted):
        make_learner(tmp_path, "onecycle", [SignalAt((0, "train", 2))]).fit(N_EPOCHS)
    ckpt = checkpoint.load(tmp_path)
    checkpoint.save_atomic({**ckpt, "world_size": 2}, tmp_path / "last.pt")
    learn = make_learner(tmp_path, "onecycle")
    trained = []
    learn.add_cbs([type("Spy", (Callback,), {"after_step": lambda self, lrn: trained.append(1)})()])
    with pytest.raises(ValueError, match="written by a run on 2 process"):
        learn.fit(N_EPOCHS, resume=tmp_path)
    assert trained == []


def test_an_error_before_training_is_not_masked_by_cleanup(tmp_path):
    def broken_opt(params, lr):
        raise ValueError("the optimizer refuses lr=42")

    learn = Learner(lesson_cnn(), tiny_dls(), cbs=[CheckpointCB(tmp_path), MetricsCB()], opt_func=broken_opt)
    with pytest.raises(ValueError, match="refuses lr=42"):
        learn.fit(1)

    class FailingCleanup(Callback):
        def before_batch(self, learn):
            raise RuntimeError("the real problem")

        def cleanup_fit(self, learn):
            raise OSError("cleanup trouble")

    learn = Learner(lesson_cnn(), tiny_dls(), cbs=[FailingCleanup()])
    with pytest.raises(RuntimeError, match="the real problem") as err:
        learn.fit(1)
    assert "cleanup trouble" in "".join(getattr(err.value, "__notes__", []))
    assert learn.cbs and not [cb for cb in learn.cbs if isinstance(cb, CheckpointCB)]


def test_lr_find_leaves_the_run_alone(tmp_path):
    from lrlab.train.callbacks.lr_finder import lr_find

    learn = make_learner(tmp_path, "onecycle").fit(1)
    before = (tmp_path / "last.pt").read_bytes()
    history, recs = list(learn.cb(MetricsCB).history), dict(learn.cb(RecorderCB).recs)
    result = lr_find(learn, start_lr=1e-5, max_lr=1.0)
    assert len(result.lrs) >= 3
    assert (tmp_path / "last.pt").read_bytes() == before
    assert learn.cb(MetricsCB).history == history and learn.cb(RecorderCB).recs == recs
    with pytest.raises(ValueError, match="needs .* batches"):
        lr_find(learn, mult=1.0000001)


def test_malformed_values_are_refused_by_name():
    from lrlab.data import get_dls
    from lrlab.lab import LabError, Sheet

    with pytest.raises(LabError, match="textbook must be True or False, got 'no'"):
        Sheet("basic", textbook="no")
    with pytest.raises(ValueError, match="n_train must be .* got -5"):
        get_dls(n_train=-5)
    with pytest.raises(LabError, match="single data row never moves"):
        Sheet("basic", data=[(10.0, 50.0)])
