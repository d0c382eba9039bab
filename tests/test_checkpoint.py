"""Nothing lost: exact resume, signals, failed writes, divergence, and malformed input everywhere."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from functools import partial

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lrlab.data import DataLoader, Dataset
from lrlab.lab import LabError, Sheet
from lrlab.models import lesson_cnn
from lrlab.optim import Adam
from lrlab.train import checkpoint
from lrlab.train.callbacks import MetricsCB
from lrlab.train.callbacks.checkpoint import CheckpointCB, Diverged, DivergenceGuardCB
from lrlab.train.callbacks.recorder import RecorderCB
from lrlab.train.callbacks.schedule import BatchSchedCB
from lrlab.train.learner import Callback, CancelFitException, Learner
from tests.conftest import REPO, tiny_dls, tiny_model

OPTS = {
    "lrlab-adam": partial(Adam, eps=1e-5),
    "torch-adamw": partial(torch.optim.AdamW, eps=1e-5),
}


class StopAt(Callback):
    """Simulate an interruption: cancel the fit right after (epoch, batch) has been checkpointed."""

    order = 200

    def __init__(self, epoch, batch=None):
        self.epoch, self.batch = epoch, batch

    def after_batch(self, learn):
        if learn.training and self.batch is not None and (learn.epoch, learn.iter + 1) == (self.epoch, self.batch):
            raise CancelFitException()

    def after_epoch(self, learn):
        if self.batch is None and not learn.training and learn.epoch == self.epoch:
            raise CancelFitException()


def make_learner(opt_name, cbs=()):
    torch.manual_seed(0)
    sched = BatchSchedCB(partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.05))
    return Learner(lesson_cnn(), tiny_dls(n=96, bs=16), lr=0.05, cbs=[MetricsCB(), RecorderCB(), sched, *cbs],
                   opt_func=OPTS[opt_name])  # fmt: skip


def params(learn):
    return [t.detach().clone() for t in learn.model.state_dict().values()]


@pytest.mark.parametrize("opt_name", sorted(OPTS))
@pytest.mark.parametrize("stop", [(0, None), (1, 4)], ids=["after-epoch-1", "mid-epoch-2"])
def test_resume_is_bit_identical_to_an_uninterrupted_run(opt_name, stop, tmp_path):
    full = make_learner(opt_name).fit(3)
    first = make_learner(opt_name, [CheckpointCB(tmp_path, every=2), StopAt(*stop)])
    first.fit(3)
    ckpt = checkpoint.load(tmp_path)
    assert ckpt["position"] == {"epoch": 1, "phase": "train", "batch": 0 if stop[1] is None else 4}
    resumed = make_learner(opt_name, [CheckpointCB(tmp_path, every=2)])
    for p in resumed.model.parameters():  # start from other weights: everything must come from the checkpoint
        torch.nn.init.normal_(p)
    resumed.fit(3, resume=tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(params(full), params(resumed)))
    rec_full, rec_resumed = full.cb(RecorderCB).recs["lr"], resumed.cb(RecorderCB).recs["lr"]
    assert rec_full == rec_resumed and len(rec_full) == 18
    assert [r["epoch"] for r in resumed.cb(MetricsCB).history] == [0, 1, 2]


def test_best_checkpoint_follows_the_metric(tmp_path):
    cb = CheckpointCB(tmp_path, metric="valid_loss")
    learn = make_learner("lrlab-adam", [cb]).fit(3)
    losses = [r["valid_loss"] for r in learn.cb(MetricsCB).history]
    assert cb.best == min(losses) and (tmp_path / "best.pt").exists()
    assert checkpoint.load(tmp_path / "best.pt")["position"]["epoch"] == losses.index(min(losses)) + 1


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    learn = make_learner("lrlab-adam", [CheckpointCB(tmp_path)]).fit(1)
    before = (tmp_path / "last.pt").read_bytes()

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_atomic({"x": 1}, tmp_path / "last.pt")
    monkeypatch.undo()
    assert (tmp_path / "last.pt").read_bytes() == before
    assert checkpoint.load(tmp_path)["position"] == {"epoch": 1, "phase": "train", "batch": 0}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert learn is not None


def test_checkpoint_of_another_architecture_names_the_keys(tmp_path):
    make_learner("lrlab-adam", [CheckpointCB(tmp_path)]).fit(1)
    other = Learner(tiny_model(), tiny_dls(), lr=0.01)
    with pytest.raises(ValueError, match=r"another model architecture; missing from the checkpoint: 1.bias, 1.weight"):
        other.fit(1, resume=tmp_path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable lrlab checkpoint"):
        checkpoint.load(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="no checkpoint"):
        checkpoint.load(tmp_path / "none")


def test_divergence_guard_names_epoch_and_batch_and_keeps_the_last_good_state(tmp_path):
    class Poison(Callback):
        order = -10

        def before_batch(self, learn):
            if (learn.epoch, learn.iter) == (1, 2) and learn.training:
                learn.batch = (learn.batch[0] * float("nan"), learn.batch[1])

    learn = make_learner("lrlab-adam", [CheckpointCB(tmp_path), DivergenceGuardCB(), Poison()])
    with pytest.raises(Diverged, match="epoch 2, batch 3"):
        learn.fit(3)
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())
    assert checkpoint.load(tmp_path)["position"] == {"epoch": 1, "phase": "train", "batch": 0}
    guard = DivergenceGuardCB(factor=2.0)
    with pytest.raises(Diverged, match="exceeded 2 x its best"):
        Learner(tiny_model(), tiny_dls(n=320, bs=16), lr=50.0, cbs=[guard], opt_func=torch.optim.SGD).fit(5)


@pytest.mark.slow
def test_sigterm_mid_epoch_then_resume_completes(data_dir, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "LRLAB_DATA": str(data_dir), "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "lrlab", "fit", "--epochs", "2", "--n-train", "30720", "--n-valid", "1000",
            "--checkpoint-every", "5", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen([*args, "--run-dir", str(run)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 600  # a guard against a hang, generous for a busy machine
    while not (run / "last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "resume with: lrlab fit --resume" in err
    ckpt = checkpoint.load(run)
    assert ckpt["position"]["epoch"] == 0 and 0 < ckpt["position"]["batch"] < 120
    done = subprocess.run([sys.executable, "-m", "lrlab", "fit", "--resume", str(run), "--no-progress"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads((run / "metrics.json").read_text())
    assert len(summary["history"]) == 2 and summary["test_accuracy"] > 0.7


def test_bad_checkpoint_options():
    with pytest.raises(ValueError, match="mode"):
        CheckpointCB("x", mode="best")
    with pytest.raises(ValueError, match="every"):
        CheckpointCB("x", every=0)
    with pytest.raises(ValueError, match="factor"):
        DivergenceGuardCB(factor=0.5)


ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5), st.lists(st.integers(), max_size=3),
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(lr=ANYTHING, n_epochs=ANYTHING, bs=ANYTHING, momentum=ANYTHING, sheet=ANYTHING, epochs=ANYTHING)
def test_malformed_arguments_fail_with_a_message(lr, n_epochs, bs, momentum, sheet, epochs):
    """Learner, optimizers, lab and loader: bad values raise ValueError/TypeError with a message, or work."""
    calls = [
        lambda: Learner(tiny_model(), tiny_dls(n=16, bs=8), lr=lr).fit(1, valid=False),
        lambda: Learner(tiny_model(), tiny_dls(n=16, bs=8), lr=0.01).fit(n_epochs, valid=False),
        lambda: DataLoader(Dataset(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.zeros(4).long()), bs),
        lambda: Adam([torch.zeros(1, requires_grad=True)], lr=lr),
        lambda: Adam([torch.zeros(1, requires_grad=True)], betas=(momentum, 0.9)),
        lambda: Sheet(sheet),
        lambda: Sheet("basic").run(epochs),
        lambda: setattr(Sheet("adam"), "lr", lr),
    ]
    for call in calls:
        try:
            call()
        except (ValueError, TypeError, LabError) as e:
            assert str(e), "an error must say what is wrong"
        assert math.isfinite(0.0)


def test_resume_with_a_broken_config_says_so(tmp_path, capsys):
    from lrlab.cli.main import main

    (tmp_path / "config.json").write_text("{not json")
    assert main(["fit", "--resume", str(tmp_path)]) == 2
    assert "config.json is not valid JSON" in capsys.readouterr().err
    assert main(["fit", "--resume", str(tmp_path / "nothing")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_resume_after_config_json_was_edited_by_hand_names_the_option(tmp_path, data_dir, capsys):
    """A checkpoint keeps the options it was trained with: another batch size in config.json is one line,
    not 'Tried to step 355 times' from the scheduler half-way through the epoch."""
    import json

    from lrlab.cli.main import main

    run = tmp_path / "run"
    args = ["fit", "--epochs", "1", "--n-train", "1024", "--n-valid", "200", "--no-progress", "--run-dir", str(run)]
    assert main([*args, "--data-dir", str(data_dir)]) == 0
    (run / "metrics.json").unlink()  # as if it stopped after its last checkpoint
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "bs": 128}))
    capsys.readouterr()
    assert main(["fit", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config.json was changed after its checkpoint was written: bs 128 (trained " in err
    assert "with 256)" in err
    (run / "config.json").write_text(json.dumps(config))  # put back: it resumes and finishes
    assert main(["fit", "--resume", str(run)]) == 0
