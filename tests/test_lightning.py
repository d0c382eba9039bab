"""lrlab in Lightning: a real LightningModule trains with lrlab's Adam and OneCycleLR, the recorder sees the
schedule's lrs, the annealer runs as a callback, and the LR finder works on the module."""

from __future__ import annotations

import copy

import lightning.pytorch as pl  # the suite installs the lightning extra: a missing one fails, never skips
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lrlab.lightning import AutoAnnealCallback, AutoLRCallback, HyperRecorderCallback, lr_find_module
from lrlab.optim import Adam
from lrlab.schedules import sched_lrs
from tests.test_any_loop import tabular

STEPS_PER_EPOCH = 24  # 1536 examples in batches of 64


class TabularModule(pl.LightningModule):
    """A plain LightningModule: an MLP, cross-entropy, accuracy logged, lrlab's Adam, optional one-cycle."""

    def __init__(self, lr: float = 1e-3, one_cycle_epochs: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 4))
        self.lr, self.one_cycle_epochs = lr, one_cycle_epochs

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", F.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        opt = Adam(self.parameters(), lr=self.lr)
        if self.one_cycle_epochs is None:
            return opt
        total = self.one_cycle_epochs * STEPS_PER_EPOCH
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def loaders():
    x, y = tabular()
    g = torch.Generator().manual_seed(0)
    train = torch.utils.data.TensorDataset(x[:1536], y[:1536])
    valid = torch.utils.data.TensorDataset(x[1536:], y[1536:])
    return (torch.utils.data.DataLoader(train, batch_size=64, shuffle=True, generator=g),
            torch.utils.data.DataLoader(valid, batch_size=256))  # fmt: skip


def trainer(tmp_path, epochs: int, callbacks) -> pl.Trainer:
    return pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                      callbacks=callbacks)  # fmt: skip


def test_lightning_module_with_lrlab_adam_and_one_cycle_records_the_schedule(tmp_path):
    module, recorder = TabularModule(one_cycle_epochs=3), HyperRecorderCallback()
    train, valid = loaders()
    trainer(tmp_path, 3, [recorder]).fit(module, train, valid)
    preview = sched_lrs(lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=72), steps=72)
    assert recorder.recorder["lr"] == pytest.approx(preview["lr"], rel=1e-12)
    assert recorder.recorder["momentum"] == pytest.approx(preview["mom"], rel=1e-12)  # beta1, cycled
    assert float(module.trainer.callback_metrics["val_acc"]) > 0.65  # chance: about 0.25


def test_annealer_as_a_lightning_callback(tmp_path):
    module = TabularModule(lr=3e-2)
    anneal, recorder = AutoAnnealCallback(every=8, warmup=24), HyperRecorderCallback()
    train, valid = loaders()
    trainer(tmp_path, 4, [anneal, recorder]).fit(module, train, valid)
    lrs, decisions = recorder.recorder["lr"], anneal.annealer.decisions
    assert lrs[:24] == pytest.approx([3e-2 * (i + 1) / 24 for i in range(24)])
    fired = [d for d in decisions if d["new_lr"] < d["old_lr"]]
    assert fired and all(lrs[d["step"]] == pytest.approx(d["new_lr"]) for d in fired if d["step"] < len(lrs))
    assert len(lrs) == 4 * STEPS_PER_EPOCH and float(module.trainer.callback_metrics["val_acc"]) > 0.65


def test_annealer_refuses_a_module_with_its_own_scheduler(tmp_path):
    train, valid = loaders()
    with pytest.raises(ValueError, match="AutoAnnealCallback sets the lr itself: remove the lr scheduler"):
        trainer(tmp_path, 1, [AutoAnnealCallback()]).fit(TabularModule(one_cycle_epochs=1), train, valid)
    with pytest.raises(ValueError, match="unknown measure 'loss'"):
        AutoAnnealCallback(measure="loss")


def test_lr_find_on_a_lightning_module_restores_it():
    module = TabularModule()
    before = copy.deepcopy(module.state_dict())
    found = lr_find_module(module, loaders()[0], start_lr=1e-5, max_lr=10.0)
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    assert 1e-4 < found.suggestion < 1.0 and len(found.lrs) > 10


@pytest.mark.slow
def test_autolr_as_a_lightning_callback_searches_from_the_default(tmp_path):
    module = TabularModule(lr=1e-3)
    auto, recorder = AutoLRCallback(every=8), HyperRecorderCallback()
    train, valid = loaders()
    trainer(tmp_path, 3, [auto, recorder]).fit(module, train, valid)
    done = [e for e in auto.autolr.events if e["event"] == "search done"]
    assert len(done) == 1 and max(recorder.recorder["lr"]) > 1e-2  # it went looking well above the default
    assert float(module.trainer.callback_metrics["val_acc"]) > 0.65
    total = int(module.trainer.estimated_stepping_batches)  # told the run's length: hold, then decay to zero
    assert auto.autolr.total_steps == total and any(e["event"] == "decay" for e in auto.autolr.events)
    assert recorder.recorder["lr"][-1] < done[0]["lr"] * 0.1


@pytest.mark.slow
def test_autolr_callback_validates_and_hands_over_the_weights_average(tmp_path):
    module = TabularModule(lr=1e-3)
    auto = AutoLRCallback(average=0.5, max_search=20)  # searching for at most 20 of the 24 steps of epoch 0
    seen = []  # per validation: (the module holds the average, the live weights differ from it)

    class Probe(pl.Callback):
        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            if batch_idx == 0 and auto.autolr is not None and auto.autolr.live_params is not None:
                params, autolr = list(pl_module.parameters()), auto.autolr
                seen.append((all(torch.equal(p, a) for p, a in zip(params, autolr.average_params)),
                             not all(torch.equal(p, w) for p, w in zip(params, autolr.live_params))))  # fmt: skip

    train, valid = loaders()
    trainer(tmp_path, 4, [auto, Probe()]).fit(module, train, valid)
    assert len(seen) == 4 and all(held for held, _ in seen) and seen[0][1]  # mid-run, the average differs
    assert all(torch.equal(p, a) for p, a in zip(module.parameters(), auto.autolr.average_params))
    assert float(module.trainer.callback_metrics["val_acc"]) > 0.65
