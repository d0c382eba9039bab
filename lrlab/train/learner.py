"""A small training loop whose every step is an event that callbacks can observe or change."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from lrlab.optim.core import check_lr

OptFunc = Callable[..., torch.optim.Optimizer]

EVENTS = (
    "before_fit",
    "before_epoch",
    "before_batch",
    "after_pred",
    "after_loss",
    "after_backward",
    "after_step",
    "after_batch",
    "after_epoch",
    "after_fit",
    "after_cancel_batch",
    "after_cancel_epoch",
    "after_cancel_fit",
    "cleanup_fit",
)
# The training step is split into these; a callback that defines one replaces the Learner's default.
STEPS = ("predict", "get_loss", "backward", "step", "zero_grad")


class CancelFitException(Exception):
    """Raised by a callback to end the whole fit (after_fit still runs)."""


class CancelEpochException(Exception):
    """Raised by a callback to end the current epoch phase (train or valid)."""


class CancelBatchException(Exception):
    """Raised by a callback to skip the rest of the current batch (after_batch still runs)."""


class Callback:
    """Base class: define any of EVENTS or STEPS as a method taking the Learner; lower order runs first.

    `run_in_lr_find`: False for callbacks that follow or steer the run itself (schedules, metrics, recorders,
    checkpoints, guards, time limits): the LR finder's short throw-away fit runs without them."""

    order: int = 0
    run_in_lr_find: bool = True


def default_opt_func(params: Iterable, lr: float) -> torch.optim.Optimizer:
    """lrlab's Adam with the lesson's eps: the default optimizer."""
    from lrlab.optim.classic import Adam
    from lrlab.optim.registry import LESSON_EPS

    return Adam(params, lr=lr, eps=LESSON_EPS)


class Learner:
    """Holds model, data, loss and optimizer; fit() runs the loop and fires events at each step."""

    def __init__(
        self,
        model: nn.Module,
        dls: Any,
        loss_func: Callable = F.cross_entropy,
        lr: float = 1e-2,
        cbs: Callback | Sequence[Callback] | None = None,
        opt_func: OptFunc = default_opt_func,
    ) -> None:
        check_lr(lr)
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_func):
            raise TypeError(f"loss_func must be callable, got {loss_func!r}")
        self.model, self.dls, self.loss_func, self.lr, self.opt_func = model, dls, loss_func, lr, opt_func
        self.cbs: list[Callback] = as_list(cbs)
        self.n_inp = 1  # how many leading batch elements are inputs; the rest are targets (TrainCB sets it)
        self.opt: torch.optim.Optimizer | None = None
        self.training = False
        self.epoch = self.iter = 0
        self.start_iter = 0  # batches of the current phase already done before this fit resumed
        self.n_epochs = 0
        self.do_train = self.do_valid = True
        self._dispatch()

    # -- callbacks ---------------------------------------------------------------------------
    def _dispatch(self) -> None:
        """Precompute, per event, the bound methods to call: keeps the per-batch cost tiny. Only methods count
        (a callback's attribute that happens to be called `step` does not), and a step defined twice is an
        error, never a silent choice."""
        cbs = sorted(self.cbs, key=lambda cb: getattr(cb, "order", 0))
        self._handlers = {e: [getattr(cb, e) for cb in cbs if _defines(cb, e)] for e in EVENTS}
        self._steps = {}
        for name in STEPS:
            owners = [cb for cb in cbs if _defines(cb, name)]
            if _defines(self, name):  # a Learner subclass's own step (the course's TrainLearner pattern)
                owners.append(self)
            if len(owners) > 1:
                raise ValueError(
                    f"the training step {name!r} is defined by {' and '.join(type(o).__name__ for o in owners)}: "
                    f"keep one of them"
                )
            if owners and owners[0] is self:
                method = getattr(self, name)
                takes_learn = len(inspect.signature(method).parameters) > 0
                self._steps[name] = method if takes_learn else (lambda learn, method=method: method())
            else:
                self._steps[name] = getattr(owners[0], name) if owners else getattr(self, "_" + name)

    def add_cbs(self, cbs: Callback | Iterable[Callback]) -> None:
        """Attach callbacks (for the rest of this Learner's life): one callback or several."""
        self.cbs.extend(as_list(cbs))
        self._dispatch()

    def remove_cbs(self, cbs: Callback | Iterable[Callback]) -> None:
        """Detach callbacks: one callback or several."""
        for cb in as_list(cbs):
            self.cbs.remove(cb)
        self._dispatch()

    def callback(self, event: str) -> None:
        """Fire one event on every callback that handles it, in order."""
        for handler in self._handlers[event]:
            handler(self)

    def cb(self, kind: type) -> Any:
        """The first attached callback of a given class (or None): how callbacks find each other."""
        return next((c for c in self.cbs if isinstance(c, kind)), None)

    # -- the default training step ------------------------------------------------------------
    def _predict(self, learn: Learner) -> None:
        self.preds = self.model(self.batch[0])

    def _get_loss(self, learn: Learner) -> None:
        self.loss = loss_checked(self.loss_func, self.preds, self.batch[self.n_inp :])

    def _backward(self, learn: Learner) -> None:
        self.loss.backward()

    def _step(self, learn: Learner) -> None:
        self.opt.step()

    def _zero_grad(self, learn: Learner) -> None:
        if getattr(self.opt, "grads_in_place", False):  # the gradients live in its buffer: backward writes there
            self.opt.zero_grad(set_to_none=False)
        else:
            self.opt.zero_grad()

    # -- the loop -------------------------------------------------------------------------------
    def one_batch(self) -> None:
        """Predict, loss, and (when training) backward, step, zero_grad: each followed by its event."""
        steps, fire = self._steps, self.callback
        steps["predict"](self)
        fire("after_pred")
        steps["get_loss"](self)
        fire("after_loss")
        if self.training:
            steps["backward"](self)
            fire("after_backward")
            steps["step"](self)
            fire("after_step")
            steps["zero_grad"](self)

    def _run_batches(self) -> None:
        fire = self.callback
        # a resumed epoch's loader starts at its saved position; iter counts from the epoch's start
        start, self.start_iter = self.start_iter, 0
        for self.iter, self.batch in enumerate(self.dl, start):
            try:
                fire("before_batch")
                self.one_batch()
            except CancelBatchException:
                fire("after_cancel_batch")
            fire("after_batch")

    def one_epoch(self, training: bool) -> None:
        """One pass over the train or the valid loader."""
        self.model.train(training)
        self.training = training
        self.dl = self.dls.train if training else self.dls.valid
        try:
            self.callback("before_epoch")
            if training:
                self._run_batches()
            else:
                with torch.inference_mode():
                    self._run_batches()
        except CancelEpochException:
            self.callback("after_cancel_epoch")
        self.callback("after_epoch")

    def fit(
        self,
        n_epochs: int = 1,
        train: bool = True,
        valid: bool = True,
        cbs: Callback | Sequence[Callback] | None = None,
        lr: float | None = None,
        resume: str | Path | None = None,
    ) -> Learner:
        """Train for n_epochs; callbacks given here (one or a list) apply to this fit only.

        Args:
            n_epochs: epochs to run; train, valid: whether to run each pass.
            lr: a new learning rate (builds a new optimizer); None keeps the optimizer there is.
            resume: a checkpoint (or run folder) written by CheckpointCB; the fit continues exactly where it
                stopped (same n_epochs and callbacks as the interrupted fit).

        Raises:
            ValueError: a bad n_epochs or lr, or a checkpoint that does not fit this model or this fit."""
        if not isinstance(n_epochs, int) or isinstance(n_epochs, bool) or n_epochs < 1:
            raise ValueError(f"n_epochs must be an integer >= 1, got {n_epochs!r}")
        if lr is not None:
            check_lr(lr)
        ckpt = self._load_weights(resume) if resume is not None else None
        extra = as_list(cbs)
        self.add_cbs(extra)
        try:
            self.n_epochs, self.do_train, self.do_valid = n_epochs, train, valid
            self.epochs = range(n_epochs)
            if lr is not None or self.opt is None:
                self.lr = self.lr if lr is None else lr
                self.opt = self.opt_func(self.model.parameters(), self.lr)
            try:
                self.callback("before_fit")
                skip_train = ckpt is not None and self._continue_from(ckpt)
                for self.epoch in self.epochs:
                    if train and not skip_train:
                        self.one_epoch(True)
                    skip_train = False
                    if valid:
                        self.one_epoch(False)
            except CancelFitException:
                self.callback("after_cancel_fit")
            self.callback("after_fit")
            if train:
                warn_if_not_finite(self.model)
        except BaseException as error:
            self._cleanup(extra, error)
            raise
        self._cleanup(extra, None)
        return self

    def _load_weights(self, resume: str | Path) -> dict:
        """Read a checkpoint and load its weights (before the callbacks see the model)."""
        from lrlab.train import checkpoint

        ckpt = checkpoint.load(resume)
        model = getattr(self.model, "module", self.model)
        checkpoint.check_model(model, ckpt["model"])
        model.load_state_dict(ckpt["model"])
        return ckpt

    def _continue_from(self, ckpt: dict) -> bool:
        """Restore everything else (after before_fit, which rebuilds schedulers and resets records) and set the
        epochs and batch to continue from; True when that epoch's training had finished (only its validation
        is left)."""
        from lrlab.train import checkpoint

        position = checkpoint.restore(self, ckpt)
        self.epochs = range(position["epoch"], self.n_epochs)
        self.start_iter = position["batch"]
        return position["phase"] == "valid"

    def _cleanup(self, extra: list[Callback], error: BaseException | None) -> None:
        """Fire cleanup_fit on every callback even if some fail, then detach this fit's callbacks. A failing
        cleanup never hides the error that ended the fit: its message is attached to that error instead."""
        failures = []
        for handler in self._handlers["cleanup_fit"]:
            try:
                handler(self)
            except Exception as e:
                failures.append(e)
        self.remove_cbs(extra)
        if error is None and failures:
            raise failures[0]
        for failure in failures:
            if hasattr(error, "add_note"):
                error.add_note(f"(cleanup_fit also failed: {type(failure).__name__}: {failure})")


def warn_if_not_finite(model: torch.nn.Module) -> None:
    """Warn (RuntimeWarning) when training left NaN or inf in the weights: a fit that returns normally must
    not hide it (one scan after the fit; DivergenceGuardCB stops a run at its first bad batch instead)."""
    bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p.detach()).all())]
    if bad:
        warnings.warn(
            f"after this fit {len(bad)} of the model's parameter tensors hold NaN or inf (first: {bad[0]}): the "
            f"data may hold NaN or inf values, or the lr is too high (DivergenceGuardCB stops such a run early)",
            RuntimeWarning,
            stacklevel=3,
        )


def _defines(obj: Any, name: str) -> bool:
    """Whether obj has a method (or any callable) of that name: an attribute holding a number does not count."""
    return callable(getattr(obj, name, None))


def as_list(cbs: Any) -> list:
    """Callbacks as a list: None, one callback, or any iterable of them."""
    if cbs is None:
        return []
    return list(cbs) if isinstance(cbs, Iterable) else [cbs]


def loss_checked(loss_func: Callable, preds: torch.Tensor, targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """loss_func(preds, *targets); when the output and the labels cannot match (batch sizes, class indices out
    of range) say so with their shapes; any other error propagates as it is."""
    try:
        return loss_func(preds, *targets)
    except (RuntimeError, ValueError, IndexError) as e:
        y = targets[0] if targets else None
        if y is None or not isinstance(preds, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise
        mismatch = preds.ndim == 0 or y.ndim == 0 or preds.shape[0] != y.shape[0]
        if not mismatch and not y.is_floating_point() and y.numel() and preds.ndim >= 2:
            mismatch = int(y.min()) < 0 or int(y.max()) >= preds.shape[1]
        if not mismatch:
            raise
        values = f", values {int(y.min())}..{int(y.max())}" if y.numel() and not y.is_floating_point() else ""
        raise ValueError(
            f"the loss cannot compare the model's output (shape {tuple(preds.shape)}) with the labels "
            f"(shape {tuple(y.shape)}{values}): {e}"
        ) from e
