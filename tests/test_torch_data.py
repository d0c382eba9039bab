"""torch's Dataset and DataLoader in lrlab's Learner: TorchLoader resumes mid-epoch exactly; a plain torch
DataLoader trains and resumes at epoch ends, and what it cannot do is refused by name."""

from __future__ import annotations

import os
import signal

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lrlab.data.loaders import DataLoaders, TorchLoader
from lrlab.optim import Adam
from lrlab.train import checkpoint
from lrlab.train.callbacks import CheckpointCB, MetricsCB, RecorderCB, TrainingInterrupted
from lrlab.train.callbacks.ddp import DDPCB
from lrlab.train.learner import Callback, CancelFitException, Learner


class Tabular(torch.utils.data.Dataset):
    """A map-style dataset yielding (features, label) one example at a time, as user datasets do."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 12, generator=g)
        self.y = (self.x[:, :3].sum(1) > 0).long() + (self.x[:, 3] > 1).long()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


def torch_dls(shuffle: bool = True) -> DataLoaders:
    return DataLoaders(torch.utils.data.DataLoader(Tabular(160, 0), batch_size=16, shuffle=shuffle),
                       torch.utils.data.DataLoader(Tabular(64, 1), batch_size=32))  # fmt: skip


def make_learner(dls, cbs=()) -> Learner:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 3))
    return Learner(model, dls, loss_func=F.cross_entropy, lr=1e-2, opt_func=Adam,
                   cbs=[MetricsCB(), RecorderCB(), *cbs])  # fmt: skip


class StopAt(Callback):
    order = 200  # after CheckpointCB wrote the batch

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def after_batch(self, learn):
        if learn.training and (learn.epoch, learn.iter + 1) == (self.epoch, self.batch):
            raise CancelFitException()


def same_run(a: Learner, b: Learner) -> bool:
    weights = all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    metrics = [{k: v for k, v in r.items() if k != "seconds"} for r in a.cb(MetricsCB).history]
    metrics_b = [{k: v for k, v in r.items() if k != "seconds"} for r in b.cb(MetricsCB).history]
    return weights and a.cb(RecorderCB).recs == b.cb(RecorderCB).recs and metrics == metrics_b


@pytest.mark.parametrize("num_workers", [0, 1])
def test_torch_loader_resumes_mid_epoch_bit_identically(num_workers, tmp_path):
    def dls():
        return DataLoaders.from_datasets(Tabular(160, 0), Tabular(64, 1), batch_size=16, num_workers=num_workers)

    full = make_learner(dls()).fit(3)
    make_learner(dls(), [CheckpointCB(tmp_path, every=3), StopAt(1, 6)]).fit(3)
    assert checkpoint.load(tmp_path)["position"] == {"epoch": 1, "phase": "train", "batch": 6}
    resumed = make_learner(dls(), [CheckpointCB(tmp_path, every=3)])
    resumed.fit(3, resume=tmp_path)
    assert same_run(full, resumed) and full.cb(MetricsCB).history[-1]["valid_acc"] > 0.6


def test_torch_loader_collates_and_refuses_an_iterable_dataset():
    def pairs(items):
        return torch.stack([x for x, _ in items]) * 2, torch.stack([y for _, y in items])

    loader = TorchLoader(Tabular(10, 0), batch_size=4, collate_fn=pairs)
    xb, yb = next(iter(loader))
    assert len(loader) == 3 and torch.equal(xb, Tabular(10, 0).x[:4] * 2)

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            yield from range(3)

    with pytest.raises(ValueError, match="TorchLoader needs a map-style dataset .* got Stream"):
        TorchLoader(Stream())


def test_a_plain_torch_dataloader_trains_and_resumes_at_epoch_ends(tmp_path):
    full = make_learner(torch_dls()).fit(3)
    assert full.cb(MetricsCB).history[-1]["valid_acc"] > 0.6
    interrupted = make_learner(torch_dls(), [CheckpointCB(tmp_path)])
    interrupted.add_cbs([StopAtEpochEnd(0)])
    interrupted.fit(3)
    resumed = make_learner(torch_dls(), [CheckpointCB(tmp_path)])
    resumed.fit(3, resume=tmp_path)  # its shuffle draws from torch's RNG, which the checkpoint restores
    assert same_run(full, resumed)


class StopAtEpochEnd(Callback):
    order = 200

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def after_epoch(self, learn):
        if not learn.training and learn.epoch == self.epoch:
            raise CancelFitException()


class SignalAt(Callback):
    order = 90  # before CheckpointCB sees the batch

    def after_batch(self, learn):
        if learn.training and (learn.epoch, learn.iter + 1) == (1, 3):
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_signal_mid_epoch_with_a_torch_dataloader_stops_at_the_epochs_end(tmp_path, capsys):
    full = make_learner(torch_dls()).fit(3)
    with pytest.raises(TrainingInterrupted):
        make_learner(torch_dls(), [CheckpointCB(tmp_path), SignalAt()]).fit(3)
    assert "stopping after this epoch's training (DataLoader cannot restart mid-epoch)" in capsys.readouterr().err
    assert checkpoint.load(tmp_path)["position"] == {"epoch": 1, "phase": "valid", "batch": 0}
    resumed = make_learner(torch_dls(), [CheckpointCB(tmp_path)])
    resumed.fit(3, resume=tmp_path)
    assert same_run(full, resumed)


def test_what_a_torch_dataloader_cannot_do_is_refused_by_name(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"CheckpointCB\(every=2\) needs a loader that restarts mid-epoch; a DataLo"):
        make_learner(torch_dls(), [CheckpointCB(tmp_path, every=2)]).fit(1)
    learn = make_learner(torch_dls())
    learn.fit(1)
    with pytest.raises(ValueError, match="a DataLoader cannot restart in the middle of an epoch"):
        checkpoint.capture(learn, 0, 3)
    monkeypatch.setattr("lrlab.train.distributed.is_distributed", lambda: True)
    monkeypatch.setattr("lrlab.train.distributed.world_size", lambda: 2)
    with pytest.raises(ValueError, match=r"the train loader \(DataLoader\) cannot be sharded across 2 processes"):
        make_learner(torch_dls(), [DDPCB()]).fit(1)
