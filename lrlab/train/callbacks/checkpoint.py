"""Nothing lost: periodic checkpoints, a clean stop on SIGINT/SIGTERM, and a guard against divergence."""

from __future__ import annotations

import math
import random
import signal
import sys
import threading
from pathlib import Path

import torch

from lrlab.files import stale_temporaries
from lrlab.train import checkpoint
from lrlab.train.callbacks.core import last_metric
from lrlab.train.distributed import all_sum, gather_objects, is_distributed, is_main
from lrlab.train.learner import Callback, Learner


class TrainingInterrupted(Exception):
    """A signal stopped the fit after a checkpoint was written; `path` is where to resume from."""

    def __init__(self, signum: int, path: Path) -> None:
        self.signum, self.path = signum, path
        super().__init__(f"stopped by {signal.Signals(signum).name}; checkpoint written to {path}")


class Diverged(Exception):
    """The training loss became NaN/inf or exploded; the last good checkpoint is kept."""


class CheckpointCB(Callback):
    """Write last.pt after every epoch (and every k training batches), best.pt by a metric; atomic writes.

    SIGINT and SIGTERM during fit finish the current batch, write a checkpoint and raise TrainingInterrupted
    (across processes: within AGREE_EVERY batches, all ranks after the same one).
    A checkpoint records where to continue: (epoch, "train", batches done) or (epoch, "valid", 0), counted from
    the epoch's start however many times the run was resumed. best.pt is written before last.pt, so a crash
    between the two can only leave an older last.pt, whose resume redoes the epoch and rewrites best.pt.
    Non-finite metric values never become the best.

    Args:
        folder: where last.pt and best.pt go (created if missing).
        every: also checkpoint every `every` training batches (None: only at epoch ends and on signals).
        metric, mode: what makes best.pt ('valid_loss', 'min'); any key of a MetricsCB history row.
        handle_signals: catch SIGINT/SIGTERM (main thread only).
        meta: plain data (dicts, lists, numbers, text) saved in every checkpoint under "meta".

    Raises:
        ValueError: a mode other than 'min'/'max', or `every` that is not a positive integer."""

    run_in_lr_find = False  # it follows or steers the real run

    order = 100  # after metrics, schedulers and the recorder have seen the batch/epoch
    AGREE_EVERY = 8  # training batches between the ranks' agreement on a stop, in a distributed run

    def __init__(
        self,
        folder: str | Path,
        every: int | None = None,
        metric: str = "valid_loss",
        mode: str = "min",
        handle_signals: bool = True,
        meta: dict | None = None,
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ValueError(f"every must be None or a number of batches >= 1, got {every!r}")
        self.folder, self.every, self.metric, self.mode = Path(folder), every, metric, mode
        self.handle_signals, self.meta = handle_signals, meta
        self.best: float | None = None
        self.saved: list[tuple[int, str, int]] = []
        self.stop_signal: int | None = None
        self.previous: dict = {}  # signal handlers to put back; empty until before_fit installs ours
        self.deferred, self.valid_rng = False, None
        self.distributed = False

    @property
    def last_path(self) -> Path:
        return self.folder / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.folder / "best.pt"

    def save(self, learn: Learner, epoch: int, batch: int, phase: str = "train", best: bool = False) -> Path:
        """Write the checkpoint for position (epoch, phase, batch), the next batch to run (rank 0 only); with
        `best`, the same bytes go to best.pt first."""
        # validation restarts whole, so it must restart from the random state it began with (a torch DataLoader
        # draws its seed from torch's generator each time it is iterated)
        rng = self.valid_rng if phase == "valid" else None
        ranks = gather_objects(checkpoint.rank_state(learn, rng)) if is_distributed() else None
        if is_main():
            data = checkpoint.to_bytes(checkpoint.capture(learn, epoch, batch, phase, ranks, rng, self.meta))
            if best:
                checkpoint.save_atomic(data, self.best_path)
            checkpoint.save_atomic(data, self.last_path)
        self.saved.append((epoch, phase, batch))
        return self.last_path

    # -- signals --------------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        self.stop_signal = signum

    def before_fit(self, learn: Learner) -> None:
        self.stop_signal, self.previous, self.deferred, self.valid_rng = None, {}, False, None
        self.distributed = is_distributed()  # once per fit, not per batch
        self.mid_epoch = checkpoint.resumable(learn.dls.train)
        if self.every and not self.mid_epoch:
            raise ValueError(
                f"CheckpointCB(every={self.every}) needs a loader that restarts mid-epoch; a "
                f"{type(learn.dls.train).__name__} does not: use every=None, or TorchLoader (DataLoaders.from_datasets)"
            )
        if is_main():  # temporary files a killed process left behind
            for stale in stale_temporaries(self.last_path) + stale_temporaries(self.best_path):
                stale.unlink(missing_ok=True)
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._on_signal)

    def before_epoch(self, learn: Learner) -> None:
        if not learn.training:
            self.valid_rng = {"torch": torch.get_rng_state(), "python": random.getstate()}

    def cleanup_fit(self, learn: Learner) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    # -- when to write --------------------------------------------------------------------------------
    def _agreed_stop(self) -> int | None:
        """The signal to stop on; across processes, any rank's signal stops every rank after the same batch
        (otherwise one would leave and the others wait for it in the next all-reduce)."""
        if not self.distributed:
            return self.stop_signal
        signals = all_sum([float(self.stop_signal or 0)])
        return int(signals[0]) and (self.stop_signal or signal.SIGTERM)

    def after_batch(self, learn: Learner) -> None:
        if self.distributed and (not learn.training or (learn.iter + 1) % self.AGREE_EVERY):
            # ranks agree on a stop every AGREE_EVERY training batches (an all-reduce each batch would add a
            # device sync to the loop) and at each epoch's end; validation may differ in length between ranks
            stop = None
        else:
            stop = self._agreed_stop()
        if stop and learn.training and not self.mid_epoch:
            if not self.deferred:  # this loader cannot restart mid-epoch: the epoch's training finishes first
                self.deferred = True
                print(f"lrlab: stopping after this epoch's training ({type(learn.dls.train).__name__} cannot "
                      f"restart mid-epoch)", file=sys.stderr)  # fmt: skip
        elif stop:
            if learn.training:
                path = self.save(learn, learn.epoch, learn.iter + 1)
            else:  # validation restarts whole: it changes nothing but the metrics
                path = self.save(learn, learn.epoch, 0, "valid")
            raise TrainingInterrupted(stop, path)
        n_train = len(learn.dls.train)
        if learn.training and self.every and (learn.iter + 1) % self.every == 0 and learn.iter + 1 < n_train:
            self.save(learn, learn.epoch, learn.iter + 1)

    def after_epoch(self, learn: Learner) -> None:
        if learn.training and learn.do_valid:
            return
        value = last_metric(learn, self.metric)
        improved = (
            value is not None
            and math.isfinite(value)
            and (self.best is None or (value < self.best if self.mode == "min" else value > self.best))
        )
        if improved:
            self.best = value  # before the capture: last.pt must know the best it was compared with
        path = self.save(learn, learn.epoch + 1, 0, best=improved)
        stop = self._agreed_stop()
        if stop and learn.epoch + 1 < learn.n_epochs:  # a signal at the very end lets the run finish
            raise TrainingInterrupted(stop, path)

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state["best"]


class DivergenceGuardCB(Callback):
    """Stop on a NaN/inf training loss, or when the smoothed loss exceeds `factor` x its best (if given),
    before the bad batch touches the weights; the message names the epoch and batch.

    Args:
        factor: stop when the smoothed loss exceeds factor x its best (None: only NaN/inf stop).
        beta: the smoothing of the loss (an EMA with bias correction).

    Raises:
        ValueError: factor <= 1. During the fit it raises Diverged."""

    run_in_lr_find = False  # it follows or steers the real run

    order = -4

    def __init__(self, factor: float | None = None, beta: float = 0.9) -> None:
        if factor is not None and not factor > 1:
            raise ValueError(f"factor must be > 1 (or None), got {factor!r}")
        self.factor, self.beta = factor, beta

    def before_fit(self, learn: Learner) -> None:
        self.avg, self.n, self.best = 0.0, 0, math.inf

    def state_dict(self) -> dict:
        return {"avg": self.avg, "n": self.n, "best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.avg, self.n, self.best = state["avg"], state["n"], state["best"]

    def after_loss(self, learn: Learner) -> None:
        if not learn.training:
            return
        loss = float(learn.loss.detach())
        where = f"epoch {learn.epoch + 1}, batch {learn.iter + 1}"
        if not math.isfinite(loss):
            raise Diverged(f"the training loss became {loss} at {where}; the weights before it are kept")
        if self.factor is None:
            return
        self.n += 1
        self.avg = self.beta * self.avg + (1 - self.beta) * loss
        smooth = self.avg / (1 - self.beta**self.n)
        if self.n > 10 and smooth > self.factor * self.best:
            raise Diverged(
                f"the smoothed training loss {smooth:.4g} exceeded {self.factor:g} x its best "
                f"({self.best:.4g}) at {where}; the weights before it are kept"
            )
        self.best = min(self.best, smooth)
