"""The callbacks almost every fit wants: the training step, the device, metrics, progress."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from lrlab.train.distributed import all_sum
from lrlab.train.learner import Callback, CancelFitException, Learner, loss_checked


class TrainCB(Callback):
    """The standard training step as a callback: subclass it to change one part (n_inp inputs per batch).

    Args:
        n_inp: how many leading elements of a batch go to the model; the rest go to the loss.

    Raises:
        ValueError: n_inp that is not an integer >= 1."""

    def __init__(self, n_inp: int = 1) -> None:
        if isinstance(n_inp, bool) or not isinstance(n_inp, int) or n_inp < 1:
            raise ValueError(f"n_inp must be an integer >= 1, got {n_inp!r}")
        self.n_inp = n_inp

    def before_fit(self, learn: Learner) -> None:
        learn.n_inp = self.n_inp  # metrics and error messages take the targets after the inputs

    def predict(self, learn: Learner) -> None:
        learn.preds = learn.model(*learn.batch[: self.n_inp])

    def get_loss(self, learn: Learner) -> None:
        learn.loss = loss_checked(learn.loss_func, learn.preds, learn.batch[self.n_inp :])

    def backward(self, learn: Learner) -> None:
        learn.loss.backward()

    def step(self, learn: Learner) -> None:
        learn.opt.step()

    def zero_grad(self, learn: Learner) -> None:
        learn.opt.zero_grad()


def default_device() -> torch.device:
    """CUDA when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class DeviceCB(Callback):
    """Puts the model, then each batch, on one device.

    Args:
        device: "cpu", "cuda", a torch.device, or None for CUDA when there is one."""

    order = -10

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = torch.device(device) if device is not None else default_device()

    def before_fit(self, learn: Learner) -> None:
        learn.model.to(self.device)

    def before_batch(self, learn: Learner) -> None:
        learn.batch = tuple(t.to(self.device, non_blocking=True) for t in learn.batch)


class SingleBatchCB(Callback):
    """Run one batch, then cancel the fit: the quickest way to get a live optimizer (the lesson's trick).

    No arguments."""

    order = 1

    def after_batch(self, learn: Learner) -> None:
        raise CancelFitException()


def last_metric(learn: Learner, key: str) -> float | None:
    """The latest value of a metric (e.g. 'valid_loss') from any attached callback that keeps a history."""
    for cb in learn.cbs:
        history = getattr(cb, "history", None)
        if history and isinstance(history[-1], dict) and key in history[-1]:
            return history[-1][key]
    return None


class MetricsCB(Callback):
    """Mean loss and accuracy per epoch (weighted by batch size) for train and valid, kept as history.

    Args:
        log: called with each epoch's row (e.g. `print`); None (the default) keeps the rows silent in `history`.
        accuracy: True for the built-in accuracy (`train_acc`, `valid_acc`), False for none; a metric object
            here is taken as `accuracy=` like any other named metric below (the course's
            `MetricsCB(accuracy=MulticlassAccuracy())`).
        chunk: batches of predictions kept before they are reduced.
        **metrics: more metrics by name, recorded as `train_NAME`/`valid_NAME`: an object with torcheval's
            `update(preds, targets)`, `compute()` and `reset()`, or a function `f(preds, targets)` returning a
            number per batch (averaged by batch size). These are computed on each process, not summed over
            ranks, and are not part of a mid-epoch checkpoint.

    Raises:
        TypeError: a metric that is neither such an object nor callable."""

    run_in_lr_find = False  # it follows or steers the real run

    order = -5

    def __init__(
        self, log: Callable[[dict], None] | None = None, accuracy: object = True, chunk: int = 64, **metrics: object
    ) -> None:
        if not isinstance(accuracy, bool):
            metrics, accuracy = {"accuracy": accuracy, **metrics}, False
        for name, metric in metrics.items():
            if not (hasattr(metric, "update") and hasattr(metric, "compute")) and not callable(metric):
                raise TypeError(f"metric {name!r} must have update()/compute() or be callable, got {metric!r}")
        self.log, self.accuracy, self.chunk, self.metrics = log, accuracy, chunk, metrics
        self.history: list[dict] = []

    def before_fit(self, learn: Learner) -> None:
        self.history, self.phase, self.pending = [], None, None
        self.__dict__.pop("row", None)  # an epoch left unfinished by an earlier, cancelled fit

    def state_dict(self) -> dict:
        """The history, plus the epoch in progress: its row, and mid-training its per-batch losses so far (a
        resumed epoch then reports the same means as an uninterrupted one). A validation in progress is not
        kept: it restarts whole."""
        state: dict = {"history": list(self.history)}
        if hasattr(self, "row"):
            state["row"] = {"values": dict(self.row), "elapsed": time.perf_counter() - self.start}
            if getattr(self, "phase", None) == "train":
                self._count_hits()
                losses = torch.stack(self.losses).cpu() if self.losses else torch.zeros(0)
                state["partial"] = {"losses": losses, "sizes": list(self.sizes), "hits": int(self.hits)}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state["history"])
        self.pending = state.get("partial")
        if "row" in state:  # a validation to redo keeps its epoch's training row
            self.row = dict(state["row"]["values"])
            self.start = time.perf_counter() - state["row"]["elapsed"]

    def before_epoch(self, learn: Learner) -> None:
        self.losses, self.sizes, self.preds, self.targets = [], [], [], []
        self.hits = 0
        self.phase = "train" if learn.training else "valid"
        self.sums = dict.fromkeys(self.metrics, 0.0)
        for metric in self.metrics.values():
            if hasattr(metric, "reset"):
                metric.reset()
        if not learn.training:
            return
        pending, self.pending = getattr(self, "pending", None), None
        if pending is None:
            self.start, self.row = time.perf_counter(), {"epoch": learn.epoch}
            return
        # a resumed epoch: load_state_dict put back its row and clock; these are the batches before the stop
        self.losses = list(pending["losses"].unbind())
        self.sizes, self.hits = list(pending["sizes"]), pending["hits"]

    def after_loss(self, learn: Learner) -> None:
        # Only keep references per batch; reduce in chunks (cheap per batch, bounded memory, no device sync).
        target = learn.batch[getattr(learn, "n_inp", 1)]
        self.losses.append(learn.loss.detach())
        self.sizes.append(len(target))
        if self.accuracy:
            self.preds.append(learn.preds.detach())
            self.targets.append(target)
            if len(self.preds) >= self.chunk:
                self._count_hits()
        for name, metric in self.metrics.items():
            if hasattr(metric, "update") and hasattr(metric, "compute"):
                metric.update(learn.preds.detach(), target)
            else:
                self.sums[name] += float(metric(learn.preds.detach(), target)) * len(target)

    def _count_hits(self) -> None:
        if self.accuracy and self.preds:
            self.hits = self.hits + (torch.cat(self.preds).argmax(dim=1) == torch.cat(self.targets)).sum()
            self.preds, self.targets = [], []

    def after_epoch(self, learn: Learner) -> None:
        if not hasattr(self, "row"):
            self.row = {"epoch": learn.epoch}
            self.start = time.perf_counter()
        phase = "train" if learn.training else "valid"
        loss_sum = 0.0
        if self.sizes:
            device = self.losses[-1].device  # restored losses of a resumed epoch live on the CPU
            sizes = torch.tensor(self.sizes, dtype=torch.float32, device=device)
            loss_sum = float((torch.stack([loss.to(device) for loss in self.losses]).float() * sizes).sum())
            self._count_hits()
        loss_sum, count, hits = all_sum([loss_sum, float(sum(self.sizes)), float(self.hits)])  # over all ranks
        if count:
            self.row[f"{phase}_n"] = int(count)
            self.row[f"{phase}_loss"] = loss_sum / count
            if self.accuracy:
                self.row[f"{phase}_acc"] = hits / count
            for name, metric in self.metrics.items():
                local = sum(self.sizes) or 1
                value = metric.compute() if hasattr(metric, "compute") else self.sums[name] / local
                self.row[f"{phase}_{name}"] = float(value)
        self.phase = None
        if not learn.training or not learn.do_valid:
            self.row["seconds"] = time.perf_counter() - self.start
            self.history.append(self.row)
            if self.log is not None:
                self.log(self.row)
            del self.row


class ProgressCB(Callback):
    """A live progress bar (rich) with the running loss, in a terminal or a notebook.

    Args:
        every: seconds between refreshes of the bar.
        plot: also draw the training loss per batch after every epoch (the course's `ProgressCB(plot=True)`):
            saved to `plot_path` as PNG, and shown (then updated in place) when running in a notebook."""

    order = 20

    def __init__(self, every: float = 0.2, plot: bool = False, plot_path: str | Path = "progress.png") -> None:
        self.every, self.plot, self.plot_path = every, plot, Path(plot_path)
        self.losses: list[float] = []
        self.shown = None

    def before_fit(self, learn: Learner) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[loss]}"),
            auto_refresh=False,
            transient=True,
        )
        self.progress.start()
        self.task, self.losses = None, []

    def before_epoch(self, learn: Learner) -> None:
        phase = "train" if learn.training else "valid"
        desc = f"epoch {learn.epoch + 1}/{learn.n_epochs} {phase}"
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(desc, total=len(learn.dl), loss="")
        self.last = 0.0

    def after_batch(self, learn: Learner) -> None:
        self.progress.advance(self.task)
        if self.plot and learn.training and hasattr(learn, "loss"):
            self.losses.append(float(learn.loss.detach()))  # a device sync per batch: only when plotting
        now = time.perf_counter()
        if now - self.last > self.every:
            self.last = now
            if hasattr(learn, "loss"):
                self.progress.update(self.task, loss=f"loss {float(learn.loss.detach()):.4f}")
            self.progress.refresh()

    def after_epoch(self, learn: Learner) -> None:
        if self.plot and (not learn.training or not learn.do_valid) and self.losses:
            from lrlab.plots import plot_series

            plot_series({"training loss": self.losses}, self.plot_path, xlabel="training step")
            self._show()

    def _show(self) -> None:
        """In a notebook, show the picture once and update it in place afterwards."""
        try:
            from IPython import get_ipython
            from IPython.display import Image, display
        except ImportError:
            return
        if get_ipython() is None:
            return
        image = Image(filename=str(self.plot_path))
        if self.shown is None:
            self.shown = display(image, display_id=True)
        else:
            self.shown.update(image)

    def cleanup_fit(self, learn: Learner) -> None:
        if hasattr(self, "progress"):
            self.progress.stop()
