"""lrlab's tools in Lightning: the annealer and the hyperparameter recorder as Lightning callbacks, and the LR
finder on a LightningModule. Needs the extra: `pip install lrlab[lightning]`.

Both callbacks work on the Trainer's first optimizer through torch's optimizer hooks, so they see what was
applied whatever drives it; what they cannot honour is refused by name when training starts.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import torch

try:
    import lightning.pytorch as pl
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("lrlab.lightning needs Lightning: pip install 'lrlab[lightning]'") from error

from lrlab.models import recompute_bn_keeping_order
from lrlab.schedules.hyperparams import HyperRecorder
from lrlab.tuning.auto_anneal import AutoAnneal, check_settings
from lrlab.tuning.auto_lr import AutoLR
from lrlab.tuning.lr_range import LRFindResult, find_lr_with


def _only_optimizer(trainer: pl.Trainer, who: str) -> torch.optim.Optimizer:
    if len(trainer.optimizers) != 1:
        raise ValueError(f"{who} follows one optimizer; this module configures {len(trainer.optimizers)}")
    return trainer.optimizers[0]


def _sole_lr_driver(trainer: pl.Trainer, who: str) -> torch.optim.Optimizer:
    """The optimizer, for a callback that sets the lr itself once per batch: no scheduler of the module's
    (both would set the lr: one would silently undo the other), no gradient accumulation."""
    optimizer = _only_optimizer(trainer, who)
    if trainer.lr_scheduler_configs:
        raise ValueError(f"{who} sets the lr itself: remove the lr scheduler from configure_optimizers")
    if trainer.accumulate_grad_batches != 1:
        raise ValueError(
            f"{who} counts one optimizer step per batch; accumulate_grad_batches="
            f"{trainer.accumulate_grad_batches} is not supported"
        )
    return optimizer


class HyperRecorderCallback(pl.Callback):
    """Record the lr, momentum/betas and weight decay each optimizer step applied, per param group.

    Args:
        extra: more group keys to record where present (see HyperRecorder).

    After fit, `recorder` holds the HyperRecorder (`recorder["lr"]`, `recorder.plot(path)`).

    Raises:
        ValueError: at fit start, a module with more than one optimizer."""

    def __init__(self, extra: tuple[str, ...] = ()) -> None:
        self.extra = tuple(extra)
        self.recorder: HyperRecorder | None = None
        self._loaded: dict | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.recorder = HyperRecorder(_only_optimizer(trainer, "HyperRecorderCallback"), self.extra)
        if self._loaded is not None:
            self.recorder.load_state_dict(self._loaded)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.recorder is not None:
            self.recorder.remove()

    def state_dict(self) -> dict[str, Any]:
        return self.recorder.state_dict() if self.recorder is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = state_dict or None


class AutoAnnealCallback(pl.Callback):
    """lrlab's automatic annealer in a Lightning Trainer: stepped after every optimizer step, checked per
    epoch when `every` is None (measure "valid_loss" reads the logged `monitor`).

    Args:
        monitor: the logged validation loss for measure "valid_loss"; warmup: batches of linear warm-up
            (None: one epoch); the rest as AutoAnneal's.

    After fit, `annealer.decisions` lists every check.

    Raises:
        ValueError: bad settings (at once); at fit start, a module with more than one optimizer, an lr
            scheduler of its own (both would set the lr: one would silently undo the other), or gradient
            accumulation (the annealer counts optimizer steps, one per batch)."""

    def __init__(self, monitor: str = "val_loss", warmup: int | None = None, **settings: Any) -> None:
        defaults = dict(measure="noise", rule="ratio", threshold=1.5, factor=3.0, every=50)
        merged = {**defaults, **settings}
        check_settings(merged["measure"], merged["rule"], merged["threshold"], merged["factor"], merged["every"],
                       warmup)  # fmt: skip
        self.monitor, self.warmup, self.settings = monitor, warmup, settings
        self.annealer: AutoAnneal | None = None
        self._loaded: dict | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizer = _sole_lr_driver(trainer, "AutoAnnealCallback")
        warmup = int(trainer.num_training_batches) if self.warmup is None else self.warmup
        self.annealer = AutoAnneal(optimizer, warmup=warmup, **self.settings)
        if self._loaded is not None:
            self.annealer.load_state_dict(self._loaded)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self.annealer.step(loss)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        valid_loss = trainer.callback_metrics.get(self.monitor)
        self.annealer.epoch_end(None if valid_loss is None else float(valid_loss))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.annealer is not None:
            self.annealer.remove()

    def state_dict(self) -> dict[str, Any]:
        return self.annealer.state_dict() if self.annealer is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = state_dict or None


class AutoLRCallback(pl.Callback):
    """AutoLR (lrlab.tuning.auto_lr) in a Lightning Trainer: it searches its own lr (from 1e-4), anneals,
    and restores the last good state on a spike; stepped with each batch's loss.

    Args:
        budget: give AutoLR the run's length (trainer.estimated_stepping_batches): hold the found lr, then
            decay it; False: the noise annealer instead.
        average: with a known length, the window of the weights' moving average (AutoLR's `average`):
            validation and the module after fit use it, training the trained weights (checkpoints written after
            validation hold the trained ones). None: no average.
        bn_batches: with an average, the training batches (taken as (inputs, targets)) that re-estimate
            BatchNorm statistics for the averaged weights before each validation.
        **settings: AutoLR's.

    After fit, `autolr` holds it (`events`, `decisions`, `plot(path)`).

    Raises:
        ValueError: at fit start, more than one optimizer, an lr scheduler of the module's own, or gradient
            accumulation (as AutoAnnealCallback)."""

    def __init__(self, budget: bool = True, average: float | None = 0.2, bn_batches: int = 50, **settings: Any) -> None:
        self.budget, self.average, self.bn_batches, self.settings = budget, average, bn_batches, settings
        self.autolr: AutoLR | None = None

    def _use_average(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.autolr is None or not self.autolr.use_average():  # None: the sanity check, before training
            return
        batches = ((x.to(pl_module.device), y) for x, y, *_ in trainer.train_dataloader)  # iterated inside
        recompute_bn_keeping_order(pl_module, batches, self.bn_batches)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._use_average(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.autolr is not None:
            self.autolr.use_live()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizer = _sole_lr_driver(trainer, "AutoLRCallback")
        total = int(trainer.estimated_stepping_batches) if self.budget else None
        if total is not None and not 0 < total < 2**62:  # max_steps=-1 and no max_epochs: no known length
            total = None
        average = self.average if total is not None else None  # the average needs the run's length
        self.autolr = AutoLR(optimizer, total_steps=total, average=average, **self.settings)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.autolr.step(outputs.get("loss") if isinstance(outputs, dict) else outputs)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.autolr.epoch_end()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._use_average(trainer, pl_module)  # the module fit hands over is the one validation scored
        self.autolr.remove()


def one_optimizer(configured: Any) -> torch.optim.Optimizer:
    """The optimizer out of whatever configure_optimizers() returns (an optimizer; a dict with "optimizer";
    a list of one; or ([optimizers], [schedulers])).

    Raises:
        ValueError: none, or several."""
    if isinstance(configured, torch.optim.Optimizer):
        return configured
    if isinstance(configured, dict):
        return one_optimizer(configured.get("optimizer"))
    if isinstance(configured, (list, tuple)):
        if len(configured) == 2 and all(isinstance(part, (list, tuple)) for part in configured):
            configured = configured[0]  # ([optimizers], [schedulers])
        if len(configured) == 1:
            return one_optimizer(configured[0])
    raise ValueError(f"expected one optimizer from configure_optimizers(), got {configured!r:.200}")


def lr_find_module(
    module: pl.LightningModule,
    train_dataloader: Iterable,
    start_lr: float = 1e-7,
    max_lr: float = 10.0,
    mult: float = 1.3,
    stop_div: float = 3.0,
) -> LRFindResult:
    """The LR range test on a LightningModule, no Trainer needed: its `configure_optimizers()` gives the
    optimizer, its `training_step(batch, i)` the loss; module and RNG are restored afterwards.

    Raises:
        ValueError: bad bounds or mult, an empty loader, too few batches, or a configure_optimizers that
            returns no optimizer or several."""
    optimizer = one_optimizer(module.configure_optimizers())
    counter = iter(range(10**9))

    def batch_loss(batch) -> torch.Tensor:
        out = module.training_step(batch, next(counter))
        return out["loss"] if isinstance(out, dict) else out

    with warnings.catch_warnings():  # self.log() without a Trainer only warns; the finder logs nothing
        warnings.filterwarnings("ignore", message=".*self.log.*")
        return find_lr_with(batch_loss, module, train_dataloader, optimizer, start_lr, max_lr, mult, stop_div)
