"""Fast to a good model: mixed precision, batch augmentation, test-time augmentation, a time budget."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from lrlab.train.learner import Callback, CancelFitException, Learner


class MixedPrecisionCB(Callback):
    """torch.autocast around the forward pass and the loss: bfloat16 on CPU (and by default on CUDA), or
    float16 with a gradient scaler on CUDA; channels_last memory format as an option.

    Args:
        dtype: torch.bfloat16 (CPU or CUDA) or torch.float16 (CUDA only, with a gradient scaler).
        channels_last: convert the model and the batches to channels_last memory format.

    Raises:
        ValueError: another dtype; at before_fit, float16 without CUDA."""

    order = -8

    def __init__(self, dtype: torch.dtype = torch.bfloat16, channels_last: bool = False) -> None:
        if dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f"dtype must be torch.bfloat16 or torch.float16, got {dtype!r}")
        self.dtype, self.channels_last = dtype, channels_last
        self.ctx = None

    def before_fit(self, learn: Learner) -> None:
        self.device = next(learn.model.parameters()).device.type
        if self.dtype == torch.float16 and self.device != "cuda":
            raise ValueError("float16 autocast needs CUDA; use torch.bfloat16 on the CPU")
        self.scaler = torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None
        if self.channels_last:
            learn.model.to(memory_format=torch.channels_last)

    def before_batch(self, learn: Learner) -> None:
        if self.channels_last:
            xb = learn.batch[0].contiguous(memory_format=torch.channels_last)
            learn.batch = (xb, *learn.batch[1:])
        self.ctx = torch.autocast(self.device, dtype=self.dtype)
        self.ctx.__enter__()

    def _leave(self) -> None:
        if self.ctx is not None:
            self.ctx.__exit__(None, None, None)
            self.ctx = None

    def after_loss(self, learn: Learner) -> None:
        self._leave()  # backward and the optimizer run outside autocast

    def after_cancel_batch(self, learn: Learner) -> None:
        self._leave()

    def cleanup_fit(self, learn: Learner) -> None:
        self._leave()

    def backward(self, learn: Learner) -> None:
        (self.scaler.scale(learn.loss) if self.scaler else learn.loss).backward()

    def step(self, learn: Learner) -> None:
        if self.scaler:
            self.scaler.step(learn.opt)
            self.scaler.update()
        else:
            learn.opt.step()


class BatchAugmentCB(Callback):
    """Augment whole training batches with tensor ops (never per image in Python): random crop after padding,
    horizontal flip, random erasing. Validation batches are left untouched.

    The padded border is filled with `fill`, by default the batch's darkest value: for normalized images that
    is the black background, where zero would paint a grey frame that test images never have.

    Args:
        pad: pixels of padding before the random crop (0: no crop); flip: random horizontal flips;
        erase: probability of erasing a random rectangle of up to `erase_max` of the image's side;
        fill: the padding's value (None: each batch's darkest).

    Raises:
        ValueError: pad < 0, erase outside [0, 1] or erase_max outside (0, 1]."""

    order = -6

    def __init__(
        self, pad: int = 2, flip: bool = True, erase: float = 0.0, erase_max: float = 0.3, fill: float | None = None
    ) -> None:
        if pad < 0 or not 0 <= erase <= 1 or not 0 < erase_max <= 1:
            raise ValueError(f"need pad >= 0, 0 <= erase <= 1, 0 < erase_max <= 1; got {pad}, {erase}, {erase_max}")
        self.pad, self.flip, self.erase, self.erase_max, self.fill = pad, flip, erase, erase_max, fill

    def before_batch(self, learn: Learner) -> None:
        if learn.training:
            learn.batch = (self.augment(learn.batch[0]), *learn.batch[1:])

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        dev = x.device
        if self.pad:
            p = self.pad
            fill = x.amin() if self.fill is None else torch.tensor(self.fill, dtype=x.dtype, device=dev)
            padded = fill.expand(n, c, h + 2 * p, w + 2 * p).clone()  # a tensor fill: no device sync per batch
            padded[:, :, p : p + h, p : p + w] = x
            dy = torch.randint(0, 2 * p + 1, (n, 1, 1), device=dev)
            dx = torch.randint(0, 2 * p + 1, (n, 1, 1), device=dev)
            rows = (torch.arange(h, device=dev).view(1, h, 1) + dy).expand(n, h, w)
            cols = (torch.arange(w, device=dev).view(1, 1, w) + dx).expand(n, h, w)
            flat = (rows * (w + 2 * p) + cols).view(n, 1, h * w).expand(-1, x.shape[1], -1)
            x = padded.flatten(2).gather(2, flat).view_as(x)
        if self.flip:
            mask = torch.rand(n, 1, 1, 1, device=dev) < 0.5
            x = torch.where(mask, x.flip(3), x)
        if self.erase:
            size = (torch.rand(n, 2, device=dev) * self.erase_max * torch.tensor([h, w], device=dev)).long() + 1
            top = (torch.rand(n, device=dev) * (h - size[:, 0] + 1)).long()
            left = (torch.rand(n, device=dev) * (w - size[:, 1] + 1)).long()
            ys, xs = torch.arange(h, device=dev).view(1, h, 1), torch.arange(w, device=dev).view(1, 1, w)
            box = ((ys >= top.view(n, 1, 1)) & (ys < (top + size[:, 0]).view(n, 1, 1))
                   & (xs >= left.view(n, 1, 1)) & (xs < (left + size[:, 1]).view(n, 1, 1)))  # fmt: skip
            chosen = (torch.rand(n, device=dev) < self.erase).view(n, 1, 1)
            x = x.masked_fill((box & chosen).unsqueeze(1), 0.0)
        return x


def tta_probs(model: torch.nn.Module, x: torch.Tensor, probs: torch.Tensor | None = None) -> torch.Tensor:
    """Class probabilities averaged over the image and its mirror; `probs` of the image itself, if already
    computed, saves its forward pass."""
    probs = model(x).float().softmax(1) if probs is None else probs
    return (probs + model(x.flip(3)).float().softmax(1)) / 2


class TTACB(Callback):
    """Test-time augmentation: in validation, predict with the average of the image's and its mirror's
    probabilities (returned as log-probabilities, so cross-entropy and accuracy work unchanged).

    No arguments: validation predictions become the log of the averaged probabilities of each image and its
    mirror."""

    def predict(self, learn: Learner) -> None:
        x = learn.batch[0]
        if learn.training:
            learn.preds = learn.model(x)
            return
        learn.preds = tta_probs(learn.model, x).log()


class TimeBudgetCB(Callback):
    """Stop training when the time budget (minus a reserve for the final evaluation) is spent.

    Args:
        seconds: the budget; reserve: seconds kept back; clock: the time source (tests inject one)."""

    run_in_lr_find = False  # it follows or steers the real run

    order = 90

    def __init__(self, seconds: float, reserve: float = 0.0, clock: Callable[[], float] = time.perf_counter) -> None:
        self.seconds, self.reserve, self.clock = seconds, reserve, clock
        self.stopped_early = False

    def before_fit(self, learn: Learner) -> None:
        self.start = self.clock()

    def after_batch(self, learn: Learner) -> None:
        if learn.training and self.clock() - self.start > self.seconds - self.reserve:
            self.stopped_early = True
            raise CancelFitException()


class StepLimitCB(Callback):
    """End the fit after `n_steps` training batches, so a planned run may stop in the middle of an epoch.

    Args:
        n_steps: training batches after which the fit ends.

    Raises:
        ValueError: n_steps that is not a positive integer."""

    run_in_lr_find = False  # it follows or steers the real run

    order = 90

    def __init__(self, n_steps: int) -> None:
        if not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
        self.n_steps = n_steps

    def before_fit(self, learn: Learner) -> None:
        self.done = 0

    def after_batch(self, learn: Learner) -> None:
        if learn.training:
            self.done += 1
            if self.done >= self.n_steps:
                raise CancelFitException()
