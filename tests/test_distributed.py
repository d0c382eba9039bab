"""Data parallelism on torch.distributed (gloo, CPU): a real 2-process run, and failures that end it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from lrlab.data import DataLoader, Dataset
from lrlab.train.distributed import launch
from tests.conftest import REPO


def test_sharded_loader_gives_every_rank_the_same_steps_and_disjoint_examples():
    ds = Dataset(torch.zeros(103, 1, 1, 1, dtype=torch.uint8), torch.arange(103))
    shards = []
    for r in range(2):
        dl = DataLoader(ds, 10, shuffle=True, seed=4)
        dl.shard(r, 2)
        shards.append(torch.cat([y for _, y in dl]))
        assert len(dl) == 5 and len(shards[-1]) == 50
    assert not set(shards[0].tolist()) & set(shards[1].tolist())
    single = DataLoader(ds, 20, shuffle=True, seed=4)
    assert set(torch.cat([y for _, y in single])[:100].tolist()) == set(shards[0].tolist()) | set(shards[1].tolist())
    valid = [DataLoader(ds, 10) for _ in range(2)]
    for r, dl in enumerate(valid):
        dl.shard(r, 2)
    assert sorted(torch.cat([y for dl in valid for _, y in dl]).tolist()) == list(range(103))


@pytest.mark.slow
def test_lrlab_fit_nproc_2(data_dir, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "LRLAB_DATA": str(data_dir)}
    args = ["fit", "--nproc", "2", "--epochs", "2", "--n-train", "8192", "--n-valid", "1000", "--no-progress"]
    done = subprocess.run([sys.executable, "-m", "lrlab", *args, "--run-dir", str(run)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("test accuracy") == 1  # only rank 0 prints
    digests = [(run / f"rank{r}.sha256").read_text() for r in range(2)]
    assert digests[0] == digests[1]  # identical parameters on both ranks
    summary = json.loads((run / "metrics.json").read_text())
    last = summary["history"][-1]
    assert last["valid_n"] == 1000 and last["train_n"] == 8192  # metrics over all ranks' examples
    assert summary["test_accuracy"] > 0.7
    from lrlab.models import lesson_cnn
    from lrlab.train import checkpoint

    lesson_cnn().load_state_dict(checkpoint.load(run)["model"])  # a distributed checkpoint loads in one process


@pytest.mark.slow
def test_a_two_process_run_interrupted_resumes_exactly_on_two_and_refuses_one(data_dir, tmp_path):
    from tests.test_faults_cli import finish, lrlab, same_run, stop_when

    options = ["--nproc", "2", "--epochs", "2", "--n-train", "8192", "--n-valid", "1000", "--checkpoint-every", "2",
               "--no-progress"]  # fmt: skip
    full, run = tmp_path / "full", tmp_path / "run"
    reference = lrlab("fit", *options, "--run-dir", str(full), data_dir=data_dir)
    assert finish(reference)[0] == 0
    where = stop_when(lrlab("fit", *options, "--run-dir", str(run), data_dir=data_dir), run,
                      lambda p: p[2] >= 4 or p[0] >= 1, signal.SIGTERM)  # fmt: skip
    assert where[0] <= 1
    code, _, err = finish(lrlab("fit", "--resume", str(run), "--nproc", "1", data_dir=data_dir))
    assert code == 2 and "--nproc 1 (the run has 2)" in err, err
    code, out, err = finish(lrlab("fit", "--resume", str(run), data_dir=data_dir))  # on the run's own 2 processes
    assert code == 0 and "2 processes" in out, err
    same_run(full, run)


def test_a_rank_raising_in_a_callback_brings_the_run_down(capsys, monkeypatch):
    monkeypatch.setenv("LRLAB_DIST_TIMEOUT", "20")
    from tests.dist_workers import misbehaving_fit

    assert launch(misbehaving_fit, 2, 1, "raise") == 1
    err = capsys.readouterr().err
    assert "training process 1 failed" in err and "boom in a callback on rank 1" in err


@pytest.mark.slow
def test_a_rank_that_stops_answering_is_cut_off_by_the_timeout(capsys, monkeypatch):
    monkeypatch.setenv("LRLAB_DIST_TIMEOUT", "5")
    from tests.dist_workers import misbehaving_fit

    assert launch(misbehaving_fit, 2, 1, "hang") == 1  # returns at all: the 5-s timeout cut the hung rank off
    assert "failed" in capsys.readouterr().err
