"""Fault injection: interruptions any number of times, collisions, closed pipes, crafted files, bad input.

Each test reproduces a data-loss or silent-wrong case of issue 16; real subprocesses and signals where that is
what happens in life."""

from __future__ import annotations

import os
import signal
from functools import partial

import pytest
import torch

from lrlab import checkpoint
from lrlab.callbacks import MetricsCB
from lrlab.callbacks.checkpoint import CheckpointCB, DivergenceGuardCB, TrainingInterrupted
from lrlab.callbacks.recorder import RecorderCB
from lrlab.callbacks.schedule import BatchSchedCB, EpochSchedCB
from lrlab.learner import Callback, Learner
from lrlab.models import lesson_cnn
from lrlab.optim import Adam
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


@pytest.mark.parametrize("sched", ["onecycle", "step-per-epoch"])
@pytest.mark.parametrize("name", sorted(STOPS))
def test_any_number_of_interruptions_resume_bit_identically(name, sched, tmp_path):
    full = make_learner(tmp_path / "full", sched).fit(N_EPOCHS)
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
