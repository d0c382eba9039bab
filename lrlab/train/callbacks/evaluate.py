"""Evaluate every k training steps, not only at epoch ends: time-to-target with step resolution.

An epoch-end validation can only say "epoch 1 or epoch 2"; a run of two epochs then has two points at which
it could have met its target. `StepEvalCB` measures the validation loss (and accuracy) on a fixed, seeded
subset of the validation set every `every` steps, so steps to target are counted to within k steps.
"""

from __future__ import annotations

import math
import time

import torch

from lrlab.data.loaders import DataLoader, Dataset
from lrlab.train.learner import Callback, Learner, loss_checked


def steps_between_evals(total_steps: int, evals: int = 24) -> int:
    """The k that gives a run of `total_steps` at least `evals` evaluations (k >= 1).

    Raises:
        ValueError: total_steps or evals below 1."""
    if total_steps < 1 or evals < 1:
        raise ValueError(f"total_steps and evals must be >= 1, got {total_steps!r} and {evals!r}")
    return max(1, total_steps // evals)


def validate(
    model: torch.nn.Module, loader: object, loss_func: object, accuracy: bool = True, n_inp: int = 1
) -> tuple[float, float | None]:
    """The mean loss (weighted by batch size) and the accuracy of argmax predictions (None unless asked) of a
    model over a loader, in eval mode without gradients; the model's mode is put back. NaN loss: no batches."""
    was_training = model.training
    model.eval()
    total, hits, count = 0.0, 0, 0
    try:
        with torch.inference_mode():
            for batch in loader:
                preds = model(*batch[:n_inp])
                targets = batch[n_inp:]
                n = len(targets[0])
                total += float(loss_checked(loss_func, preds, targets)) * n
                if accuracy:
                    hits += int((preds.argmax(dim=-1) == targets[0]).sum())
                count += n
    finally:
        model.train(was_training)
    return (total / count if count else math.nan), (hits / count if accuracy and count else None)


def eval_subset(dl: object, size: int | None, seed: int = 0) -> object:
    """A loader over `size` validation examples drawn once by `seed` (the same ones at every evaluation and
    for every configuration), normalized as `dl` is; the whole loader when size is None or covers it, or
    when `dl` is not one of lrlab's in-memory loaders (whose examples it cannot pick)."""
    if size is None or not isinstance(dl, DataLoader) or size >= len(dl.ds):
        return dl
    picked = torch.randperm(len(dl.ds), generator=torch.Generator().manual_seed(seed))[:size].sort().values
    mean, std = (None, None) if dl.pixels else (dl.mean, dl.std)
    sub = DataLoader(Dataset(dl.ds.images[picked], dl.ds.labels[picked]), dl.batch_size, device=dl.device,
                     mean=mean, std=std)  # fmt: skip
    if dl.pixels:  # uint8 images keep the scaling of the loader they came from
        sub.mean, sub.std, sub.scale, sub.shift = dl.mean, dl.std, dl.scale, dl.shift
    return sub


class StepEvalCB(Callback):
    """Every `every` training steps (and after the last), the validation loss and accuracy on a fixed subset.

    Rows go to `history`: {"step", "valid_loss", "valid_acc" (classification only, else None), "seconds"},
    where step counts optimizer steps since the fit began and seconds is training time so far, the time
    spent in these evaluations left out. The model is evaluated as it stands (eval mode, no gradients),
    then put back in training mode; nothing it does touches the random state or the training loader.

    Args:
        every: steps between evaluations (`steps_between_evals(total)` gives >= 24 a run).
        subset: validation examples used (None: all of them); drawn once with `seed`.
        accuracy: also record the accuracy of argmax predictions.

    Raises:
        ValueError: every below 1, or a subset below 1."""

    order = -4  # after MetricsCB's bookkeeping of the batch, before schedulers and annealers look at it
    run_in_lr_find = False

    def __init__(self, every: int, subset: int | None = None, accuracy: bool = True, seed: int = 0) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1, got {every!r}")
        if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset < 1):
            raise ValueError(f"subset must be an integer >= 1 or None, got {subset!r}")
        self.every, self.subset, self.accuracy, self.seed = every, subset, accuracy, seed
        self.history: list[dict] = []

    def before_fit(self, learn: Learner) -> None:
        self.history, self.steps, self.eval_time = [], 0, 0.0
        self.loader = eval_subset(learn.dls.valid, self.subset, self.seed)
        self.start = time.perf_counter()

    def after_batch(self, learn: Learner) -> None:
        if learn.training:
            self.steps += 1
            if self.steps % self.every == 0:
                self.evaluate(learn)

    def after_fit(self, learn: Learner) -> None:
        if self.steps and (not self.history or self.history[-1]["step"] != self.steps):
            self.evaluate(learn)

    def evaluate(self, learn: Learner) -> dict:
        """Measure now and append the row to `history`; returns it."""
        began = time.perf_counter()
        loss, acc = validate(learn.model, self.loader, learn.loss_func, self.accuracy, getattr(learn, "n_inp", 1))
        row = {"step": self.steps, "valid_loss": loss, "valid_acc": acc, "seconds": began - self.start - self.eval_time}
        self.history.append(row)
        self.eval_time += time.perf_counter() - began
        return row
